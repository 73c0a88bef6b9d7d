//! `VocabSpec`: a tokenizer's description as GGUF stores it (`tokenizer.ggml.*` keys),
//! before any of llama.cpp's load-time rules are applied.

/// `tokenizer.ggml.token_type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum TokenType {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    /// The type stored as `v`; values outside 0..=6 read as `Undefined`, like llama.cpp.
    pub fn from_i32(v: i32) -> TokenType {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// Special token ids as stored (`tokenizer.ggml.*_token_id`); `None` = key absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    /// `tokenizer.ggml.seperator_token_id` (sic).
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Everything a tokenizer is built from, field by field as in GGUF. The model loader
/// fills it (see `VocabSpec::from_gguf`); tests can build one by hand.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VocabSpec {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece-style
    /// BPE with scores).
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a "gpt2" vocabulary.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (merge priority of "llama" vocabularies).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`, raw values (see [`TokenType`]).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: "left right" pairs, highest priority first.
    pub merges: Option<Vec<String>>,
    pub special: SpecialIds,
    /// `tokenizer.ggml.add_bos_token`
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`
    pub add_space_prefix: Option<bool>,
    /// `general.name`: llama.cpp keys a few per-model token attributes on it (Phi-3's
    /// special tokens eat the whitespace after them).
    pub model_name: Option<String>,
    /// `tokenizer.chat_template`, passed through for the chat formatter.
    pub chat_template: Option<String>,
}
