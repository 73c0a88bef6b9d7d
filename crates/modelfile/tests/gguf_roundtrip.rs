//! Writer -> reader round trips, accessors, the type table and the summary.

mod common;

use std::sync::Arc;

use common::*;
use vtpu_modelfile::gguf::{GgmlType, GgufErrorKind, GgufFile, GgufWriter, MetaArray, MetaValue};

#[test]
fn round_trip_every_metadata_type_and_tensor_type() {
    let w = full_writer();
    let bytes = w.to_bytes().unwrap();
    let f = parse(bytes.clone()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);

    // Every entry comes back equal and in order.
    let keys: Vec<&str> = f.metadata().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 27);
    assert_eq!(keys[0], "general.architecture");
    assert_eq!(keys[26], "t.arr.nested");
    assert_eq!(f.get("t.u8"), Some(&MetaValue::U8(200)));
    assert_eq!(f.get("t.i8"), Some(&MetaValue::I8(-100)));
    assert_eq!(f.get("t.u16"), Some(&MetaValue::U16(60_000)));
    assert_eq!(f.get("t.i16"), Some(&MetaValue::I16(-30_000)));
    assert_eq!(f.get("t.u32"), Some(&MetaValue::U32(4_000_000_000)));
    assert_eq!(f.get("t.i32"), Some(&MetaValue::I32(-2_000_000_000)));
    assert_eq!(f.get("t.f32"), Some(&MetaValue::F32(1.5e-5)));
    assert_eq!(f.get("t.bool"), Some(&MetaValue::Bool(true)));
    assert_eq!(
        f.get_str("t.string").unwrap(),
        Some("héllo {{ template }}\n")
    );
    assert_eq!(f.get("t.u64"), Some(&MetaValue::U64(u64::MAX)));
    assert_eq!(f.get("t.i64"), Some(&MetaValue::I64(i64::MIN)));
    assert_eq!(f.get("t.f64"), Some(&MetaValue::F64(-2.25)));
    assert_eq!(
        f.get_str_array("t.arr.string").unwrap().unwrap().to_vec(),
        vec!["a", "", "ĠHello", "日本"]
    );
    assert_eq!(
        f.get_i32_array("t.arr.i32").unwrap(),
        Some(&[1, 2, 3, -4][..])
    );
    assert_eq!(
        f.get_f32_array("t.arr.f32").unwrap(),
        Some(&[0.5, -0.25][..])
    );
    assert_eq!(
        f.get("t.arr.empty"),
        Some(&MetaValue::Array(MetaArray::U32(vec![])))
    );
    match f.get_array("t.arr.nested").unwrap().unwrap() {
        MetaArray::Array(inner) => {
            assert_eq!(inner.len(), 3);
            assert_eq!(inner[0], MetaArray::I32(vec![1, 2]));
            assert_eq!(inner[2], MetaArray::Array(vec![MetaArray::F32(vec![3.0])]));
        }
        other => panic!("nested array came back as {other:?}"),
    }

    // Tensors: names, dims, types, offsets and bytes.
    assert_eq!(f.tensors().len(), 6);
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims(), &[64, 10]);
    assert_eq!(emb.rows_cols(), [10, 64]);
    assert_eq!(emb.ggml_type(), GgmlType::Q8_0);
    assert_eq!(emb.size_bytes(), 10 * 2 * 34);
    assert_eq!(emb.file_offset(), f.data_offset() + emb.offset());
    assert_eq!(f.tensor_bytes(emb), &pattern(680, 0)[..]);
    let ffn = f.tensor("blk.0.ffn.weight").unwrap();
    assert_eq!(ffn.rows_cols(), [6, 8]);
    assert_eq!(ffn.n_elements(), 48);
    assert_eq!(
        f.tensor_data("blk.0.ffn.weight").unwrap(),
        &pattern(96, 4)[..]
    );
    for t in f.tensors() {
        assert_eq!(t.file_offset() % 32, 0, "{} not aligned", t.name());
        assert_eq!(f.tensor_bytes(t).len() as u64, t.size_bytes());
    }

    // Writing what was read gives the same bytes.
    let mut again = GgufWriter::new();
    for (k, v) in f.metadata() {
        again.add_meta(k, v.clone());
    }
    for t in f.tensors() {
        again.add_tensor(
            t.name(),
            t.dims(),
            t.ggml_type(),
            f.tensor_bytes(t).to_vec(),
        );
    }
    assert_eq!(again.to_bytes().unwrap(), bytes);
}

