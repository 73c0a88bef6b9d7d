//! Every class of malformed GGUF input is an error of its own kind that names the field,
//! key or tensor; none panics or allocates more than the file could justify.

mod common;

use common::*;
use vtpu_modelfile::gguf::{
    GgmlType, GgufErrorKind, GgufFile, GgufWriter, MetaArray, MetaValue, MAX_ARRAY_DEPTH,
    MAX_ARRAY_LEN, MAX_KEY_LEN, MAX_KV, MAX_STRING_LEN, MAX_TENSORS, MAX_TOTAL_ARRAY_ELEMS,
};

/// Two F32 [8] tensors `t1`, `t2` (32 bytes each, at data offsets 0 and 32), a u32 array
/// `arr`, a string `s`, a bool `b`.
fn small() -> (Vec<u8>, GgufFile) {
    let mut w = GgufWriter::new();
    w.add_meta("arr", MetaValue::Array(MetaArray::U32(vec![1, 2, 3])))
        .add_meta("s", MetaValue::String("hello".into()))
        .add_meta("b", MetaValue::Bool(true))
        .add_tensor("t1", &[8], GgmlType::F32, pattern(32, 1))
        .add_tensor("t2", &[8], GgmlType::F32, pattern(32, 2));
    let bytes = w.to_bytes().unwrap();
    let f = parse(bytes.clone()).unwrap();
    (bytes, f)
}

/// Byte offsets of one tensor info's fields.
struct InfoAt {
    n_dims: u64,
    dims: u64,
    ty: u64,
    offset: u64,
}

fn info_at(bytes: &[u8], f: &GgufFile, name: &str) -> InfoAt {
    let at = f.tensor(name).unwrap().info_offset();
    let name_len = get_u64(bytes, at);
    let n_dims_at = at + 8 + name_len;
    let nd = u32::from_le_bytes(
        bytes[n_dims_at as usize..n_dims_at as usize + 4]
            .try_into()
            .unwrap(),
    ) as u64;
    InfoAt {
        n_dims: n_dims_at,
        dims: n_dims_at + 4,
        ty: n_dims_at + 4 + 8 * nd,
        offset: n_dims_at + 8 + 8 * nd,
    }
}

/// Offset of the value of metadata entry `key` (after key and type).
fn value_at(bytes: &[u8], f: &GgufFile, key: &str) -> u64 {
    let at = f.meta_offset(key).unwrap();
    at + 8 + get_u64(bytes, at) + 4
}

fn assert_names(e: &vtpu_modelfile::gguf::GgufError, needle: &str) {
    let msg = e.to_string();
    assert!(
        msg.contains(needle),
        "message does not name `{needle}`: {msg}"
    );
}

#[test]
fn bad_magic() {
    let (mut b, _) = small();
    b[..4].copy_from_slice(b"GGML");
    let e = parse_err(b);
    assert!(matches!(kind(&e), GgufErrorKind::BadMagic { found } if found == b"GGML"));
    assert_names(&e, "magic");
}

#[test]
fn unsupported_versions() {
    for (v, hint) in [(1u32, "v1"), (4, ""), (0x0300_0000, "big-endian"), (0, "")] {
        let (mut b, _) = small();
        put_u32(&mut b, 4, v);
        let e = parse_err(b);
        assert!(
            matches!(kind(&e), GgufErrorKind::UnsupportedVersion { version, .. } if *version == v),
            "{e}"
        );
        assert_names(&e, "version");
        assert_names(&e, hint);
    }
}

#[test]
fn absurd_counts_hit_the_caps() {
    let (mut b, _) = small();
    put_u64(&mut b, 8, MAX_TENSORS + 1);
    let e = parse_err(b);
    assert!(
        matches!(
            kind(&e),
            GgufErrorKind::CountTooLarge {
                what: "tensor_count",
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, "tensor_count");

    let (mut b, _) = small();
    put_u64(&mut b, 16, u64::MAX);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::CountTooLarge { what: "kv_count", count, cap, .. } if *count == u64::MAX && *cap == MAX_KV),
        "{e}"
    );
}

#[test]
fn counts_under_the_cap_but_beyond_the_file_are_truncation() {
    let (mut b, _) = small();
    put_u64(&mut b, 16, MAX_KV); // 2^20 entries need >= 13 MiB; the file is ~300 bytes
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::Truncated { what, .. } if what.contains("kv_count")),
        "{e}"
    );

    let (mut b, _) = small();
    put_u64(&mut b, 8, 100_000);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::Truncated { what, .. } if what.contains("tensor_count")),
        "{e}"
    );
}

