//! The GGUF parser: header, metadata, tensor infos, then whole-file checks on the
//! tensor data ranges. It only reads; every length and count is checked against its cap
//! and against the bytes that remain before anything is allocated for it.

use std::collections::HashMap;

use super::error::GgufErrorKind;
use super::types::GgmlType;
use super::value::{MetaArray, MetaValue, StrArray, ValueType};
use super::TensorInfo;

/// Most tensors a file may declare.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Most metadata entries a file may declare.
pub const MAX_KV: u64 = 1 << 20;
/// Longest key: the GGUF spec limits keys to 65,535 bytes.
pub const MAX_KEY_LEN: u64 = 65_535;
/// Longest tensor name. The spec says 64 and llama.cpp enforces 63 (`GGML_MAX_NAME`);
/// the cap is looser so that an oddly named tensor is reported by the loader that
/// rejects it, not here.
pub const MAX_TENSOR_NAME_LEN: u64 = 1024;
/// Longest string value. Chat templates are ~10 KB, but some converters embed the whole
/// `tokenizer.json` (`tokenizer.huggingface.json`, up to ~20 MB).
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// Most elements in one array (vocabularies and merge lists are ~10^5..10^6).
pub const MAX_ARRAY_LEN: u64 = 1 << 25;
/// Most array elements in the whole file, all arrays and nesting levels together. With
/// the per-element minimum sizes this bounds the parsed metadata to a small multiple
/// of the bytes read, and to about 1 GiB however large the file.
pub const MAX_TOTAL_ARRAY_ELEMS: u64 = 1 << 25;
/// Deepest array-of-array nesting; bounds the parser's recursion.
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// Largest `general.alignment`.
pub const MAX_ALIGNMENT: u64 = 1 << 30;
/// Alignment when the file does not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions of one tensor (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// What the parser found; `GgufFile` wraps it with the backing bytes.
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Vec<(String, MetaValue)>,
    /// File offset of each metadata entry (its key length), parallel to `metadata`.
    pub meta_offsets: Vec<u64>,
    pub meta_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

/// A forward-only little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Array elements still allowed in this file (`MAX_TOTAL_ARRAY_ELEMS` at the start).
    array_budget: u64,
}

/// A read ran past the end; the caller names the field.
struct Short {
    offset: u64,
    need: u64,
    have: u64,
}

impl Short {
    fn named(self, what: impl Into<String>) -> GgufErrorKind {
        GgufErrorKind::Truncated {
            what: what.into(),
            offset: self.offset,
            need: self.need,
            have: self.have,
        }
    }
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Short> {
        let short = Short {
            offset: self.offset(),
            need: n,
            have: self.remaining(),
        };
        if n > self.remaining() {
            return Err(short);
        }
        // n <= remaining <= usize::MAX, so the cast and the add are exact.
        let end = self.pos + n as usize;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let bytes = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A GGUF string (u64 length, UTF-8 bytes) of at most `cap` bytes.
    fn string(&mut self, cap: u64, what: &dyn Fn() -> String) -> Result<&'a str, GgufErrorKind> {
        let len_offset = self.offset();
        let len = self
            .u64()
            .map_err(|s| s.named(format!("{} (length)", what())))?;
        if len > cap {
            return Err(GgufErrorKind::StringTooLong {
                what: what(),
                len,
                cap,
                offset: len_offset,
            });
        }
        let start = self.offset();
        let bytes = self.take(len).map_err(|s| s.named(what()))?;
        std::str::from_utf8(bytes).map_err(|_| GgufErrorKind::InvalidUtf8 {
            what: what(),
            offset: start,
        })
    }
}