#[test]
fn nondefault_alignment_is_honoured() {
    let mut w = GgufWriter::new();
    w.set_alignment(256)
        .add_tensor("a", &[3], GgmlType::F32, pattern(12, 1))
        .add_tensor("b", &[32], GgmlType::Q8_0, pattern(34, 2));
    let f = parse(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.alignment(), 256);
    assert_eq!(f.data_offset() % 256, 0);
    assert_eq!(f.tensor("b").unwrap().offset(), 256);
    assert_eq!(f.tensor_data("b").unwrap(), &pattern(34, 2)[..]);
}

#[test]
fn version_2_files_are_read() {
    let mut bytes = full_writer().to_bytes().unwrap();
    put_u32(&mut bytes, 4, 2);
    assert_eq!(parse(bytes).unwrap().version(), 2);
}

#[test]
fn open_from_path_maps_the_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    full_writer().write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let map = f.mmap().expect("opened from a path, so mapped");
    let t = f.tensor("norm.weight").unwrap();
    let start = t.file_offset() as usize;
    assert_eq!(&map[start..start + 256], f.tensor_bytes(t));
    assert_eq!(f.path(), Some(path.as_path()));

    let err = f.get_u32("t.string").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("m.gguf") && msg.contains("t.string"), "{msg}");

    std::fs::write(&path, b"GGUX").unwrap();
    let msg = GgufFile::open(&path).unwrap_err().to_string();
    assert!(msg.contains("m.gguf") && msg.contains("magic"), "{msg}");
    let missing = GgufFile::open(dir.path().join("absent.gguf")).unwrap_err();
    assert!(matches!(missing.kind(), GgufErrorKind::Io { .. }));
    assert!(missing.to_string().contains("absent.gguf"));
}

#[test]
fn integer_accessors_accept_any_width_that_fits() {
    let f = parse(full_writer().to_bytes().unwrap()).unwrap();
    assert_eq!(f.get_u64("t.u8").unwrap(), Some(200));
    assert_eq!(f.get_u32("t.u16").unwrap(), Some(60_000));
    assert_eq!(f.get_u64("t.u64").unwrap(), Some(u64::MAX));
    assert_eq!(f.get_i64("t.i32").unwrap(), Some(-2_000_000_000));
    assert_eq!(f.get_u32("absent").unwrap(), None);
    // Too large or negative: OutOfRange naming the key.
    let e = f.get_u32("t.u64").unwrap_err();
    assert!(
        matches!(e.kind(), GgufErrorKind::OutOfRange { key, .. } if key == "t.u64"),
        "{e}"
    );
    let e = f.get_u64("t.i8").unwrap_err();
    assert!(
        matches!(e.kind(), GgufErrorKind::OutOfRange { key, .. } if key == "t.i8"),
        "{e}"
    );
}

#[test]
fn float_accessor_accepts_f32_and_f64() {
    let f = parse(full_writer().to_bytes().unwrap()).unwrap();
    assert_eq!(f.get_f32("t.f32").unwrap(), Some(1.5e-5));
    assert_eq!(f.get_f32("t.f64").unwrap(), Some(-2.25));
    let mut w = GgufWriter::new();
    w.add_meta("big", MetaValue::F64(1e300));
    let g = parse(w.to_bytes().unwrap()).unwrap();
    assert!(matches!(
        g.get_f32("big").unwrap_err().kind(),
        GgufErrorKind::OutOfRange { .. }
    ));
}

