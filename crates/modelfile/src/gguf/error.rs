//! GGUF errors: one struct carrying the file (when parsed from a path) and a kind that
//! names the field, key or tensor and, where it has one, the byte offset.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A GGUF read, validation or lookup error.
#[derive(Debug, Error)]
pub struct GgufError {
    file: Option<PathBuf>,
    kind: GgufErrorKind,
}

impl GgufError {
    pub(crate) fn new(file: Option<&Path>, kind: GgufErrorKind) -> GgufError {
        GgufError {
            file: file.map(Path::to_path_buf),
            kind,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &GgufErrorKind {
        &self.kind
    }

    /// The file, when the GGUF was opened from a path.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "GGUF {}: {}", p.display(), self.kind),
            None => write!(f, "GGUF <memory>: {}", self.kind),
        }
    }
}

/// The kinds of [`GgufError`]. `offset` is a byte offset from the start of the file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GgufErrorKind {
    #[error("cannot read: {source}")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("bad magic {found:02x?} at byte 0, expected \"GGUF\"")]
    BadMagic { found: Vec<u8> },
    #[error("unsupported version {version} at byte 4 (supported: 2, 3){hint}")]
    UnsupportedVersion { version: u32, hint: &'static str },
    #[error("truncated: {what} at byte {offset} needs {need} bytes, {have} remain")]
    Truncated {
        what: String,
        offset: u64,
        need: u64,
        have: u64,
    },
    #[error("{what} = {count} at byte {offset} exceeds the cap of {cap}")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        cap: u64,
        offset: u64,
    },
    #[error("{what}: string length {len} at byte {offset} exceeds the cap of {cap}")]
    StringTooLong {
        what: String,
        len: u64,
        cap: u64,
        offset: u64,
    },
    #[error("{what}: string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },
    #[error("key `{key}`: unknown value type {type_id} at byte {offset}")]
    UnknownValueType {
        key: String,
        type_id: u32,
        offset: u64,
    },
    #[error("key `{key}`: bool at byte {offset} is {value}, expected 0 or 1")]
    InvalidBool { key: String, value: u8, offset: u64 },
    /// `cap` is the per-array cap, or what is left of the whole-file budget.
    #[error("key `{key}`: array length {len} at byte {offset} exceeds the cap of {cap}")]
    ArrayTooLong {
        key: String,
        len: u64,
        cap: u64,
        offset: u64,
    },
    #[error("key `{key}`: arrays nested deeper than {cap} at byte {offset}")]
    NestingTooDeep { key: String, cap: u32, offset: u64 },
    #[error("duplicate key `{key}` at byte {offset}")]
    DuplicateKey { key: String, offset: u64 },
    #[error("general.alignment = {value}: {reason}")]
    BadAlignment { value: String, reason: &'static str },
    #[error("tensor `{tensor}`: n_dims = {n_dims} at byte {offset}, expected 1..=4")]
    BadDimCount {
        tensor: String,
        n_dims: u32,
        offset: u64,
    },
    #[error("tensor `{tensor}`: dimension {index} is 0 at byte {offset}")]
    ZeroDim {
        tensor: String,
        index: usize,
        offset: u64,
    },
    #[error("tensor `{tensor}`: element count of dims {dims:?} overflows")]
    ElementCountOverflow { tensor: String, dims: Vec<u64> },
    #[error("tensor `{tensor}`: unknown ggml type id {type_id} at byte {offset}")]
    UnknownGgmlType {
        tensor: String,
        type_id: u32,
        offset: u64,
    },
    #[error("tensor `{tensor}`: row length ne[0] = {ne0} is not a multiple of the {type_name} block size {block_elems}")]
    RowNotBlockMultiple {
        tensor: String,
        ne0: u64,
        type_name: &'static str,
        block_elems: u64,
    },
    #[error("tensor `{tensor}`: byte size of dims {dims:?} overflows")]
    ByteSizeOverflow { tensor: String, dims: Vec<u64> },
    #[error("duplicate tensor name `{tensor}` at byte {offset}")]
    DuplicateTensor { tensor: String, offset: u64 },
    #[error(
        "tensor `{tensor}`: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error(
        "tensor `{tensor}`: data bytes {start}..{end} lie outside the file ({file_len} bytes)"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("tensors `{first}` (bytes {first_start}..{first_end}) and `{second}` (from byte {second_start}) overlap")]
    TensorOverlap {
        first: String,
        first_start: u64,
        first_end: u64,
        second: String,
        second_start: u64,
    },
    #[error("missing key `{key}`")]
    MissingKey { key: String },
    #[error("key `{key}`: expected {expected}, found {actual}")]
    WrongType {
        key: String,
        expected: &'static str,
        actual: String,
    },
    #[error("key `{key}`: value {value} does not fit {expected}")]
    OutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("writer: {what}")]
    Write { what: String },
}
