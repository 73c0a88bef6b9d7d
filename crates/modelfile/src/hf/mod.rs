//! Hugging Face model directories: `config.json`, weights in `model.safetensors` or in
//! shards listed by `model.safetensors.index.json`, and the tokenizer / generation files.

mod config;
mod error;
mod json;
mod safetensors;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde_json::Value;

pub use self::config::{
    GenerationConfig, HfConfig, TokenizerConfig, MAX_CHAT_TEMPLATE, MAX_CONFIG_JSON,
    MAX_CONFIG_SIZE, MAX_GENERATION_CONFIG_JSON, MAX_TOKENIZER_CONFIG_JSON,
};
pub use self::error::{HfError, HfErrorKind};
pub use self::safetensors::{
    encode_safetensors, HfDtype, SafetensorsFile, StInput, StTensor, MAX_SAFETENSORS_HEADER,
};

/// Largest `model.safetensors.index.json` read.
pub const MAX_INDEX_JSON: u64 = 64 << 20;

/// One weight of the model: which shard holds it and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfTensor {
    pub name: String,
    pub dtype: HfDtype,
    /// Row-major shape, outermost first.
    pub shape: Vec<usize>,
    /// Index into [`HfModelDir::shards`].
    pub shard: usize,
    /// Absolute byte range inside the shard file.
    pub range: Range<usize>,
}

/// A model directory, opened and checked. Shards are mapped read-only; tensor bytes are
/// views into them.
#[derive(Debug, Clone)]
pub struct HfModelDir {
    pub dir: PathBuf,
    pub config: HfConfig,
    /// Weight files, in the order first named by the index (one for unsharded models).
    pub shards: Vec<SafetensorsFile>,
    /// `tokenizer.json`, when present (read by the tokenizer crate).
    pub tokenizer_json: Option<PathBuf>,
    /// `tokenizer_config.json` (plus `chat_template.jinja`), when present.
    pub tokenizer_config: Option<TokenizerConfig>,
    /// `generation_config.json`, when present.
    pub generation_config: Option<GenerationConfig>,
    tensors: Vec<HfTensor>,
    index: HashMap<String, usize>,
}

impl HfModelDir {
    /// Open `dir`: read `config.json` (required), map the weights (required), and read
    /// the optional tokenizer and generation files.
    pub fn open(dir: impl AsRef<Path>) -> Result<HfModelDir, HfError> {
        let dir = dir.as_ref().to_path_buf();
        let config = HfConfig::load(&dir.join("config.json"))?;
        let (shards, tensors) = open_weights(&dir)?;
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();

        let tokenizer_json = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        let tc_path = dir.join("tokenizer_config.json");
        let mut tokenizer_config = if tc_path.is_file() {
            Some(TokenizerConfig::load(&tc_path)?)
        } else {
            None
        };
        // Newer transformers save the template in its own file.
        if let Some(template) = config::read_chat_template_file(&dir.join("chat_template.jinja"))? {
            let tc = tokenizer_config.get_or_insert_with(TokenizerConfig::default);
            if tc.chat_template.is_none() {
                tc.chat_template = Some(template);
            }
        }
        let gc_path = dir.join("generation_config.json");
        let generation_config = if gc_path.is_file() {
            Some(GenerationConfig::load(&gc_path)?)
        } else {
            None
        };
        Ok(HfModelDir {
            dir,
            config,
            shards,
            tokenizer_json,
            tokenizer_config,
            generation_config,
            tensors,
            index,
        })
    }

    /// Every weight, ordered by shard then offset.
    pub fn tensors(&self) -> &[HfTensor] {
        &self.tensors
    }

    /// The weight called `name`.
    pub fn tensor(&self, name: &str) -> Option<&HfTensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of `t` (a tensor of this directory; otherwise possibly empty).
    pub fn tensor_bytes(&self, t: &HfTensor) -> &[u8] {
        self.shards
            .get(t.shard)
            .and_then(|s| s.backing().bytes().get(t.range.clone()))
            .unwrap_or(&[])
    }

    /// The memory map of the shard holding `t`, for zero-copy pages at `t.range.start`.
    pub fn shard_mmap(&self, t: &HfTensor) -> Option<&Arc<Mmap>> {
        self.shards.get(t.shard).and_then(SafetensorsFile::mmap)
    }
}

