//! Weights of one decoder layer, f32, row-major `[out, in]` (as GGUF and Hugging Face
//! store them). Letters as in [`crate::config`].

use crate::config::{ConfigError, LayerConfig};
use thiserror::Error;

/// One decoder layer's parameters. Optional tensors are present exactly when the
/// config asks for them (`qkv_bias`, `qk_norm`); [`LayerWeights::check_shapes`] says so.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    /// [D] RMSNorm scale before attention.
    pub attn_norm: Vec<f32>,
    /// [H*Hd, D] query projection.
    pub wq: Vec<f32>,
    /// [KV*Hd, D] key projection.
    pub wk: Vec<f32>,
    /// [KV*Hd, D] value projection.
    pub wv: Vec<f32>,
    /// [H*Hd] query bias (Qwen2).
    pub bq: Option<Vec<f32>>,
    /// [KV*Hd] key bias (Qwen2).
    pub bk: Option<Vec<f32>>,
    /// [KV*Hd] value bias (Qwen2).
    pub bv: Option<Vec<f32>>,
    /// [Hd] per-head RMSNorm scale on queries, shared by all heads (Qwen3).
    pub q_norm: Option<Vec<f32>>,
    /// [Hd] per-head RMSNorm scale on keys, shared by all kv heads (Qwen3).
    pub k_norm: Option<Vec<f32>>,
    /// [D, H*Hd] attention output projection.
    pub wo: Vec<f32>,
    /// [D] RMSNorm scale before the MLP.
    pub ffn_norm: Vec<f32>,
    /// [F, D] SwiGLU gate projection.
    pub w_gate: Vec<f32>,
    /// [F, D] SwiGLU up projection.
    pub w_up: Vec<f32>,
    /// [D, F] SwiGLU down projection.
    pub w_down: Vec<f32>,
}

/// Why a set of weights does not fit a config.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum WeightsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("layer weights: `{tensor}` has {got} elements, config needs {expected}")]
    WrongLength {
        tensor: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("layer weights: `{tensor}` is {state} but the config says {config_flag} = {wanted}")]
    PresenceMismatch {
        tensor: &'static str,
        state: &'static str,
        config_flag: &'static str,
        wanted: bool,
    },
}

/// Standard deviation of the random projection weights: the usual
/// `initializer_range` of Llama/Qwen configs.
pub const RANDOM_WEIGHT_STD: f32 = 0.02;
/// Norm scales are drawn from `1 +- RANDOM_NORM_SPREAD` (uniform), near 1 like trained ones.
pub const RANDOM_NORM_SPREAD: f32 = 0.1;

impl LayerWeights {
    /// Deterministic random weights for `cfg`: projections and biases uniform with
    /// std [`RANDOM_WEIGHT_STD`], norm scales uniform in `1 +- RANDOM_NORM_SPREAD`.
    /// The same `(cfg, seed)` always gives the same bits, on every platform.
    pub fn random(cfg: &LayerConfig, seed: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let (d, q, kv, hd, f) = (
            cfg.dim,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.head_dim,
            cfg.ffn_dim,
        );
        let mut rng = SplitMix64::new(seed);
        // Uniform(-a, a) has std a / sqrt(3).
        let a = RANDOM_WEIGHT_STD * 3f32.sqrt();
        let mut mat = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-a, a)).collect() };
        let wq = mat(q * d);
        let wk = mat(kv * d);
        let wv = mat(kv * d);
        let (bq, bk, bv) = if cfg.qkv_bias {
            (Some(mat(q)), Some(mat(kv)), Some(mat(kv)))
        } else {
            (None, None, None)
        };
        let wo = mat(d * q);
        let w_gate = mat(f * d);
        let w_up = mat(f * d);
        let w_down = mat(d * f);
        let s = RANDOM_NORM_SPREAD;
        let mut norm =
            |n: usize| -> Vec<f32> { (0..n).map(|_| 1.0 + rng.uniform(-s, s)).collect() };
        let attn_norm = norm(d);
        let ffn_norm = norm(d);
        let (q_norm, k_norm) = if cfg.qk_norm {
            (Some(norm(hd)), Some(norm(hd)))
        } else {
            (None, None)
        };
        Ok(Self {
            attn_norm,
            wq,
            wk,
            wv,
            bq,
            bk,
            bv,
            q_norm,
            k_norm,
            wo,
            ffn_norm,
            w_gate,
            w_up,
            w_down,
        })
    }

    /// Checks that every tensor has the length `cfg` implies and that the optional
    /// tensors are present exactly when the config asks for them.
    pub fn check_shapes(&self, cfg: &LayerConfig) -> Result<(), WeightsError> {
        cfg.validate()?;
        let (d, q, kv, hd, f) = (
            cfg.dim,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.head_dim,
            cfg.ffn_dim,
        );
        let required: [(&'static str, &[f32], usize); 9] = [
            ("attn_norm", &self.attn_norm, d),
            ("wq", &self.wq, q * d),
            ("wk", &self.wk, kv * d),
            ("wv", &self.wv, kv * d),
            ("wo", &self.wo, d * q),
            ("ffn_norm", &self.ffn_norm, d),
            ("w_gate", &self.w_gate, f * d),
            ("w_up", &self.w_up, f * d),
            ("w_down", &self.w_down, d * f),
        ];
        for (tensor, data, expected) in required {
            check_len(tensor, data, expected)?;
        }
        // (tensor, data, expected length, config flag that requires it, flag value)
        type Optional<'a> = (
            &'static str,
            &'a Option<Vec<f32>>,
            usize,
            &'static str,
            bool,
        );
        let optional: [Optional; 5] = [
            ("bq", &self.bq, q, "qkv_bias", cfg.qkv_bias),
            ("bk", &self.bk, kv, "qkv_bias", cfg.qkv_bias),
            ("bv", &self.bv, kv, "qkv_bias", cfg.qkv_bias),
            ("q_norm", &self.q_norm, hd, "qk_norm", cfg.qk_norm),
            ("k_norm", &self.k_norm, hd, "qk_norm", cfg.qk_norm),
        ];
        for (tensor, data, expected, config_flag, wanted) in optional {
            match (data, wanted) {
                (Some(v), true) => check_len(tensor, v, expected)?,
                (None, false) => {}
                (present, _) => {
                    return Err(WeightsError::PresenceMismatch {
                        tensor,
                        state: if present.is_some() {
                            "present"
                        } else {
                            "missing"
                        },
                        config_flag,
                        wanted,
                    })
                }
            }
        }
        Ok(())
    }
}

