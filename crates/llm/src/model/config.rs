//! A whole model's hyper-parameters, read from GGUF metadata or a Hugging Face
//! `config.json`, checked before anything is allocated from them.

use crate::config::{LayerConfig, RopeLayout};
use vtpu_modelfile::gguf::GgufFile;
use vtpu_modelfile::hf::HfConfig;

/// The architectures vtpu runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama (SmolLM2): no biases; tied or untied output.
    Llama,
    /// Qwen2 (Qwen2.5): biases on Q, K and V.
    Qwen2,
    /// Qwen3: per-head RMSNorm on Q and K; head_dim independent of the width.
    Qwen3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// The GGUF `general.architecture` / HF `model_type` names we accept.
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            _ => None,
        }
    }
}

/// Largest model the loader accepts (sizes from a file are capped before use).
pub const MAX_LAYERS: usize = crate::layer_coords::MAX_LAYER + 1;
pub const MAX_VOCAB: usize = 1 << 22;
pub const MAX_DIM: usize = 1 << 16;

/// One model: its layer shape (all layers share it), depth, vocabulary and head.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Every layer's shape; `max_seq` is the training context.
    pub layer: LayerConfig,
    /// L: decoder layers.
    pub n_layers: usize,
    /// V: vocabulary size (rows of the embedding and the output projection).
    pub vocab: usize,
    /// The output projection is the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
}

/// Why a model's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelConfigError {
    #[error("{file}: {source}")]
    Gguf {
        file: String,
        source: vtpu_modelfile::gguf::GgufError,
    },
    #[error("{file}: unsupported architecture `{arch}` (supported: llama, qwen2, qwen3)")]
    Arch { file: String, arch: String },
    #[error("{file}: metadata `{key}` is {value}: {why}")]
    Bad {
        file: String,
        key: String,
        value: String,
        why: String,
    },
    #[error("{file}: {source}")]
    Layer {
        file: String,
        source: crate::config::ConfigError,
    },
}

fn bad(file: &str, key: &str, value: impl ToString, why: &str) -> ModelConfigError {
    ModelConfigError::Bad {
        file: file.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    }
}

fn size(file: &str, key: &str, v: u64, max: usize) -> Result<usize, ModelConfigError> {
    if v == 0 || v > max as u64 {
        return Err(bad(file, key, v, &format!("must be 1..={max}")));
    }
    Ok(v as usize)
}

impl ModelConfig {
    /// From GGUF metadata (`{arch}.*` keys; the vocabulary size is the token count).
    pub fn from_gguf(g: &GgufFile) -> Result<ModelConfig, ModelConfigError> {
        let file = g
            .path()
            .map_or_else(|| "<gguf>".to_string(), |p| p.display().to_string());
        let file = file.as_str();
        let e = |source| ModelConfigError::Gguf {
            file: file.to_string(),
            source,
        };
        let arch_name = g.architecture().map_err(e)?;
        let arch = Arch::parse(arch_name).ok_or_else(|| ModelConfigError::Arch {
            file: file.to_string(),
            arch: arch_name.to_string(),
        })?;
        let key = |s: &str| format!("{arch_name}.{s}");
        let req = |s: &str| -> Result<u64, ModelConfigError> {
            g.require_u64(&key(s))
                .map_err(|source| ModelConfigError::Gguf {
                    file: file.to_string(),
                    source,
                })
        };
        let n_layers = size(file, &key("block_count"), req("block_count")?, MAX_LAYERS)?;
        let dim = size(
            file,
            &key("embedding_length"),
            req("embedding_length")?,
            MAX_DIM,
        )?;
        let ffn_dim = size(
            file,
            &key("feed_forward_length"),
            req("feed_forward_length")?,
            MAX_DIM * 16,
        )?;
        let n_heads = size(
            file,
            &key("attention.head_count"),
            req("attention.head_count")?,
            MAX_DIM,
        )?;
        let n_kv_heads = match g.get_u64(&key("attention.head_count_kv")).map_err(e)? {
            Some(v) => size(file, &key("attention.head_count_kv"), v, MAX_DIM)?,
            None => n_heads,
        };
        let head_dim = match g.get_u64(&key("attention.key_length")).map_err(e)? {
            Some(v) => size(file, &key("attention.key_length"), v, MAX_DIM)?,
            None => dim / n_heads,
        };
        if let Some(v) = g.get_u64(&key("attention.value_length")).map_err(e)? {
            if v as usize != head_dim {
                return Err(bad(
                    file,
                    &key("attention.value_length"),
                    v,
                    &format!("differs from the key length {head_dim} (not supported)"),
                ));
            }
        }
        if let Some(v) = g.get_u64(&key("rope.dimension_count")).map_err(e)? {
            if v as usize != head_dim {
                return Err(bad(
                    file,
                    &key("rope.dimension_count"),
                    v,
                    &format!("partial RoPE (head_dim {head_dim}) is not supported"),
                ));
            }
        }
        if let Some(t) = g.get_str(&key("rope.scaling.type")).map_err(e)? {
            if t != "none" {
                return Err(bad(
                    file,
                    &key("rope.scaling.type"),
                    t,
                    "RoPE scaling is not supported",
                ));
            }
        }
        let rope_theta = g
            .get_f32(&key("rope.freq_base"))
            .map_err(e)?
            .unwrap_or(10_000.0);
        let rms_eps = g
            .get_f32(&key("attention.layer_norm_rms_epsilon"))
            .map_err(e)?
            .unwrap_or(1e-5);
        let max_seq = match g.get_u64(&key("context_length")).map_err(e)? {
            Some(v) => size(file, &key("context_length"), v, 1 << 24)?,
            None => 2048,
        };
        let vocab = match g.get_str_array("tokenizer.ggml.tokens").map_err(e)? {
            Some(t) => t.len(),
            None => match g.get_u64(&key("vocab_size")).map_err(e)? {
                Some(v) => v as usize,
                None => g
                    .tensor("token_embd.weight")
                    .map(|t| t.rows_cols()[0] as usize)
                    .unwrap_or(0),
            },
        };
        let vocab = size(file, "tokenizer.ggml.tokens", vocab as u64, MAX_VOCAB)?;
        let layer = LayerConfig {
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            rms_eps,
            rope_theta,
            // llama.cpp's converter permutes Llama's Q/K rows for its "normal" RoPE
            // (interleaved pairs); Qwen2/Qwen3 use NEOX (half-split) on raw weights.
            rope_layout: match arch {
                Arch::Llama => RopeLayout::Interleaved,
                Arch::Qwen2 | Arch::Qwen3 => RopeLayout::HalfSplit,
            },
            qkv_bias: arch == Arch::Qwen2,
            qk_norm: arch == Arch::Qwen3,
            max_seq,
        };
        layer.validate().map_err(|source| ModelConfigError::Layer {
            file: file.to_string(),
            source,
        })?;
        Ok(ModelConfig {
            arch,
            layer,
            n_layers,
            vocab,
            tied_embeddings: g.tensor("output.weight").is_none(),
        })
    }