/// Parse a whole GGUF file held in `buf`.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, GgufErrorKind> {
    let mut r = Cursor {
        buf,
        pos: 0,
        array_budget: MAX_TOTAL_ARRAY_ELEMS,
    };

    let magic = r.take(4).map_err(|s| s.named("magic"))?;
    if magic != b"GGUF" {
        return Err(GgufErrorKind::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = r.u32().map_err(|s| s.named("version"))?;
    if version != 2 && version != 3 {
        let hint = if version == 1 {
            " (GGUF v1 used 32-bit lengths; convert the file again)"
        } else if matches!(version.swap_bytes(), 2 | 3) {
            " (a big-endian file; only little-endian GGUF is read)"
        } else {
            ""
        };
        return Err(GgufErrorKind::UnsupportedVersion { version, hint });
    }

    let tensor_count = read_count(&mut r, "tensor_count", MAX_TENSORS)?;
    let kv_count = read_count(&mut r, "kv_count", MAX_KV)?;
    // Each entry occupies at least: key length (8) + type (4) + 1 byte of value.
    check_room(&r, kv_count, 13, "metadata entries (kv_count)")?;

    let mut metadata: Vec<(String, MetaValue)> = Vec::with_capacity(kv_count as usize);
    let mut meta_index: HashMap<String, usize> = HashMap::with_capacity(kv_count as usize);
    let mut meta_offsets: Vec<u64> = Vec::with_capacity(kv_count as usize);
    for i in 0..kv_count {
        let key_offset = r.offset();
        let key = r
            .string(MAX_KEY_LEN, &|| format!("key of metadata entry {i}"))?
            .to_string();
        if meta_index.contains_key(&key) {
            return Err(GgufErrorKind::DuplicateKey {
                key,
                offset: key_offset,
            });
        }
        let type_offset = r.offset();
        let type_id = r
            .u32()
            .map_err(|s| s.named(format!("value type of key `{key}`")))?;
        let vtype = ValueType::from_id(type_id).ok_or_else(|| GgufErrorKind::UnknownValueType {
            key: key.clone(),
            type_id,
            offset: type_offset,
        })?;
        let value = read_value(&mut r, vtype, &key, 0)?;
        meta_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
        meta_offsets.push(key_offset);
    }

    let alignment = alignment_of(&metadata, &meta_index)?;

    // Each tensor info occupies at least: name length (8) + n_dims (4) + one dim (8) +
    // type (4) + offset (8).
    check_room(&r, tensor_count, 32, "tensor infos (tensor_count)")?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(tensor_count as usize);
    let mut tensor_index: HashMap<String, usize> = HashMap::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let info_offset = r.offset();
        let name = r
            .string(MAX_TENSOR_NAME_LEN, &|| format!("name of tensor {i}"))?
            .to_string();
        if tensor_index.contains_key(&name) {
            return Err(GgufErrorKind::DuplicateTensor {
                tensor: name,
                offset: info_offset,
            });
        }
        let t = read_tensor_info(&mut r, name, info_offset)?;
        tensor_index.insert(t.name.clone(), tensors.len());
        tensors.push(t);
    }

    // The data section starts at the end of the tensor infos, rounded up.
    let end_of_infos = r.offset();
    let data_offset = align_up(end_of_infos, alignment).ok_or(GgufErrorKind::BadAlignment {
        value: alignment.to_string(),
        reason: "the data section start overflows",
    })?;
    let file_len = buf.len() as u64;
    if tensor_count > 0 && data_offset > file_len {
        return Err(GgufErrorKind::Truncated {
            what: "padding before the tensor data".to_string(),
            offset: end_of_infos,
            need: data_offset - end_of_infos,
            have: file_len - end_of_infos,
        });
    }
    check_tensor_ranges(&mut tensors, data_offset, alignment, file_len)?;

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        meta_offsets,
        meta_index,
        tensors,
        tensor_index,
    })
}

fn read_count(r: &mut Cursor<'_>, what: &'static str, cap: u64) -> Result<u64, GgufErrorKind> {
    let offset = r.offset();
    let count = r.u64().map_err(|s| s.named(what))?;
    if count > cap {
        return Err(GgufErrorKind::CountTooLarge {
            what,
            count,
            cap,
            offset,
        });
    }
    Ok(count)
}

/// Refuse `count` items of at least `min_size` bytes each when fewer bytes remain.
fn check_room(r: &Cursor<'_>, count: u64, min_size: u64, what: &str) -> Result<(), GgufErrorKind> {
    // count is capped (<= 2^25), min_size <= 32: the product cannot overflow, but
    // saturate anyway so the check stays correct if a cap is raised.
    let need = count.saturating_mul(min_size);
    if need > r.remaining() {
        return Err(GgufErrorKind::Truncated {
            what: format!("{count} {what}"),
            offset: r.offset(),
            need,
            have: r.remaining(),
        });
    }
    Ok(())
}

