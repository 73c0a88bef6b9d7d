//! A Hugging Face model directory (`config.json` + `model.safetensors`, or shards listed
//! by `model.safetensors.index.json`) as a [`TensorSource`].
//!
//! The directory reader (`vtpu_modelfile::hf`) checks the files; this module maps them
//! onto the model: the config through [`ModelConfig::from_hf`], the output tied to the
//! embedding when `tie_word_embeddings` says so or `lm_head.weight` is absent, and every
//! tensor of the directory checked against the config before anything is loaded. A
//! tensor vtpu would not read (an `o_proj` or MLP bias, a layer past
//! `num_hidden_layers`) is an error rather than silently dropped weights, and a wrong
//! shape is reported with the shard file that holds it.
//!
//! Tensors are handed to the loader as views into the shard's memory map with their
//! absolute offset in that file, so pages map zero-copy where the bytes are aligned
//! (safetensors only aligns to 8 bytes; the loader copies the others).

use std::path::{Path, PathBuf};

use super::config::{ModelConfig, ModelConfigError};
use super::load::{LoadError, SrcTensor, TensorSource};
use super::names::{tensor_name, Naming};
use crate::layer_coords::TensorKind;
use vtpu_modelfile::hf::{HfDtype, HfError, HfModelDir, HfTensor};
use vtpu_phext::DType;

/// Why a Hugging Face directory cannot be used as a model.
#[derive(Debug, thiserror::Error)]
pub enum HfSourceError {
    /// The path is not a model directory (not a directory, or no `config.json`).
    #[error("{}: {why}", path.display())]
    NotModelDir { path: PathBuf, why: String },
    /// A file of the directory is missing or malformed (names the file and field).
    #[error(transparent)]
    Dir(#[from] HfError),
    /// `config.json` describes a model vtpu does not run.
    #[error(transparent)]
    Config(#[from] ModelConfigError),
    /// A tensor does not fit the config (names the shard file and the tensor).
    #[error(transparent)]
    Tensor(#[from] LoadError),
}

/// An opened Hugging Face model directory and the model config read from it.
pub struct HfSource {
    dir: HfModelDir,
    cfg: ModelConfig,
}

/// Layer tensors, for parsing `model.layers.N.*` names.
const LAYER_KINDS: [TensorKind; 14] = [
    TensorKind::AttnNorm,
    TensorKind::Wq,
    TensorKind::Wk,
    TensorKind::Wv,
    TensorKind::Bq,
    TensorKind::Bk,
    TensorKind::Bv,
    TensorKind::QNorm,
    TensorKind::KNorm,
    TensorKind::Wo,
    TensorKind::FfnNorm,
    TensorKind::WGate,
    TensorKind::WUp,
    TensorKind::WDown,
];

/// Model-wide tensors with a file name (the rope table is computed, never stored).
const MODEL_KINDS: [TensorKind; 3] = [
    TensorKind::TokenEmbd,
    TensorKind::OutputNorm,
    TensorKind::Output,
];

/// The layer and kind of a Hugging Face tensor name
/// (`model.layers.3.self_attn.q_proj.weight` -> (Some(3), Wq)); `None` for names vtpu
/// does not read.
pub fn parse_hf_name(name: &str) -> Option<(Option<usize>, TensorKind)> {
    if let Some(&k) = MODEL_KINDS
        .iter()
        .find(|&&k| tensor_name(Naming::Hf, None, k) == name)
    {
        return Some((None, k));
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, _) = rest.split_once('.')?;
    // Overlong numbers fail to parse (the name is then unknown); the comparison below
    // rejects non-canonical spellings such as `+3` or `03`.
    let l: usize = layer.parse().ok()?;
    LAYER_KINDS
        .iter()
        .copied()
        .find(|&k| tensor_name(Naming::Hf, Some(l), k) == name)
        .map(|k| (Some(l), k))
}

/// The `[rows, cols]` the loader expects for `kind` (a vector is `[1, n]`); the same
/// shapes `load::model_pages` asks for, in Hugging Face's `[out, in]` order.
fn expected_shape(cfg: &ModelConfig, kind: TensorKind) -> [usize; 2] {
    let c = &cfg.layer;
    let (d, hd, f, v, qd, kvd) = (
        c.dim,
        c.head_dim,
        c.ffn_dim,
        cfg.vocab,
        c.q_dim(),
        c.kv_dim(),
    );
    use TensorKind as K;
    match kind {
        K::TokenEmbd | K::Output => [v, d],
        K::OutputNorm | K::AttnNorm | K::FfnNorm => [1, d],
        K::Wq => [qd, d],
        K::Wk | K::Wv => [kvd, d],
        K::Bq => [1, qd],
        K::Bk | K::Bv => [1, kvd],
        K::QNorm | K::KNorm => [1, hd],
        K::Wo => [d, qd],
        K::WGate | K::WUp => [f, d],
        K::WDown => [d, f],
        K::RopeTable => [c.max_seq, hd],
    }
}

/// `[rows, cols]` of a 1-D or 2-D tensor; `None` for other ranks.
fn rows_cols(t: &HfTensor) -> Option<[usize; 2]> {
    match t.shape.as_slice() {
        [n] => Some([1, *n]),
        [r, c] => Some([*r, *c]),
        _ => None,
    }
}

fn page_dtype(d: HfDtype) -> DType {
    match d {
        HfDtype::F32 => DType::F32,
        HfDtype::F16 => DType::F16,
        HfDtype::BF16 => DType::BF16,
    }
}

impl HfSource {
    /// Open the model directory `dir`: `config.json` (required), the weights (required)
    /// and the optional tokenizer / generation files, then check every tensor against
    /// the config.
    pub fn open(dir: impl AsRef<Path>) -> Result<HfSource, HfSourceError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(HfSourceError::NotModelDir {
                path: dir.to_path_buf(),
                why: "not a directory".into(),
            });
        }
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(HfSourceError::NotModelDir {
                path: config,
                why: "not found; a Hugging Face model directory holds config.json and \
                      model.safetensors (or model.safetensors.index.json and its shards)"
                    .into(),
            });
        }
        HfSource::from_dir(HfModelDir::open(dir)?)
    }