#[test]
fn wrong_types_name_key_expected_and_actual() {
    let f = parse(full_writer().to_bytes().unwrap()).unwrap();
    type Lookup<'a> = Box<dyn Fn() -> Option<vtpu_modelfile::gguf::GgufError> + 'a>;
    let cases: Vec<(&str, Lookup<'_>)> = vec![
        ("t.u32", Box::new(|| f.get_str("t.u32").err())),
        ("t.string", Box::new(|| f.get_u64("t.string").err())),
        ("t.bool", Box::new(|| f.get_f32("t.bool").err())),
        ("t.u8", Box::new(|| f.get_bool("t.u8").err())),
        ("t.arr.i32", Box::new(|| f.get_str_array("t.arr.i32").err())),
        ("t.arr.i32", Box::new(|| f.get_f32_array("t.arr.i32").err())),
        ("t.arr.f32", Box::new(|| f.get_i32_array("t.arr.f32").err())),
        ("t.string", Box::new(|| f.get_array("t.string").err())),
    ];
    for (key, get) in cases {
        let e = get().unwrap_or_else(|| panic!("{key}: wrong type accepted"));
        match e.kind() {
            GgufErrorKind::WrongType {
                key: k,
                expected,
                actual,
            } => {
                assert_eq!(k, key);
                assert!(!expected.is_empty() && !actual.is_empty());
                let msg = e.to_string();
                assert!(
                    msg.contains(key) && msg.contains(expected) && msg.contains(actual.as_str()),
                    "{msg}"
                );
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    let e = f.get_str_array("t.arr.i32").unwrap_err();
    assert!(
        e.to_string().contains("array<string>") && e.to_string().contains("array<i32>"),
        "{e}"
    );
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.arch_key("block_count").unwrap(), "llama.block_count");
    let e = f.require_u64("llama.block_count").unwrap_err();
    assert!(matches!(e.kind(), GgufErrorKind::MissingKey { key } if key == "llama.block_count"));
}

#[test]
fn ggml_type_table_matches_ggml_block_layouts() {
    // (type, elements per block, bytes per block) from ggml-common.h block structs.
    let expected: &[(GgmlType, u64, u64)] = &[
        (GgmlType::F32, 1, 4),
        (GgmlType::F16, 1, 2),
        (GgmlType::Q4_0, 32, 2 + 16),
        (GgmlType::Q4_1, 32, 4 + 16),
        (GgmlType::Q5_0, 32, 2 + 4 + 16),
        (GgmlType::Q5_1, 32, 4 + 4 + 16),
        (GgmlType::Q8_0, 32, 2 + 32),
        (GgmlType::Q8_1, 32, 4 + 32),
        (GgmlType::Q2_K, 256, 16 + 64 + 4),
        (GgmlType::Q3_K, 256, 32 + 64 + 12 + 2),
        (GgmlType::Q4_K, 256, 4 + 12 + 128),
        (GgmlType::Q5_K, 256, 4 + 12 + 32 + 128),
        (GgmlType::Q6_K, 256, 128 + 64 + 16 + 2),
        (GgmlType::Q8_K, 256, 4 + 256 + 32),
        (GgmlType::IQ2_XXS, 256, 2 + 64),
        (GgmlType::IQ4_NL, 32, 18),
        (GgmlType::IQ4_XS, 256, 2 + 2 + 4 + 128),
        (GgmlType::I8, 1, 1),
        (GgmlType::I16, 1, 2),
        (GgmlType::I32, 1, 4),
        (GgmlType::I64, 1, 8),
        (GgmlType::F64, 1, 8),
        (GgmlType::BF16, 1, 2),
    ];
    for &(t, elems, bytes) in expected {
        assert_eq!((t.block_elems(), t.block_bytes()), (elems, bytes), "{t}");
    }
    let ids = [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (6, "Q5_0"),
        (7, "Q5_1"),
        (8, "Q8_0"),
        (9, "Q8_1"),
        (10, "Q2_K"),
        (11, "Q3_K"),
        (12, "Q4_K"),
        (13, "Q5_K"),
        (14, "Q6_K"),
        (15, "Q8_K"),
        (24, "I8"),
        (25, "I16"),
        (26, "I32"),
        (27, "I64"),
        (28, "F64"),
        (30, "BF16"),
    ];
    for (id, name) in ids {
        assert_eq!(GgmlType::from_id(id).map(|t| t.name()), Some(name));
    }
    // Retired ids stay unknown.
    for id in [4, 5, 31, 32, 33, 36, 37, 38, 1000] {
        assert_eq!(GgmlType::from_id(id), None, "id {id}");
    }
    // The table is consistent with itself.
    for &t in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(t.id()), Some(t));
        assert!(t.block_elems() >= 1 && t.block_bytes() >= 1);
    }
    assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
    assert_eq!(GgmlType::Q4_K.row_bytes(100), None);
}