fn read_value(
    r: &mut Cursor<'_>,
    vtype: ValueType,
    key: &str,
    depth: u32,
) -> Result<MetaValue, GgufErrorKind> {
    let offset = r.offset();
    let short = |s: Short| s.named(format!("value of key `{key}`"));
    Ok(match vtype {
        ValueType::U8 => MetaValue::U8(r.u8().map_err(short)?),
        ValueType::I8 => MetaValue::I8(i8::from_le_bytes(r.array().map_err(short)?)),
        ValueType::U16 => MetaValue::U16(u16::from_le_bytes(r.array().map_err(short)?)),
        ValueType::I16 => MetaValue::I16(i16::from_le_bytes(r.array().map_err(short)?)),
        ValueType::U32 => MetaValue::U32(r.u32().map_err(short)?),
        ValueType::I32 => MetaValue::I32(i32::from_le_bytes(r.array().map_err(short)?)),
        ValueType::F32 => MetaValue::F32(f32::from_le_bytes(r.array().map_err(short)?)),
        ValueType::U64 => MetaValue::U64(r.u64().map_err(short)?),
        ValueType::I64 => MetaValue::I64(i64::from_le_bytes(r.array().map_err(short)?)),
        ValueType::F64 => MetaValue::F64(f64::from_le_bytes(r.array().map_err(short)?)),
        ValueType::Bool => {
            let b = r.u8().map_err(short)?;
            MetaValue::Bool(parse_bool(b, key, offset)?)
        }
        ValueType::String => MetaValue::String(
            r.string(MAX_STRING_LEN, &|| format!("value of key `{key}`"))?
                .to_string(),
        ),
        ValueType::Array => MetaValue::Array(read_array(r, key, depth)?),
    })
}

fn parse_bool(b: u8, key: &str, offset: u64) -> Result<bool, GgufErrorKind> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(GgufErrorKind::InvalidBool {
            key: key.to_string(),
            value,
            offset,
        }),
    }
}

/// An array header (element type, count) and its elements. `depth` is how many arrays
/// enclose this one.
fn read_array(r: &mut Cursor<'_>, key: &str, depth: u32) -> Result<MetaArray, GgufErrorKind> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(GgufErrorKind::NestingTooDeep {
            key: key.to_string(),
            cap: MAX_ARRAY_DEPTH,
            offset: r.offset(),
        });
    }
    let type_offset = r.offset();
    let type_id = r
        .u32()
        .map_err(|s| s.named(format!("array element type of key `{key}`")))?;
    let elem = ValueType::from_id(type_id).ok_or_else(|| GgufErrorKind::UnknownValueType {
        key: key.to_string(),
        type_id,
        offset: type_offset,
    })?;
    let len_offset = r.offset();
    let len = r
        .u64()
        .map_err(|s| s.named(format!("array length of key `{key}`")))?;
    if len > MAX_ARRAY_LEN {
        return Err(GgufErrorKind::ArrayTooLong {
            key: key.to_string(),
            len,
            cap: MAX_ARRAY_LEN,
            offset: len_offset,
        });
    }
    if len > r.array_budget {
        return Err(GgufErrorKind::ArrayTooLong {
            key: key.to_string(),
            len,
            cap: r.array_budget,
            offset: len_offset,
        });
    }
    r.array_budget -= len;
    let min = len * elem.min_encoded_size();
    if min > r.remaining() {
        return Err(GgufErrorKind::Truncated {
            what: format!("{len} {} elements of key `{key}`", elem.name()),
            offset: r.offset(),
            need: min,
            have: r.remaining(),
        });
    }
    // From here every allocation is bounded by the bytes just checked.
    let n = len as usize;
    let short = |s: Short| s.named(format!("elements of key `{key}`"));
    Ok(match elem {
        ValueType::U8 => MetaArray::U8(r.take(len).map_err(short)?.to_vec()),
        ValueType::I8 => MetaArray::I8(fixed(r, n, short, i8::from_le_bytes)?),
        ValueType::U16 => MetaArray::U16(fixed(r, n, short, u16::from_le_bytes)?),
        ValueType::I16 => MetaArray::I16(fixed(r, n, short, i16::from_le_bytes)?),
        ValueType::U32 => MetaArray::U32(fixed(r, n, short, u32::from_le_bytes)?),
        ValueType::I32 => MetaArray::I32(fixed(r, n, short, i32::from_le_bytes)?),
        ValueType::F32 => MetaArray::F32(fixed(r, n, short, f32::from_le_bytes)?),
        ValueType::U64 => MetaArray::U64(fixed(r, n, short, u64::from_le_bytes)?),
        ValueType::I64 => MetaArray::I64(fixed(r, n, short, i64::from_le_bytes)?),
        ValueType::F64 => MetaArray::F64(fixed(r, n, short, f64::from_le_bytes)?),
        ValueType::Bool => {
            let start = r.offset();
            let bytes = r.take(len).map_err(short)?;
            let mut out = Vec::with_capacity(n);
            for (i, &b) in bytes.iter().enumerate() {
                out.push(parse_bool(b, key, start + i as u64)?);
            }
            MetaArray::Bool(out)
        }
        ValueType::String => {
            let mut out = StrArray::with_capacity(n, 0);
            for i in 0..n {
                let s = r.string(MAX_STRING_LEN, &|| format!("element {i} of key `{key}`"))?;
                out.push(s);
            }
            MetaArray::String(out)
        }
        ValueType::Array => {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(read_array(r, key, depth + 1)?);
            }
            MetaArray::Array(out)
        }
    })
}