/// Open `model.safetensors`, or the shards of `model.safetensors.index.json`.
fn open_weights(dir: &Path) -> Result<(Vec<SafetensorsFile>, Vec<HfTensor>), HfError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        let file = SafetensorsFile::open(&single)?;
        let tensors = file.tensors().iter().map(|t| to_hf(t, 0)).collect();
        return Ok((vec![file], tensors));
    }
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.is_file() {
        return Err(HfError::new(
            Some(dir),
            HfErrorKind::NotFound {
                what: "model.safetensors or model.safetensors.index.json".into(),
            },
        ));
    }
    let text = json::read_text_capped(&index_path, MAX_INDEX_JSON)?;
    let weight_map = parse_index(&text, Some(&index_path))?;

    // Open each shard once, in order of first mention; `listed` maps tensor -> shard.
    let mut shard_names: Vec<&str> = Vec::new();
    let mut shard_of_name: HashMap<&str, usize> = HashMap::new();
    let mut listed: HashMap<&str, usize> = HashMap::with_capacity(weight_map.len());
    for (tensor, shard) in &weight_map {
        let next = shard_names.len();
        let s = *shard_of_name.entry(shard.as_str()).or_insert(next);
        if s == next {
            shard_names.push(shard);
        }
        listed.insert(tensor, s);
    }
    let mut shards = Vec::with_capacity(shard_names.len());
    for name in &shard_names {
        shards.push(SafetensorsFile::open(&dir.join(name))?);
    }

    let mismatch = |tensor: &str, reason: String| {
        HfError::new(
            Some(&index_path),
            HfErrorKind::IndexMismatch {
                tensor: tensor.to_string(),
                reason,
            },
        )
    };
    // In weight_map (name) order, so the first mismatch reported is deterministic.
    for (t, shard) in &weight_map {
        let absent = listed
            .get(t.as_str())
            .and_then(|&s| shards.get(s))
            .is_none_or(|f| f.tensor(t).is_none());
        if absent {
            return Err(mismatch(
                t,
                format!("listed in weight_map but absent from {shard}"),
            ));
        }
    }
    let mut tensors = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        for t in shard.tensors() {
            match listed.get(t.name.as_str()) {
                Some(&s) if s == i => tensors.push(to_hf(t, i)),
                Some(&s) => {
                    return Err(mismatch(
                        &t.name,
                        format!(
                            "found in {} but weight_map says {}",
                            shard_names[i], shard_names[s]
                        ),
                    ))
                }
                None => {
                    return Err(mismatch(
                        &t.name,
                        format!("found in {} but not listed in weight_map", shard_names[i]),
                    ))
                }
            }
        }
    }
    Ok((shards, tensors))
}

fn to_hf(t: &StTensor, shard: usize) -> HfTensor {
    HfTensor {
        name: t.name.clone(),
        dtype: t.dtype,
        shape: t.shape.clone(),
        shard,
        range: t.range.clone(),
    }
}

/// The `weight_map` of a `model.safetensors.index.json`: (tensor, shard file name) in
/// tensor-name order. Shard names must be plain file names (no directories, no `..`), so
/// an index cannot make the loader map files outside the model directory.
pub fn parse_index(text: &str, file: Option<&Path>) -> Result<Vec<(String, String)>, HfError> {
    let value = json::parse_capped(text, MAX_INDEX_JSON, file)?;
    let f = json::Fields::root(&value, file)?;
    let Some(map) = f.object("weight_map")? else {
        return Err(f.missing("weight_map"));
    };
    let mut out = Vec::with_capacity(map.map.len());
    for (tensor, shard) in map.map {
        let Value::String(shard) = shard else {
            return Err(map.wrong(tensor, "a shard file name", shard));
        };
        let plain = !shard.is_empty()
            && shard != "."
            && shard != ".."
            && !shard.contains(['/', '\\', '\0'])
            && Path::new(shard)
                .file_name()
                .is_some_and(|n| n == shard.as_str());
        if !plain {
            return Err(HfError::new(
                file,
                HfErrorKind::BadShardName {
                    shard: shard.clone(),
                },
            ));
        }
        out.push((tensor.clone(), shard.clone()));
    }
    if out.is_empty() {
        return Err(f.bad("weight_map", "{}", "lists no tensors"));
    }
    Ok(out)
}
