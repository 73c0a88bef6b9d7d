//! Hugging Face directory errors: the file (or `<memory>`) plus a kind naming the field,
//! tensor or shard.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// An error reading a Hugging Face model directory or one of its files.
#[derive(Debug, Error)]
pub struct HfError {
    file: Option<PathBuf>,
    kind: HfErrorKind,
}

impl HfError {
    pub(crate) fn new(file: Option<&Path>, kind: HfErrorKind) -> HfError {
        HfError {
            file: file.map(Path::to_path_buf),
            kind,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &HfErrorKind {
        &self.kind
    }

    /// The file it went wrong in, when there is one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl fmt::Display for HfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}: {}", p.display(), self.kind),
            None => write!(f, "<memory>: {}", self.kind),
        }
    }
}

/// The kinds of [`HfError`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HfErrorKind {
    #[error("cannot read: {source}")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("not found: {what}")]
    NotFound { what: String },
    #[error("{len} bytes exceeds the cap of {cap} for this file")]
    TooLarge { len: u64, cap: u64 },
    #[error("invalid JSON: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    #[error("missing field `{field}`")]
    MissingField { field: String },
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("field `{field}` = {value}: {reason}")]
    BadValue {
        field: String,
        value: String,
        reason: String,
    },
    #[error("safetensors header: {reason}")]
    BadHeader { reason: String },
    #[error("tensor `{tensor}`: dtype {dtype} is not supported (F32, F16, BF16 are)")]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error("tensor `{tensor}`: data offsets {start}..{end} lie outside the {data_len}-byte data section")]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        data_len: u64,
    },
    #[error("shard file name `{shard}` must be a plain file name in the model directory")]
    BadShardName { shard: String },
    #[error("tensor `{tensor}`: {reason}")]
    IndexMismatch { tensor: String, reason: String },
}
