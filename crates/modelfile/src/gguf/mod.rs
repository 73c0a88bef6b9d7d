//! GGUF v2/v3 reader (and a small writer for tests).
//!
//! Layout read here (all little-endian): magic `GGUF`, version u32, tensor_count u64,
//! kv_count u64; `kv_count` entries of (key string, value type u32, value); then
//! `tensor_count` tensor infos of (name string, n_dims u32, n_dims x u64 dims, ggml
//! type u32, data offset u64); padding to `general.alignment` (default 32); then the
//! tensor data. A string is a u64 byte length followed by UTF-8 bytes. Dims are stored
//! fastest-varying first: `dims[0]` (ggml's `ne[0]`) is the row length.

mod error;
mod reader;
mod summary;
mod types;
mod value;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

pub use error::{GgufError, GgufErrorKind};
pub use reader::{
    DEFAULT_ALIGNMENT, MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS, MAX_KEY_LEN,
    MAX_KV, MAX_STRING_LEN, MAX_TENSORS, MAX_TENSOR_NAME_LEN, MAX_TOTAL_ARRAY_ELEMS,
};
pub use summary::{GgufSummary, MetaSummary, TensorSummary, TypeTotal};
pub use types::GgmlType;
pub use value::{MetaArray, MetaValue, StrArray, ValueType};
pub use writer::GgufWriter;

use crate::backing::Backing;

/// One tensor's description from the tensor-info table. Built only by the parser, so
/// every instance has passed the shape, type, alignment and bounds checks.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
    size: u64,
    n_elements: u64,
    file_offset: u64,
    info_offset: u64,
}

impl TensorInfo {
    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dims as stored: `dims()[0]` (ggml's `ne[0]`) is the row length, fastest-varying first.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// `[rows, cols]` = `[prod(dims[1..]), dims[0]]`: the row-major matrix view of a
    /// 1-D (`rows` = 1) or 2-D tensor; higher dims fold into `rows`.
    pub fn rows_cols(&self) -> [u64; 2] {
        let cols = self.dims[0];
        [self.n_elements / cols, cols]
    }

    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Offset of the data from the start of the data section, as stored.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Absolute offset of the data in the file: `data_offset + offset`.
    pub fn file_offset(&self) -> u64 {
        self.file_offset
    }

    /// Bytes of data: `rows * (dims[0] / block_elems) * block_bytes`.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Number of elements (parameters).
    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Where this tensor's info starts in the file (for messages and fuzzing).
    pub fn info_offset(&self) -> u64 {
        self.info_offset
    }
}

/// A parsed GGUF file: metadata, tensor infos and the bytes they index.
#[derive(Debug, Clone)]
pub struct GgufFile {
    path: Option<PathBuf>,
    backing: Backing,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, MetaValue)>,
    meta_offsets: Vec<u64>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl GgufFile {
    /// Map `path` read-only and parse it.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let backing = Backing::map_file(path)
            .map_err(|source| GgufError::new(Some(path), GgufErrorKind::Io { source }))?;
        GgufFile::from_backing(backing, Some(path.to_path_buf()))
    }

