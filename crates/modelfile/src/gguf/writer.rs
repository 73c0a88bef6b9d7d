//! A small GGUF v3 writer: metadata and tensors in the order given, each tensor's data
//! aligned to `general.alignment` (default 32) and padded after. Meant for synthetic
//! models in tests and fuzzing seeds; it holds everything in memory.

use std::collections::HashSet;
use std::path::Path;

use super::error::{GgufError, GgufErrorKind};
use super::reader::{align_up, DEFAULT_ALIGNMENT, MAX_ALIGNMENT, MAX_DIMS};
use super::types::GgmlType;
use super::value::{MetaArray, MetaValue};

/// Builds a GGUF v3 file.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

impl GgufWriter {
    /// An empty file (no metadata, no tensors).
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Append a metadata entry. Keys must be unique (checked when writing).
    pub fn add_meta(&mut self, key: impl Into<String>, value: MetaValue) -> &mut GgufWriter {
        self.metadata.push((key.into(), value));
        self
    }

    /// Set `general.alignment` (replacing an earlier value).
    pub fn set_alignment(&mut self, alignment: u32) -> &mut GgufWriter {
        self.metadata.retain(|(k, _)| k != "general.alignment");
        self.add_meta("general.alignment", MetaValue::U32(alignment))
    }

    /// Append a tensor. `dims` as GGUF stores them (row length first); `data` must be
    /// exactly the tensor's byte size (checked when writing).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: impl Into<Vec<u8>>,
    ) -> &mut GgufWriter {
        self.tensors.push(PendingTensor {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type,
            data: data.into(),
        });
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        self.encode()
            .map_err(|what| GgufError::new(None, GgufErrorKind::Write { what }))
    }

    /// Write the file to `path`, atomically: into a temporary file next to it, then
    /// renamed over it. A reader that has the old file mapped keeps its bytes (writing
    /// in place would truncate them under it: SIGBUS), and a failed write leaves the
    /// old file as it was.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = path.as_ref();
        let io = |source| GgufError::new(Some(path), GgufErrorKind::Io { source });
        let bytes = self
            .encode()
            .map_err(|what| GgufError::new(Some(path), GgufErrorKind::Write { what }))?;
        let name = path
            .file_name()
            .map_or_else(|| "gguf".into(), |n| n.to_string_lossy().into_owned());
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.tmp-{}-{serial}", std::process::id()));
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }

    fn alignment(&self) -> Result<u64, String> {
        let Some((_, v)) = self.metadata.iter().find(|(k, _)| k == "general.alignment") else {
            return Ok(DEFAULT_ALIGNMENT);
        };
        match v.as_integer() {
            Some(a)
                if a > 0 && (a as u128).is_power_of_two() && a as u128 <= MAX_ALIGNMENT as u128 =>
            {
                Ok(a as u64)
            }
            _ => Err(format!(
                "general.alignment = {v} is not a power of two <= 2^30"
            )),
        }
    }

    fn encode(&self) -> Result<Vec<u8>, String> {
        let alignment = self.alignment()?;
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        put_u32(&mut out, 3);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.metadata.len() as u64);

        let mut keys = HashSet::new();
        for (key, value) in &self.metadata {
            if !keys.insert(key.as_str()) {
                return Err(format!("duplicate key `{key}`"));
            }
            put_str(&mut out, key);
            put_u32(&mut out, value.value_type().id());
            put_value(&mut out, value);
        }

        // Plan the data section: each tensor at the next aligned offset.
        let mut names = HashSet::new();
        let mut rel_offsets = Vec::with_capacity(self.tensors.len());
        let mut next = 0u64;
        for t in &self.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(format!("duplicate tensor `{}`", t.name));
            }
            let size = tensor_size(t)?;
            if size != t.data.len() as u64 {
                return Err(format!(
                    "tensor `{}`: {} {:?} needs {size} bytes, {} given",
                    t.name,
                    t.ggml_type,
                    t.dims,
                    t.data.len()
                ));
            }
            rel_offsets.push(next);
            next = align_up(next + size, alignment).ok_or("data section overflows")?;
        }

        for (t, &offset) in self.tensors.iter().zip(&rel_offsets) {
            put_str(&mut out, &t.name);
            put_u32(&mut out, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.ggml_type.id());
            put_u64(&mut out, offset);
        }

        let data_offset = align_up(out.len() as u64, alignment).ok_or("header overflows")?;
        out.resize(data_offset as usize, 0);
        for (t, &offset) in self.tensors.iter().zip(&rel_offsets) {
            let start = (data_offset + offset) as usize;
            out.resize(start, 0);
            out.extend_from_slice(&t.data);
        }
        out.resize((data_offset + next) as usize, 0);
        Ok(out)
    }
}

fn tensor_size(t: &PendingTensor) -> Result<u64, String> {
    if t.dims.is_empty() || t.dims.len() > MAX_DIMS as usize || t.dims.contains(&0) {
        return Err(format!(
            "tensor `{}`: dims {:?} must be 1..=4 non-zero values",
            t.name, t.dims
        ));
    }
    let ne0 = t.dims[0];
    let rows = t.dims[1..]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("tensor `{}`: dims {:?} overflow", t.name, t.dims))?;
    t.ggml_type
        .row_bytes(ne0)
        .and_then(|r| r.checked_mul(rows))
        .ok_or_else(|| {
            format!(
                "tensor `{}`: ne[0] = {ne0} is not a multiple of the {} block ({}) or the size overflows",
                t.name,
                t.ggml_type,
                t.ggml_type.block_elems()
            )
        })
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(a) => put_array(out, a),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &MetaArray) {
    put_u32(out, a.elem_type().id());
    put_u64(out, a.len() as u64);
    fn each<T: Copy, const N: usize>(out: &mut Vec<u8>, v: &[T], f: fn(T) -> [u8; N]) {
        for &x in v {
            out.extend_from_slice(&f(x));
        }
    }
    match a {
        MetaArray::U8(v) => out.extend_from_slice(v),
        MetaArray::I8(v) => each(out, v, i8::to_le_bytes),
        MetaArray::U16(v) => each(out, v, u16::to_le_bytes),
        MetaArray::I16(v) => each(out, v, i16::to_le_bytes),
        MetaArray::U32(v) => each(out, v, u32::to_le_bytes),
        MetaArray::I32(v) => each(out, v, i32::to_le_bytes),
        MetaArray::F32(v) => each(out, v, f32::to_le_bytes),
        MetaArray::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        MetaArray::String(v) => {
            for s in v.iter() {
                put_str(out, s);
            }
        }
        MetaArray::Array(v) => {
            for inner in v {
                put_array(out, inner);
            }
        }
        MetaArray::U64(v) => each(out, v, u64::to_le_bytes),
        MetaArray::I64(v) => each(out, v, i64::to_le_bytes),
        MetaArray::F64(v) => each(out, v, f64::to_le_bytes),
    }
}