#[test]
fn string_lengths_beyond_the_file_or_the_cap() {
    // The value of `s` claims 1000 bytes.
    let (mut b, f) = small();
    let at = value_at(&b, &f, "s");
    put_u64(&mut b, at, 1000);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::Truncated { what, need: 1000, .. } if what.contains("`s`")),
        "{e}"
    );

    let (mut b, f) = small();
    let at = value_at(&b, &f, "s");
    put_u64(&mut b, at, MAX_STRING_LEN + 1);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::StringTooLong { what, offset, .. } if what.contains("`s`") && *offset == at),
        "{e}"
    );

    // A key longer than the spec's 65,535 bytes.
    let (mut b, f) = small();
    put_u64(&mut b, f.meta_offset("arr").unwrap(), MAX_KEY_LEN + 1);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::StringTooLong { what, .. } if what.contains("key of metadata entry 0")),
        "{e}"
    );

    // A tensor name running past the end.
    let (mut b, f) = small();
    put_u64(&mut b, f.tensor("t2").unwrap().info_offset(), 1 << 20);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::StringTooLong { what, .. } if what.contains("name of tensor 1")),
        "{e}"
    );
}

#[test]
fn array_lengths_beyond_the_file_or_the_cap() {
    let (mut b, f) = small();
    let count_at = value_at(&b, &f, "arr") + 4;
    put_u64(&mut b, count_at, 1_000_000);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::Truncated { what, need: 4_000_000, .. } if what.contains("`arr`")),
        "{e}"
    );

    let (mut b, f) = small();
    let count_at = value_at(&b, &f, "arr") + 4;
    put_u64(&mut b, count_at, u64::MAX);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::ArrayTooLong { key, len: u64::MAX, cap, .. } if key == "arr" && *cap == MAX_ARRAY_LEN),
        "{e}"
    );

    // An array of 2^24 strings: 8 bytes each at least, refused before allocating.
    let mut w = GgufWriter::new();
    w.add_meta(
        "toks",
        MetaValue::Array(MetaArray::String(["a"].into_iter().collect())),
    );
    let mut b = w.to_bytes().unwrap();
    let f = parse(b.clone()).unwrap();
    let count_at = value_at(&b, &f, "toks") + 4;
    put_u64(&mut b, count_at, 1 << 24);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::Truncated { what, need, .. } if what.contains("string elements of key `toks`") && *need == 8 << 24),
        "{e}"
    );
}

#[test]
fn unknown_value_types_invalid_bools_and_bad_utf8() {
    let (mut b, f) = small();
    let type_at = value_at(&b, &f, "s") - 4;
    put_u32(&mut b, type_at, 13);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::UnknownValueType { key, type_id: 13, offset } if key == "s" && *offset == type_at),
        "{e}"
    );

    let (mut b, f) = small();
    let elem_at = value_at(&b, &f, "arr");
    put_u32(&mut b, elem_at, 99);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::UnknownValueType { key, type_id: 99, .. } if key == "arr"),
        "{e}"
    );

    let (mut b, f) = small();
    let at = value_at(&b, &f, "b");
    b[at as usize] = 2;
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::InvalidBool { key, value: 2, .. } if key == "b"),
        "{e}"
    );

    let (mut b, f) = small();
    let at = value_at(&b, &f, "s") + 8; // first byte of "hello"
    b[at as usize] = 0xff;
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::InvalidUtf8 { what, offset } if what.contains("`s`") && *offset == at),
        "{e}"
    );
}

#[test]
fn array_elements_are_capped_across_the_whole_file() {
    // Two arrays whose lengths are each under the per-array cap but together exceed
    // the file-wide budget; the second is refused before its bytes are even checked.
    let mut w = GgufWriter::new();
    w.add_meta("a", MetaValue::Array(MetaArray::U8(vec![1])))
        .add_meta("b", MetaValue::Array(MetaArray::U8(vec![2])));
    let mut b = w.to_bytes().unwrap();
    let f = parse(b.clone()).unwrap();
    let a_count = value_at(&b, &f, "a") + 4;
    let b_count = value_at(&b, &f, "b") + 4;
    // `a` really holds MAX_TOTAL_ARRAY_ELEMS - 1 bytes ...
    put_u64(&mut b, a_count, MAX_TOTAL_ARRAY_ELEMS - 1);
    let a_data = a_count as usize + 8;
    b.splice(
        a_data..a_data + 1,
        std::iter::repeat_n(0u8, (MAX_TOTAL_ARRAY_ELEMS - 1) as usize),
    );
    // ... so `b` (now further along) may hold one element, not two.
    let b_count = b_count + MAX_TOTAL_ARRAY_ELEMS - 2;
    assert!(parse(b.clone()).is_ok());
    put_u64(&mut b, b_count, 2);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::ArrayTooLong { key, len: 2, cap: 1, .. } if key == "b"),
        "{e}"
    );
}

