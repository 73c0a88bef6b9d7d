//! One `.safetensors` file: an 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets: [start, end]}, "__metadata__": {..}}`, then the
//! data section. The `safetensors` crate validates the header (offsets contiguous from 0,
//! sizes matching shape x dtype, the data section ending at the end of the file); this
//! module adds a pre-check that every offset lies inside the file, so nothing downstream
//! can index out of range, and restricts dtypes to the float types the loader maps.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors};
use serde_json::Value;

use super::error::{HfError, HfErrorKind};
use crate::backing::Backing;

/// Largest JSON header read (the `safetensors` crate's own limit).
pub const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// Element types the loader maps zero-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HfDtype {
    F32,
    F16,
    BF16,
}

impl HfDtype {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            HfDtype::F32 => 4,
            HfDtype::F16 | HfDtype::BF16 => 2,
        }
    }

    /// The name as safetensors writes it.
    pub fn name(self) -> &'static str {
        match self {
            HfDtype::F32 => "F32",
            HfDtype::F16 => "F16",
            HfDtype::BF16 => "BF16",
        }
    }
}

impl std::fmt::Display for HfDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StTensor {
    pub name: String,
    pub dtype: HfDtype,
    /// Row-major shape, outermost first (PyTorch order: `[out, in]` for a linear weight).
    pub shape: Vec<usize>,
    /// Absolute byte range inside the file.
    pub range: Range<usize>,
}

impl StTensor {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        // The safetensors crate checked that this product times the dtype size equals
        // the range length, so it does not overflow.
        self.shape.iter().product()
    }

    /// `[rows, cols]` = `[prod(shape[..n-1]), shape[n-1]]`; a 1-D tensor is one row, a
    /// 0-D tensor is `[1, 1]`.
    pub fn rows_cols(&self) -> [usize; 2] {
        match self.shape.split_last() {
            None => [1, 1],
            Some((&cols, rest)) => [rest.iter().product(), cols],
        }
    }
}

/// A parsed safetensors file over its bytes.
#[derive(Debug, Clone)]
pub struct SafetensorsFile {
    path: Option<PathBuf>,
    backing: Backing,
    data_start: usize,
    tensors: Vec<StTensor>,
    index: HashMap<String, usize>,
    metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    /// Map `path` read-only and parse its header.
    pub fn open(path: &Path) -> Result<SafetensorsFile, HfError> {
        let backing = Backing::map_file(path)
            .map_err(|source| HfError::new(Some(path), HfErrorKind::Io { source }))?;
        SafetensorsFile::from_backing(backing, Some(path.to_path_buf()))
    }

    /// Parse an in-memory file.
    pub fn parse<T: AsRef<[u8]> + Send + Sync + 'static>(
        bytes: Arc<T>,
    ) -> Result<SafetensorsFile, HfError> {
        SafetensorsFile::from_backing(Backing::from_memory(bytes), None)
    }

    /// Parse `backing`; `path` is used in messages.
    pub fn from_backing(
        backing: Backing,
        path: Option<PathBuf>,
    ) -> Result<SafetensorsFile, HfError> {
        let err = |kind| HfError::new(path.as_deref(), kind);
        let bytes = backing.bytes();
        let header_len = precheck(bytes).map_err(err)?;
        let data_start = 8 + header_len;

        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| {
            err(HfErrorKind::BadHeader {
                reason: e.to_string(),
            })
        })?;
        let mut tensors = Vec::new();
        let mut index = HashMap::new();
        for name in metadata.offset_keys() {
            let Some(info) = metadata.info(&name) else {
                continue;
            };
            let dtype = match info.dtype {
                Dtype::F32 => HfDtype::F32,
                Dtype::F16 => HfDtype::F16,
                Dtype::BF16 => HfDtype::BF16,
                other => {
                    return Err(err(HfErrorKind::UnsupportedDtype {
                        tensor: name,
                        dtype: format!("{other:?}"),
                    }))
                }
            };
            let (s, e) = info.data_offsets;
            // precheck bounded every offset by the data length, so these cannot overflow.
            let range = data_start + s..data_start + e;
            index.insert(name.clone(), tensors.len());
            tensors.push(StTensor {
                name,
                dtype,
                shape: info.shape.clone(),
                range,
            });
        }
        let metadata = metadata.metadata().clone().unwrap_or_default();
        Ok(SafetensorsFile {
            path,
            backing,
            data_start,
            tensors,
            index,
            metadata,
        })
    }

    /// The path, when opened from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Where the bytes live.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// The memory map, when opened from a path.
    pub fn mmap(&self) -> Option<&Arc<Mmap>> {
        self.backing.mmap()
    }

    /// Absolute offset of the data section (8 + header length).
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// Tensors in data order.
    pub fn tensors(&self) -> &[StTensor] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&StTensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of `t` (a tensor of this file; otherwise possibly empty).
    pub fn tensor_bytes(&self, t: &StTensor) -> &[u8] {
        self.backing.bytes().get(t.range.clone()).unwrap_or(&[])
    }

    /// The `__metadata__` string map (empty when absent).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }
}