    /// From a Hugging Face `config.json` (already parsed and checked by the reader).
    /// HF checkpoints keep Q/K unpermuted: RoPE is half-split for every architecture.
    pub fn from_hf(c: &HfConfig, file: &str) -> Result<ModelConfig, ModelConfigError> {
        let arch = Arch::parse(&c.model_type).ok_or_else(|| ModelConfigError::Arch {
            file: file.to_string(),
            arch: c.model_type.clone(),
        })?;
        if let Some(s) = &c.rope_scaling {
            if !s.is_null() {
                return Err(bad(
                    file,
                    "rope_scaling",
                    s,
                    "RoPE scaling is not supported",
                ));
            }
        }
        if let Some(t) = c.rope_type.as_deref().filter(|t| *t != "default") {
            return Err(bad(
                file,
                "rope_parameters.rope_type",
                t,
                "RoPE scaling is not supported",
            ));
        }
        if let Some(act) = c.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(bad(
                file,
                "hidden_act",
                act,
                "only silu (SwiGLU) MLPs are supported",
            ));
        }
        if c.use_sliding_window {
            return Err(bad(
                file,
                "use_sliding_window",
                true,
                "sliding-window attention is not supported",
            ));
        }
        let n_layers = size(
            file,
            "num_hidden_layers",
            c.num_hidden_layers as u64,
            MAX_LAYERS,
        )?;
        let vocab = size(file, "vocab_size", c.vocab_size as u64, MAX_VOCAB)?;
        let layer = LayerConfig {
            dim: size(file, "hidden_size", c.hidden_size as u64, MAX_DIM)?,
            n_heads: size(
                file,
                "num_attention_heads",
                c.num_attention_heads as u64,
                MAX_DIM,
            )?,
            n_kv_heads: size(
                file,
                "num_key_value_heads",
                c.num_key_value_heads as u64,
                MAX_DIM,
            )?,
            head_dim: size(file, "head_dim", c.head_dim() as u64, MAX_DIM)?,
            ffn_dim: size(
                file,
                "intermediate_size",
                c.intermediate_size as u64,
                MAX_DIM * 16,
            )?,
            rms_eps: c.rms_norm_eps as f32,
            rope_theta: c.rope_theta as f32,
            rope_layout: RopeLayout::HalfSplit,
            qkv_bias: c.attention_bias.unwrap_or(arch == Arch::Qwen2),
            qk_norm: arch == Arch::Qwen3,
            max_seq: size(
                file,
                "max_position_embeddings",
                c.max_position_embeddings as u64,
                1 << 24,
            )?,
        };
        layer.validate().map_err(|source| ModelConfigError::Layer {
            file: file.to_string(),
            source,
        })?;
        Ok(ModelConfig {
            arch,
            layer,
            n_layers,
            vocab,
            tied_embeddings: c.tie_word_embeddings,
        })
    }

    /// Parameters (weights only), for reports.
    pub fn params(&self) -> u64 {
        let c = &self.layer;
        let (d, q, kv, f) = (
            c.dim as u64,
            c.q_dim() as u64,
            c.kv_dim() as u64,
            c.ffn_dim as u64,
        );
        let per_layer = d * q * 2 + d * kv * 2 + 3 * d * f + 2 * d;
        let head = if self.tied_embeddings {
            0
        } else {
            self.vocab as u64 * d
        };
        self.n_layers as u64 * per_layer + self.vocab as u64 * d + head + d
    }
}