#[test]
fn array_nesting_is_capped() {
    let nest = |levels: u32| {
        let mut a = MetaArray::U8(vec![7]);
        for _ in 1..levels {
            a = MetaArray::Array(vec![a]);
        }
        let mut w = GgufWriter::new();
        w.add_meta("deep", MetaValue::Array(a));
        parse(w.to_bytes().unwrap())
    };
    assert!(nest(MAX_ARRAY_DEPTH).is_ok());
    let e = nest(MAX_ARRAY_DEPTH + 1).unwrap_err();
    assert!(
        matches!(kind(&e), GgufErrorKind::NestingTooDeep { key, .. } if key == "deep"),
        "{e}"
    );
    // Far deeper than the stack could recurse, built by hand: each level is
    // (type = array, count = 1).
    let mut b = GgufWriter::new().to_bytes().unwrap();
    b.truncate(24); // drop the padding after the header
    put_u64(&mut b, 16, 1);
    b.extend_from_slice(&4u64.to_le_bytes());
    b.extend_from_slice(b"deep");
    b.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..200_000 {
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    }
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::NestingTooDeep { .. }),
        "{e}"
    );
}

#[test]
fn duplicate_keys() {
    let mut w = GgufWriter::new();
    w.add_meta("k1", MetaValue::U8(1))
        .add_meta("k2", MetaValue::U8(2));
    let mut b = w.to_bytes().unwrap();
    let f = parse(b.clone()).unwrap();
    let at = f.meta_offset("k2").unwrap();
    b[at as usize + 9] = b'1';
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::DuplicateKey { key, offset } if key == "k1" && *offset == at),
        "{e}"
    );
}

#[test]
fn duplicate_tensor_names() {
    let (mut b, f) = small();
    let at = f.tensor("t2").unwrap().info_offset();
    b[at as usize + 9] = b'1';
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::DuplicateTensor { tensor, offset } if tensor == "t1" && *offset == at),
        "{e}"
    );
}

#[test]
fn dim_count_must_be_1_to_4() {
    for n in [0u32, 5, u32::MAX] {
        let (mut b, f) = small();
        let i = info_at(&b, &f, "t2");
        put_u32(&mut b, i.n_dims, n);
        let e = parse_err(b);
        assert!(
            matches!(kind(&e), GgufErrorKind::BadDimCount { tensor, n_dims, .. } if tensor == "t2" && *n_dims == n),
            "{e}"
        );
    }
}

#[test]
fn zero_and_overflowing_dims() {
    let (mut b, f) = small();
    let i = info_at(&b, &f, "t1");
    put_u64(&mut b, i.dims, 0);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::ZeroDim { tensor, index: 0, .. } if tensor == "t1"),
        "{e}"
    );

    let mut w = GgufWriter::new();
    w.add_tensor("m", &[4, 2], GgmlType::F32, pattern(32, 0));
    let mut b = w.to_bytes().unwrap();
    let f = parse(b.clone()).unwrap();
    let i = info_at(&b, &f, "m");
    put_u64(&mut b, i.dims, 1 << 32);
    put_u64(&mut b, i.dims + 8, 1 << 32);
    let e = parse_err(b.clone());
    assert!(
        matches!(kind(&e), GgufErrorKind::ElementCountOverflow { tensor, .. } if tensor == "m"),
        "{e}"
    );
    // Elements fit i64 but the byte count overflows u64.
    put_u64(&mut b, i.dims, 1 << 31);
    put_u64(&mut b, i.dims + 8, 1 << 31);
    let e = parse_err(b.clone());
    // 2^62 elements x 4 bytes: overflow in the byte size.
    assert!(
        matches!(kind(&e), GgufErrorKind::ByteSizeOverflow { tensor, .. } if tensor == "m"),
        "{e}"
    );
    // Elements beyond i64::MAX.
    put_u64(&mut b, i.dims, 1 << 32);
    put_u64(&mut b, i.dims + 8, 1 << 31);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::ElementCountOverflow { .. }),
        "{e}"
    );
}

#[test]
fn unknown_ggml_type_names_tensor_and_id() {
    for id in [4u32, 31, 36, 43, u32::MAX] {
        let (mut b, f) = small();
        let i = info_at(&b, &f, "t2");
        put_u32(&mut b, i.ty, id);
        let e = parse_err(b);
        assert!(
            matches!(kind(&e), GgufErrorKind::UnknownGgmlType { tensor, type_id, offset } if tensor == "t2" && *type_id == id && *offset == i.ty),
            "{e}"
        );
        assert_names(&e, &id.to_string());
    }
}