/// Check the header length and that every tensor's `data_offsets` lie inside the data
/// section, before the `safetensors` crate sums them (it adds offsets to lengths
/// unchecked). Dtypes outside F32/F16/BF16 are reported here with the tensor's name;
/// the crate would give a bare JSON error for names it does not know. Returns the
/// header length.
fn precheck(bytes: &[u8]) -> Result<usize, HfErrorKind> {
    let bad = |reason: String| HfErrorKind::BadHeader { reason };
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(bad(format!(
            "file is {} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    };
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(len8);
    if n > MAX_SAFETENSORS_HEADER {
        return Err(bad(format!(
            "header length {n} exceeds the cap of {MAX_SAFETENSORS_HEADER}"
        )));
    }
    let n = n as usize;
    let Some(header) = bytes.get(8..8 + n) else {
        return Err(bad(format!(
            "header length {n} runs past the end of the {}-byte file",
            bytes.len()
        )));
    };
    let data_len = (bytes.len() - 8 - n) as u64;
    let header: Value =
        serde_json::from_slice(header).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Value::Object(entries) = header else {
        return Err(bad("the header is not a JSON object".into()));
    };
    for (name, entry) in &entries {
        if name == "__metadata__" {
            continue;
        }
        let entry_err = |what: &str| bad(format!("tensor `{name}`: {what}"));
        let Some(dtype) = entry.get("dtype").and_then(Value::as_str) else {
            return Err(entry_err("no string `dtype`"));
        };
        if !matches!(dtype, "F32" | "F16" | "BF16") {
            return Err(HfErrorKind::UnsupportedDtype {
                tensor: name.clone(),
                dtype: dtype.to_string(),
            });
        }
        let offsets = entry.get("data_offsets").and_then(Value::as_array);
        let pair = offsets.and_then(|o| match o.as_slice() {
            [s, e] => s.as_u64().zip(e.as_u64()),
            _ => None,
        });
        let Some((start, end)) = pair else {
            return Err(entry_err("`data_offsets` is not [start, end] of integers"));
        };
        if start > end || end > data_len {
            return Err(HfErrorKind::TensorOutOfBounds {
                tensor: name.clone(),
                start,
                end,
                data_len,
            });
        }
    }
    Ok(n)
}

/// One tensor to encode: name, dtype, shape (outermost first), data bytes.
pub type StInput<'a> = (&'a str, HfDtype, &'a [usize], &'a [u8]);

/// Encode a safetensors file (tests and synthetic models): tensors stored in the order
/// given, the header padded with spaces to a multiple of 8 bytes as the reference
/// writer does. Each `data` must be exactly `prod(shape) * dtype size` bytes.
pub fn encode_safetensors(tensors: &[StInput<'_>]) -> Result<Vec<u8>, HfError> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for &(name, dtype, shape, data) in tensors {
        let expected = shape
            .iter()
            .try_fold(dtype.size_bytes(), |a, &d| a.checked_mul(d));
        if expected != Some(data.len()) {
            return Err(HfError::new(
                None,
                HfErrorKind::BadValue {
                    field: name.to_string(),
                    value: format!("{} bytes", data.len()),
                    reason: format!("{dtype} {shape:?} needs {expected:?} bytes"),
                },
            ));
        }
        if header.contains_key(name) || name == "__metadata__" {
            return Err(HfError::new(
                None,
                HfErrorKind::BadValue {
                    field: name.to_string(),
                    value: name.to_string(),
                    reason: "duplicate or reserved tensor name".into(),
                },
            ));
        }
        header.insert(
            name.to_string(),
            serde_json::json!({
                "dtype": dtype.name(),
                "shape": shape,
                "data_offsets": [offset, offset + data.len()],
            }),
        );
        offset += data.len();
    }
    let mut text = Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + offset);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    for &(_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    Ok(out)
}
