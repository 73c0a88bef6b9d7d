//! Synthetic GGUF files shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use vtpu_modelfile::gguf::{
    GgmlType, GgufError, GgufErrorKind, GgufFile, GgufWriter, MetaArray, MetaValue, StrArray,
};

/// Deterministic filler bytes, so round trips compare real content.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Bytes of a tensor of `dims` and `t`.
pub fn size_of(dims: &[u64], t: GgmlType) -> usize {
    let rows: u64 = dims[1..].iter().product();
    (t.row_bytes(dims[0]).unwrap() * rows) as usize
}

/// One entry of every metadata type (and nested arrays), plus tensors of several types.
pub fn full_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_meta("general.architecture", MetaValue::String("llama".into()))
        .add_meta("t.u8", MetaValue::U8(200))
        .add_meta("t.i8", MetaValue::I8(-100))
        .add_meta("t.u16", MetaValue::U16(60_000))
        .add_meta("t.i16", MetaValue::I16(-30_000))
        .add_meta("t.u32", MetaValue::U32(4_000_000_000))
        .add_meta("t.i32", MetaValue::I32(-2_000_000_000))
        .add_meta("t.f32", MetaValue::F32(1.5e-5))
        .add_meta("t.bool", MetaValue::Bool(true))
        .add_meta(
            "t.string",
            MetaValue::String("héllo {{ template }}\n".into()),
        )
        .add_meta("t.u64", MetaValue::U64(u64::MAX))
        .add_meta("t.i64", MetaValue::I64(i64::MIN))
        .add_meta("t.f64", MetaValue::F64(-2.25))
        .add_meta("t.arr.u8", MetaValue::Array(MetaArray::U8(vec![0, 1, 255])))
        .add_meta("t.arr.i8", MetaValue::Array(MetaArray::I8(vec![-1, 2])))
        .add_meta(
            "t.arr.u16",
            MetaValue::Array(MetaArray::U16(vec![1, 65535])),
        )
        .add_meta("t.arr.i16", MetaValue::Array(MetaArray::I16(vec![-5])))
        .add_meta("t.arr.u32", MetaValue::Array(MetaArray::U32(vec![7, 8, 9])))
        .add_meta(
            "t.arr.i32",
            MetaValue::Array(MetaArray::I32(vec![1, 2, 3, -4])),
        )
        .add_meta(
            "t.arr.f32",
            MetaValue::Array(MetaArray::F32(vec![0.5, -0.25])),
        )
        .add_meta(
            "t.arr.bool",
            MetaValue::Array(MetaArray::Bool(vec![true, false, true])),
        )
        .add_meta(
            "t.arr.string",
            MetaValue::Array(MetaArray::String(
                ["a", "", "ĠHello", "日本"].into_iter().collect(),
            )),
        )
        .add_meta(
            "t.arr.u64",
            MetaValue::Array(MetaArray::U64(vec![u64::MAX, 0])),
        )
        .add_meta("t.arr.i64", MetaValue::Array(MetaArray::I64(vec![-9])))
        .add_meta("t.arr.f64", MetaValue::Array(MetaArray::F64(vec![1e300])))
        .add_meta("t.arr.empty", MetaValue::Array(MetaArray::U32(vec![])))
        .add_meta(
            "t.arr.nested",
            MetaValue::Array(MetaArray::Array(vec![
                MetaArray::I32(vec![1, 2]),
                MetaArray::String(StrArray::from_iter(["x", "y"])),
                MetaArray::Array(vec![MetaArray::F32(vec![3.0])]),
            ])),
        );
    let tensors: [(&str, &[u64], GgmlType); 6] = [
        ("token_embd.weight", &[64, 10], GgmlType::Q8_0),
        ("norm.weight", &[64], GgmlType::F32),
        ("blk.0.attn_q.weight", &[256, 4], GgmlType::Q4_K),
        ("blk.0.attn_k.weight", &[32, 3], GgmlType::Q4_1),
        ("blk.0.ffn.weight", &[8, 2, 3], GgmlType::BF16),
        ("blk.0.f16.weight", &[5, 1, 1, 2], GgmlType::F16),
    ];
    for (i, (name, dims, t)) in tensors.into_iter().enumerate() {
        w.add_tensor(name, dims, t, pattern(size_of(dims, t), i as u8));
    }
    w
}

pub fn parse(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::parse(Arc::new(bytes))
}

pub fn parse_err(bytes: Vec<u8>) -> GgufError {
    match parse(bytes) {
        Ok(_) => panic!("malformed input parsed"),
        Err(e) => e,
    }
}

pub fn kind(e: &GgufError) -> &GgufErrorKind {
    e.kind()
}

pub fn put_u32(b: &mut [u8], at: u64, v: u32) {
    b[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], at: u64, v: u64) {
    b[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn get_u64(b: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(b[at as usize..at as usize + 8].try_into().unwrap())
}
