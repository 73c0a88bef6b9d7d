//! `config.json`, `tokenizer_config.json` and `generation_config.json`.

use std::path::Path;

use serde_json::Value;

use super::error::HfError;
use super::json::{self, Fields};

/// Largest `config.json` read.
pub const MAX_CONFIG_JSON: u64 = 16 << 20;
/// Largest `tokenizer_config.json` read (`added_tokens_decoder` can list thousands of
/// tokens).
pub const MAX_TOKENIZER_CONFIG_JSON: u64 = 64 << 20;
/// Largest `generation_config.json` read.
pub const MAX_GENERATION_CONFIG_JSON: u64 = 1 << 20;
/// Largest `chat_template.jinja` read.
pub const MAX_CHAT_TEMPLATE: u64 = 16 << 20;
/// Largest size field (`hidden_size`, `vocab_size`, ...) accepted: anything larger is
/// a broken file, not a model.
pub const MAX_CONFIG_SIZE: u64 = 1 << 31;

/// The fields of `config.json` that the llama / qwen2 / qwen3 loaders need.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// e.g. `["Qwen2ForCausalLM"]`.
    pub architectures: Vec<String>,
    /// `llama`, `qwen2`, `qwen3`.
    pub model_type: String,
    /// D.
    pub hidden_size: usize,
    /// F.
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    /// H.
    pub num_attention_heads: usize,
    /// KV; `num_attention_heads` when absent.
    pub num_key_value_heads: usize,
    /// Hd when given explicitly (Qwen3); otherwise `hidden_size / num_attention_heads`,
    /// see [`HfConfig::head_dim`].
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    /// `rope_theta`, or `rope_parameters.rope_theta`, or 10000.
    pub rope_theta: f64,
    /// `rope_scaling` as written (null/absent = `None`); interpreting it is the loader's job.
    pub rope_scaling: Option<Value>,
    /// transformers 5 spells RoPE scaling `rope_parameters.rope_type` ("default" = none).
    pub rope_type: Option<String>,
    /// The MLP activation (`hidden_act`); llama/qwen use "silu".
    pub hidden_act: Option<String>,
    /// Sliding-window attention (Qwen2 configs carry the flag, usually false).
    pub use_sliding_window: bool,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    /// Default false.
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` as a list (it may be one id or several in the file).
    pub eos_token_ids: Vec<u32>,
    /// `attention_bias` when present. Qwen2 has Q/K/V biases without saying so; check
    /// for the `*.bias` tensors rather than trusting this.
    pub attention_bias: Option<bool>,
    /// `torch_dtype` (or `dtype`, its newer name): `bfloat16`, `float16`, `float32`.
    pub torch_dtype: Option<String>,
}

impl HfConfig {
    /// Read and check `path` (a `config.json`).
    pub fn load(path: &Path) -> Result<HfConfig, HfError> {
        let value = json::read_capped(path, MAX_CONFIG_JSON)?;
        HfConfig::from_value(&value, Some(path))
    }

    /// Parse and check `config.json` text; `file` is used in messages.
    pub fn from_json(text: &str, file: Option<&Path>) -> Result<HfConfig, HfError> {
        let value = json::parse_capped(text, MAX_CONFIG_JSON, file)?;
        HfConfig::from_value(&value, file)
    }

    fn from_value(value: &Value, file: Option<&Path>) -> Result<HfConfig, HfError> {
        let f = Fields::root(value, file)?;
        let size = |field: &str| -> Result<usize, HfError> {
            let v = f.u64(field)?.ok_or_else(|| f.missing(field))?;
            check_size(&f, field, v)
        };
        let architectures = match f.get("architectures") {
            None => return Err(f.missing("architectures")),
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| f.wrong("architectures", "a list of strings", v))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(v) => return Err(f.wrong("architectures", "a non-empty list of strings", v)),
        };
        let model_type = f
            .str("model_type")?
            .ok_or_else(|| f.missing("model_type"))?
            .to_string();
        let hidden_size = size("hidden_size")?;
        let intermediate_size = size("intermediate_size")?;
        let num_hidden_layers = size("num_hidden_layers")?;
        let num_attention_heads = size("num_attention_heads")?;
        let num_key_value_heads = match f.u64("num_key_value_heads")? {
            Some(v) => check_size(&f, "num_key_value_heads", v)?,
            None => num_attention_heads,
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(f.bad(
                "num_key_value_heads",
                num_key_value_heads,
                format!("num_attention_heads ({num_attention_heads}) is not a multiple of it"),
            ));
        }
        let head_dim = match f.u64("head_dim")? {
            Some(v) => Some(check_size(&f, "head_dim", v)?),
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(f.bad(
                        "hidden_size",
                        hidden_size,
                        format!(
                            "not a multiple of num_attention_heads ({num_attention_heads}) and no head_dim is given"
                        ),
                    ));
                }
                None
            }
        };
        let rms_norm_eps = f
            .f64("rms_norm_eps")?
            .ok_or_else(|| f.missing("rms_norm_eps"))?;
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            return Err(f.bad("rms_norm_eps", rms_norm_eps, "must be finite and > 0"));
        }
        let rope_theta = match f.f64("rope_theta")? {
            Some(t) => t,
            None => match f.object("rope_parameters")? {
                Some(p) => p.f64("rope_theta")?.unwrap_or(10_000.0),
                None => 10_000.0,
            },
        };
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(f.bad("rope_theta", rope_theta, "must be finite and > 0"));
        }
        let max_position_embeddings = size("max_position_embeddings")?;
        let vocab_size = size("vocab_size")?;
        let bos_token_id = f.id("bos_token_id")?;
        let eos_token_ids = f.id_or_list("eos_token_id")?;
        for (field, id) in bos_token_id
            .iter()
            .map(|&id| ("bos_token_id", id))
            .chain(eos_token_ids.iter().map(|&id| ("eos_token_id", id)))
        {
            if id as usize >= vocab_size {
                return Err(f.bad(field, id, format!("not below vocab_size ({vocab_size})")));
            }
        }
        let torch_dtype = match f.str("torch_dtype")? {
            Some(s) => Some(s.to_string()),
            None => f.str("dtype")?.map(str::to_string),
        };
        Ok(HfConfig {
            architectures,
            model_type,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            rope_scaling: f.get("rope_scaling").cloned(),
            rope_type: match f.object("rope_parameters")? {
                Some(p) => p.str("rope_type")?.map(str::to_string),
                None => None,
            },
            hidden_act: f
                .str("hidden_act")?
                .or(f.str("hidden_activation")?)
                .map(str::to_string),
            use_sliding_window: f.bool("use_sliding_window")?.unwrap_or(false),
            max_position_embeddings,
            vocab_size,
            tie_word_embeddings: f.bool("tie_word_embeddings")?.unwrap_or(false),
            bos_token_id,
            eos_token_ids,
            attention_bias: f.bool("attention_bias")?,
            torch_dtype,
        })
    }

    /// Hd: `head_dim` when given, else `hidden_size / num_attention_heads` (exact: checked
    /// when parsing).
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }
}

fn check_size(f: &Fields<'_>, field: &str, v: u64) -> Result<usize, HfError> {
    if v == 0 || v > MAX_CONFIG_SIZE {
        return Err(f.bad(field, v, format!("must be in 1..={MAX_CONFIG_SIZE}")));
    }
    usize::try_from(v).map_err(|_| f.bad(field, v, "does not fit usize"))
}

/// The parts of `tokenizer_config.json` the runtime needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenizerConfig {
    /// The Jinja chat template: `chat_template` (a string, or the `default` entry of a
    /// list of named templates), else the directory's `chat_template.jinja`.
    pub chat_template: Option<String>,
    /// `bos_token` as text (written either as a string or as `{"content": ...}`).
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    pub tokenizer_class: Option<String>,
}

impl TokenizerConfig {
    /// Read `path` (a `tokenizer_config.json`).
    pub fn load(path: &Path) -> Result<TokenizerConfig, HfError> {
        let value = json::read_capped(path, MAX_TOKENIZER_CONFIG_JSON)?;
        TokenizerConfig::from_value(&value, Some(path))
    }

    /// Parse `tokenizer_config.json` text.
    pub fn from_json(text: &str, file: Option<&Path>) -> Result<TokenizerConfig, HfError> {
        let value = json::parse_capped(text, MAX_TOKENIZER_CONFIG_JSON, file)?;
        TokenizerConfig::from_value(&value, file)
    }

    fn from_value(value: &Value, file: Option<&Path>) -> Result<TokenizerConfig, HfError> {
        let f = Fields::root(value, file)?;
        let chat_template = match f.get("chat_template") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => named_template(&f, list)?,
            Some(v) => {
                return Err(f.wrong("chat_template", "a string or a list of {name, template}", v))
            }
        };
        Ok(TokenizerConfig {
            chat_template,
            bos_token: token_text(&f, "bos_token")?,
            eos_token: token_text(&f, "eos_token")?,
            pad_token: token_text(&f, "pad_token")?,
            unk_token: token_text(&f, "unk_token")?,
            add_bos_token: f.bool("add_bos_token")?,
            add_eos_token: f.bool("add_eos_token")?,
            tokenizer_class: f.str("tokenizer_class")?.map(str::to_string),
        })
    }
}

/// The `default` template of a list of `{"name", "template"}` (else the first).
fn named_template(f: &Fields<'_>, list: &[Value]) -> Result<Option<String>, HfError> {
    let mut first = None;
    for item in list {
        let name = item.get("name").and_then(Value::as_str);
        let Some(template) = item.get("template").and_then(Value::as_str) else {
            return Err(f.wrong("chat_template", "a list of {name, template}", item));
        };
        if name == Some("default") {
            return Ok(Some(template.to_string()));
        }
        first.get_or_insert_with(|| template.to_string());
    }
    Ok(first)
}

/// A special token written as `"<s>"` or as an added-token object `{"content": "<s>", ...}`.
fn token_text(f: &Fields<'_>, field: &str) -> Result<Option<String>, HfError> {
    match f.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(obj @ Value::Object(_)) => match obj.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(f.wrong(field, "a string or {\"content\": string}", obj)),
        },
        Some(v) => Err(f.wrong(field, "a string or {\"content\": string}", v)),
    }
}

/// `generation_config.json`: sampling defaults. Unknown fields are ignored; null is
/// absent; a known field of the wrong type is an error.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationConfig {
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` as a list (one id or several in the file).
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f64>,
    pub top_k: Option<u64>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub max_new_tokens: Option<u64>,
}