fn check_len(tensor: &'static str, data: &[f32], expected: usize) -> Result<(), WeightsError> {
    if data.len() == expected {
        Ok(())
    } else {
        Err(WeightsError::WrongLength {
            tensor,
            expected,
            got: data.len(),
        })
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fully specified, so random
/// fixtures are reproducible without a dependency whose stream might change.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        (lo as f64 + (hi as f64 - lo as f64) * self.next_f64()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference_stream() {
        // First outputs for seed 1234567, from an independent Python transcription of
        // Vigna's splitmix64.c (the same values are the well-known published test vector).
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn random_weights_are_deterministic_and_well_shaped() {
        for cfg in [LayerConfig::qwen25_05b(), LayerConfig::qwen3_style()] {
            let small = LayerConfig {
                dim: 32,
                ffn_dim: 48,
                head_dim: 8,
                max_seq: 16,
                ..cfg
            };
            let a = LayerWeights::random(&small, 7).unwrap();
            let b = LayerWeights::random(&small, 7).unwrap();
            let c = LayerWeights::random(&small, 8).unwrap();
            assert_eq!(a, b);
            assert_ne!(a.wq, c.wq);
            a.check_shapes(&small).unwrap();
            let n = a.w_gate.len() as f32;
            let mean = a.w_gate.iter().sum::<f32>() / n;
            let std = (a.w_gate.iter().map(|w| (w - mean).powi(2)).sum::<f32>() / n).sqrt();
            assert!(
                (std - RANDOM_WEIGHT_STD).abs() < 0.1 * RANDOM_WEIGHT_STD,
                "std {std}"
            );
            assert!(a
                .attn_norm
                .iter()
                .all(|w| (w - 1.0).abs() <= RANDOM_NORM_SPREAD));
        }
    }

    #[test]
    fn shape_errors_name_the_tensor() {
        let cfg = LayerConfig {
            dim: 16,
            ffn_dim: 24,
            head_dim: 8,
            max_seq: 8,
            ..LayerConfig::qwen25_05b()
        };
        let mut w = LayerWeights::random(&cfg, 1).unwrap();
        w.wk.pop();
        assert_eq!(
            w.check_shapes(&cfg),
            Err(WeightsError::WrongLength {
                tensor: "wk",
                expected: 2 * 8 * 16,
                got: 2 * 8 * 16 - 1
            })
        );
        let mut w = LayerWeights::random(&cfg, 1).unwrap();
        w.bv = None;
        assert!(matches!(
            w.check_shapes(&cfg),
            Err(WeightsError::PresenceMismatch {
                tensor: "bv",
                state: "missing",
                ..
            })
        ));
        let no_bias = LayerConfig {
            qkv_bias: false,
            ..cfg
        };
        assert!(matches!(
            LayerWeights::random(&cfg, 1)
                .unwrap()
                .check_shapes(&no_bias),
            Err(WeightsError::PresenceMismatch {
                tensor: "bq",
                state: "present",
                ..
            })
        ));
    }
}