#[test]
fn row_length_must_be_whole_blocks() {
    let (mut b, f) = small();
    let i = info_at(&b, &f, "t1");
    put_u32(&mut b, i.ty, GgmlType::Q8_0.id()); // ne0 = 8 < 32
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::RowNotBlockMultiple { tensor, ne0: 8, block_elems: 32, .. } if tensor == "t1"),
        "{e}"
    );
}

#[test]
fn alignment_must_be_a_power_of_two() {
    for (value, reason) in [
        (MetaValue::U32(0), "power of two"),
        (MetaValue::U32(48), "power of two"),
        (MetaValue::I32(-32), "power of two"),
        (MetaValue::U64(1 << 40), "cap"),
        (MetaValue::String("32".into()), "integer"),
    ] {
        let mut w = GgufWriter::new();
        w.add_meta("general.alignment", value.clone());
        assert!(w.to_bytes().is_err(), "the writer refuses {value:?} too");
        // So write it under a neighbouring key and patch the key's last byte.
        let mut w = GgufWriter::new();
        w.add_meta("general.alignmenX", value.clone());
        let mut b = w.to_bytes().unwrap();
        let at = parse(b.clone())
            .unwrap()
            .meta_offset("general.alignmenX")
            .unwrap();
        b[at as usize + 8 + 16] = b't';
        let e = parse_err(b);
        assert!(
            matches!(kind(&e), GgufErrorKind::BadAlignment { .. }),
            "{value:?}: {e}"
        );
        assert_names(&e, "general.alignment");
        assert_names(&e, reason);
    }
}

#[test]
fn tensor_offsets_must_be_aligned() {
    let (mut b, f) = small();
    let i = info_at(&b, &f, "t2");
    put_u64(&mut b, i.offset, 40);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::MisalignedTensor { tensor, offset: 40, alignment: 32 } if tensor == "t2"),
        "{e}"
    );
}

#[test]
fn tensor_ranges_outside_the_file() {
    for off in [64u64, 1 << 40, u64::MAX - 31] {
        let (mut b, f) = small();
        let i = info_at(&b, &f, "t2");
        put_u64(&mut b, i.offset, off);
        let e = parse_err(b);
        assert!(
            matches!(kind(&e), GgufErrorKind::TensorOutOfBounds { tensor, .. } if tensor == "t2"),
            "{off}: {e}"
        );
    }
}

#[test]
fn overlapping_tensors() {
    let (mut b, f) = small();
    let i = info_at(&b, &f, "t2");
    put_u64(&mut b, i.offset, 0);
    let e = parse_err(b);
    assert!(
        matches!(kind(&e), GgufErrorKind::TensorOverlap { first, second, .. }
        if (first == "t1" && second == "t2") || (first == "t2" && second == "t1")),
        "{e}"
    );
    assert_names(&e, "t1");
    assert_names(&e, "t2");
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error() {
    let b = full_writer().to_bytes().unwrap();
    let f = parse(b.clone()).unwrap();
    let data_offset = f.data_offset() as usize;
    let data_end = f
        .tensors()
        .iter()
        .map(|t| t.file_offset() + t.size_bytes())
        .max()
        .unwrap() as usize;
    // Padding after the last tensor may go.
    assert!(data_end < b.len());
    for len in data_end..=b.len() {
        assert!(parse(b[..len].to_vec()).is_ok(), "{len}");
    }
    for len in 0..data_end {
        let e = match parse(b[..len].to_vec()) {
            Ok(_) => panic!("prefix of {len} of {} bytes parsed", b.len()),
            Err(e) => e,
        };
        let k = kind(&e);
        if len < data_offset {
            // Inside the header: the field being read is named.
            assert!(matches!(k, GgufErrorKind::Truncated { .. }), "{len}: {e}");
        } else {
            assert!(
                matches!(k, GgufErrorKind::TensorOutOfBounds { .. }),
                "{len}: {e}"
            );
        }
    }
}

#[test]
fn errors_from_a_path_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, f) = small();
    let i = info_at(&b, &f, "t2");
    put_u32(&mut b, i.ty, 77);
    let path = dir.path().join("broken-model.gguf");
    std::fs::write(&path, b).unwrap();
    let e = GgufFile::open(&path).unwrap_err();
    assert_eq!(e.file(), Some(path.as_path()));
    let msg = e.to_string();
    assert!(
        msg.contains("broken-model.gguf") && msg.contains("t2") && msg.contains("77"),
        "{msg}"
    );
    std::fs::write(&path, b"").unwrap();
    let e = GgufFile::open(&path).unwrap_err();
    assert!(e.to_string().contains("broken-model.gguf"), "{e}");
}
