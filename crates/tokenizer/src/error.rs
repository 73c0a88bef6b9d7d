//! Typed errors for building a tokenizer. Decoding never fails (every id has a possibly
//! empty piece); encoding fails only for absurdly long text or inside the Hugging Face
//! backend (see `Tokenizer::try_encode`).

use std::path::PathBuf;

/// Why a tokenizer could not be built from its description.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` names an algorithm this crate does not implement.
    #[error(
        "unsupported tokenizer model {model:?} (tokenizer.ggml.model); supported: \"gpt2\" \
         (byte-level BPE) and \"llama\" (SentencePiece-style BPE with scores)"
    )]
    UnsupportedModel { model: String },

    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error(
        "unsupported pre-tokenizer {pre:?} (tokenizer.ggml.pre) for a byte-level BPE \
         vocabulary; supported: {supported}"
    )]
    UnsupportedPreTokenizer { pre: String, supported: String },

    /// The vocabulary has no tokens.
    #[error("the vocabulary has no tokens (tokenizer.ggml.tokens is empty)")]
    EmptyVocabulary,

    /// More tokens than ids can address.
    #[error("the vocabulary has {n_tokens} tokens, more than the supported {max}")]
    TooManyTokens { n_tokens: usize, max: usize },

    /// A per-token array is shorter than the token list.
    #[error("{key} has {len} entries but the vocabulary has {n_tokens} tokens")]
    ArrayTooShort {
        key: &'static str,
        len: usize,
        n_tokens: usize,
    },

    /// A byte-level BPE vocabulary without merges.
    #[error("byte-level BPE vocabulary without merges (tokenizer.ggml.merges is missing)")]
    MissingMerges,

    /// The vocabulary asks for a BOS/EOS token to be added but has none.
    #[error("{flag} is set but the vocabulary has no {what} token")]
    MissingSpecialToken {
        flag: &'static str,
        what: &'static str,
    },

    /// A required GGUF metadata key is absent.
    #[error("GGUF metadata has no {key}")]
    MissingKey { key: &'static str },

    /// A GGUF metadata key holds the wrong type.
    #[error("GGUF metadata {key} is {actual}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        actual: String,
    },

    /// The GGUF reader rejected a key (wrong type, out of range).
    #[error("reading tokenizer metadata: {0}")]
    Gguf(#[from] vtpu_modelfile::gguf::GgufError),

    /// The text to encode is longer than `MAX_TEXT_BYTES`.
    #[error("text of {len} bytes is longer than the {max} bytes encode accepts")]
    TextTooLong { len: usize, max: usize },

    /// The Hugging Face tokenizer failed to encode (the GGUF backends never fail).
    #[error("encoding failed: {message}")]
    Encode { message: String },

    /// A Hugging Face tokenizer file could not be read or parsed.
    #[error("{path}: {message}")]
    HfFile { path: PathBuf, message: String },
}