    /// Parse an in-memory file (tests, fuzzing, bytes from elsewhere).
    pub fn parse<T: AsRef<[u8]> + Send + Sync + 'static>(
        bytes: Arc<T>,
    ) -> Result<GgufFile, GgufError> {
        GgufFile::from_backing(Backing::from_memory(bytes), None)
    }

    /// Parse `backing`; `path` is used in error messages.
    pub fn from_backing(backing: Backing, path: Option<PathBuf>) -> Result<GgufFile, GgufError> {
        let parsed =
            reader::parse(backing.bytes()).map_err(|kind| GgufError::new(path.as_deref(), kind))?;
        Ok(GgufFile {
            path,
            backing,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            meta_offsets: parsed.meta_offsets,
            meta_index: parsed.meta_index,
            tensors: parsed.tensors,
            tensor_index: parsed.tensor_index,
        })
    }

    /// The path, when opened from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment`, or 32.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section (end of the tensor infos, aligned up).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// File length in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Where the bytes live.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// The memory map, when opened from a path: map tensors zero-copy with it and
    /// [`TensorInfo::file_offset`].
    pub fn mmap(&self) -> Option<&Arc<Mmap>> {
        self.backing.mmap()
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &MetaValue)> + '_ {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The data bytes of `t`, a tensor of this file (bounds were checked at parse time).
    /// A `TensorInfo` from another file whose range does not fit this one gives an
    /// empty slice.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(t.file_offset)
            .ok()
            .zip(usize::try_from(t.file_offset.saturating_add(t.size)).ok());
        range
            .and_then(|(start, end)| self.bytes().get(start..end))
            .unwrap_or(&[])
    }

    /// The data bytes of the tensor called `name`.
    pub fn tensor_data(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|t| self.tensor_bytes(t))
    }

    fn err(&self, kind: GgufErrorKind) -> GgufError {
        GgufError::new(self.path.as_deref(), kind)
    }

    fn wrong_type(&self, key: &str, expected: &'static str, actual: &MetaValue) -> GgufError {
        self.err(GgufErrorKind::WrongType {
            key: key.to_string(),
            expected,
            actual: actual.type_name(),
        })
    }

    fn missing(&self, key: &str) -> GgufError {
        self.err(GgufErrorKind::MissingKey {
            key: key.to_string(),
        })
    }

    /// File offset of the metadata entry `key` (where its key length is stored).
    pub fn meta_offset(&self, key: &str) -> Option<u64> {
        self.meta_index.get(key).map(|&i| self.meta_offsets[i])
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A string value; `Err` when `key` holds something else.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(key, "string", v)),
        }
    }

    /// An integer value of any width that fits u64 (negative values are `OutOfRange`).
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.get_int(key, "u64", |v| u64::try_from(v).ok())
    }

    /// An integer value of any width that fits u32.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.get_int(key, "u32", |v| u32::try_from(v).ok())
    }

    /// An integer value of any width that fits i64.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, GgufError> {
        self.get_int(key, "i64", |v| i64::try_from(v).ok())
    }

    fn get_int<T>(
        &self,
        key: &str,
        expected: &'static str,
        convert: impl Fn(i128) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Some(i) = v.as_integer() else {
            return Err(self.wrong_type(key, "integer", v));
        };
        convert(i).map(Some).ok_or_else(|| {
            self.err(GgufErrorKind::OutOfRange {
                key: key.to_string(),
                value: i.to_string(),
                expected,
            })
        })
    }

    /// A float value stored as f32 or f64 (an f64 beyond f32's range is `OutOfRange`).
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::F32(v)) => Ok(Some(*v)),
            Some(MetaValue::F64(v)) => {
                let f = *v as f32;
                if v.is_finite() && !f.is_finite() {
                    return Err(self.err(GgufErrorKind::OutOfRange {
                        key: key.to_string(),
                        value: v.to_string(),
                        expected: "f32",
                    }));
                }
                Ok(Some(f))
            }
            Some(v) => Err(self.wrong_type(key, "f32 or f64", v)),
        }
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, "bool", v)),
        }
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Result<Option<&MetaArray>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong_type(key, "array", v)),
        }
    }

    /// An array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn get_str_array(&self, key: &str) -> Result<Option<&StrArray>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(MetaArray::String(a))) => Ok(Some(a)),
            Some(v) => Err(self.wrong_type(key, "array<string>", v)),
        }
    }

    /// An array of f32 (`tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Option<&[f32]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(MetaArray::F32(a))) => Ok(Some(a)),
            Some(v) => Err(self.wrong_type(key, "array<f32>", v)),
        }
    }

    /// An array of i32 (`tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Option<&[i32]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(MetaArray::I32(a))) => Ok(Some(a)),
            Some(v) => Err(self.wrong_type(key, "array<i32>", v)),
        }
    }

    /// Like [`get_str`](Self::get_str), but a missing key is `MissingKey`.
    pub fn require_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`get_u64`](Self::get_u64), but a missing key is `MissingKey`.
    pub fn require_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_u64(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`get_u32`](Self::get_u32), but a missing key is `MissingKey`.
    pub fn require_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_u32(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`get_f32`](Self::get_f32), but a missing key is `MissingKey`.
    pub fn require_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.get_f32(key)?.ok_or_else(|| self.missing(key))
    }

    /// `general.architecture` (`llama`, `qwen2`, `qwen3`); required.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.require_str("general.architecture")
    }

    /// `"{architecture}.{suffix}"`, e.g. `arch_key("block_count")` = `llama.block_count`.
    pub fn arch_key(&self, suffix: &str) -> Result<String, GgufError> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }

    /// What `vtpu inspect` prints; reads no tensor bytes.
    pub fn summary(&self) -> GgufSummary {
        summary::summarize(self)
    }
}