#[test]
fn summary_shortens_long_values_without_reading_tensors() {
    let mut w = full_writer();
    let tokens: Vec<String> = (0..1000).map(|i| format!("tok{i}")).collect();
    w.add_meta(
        "tokenizer.ggml.tokens",
        MetaValue::Array(MetaArray::String(
            tokens.iter().map(String::as_str).collect(),
        )),
    );
    w.add_meta("long", MetaValue::String("x".repeat(10_000)));
    let f = GgufFile::parse(Arc::new(w.to_bytes().unwrap())).unwrap();
    let s = f.summary();
    assert_eq!(s.tensors.len(), 6);
    assert_eq!(s.architecture.as_deref(), Some("llama"));
    let toks = s
        .metadata
        .iter()
        .find(|m| m.key == "tokenizer.ggml.tokens")
        .unwrap();
    assert_eq!(toks.type_name, "array<string>");
    assert_eq!(toks.len, Some(1000));
    assert!(
        toks.value.starts_with("1000 elements: [\"tok0\""),
        "{}",
        toks.value
    );
    assert!(toks.value.len() < 100, "{}", toks.value);
    let long = s.metadata.iter().find(|m| m.key == "long").unwrap();
    assert!(
        long.value.len() < 200 && long.value.contains("10000 bytes"),
        "{}",
        long.value
    );
    let expected_bytes: u64 = f.tensors().iter().map(|t| t.size_bytes()).sum();
    assert_eq!(s.total_tensor_bytes, expected_bytes);
    assert_eq!(s.parameter_count, 640 + 64 + 1024 + 96 + 48 + 10);
    let q8 = s
        .by_type
        .iter()
        .find(|x| x.ggml_type == GgmlType::Q8_0)
        .unwrap();
    assert_eq!((q8.tensors, q8.bytes), (1, 680));
    let text = s.to_string();
    assert!(
        text.contains("token_embd.weight") && text.contains("Q8_0") && text.contains("6 tensors"),
        "{text}"
    );
}

#[test]
fn writer_refuses_inconsistent_input() {
    let mut w = GgufWriter::new();
    w.add_tensor("t", &[32], GgmlType::Q8_0, vec![0; 33]);
    assert!(matches!(
        w.to_bytes().unwrap_err().kind(),
        GgufErrorKind::Write { .. }
    ));
    let mut w = GgufWriter::new();
    w.add_meta("k", MetaValue::U8(1))
        .add_meta("k", MetaValue::U8(2));
    assert!(w
        .to_bytes()
        .unwrap_err()
        .to_string()
        .contains("duplicate key `k`"));
    let mut w = GgufWriter::new();
    w.add_tensor("t", &[30], GgmlType::Q8_0, vec![]);
    assert!(w.to_bytes().unwrap_err().to_string().contains("block"));
    let mut w = GgufWriter::new();
    w.set_alignment(48);
    assert!(w.to_bytes().is_err());
}

/// Writing over a file another reader has mapped replaces it (a temporary file renamed
/// over it): the mapping keeps the old bytes instead of losing them under the reader
/// (an in-place rewrite truncates the file first: SIGBUS on the next read), and the
/// next open sees the new ones. No temporary file is left behind.
#[test]
fn writing_over_a_mapped_file_keeps_the_readers_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let file = |v: u8| {
        let mut w = GgufWriter::new();
        w.add_meta("general.architecture", MetaValue::String("llama".into()));
        w.add_tensor("t", &[1 << 16], GgmlType::I8, vec![v; 1 << 16]);
        w
    };
    file(1).write(&path).unwrap();
    let old = GgufFile::open(&path).unwrap();
    file(2).write(&path).unwrap();
    assert!(old.tensor_data("t").unwrap().iter().all(|&b| b == 1));
    let new = GgufFile::open(&path).unwrap();
    assert!(new.tensor_data("t").unwrap().iter().all(|&b| b == 2));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("m.gguf")]);
    // A failed write (into a directory that does not exist) names the path.
    let bad = dir.path().join("nope/m.gguf");
    let e = file(3).write(&bad).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}