impl GenerationConfig {
    /// Read `path` (a `generation_config.json`).
    pub fn load(path: &Path) -> Result<GenerationConfig, HfError> {
        let value = json::read_capped(path, MAX_GENERATION_CONFIG_JSON)?;
        GenerationConfig::from_value(&value, Some(path))
    }

    /// Parse `generation_config.json` text.
    pub fn from_json(text: &str, file: Option<&Path>) -> Result<GenerationConfig, HfError> {
        let value = json::parse_capped(text, MAX_GENERATION_CONFIG_JSON, file)?;
        GenerationConfig::from_value(&value, file)
    }

    fn from_value(value: &Value, file: Option<&Path>) -> Result<GenerationConfig, HfError> {
        let f = Fields::root(value, file)?;
        Ok(GenerationConfig {
            bos_token_id: f.id("bos_token_id")?,
            eos_token_ids: f.id_or_list("eos_token_id")?,
            pad_token_id: f.id("pad_token_id")?,
            do_sample: f.bool("do_sample")?,
            temperature: f.f64("temperature")?,
            top_k: f.u64("top_k")?,
            top_p: f.f64("top_p")?,
            repetition_penalty: f.f64("repetition_penalty")?,
            max_new_tokens: f.u64("max_new_tokens")?,
        })
    }
}

/// `chat_template.jinja` next to the config, when present.
pub(crate) fn read_chat_template_file(path: &Path) -> Result<Option<String>, HfError> {
    if !path.is_file() {
        return Ok(None);
    }
    json::read_text_capped(path, MAX_CHAT_TEMPLATE).map(Some)
}