    /// Use an already opened directory.
    pub fn from_dir(dir: HfModelDir) -> Result<HfSource, HfSourceError> {
        let config_file = dir.dir.join("config.json").display().to_string();
        let mut cfg = ModelConfig::from_hf(&dir.config, &config_file)?;
        // transformers ties the output to the embedding when the config says so; a
        // checkpoint without `lm_head.weight` can only mean the same (transformers would
        // otherwise start from random weights).
        cfg.tied_embeddings |= dir
            .tensor(&tensor_name(Naming::Hf, None, TensorKind::Output))
            .is_none();
        let src = HfSource { dir, cfg };
        src.check_tensors()?;
        Ok(src)
    }

    /// The model config (from `config.json`, with the output tied as described above).
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The directory as read: config, shards, tokenizer and generation files.
    pub fn model_dir(&self) -> &HfModelDir {
        &self.dir
    }

    /// The model directory.
    pub fn path(&self) -> &Path {
        &self.dir.dir
    }

    /// The shard file holding `t`, for messages.
    fn file_of(&self, t: &HfTensor) -> String {
        self.dir
            .shards
            .get(t.shard)
            .and_then(|s| s.path())
            .unwrap_or(&self.dir.dir)
            .display()
            .to_string()
    }

    /// Every tensor of the directory is one the loader reads, in the shape it reads.
    fn check_tensors(&self) -> Result<(), LoadError> {
        let cfg = &self.cfg;
        let arch = cfg.arch.name();
        for t in self.dir.tensors() {
            let file = self.file_of(t);
            let unused = |why: String| LoadError::Tensor {
                file: file.clone(),
                name: t.name.clone(),
                why,
            };
            let Some((layer, kind)) = parse_hf_name(&t.name) else {
                // Older checkpoints store the RoPE frequencies; they are recomputed.
                if t.name.ends_with(".rotary_emb.inv_freq") {
                    continue;
                }
                return Err(unused(format!(
                    "is not a tensor of a {arch} model as vtpu runs it (an unsupported feature such as an output or MLP bias?)"
                )));
            };
            if let Some(l) = layer {
                if l >= cfg.n_layers {
                    return Err(unused(format!(
                        "belongs to layer {l}, but config.json has num_hidden_layers = {}",
                        cfg.n_layers
                    )));
                }
            }
            let used = match kind {
                TensorKind::Bq | TensorKind::Bk | TensorKind::Bv => cfg.layer.qkv_bias,
                TensorKind::QNorm | TensorKind::KNorm => cfg.layer.qk_norm,
                _ => true,
            };
            if !used {
                return Err(unused(format!(
                    "is present, but a {arch} model with this config.json does not use it (check `attention_bias` / `model_type`)"
                )));
            }
            let Some(got) = rows_cols(t) else {
                return Err(unused(format!(
                    "has {} dimensions {:?}; model tensors have 1 or 2",
                    t.shape.len(),
                    t.shape
                )));
            };
            let expected = expected_shape(cfg, kind);
            if got != expected {
                return Err(LoadError::Shape {
                    file,
                    name: t.name.clone(),
                    got,
                    expected,
                    arch,
                });
            }
        }
        Ok(())
    }
}

impl TensorSource for HfSource {
    fn naming(&self) -> Naming {
        Naming::Hf
    }

    fn origin(&self) -> String {
        self.dir.dir.display().to_string()
    }

    fn tensor(&self, name: &str) -> Result<Option<SrcTensor<'_>>, LoadError> {
        let Some(t) = self.dir.tensor(name) else {
            return Ok(None);
        };
        let Some(shape) = rows_cols(t) else {
            return Err(LoadError::Tensor {
                file: self.file_of(t),
                name: name.to_string(),
                why: format!(
                    "has {} dimensions; model tensors have 1 or 2",
                    t.shape.len()
                ),
            });
        };
        Ok(Some(SrcTensor {
            dtype: page_dtype(t.dtype),
            shape,
            bytes: self.dir.tensor_bytes(t),
            // `range.start` is the absolute offset in the shard file, which is what the
            // map covers.
            map: self.dir.shard_mmap(t).map(|m| (m, t.range.start)),
        }))
    }
}