/// `n` fixed-size little-endian values, decoded from one bounds-checked slice.
fn fixed<T, const N: usize>(
    r: &mut Cursor<'_>,
    n: usize,
    short: impl Fn(Short) -> GgufErrorKind,
    decode: fn([u8; N]) -> T,
) -> Result<Vec<T>, GgufErrorKind> {
    let bytes = r.take((n as u64) * N as u64).map_err(short)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            decode(a)
        })
        .collect())
}

fn alignment_of(
    metadata: &[(String, MetaValue)],
    index: &HashMap<String, usize>,
) -> Result<u64, GgufErrorKind> {
    let Some(&i) = index.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let value = &metadata[i].1;
    // The spec says u32; any integer type is accepted, as llama.cpp's readers do for
    // other size keys.
    let Some(v) = value.as_integer() else {
        return Err(GgufErrorKind::BadAlignment {
            value: format!("{value} ({})", value.type_name()),
            reason: "must be an integer",
        });
    };
    if v <= 0 || (v as u128).count_ones() != 1 {
        return Err(GgufErrorKind::BadAlignment {
            value: v.to_string(),
            reason: "must be a non-zero power of two",
        });
    }
    if v as u128 > MAX_ALIGNMENT as u128 {
        return Err(GgufErrorKind::BadAlignment {
            value: v.to_string(),
            reason: "exceeds the cap of 2^30",
        });
    }
    Ok(v as u64)
}

fn read_tensor_info(
    r: &mut Cursor<'_>,
    name: String,
    info_offset: u64,
) -> Result<TensorInfo, GgufErrorKind> {
    let short = |what: &str| {
        let name = name.clone();
        let what = what.to_string();
        move |s: Short| s.named(format!("{what} of tensor `{name}`"))
    };
    let n_dims_offset = r.offset();
    let n_dims = r.u32().map_err(short("n_dims"))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufErrorKind::BadDimCount {
            tensor: name,
            n_dims,
            offset: n_dims_offset,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for index in 0..n_dims as usize {
        let dim_offset = r.offset();
        let d = r.u64().map_err(short("dims"))?;
        if d == 0 {
            return Err(GgufErrorKind::ZeroDim {
                tensor: name,
                index,
                offset: dim_offset,
            });
        }
        dims.push(d);
    }
    // ggml counts elements in i64.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    let Some(n_elements) = n_elements else {
        return Err(GgufErrorKind::ElementCountOverflow { tensor: name, dims });
    };
    let type_offset = r.offset();
    let type_id = r.u32().map_err(short("type"))?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufErrorKind::UnknownGgmlType {
            tensor: name,
            type_id,
            offset: type_offset,
        });
    };
    let offset = r.u64().map_err(short("data offset"))?;
    if !dims[0].is_multiple_of(ggml_type.block_elems()) {
        return Err(GgufErrorKind::RowNotBlockMultiple {
            tensor: name,
            ne0: dims[0],
            type_name: ggml_type.name(),
            block_elems: ggml_type.block_elems(),
        });
    }
    let Some(size) = (n_elements / ggml_type.block_elems()).checked_mul(ggml_type.block_bytes())
    else {
        return Err(GgufErrorKind::ByteSizeOverflow { tensor: name, dims });
    };
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        size,
        n_elements,
        file_offset: 0,
        info_offset,
    })
}

/// Check alignment and bounds of every tensor's data, then that no two overlap; fills
/// in each tensor's absolute `file_offset`.
fn check_tensor_ranges(
    tensors: &mut [TensorInfo],
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<(), GgufErrorKind> {
    for t in tensors.iter_mut() {
        if !t.offset.is_multiple_of(alignment) {
            return Err(GgufErrorKind::MisalignedTensor {
                tensor: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => t.file_offset = start,
            _ => {
                return Err(GgufErrorKind::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    for pair in order.windows(2) {
        let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
        // In bounds (checked above), so offset + size does not overflow.
        if a.offset + a.size > b.offset {
            return Err(GgufErrorKind::TensorOverlap {
                first: a.name.clone(),
                first_start: a.file_offset,
                first_end: a.file_offset + a.size,
                second: b.name.clone(),
                second_start: b.file_offset,
            });
        }
    }
    Ok(())
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub(crate) fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}
