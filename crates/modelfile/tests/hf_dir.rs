//! Hugging Face directories built in a tempdir: config, single and sharded safetensors,
//! tokenizer and generation files, and their error cases.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use vtpu_modelfile::hf::{
    encode_safetensors, parse_index, GenerationConfig, HfConfig, HfDtype, HfErrorKind, HfModelDir,
    SafetensorsFile, TokenizerConfig, MAX_CONFIG_JSON,
};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn llama_config() -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "max_position_embeddings": 64,
        "vocab_size": 10,
        "tie_word_embeddings": true,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16"
    })
}

fn write_json(path: &Path, v: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// embed F32 [10, 8], q BF16 [8, 8], norm F16 [8].
fn weights() -> Vec<(&'static str, HfDtype, Vec<usize>, Vec<u8>)> {
    vec![
        (
            "model.embed_tokens.weight",
            HfDtype::F32,
            vec![10, 8],
            pattern(320, 1),
        ),
        (
            "model.layers.0.self_attn.q_proj.weight",
            HfDtype::BF16,
            vec![8, 8],
            pattern(128, 2),
        ),
        ("model.norm.weight", HfDtype::F16, vec![8], pattern(16, 3)),
    ]
}

fn encode(ts: &[(&'static str, HfDtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, HfDtype, &[usize], &[u8])> = ts
        .iter()
        .map(|(n, d, s, b)| (*n, *d, s.as_slice(), b.as_slice()))
        .collect();
    encode_safetensors(&refs).unwrap()
}

fn single_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_json(&dir.path().join("config.json"), &llama_config());
    std::fs::write(dir.path().join("model.safetensors"), encode(&weights())).unwrap();
    dir
}

#[test]
fn single_file_model_with_tokenizer_and_generation_files() {
    let dir = single_dir();
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    write_json(
        &dir.path().join("tokenizer_config.json"),
        &json!({
            "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>",
            "add_bos_token": true,
            "tokenizer_class": "LlamaTokenizer"
        }),
    );
    write_json(
        &dir.path().join("generation_config.json"),
        &json!({"eos_token_id": [2, 7], "temperature": 0.6, "top_p": 0.9, "top_k": 20, "do_sample": true, "unknown": {"x": 1}}),
    );
    let m = HfModelDir::open(dir.path()).unwrap();
    let c = &m.config;
    assert_eq!(c.architectures, vec!["LlamaForCausalLM"]);
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (8, 16, 1)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim()),
        (2, 1, 4)
    );
    assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-5, 100000.0));
    assert_eq!((c.vocab_size, c.max_position_embeddings), (10, 64));
    assert!(c.tie_word_embeddings);
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(1), vec![2])
    );
    assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
    assert_eq!(c.attention_bias, None);

    assert_eq!(m.tensors().len(), 3);
    assert_eq!(m.shards.len(), 1);
    for (name, dtype, shape, data) in weights() {
        let t = m.tensor(name).unwrap();
        assert_eq!((t.dtype, &t.shape, t.shard), (dtype, &shape, 0));
        assert_eq!(m.tensor_bytes(t), &data[..]);
        // The range indexes the mapped shard directly (zero-copy pages).
        let map = m.shard_mmap(t).unwrap();
        assert_eq!(&map[t.range.clone()], &data[..]);
    }
    assert!(m
        .tokenizer_json
        .as_deref()
        .unwrap()
        .ends_with("tokenizer.json"));
    let tc = m.tokenizer_config.as_ref().unwrap();
    assert_eq!(
        tc.chat_template.as_deref(),
        Some("{% for m in messages %}{{ m.content }}{% endfor %}")
    );
    assert_eq!(
        (tc.bos_token.as_deref(), tc.eos_token.as_deref()),
        (Some("<s>"), Some("</s>"))
    );
    assert_eq!(tc.add_bos_token, Some(true));
    let g = m.generation_config.as_ref().unwrap();
    assert_eq!(g.eos_token_ids, vec![2, 7]);
    assert_eq!(
        (g.temperature, g.top_p, g.top_k, g.do_sample),
        (Some(0.6), Some(0.9), Some(20), Some(true))
    );
}

#[test]
fn optional_files_may_be_absent_and_chat_template_jinja_is_read() {
    let dir = single_dir();
    let m = HfModelDir::open(dir.path()).unwrap();
    assert!(
        m.tokenizer_json.is_none() && m.tokenizer_config.is_none() && m.generation_config.is_none()
    );
    std::fs::write(dir.path().join("chat_template.jinja"), "{{ bos_token }}").unwrap();
    let m = HfModelDir::open(dir.path()).unwrap();
    assert_eq!(
        m.tokenizer_config.unwrap().chat_template.as_deref(),
        Some("{{ bos_token }}")
    );
}

#[test]
fn config_defaults_and_variants() {
    let mut v = llama_config();
    let o = v.as_object_mut().unwrap();
    o.remove("num_key_value_heads");
    o.remove("rope_theta");
    o.remove("tie_word_embeddings");
    o.remove("torch_dtype");
    o.insert("dtype".into(), json!("float16"));
    o.insert("eos_token_id".into(), json!([2, 3]));
    o.insert("bos_token_id".into(), json!(null));
    o.insert("head_dim".into(), json!(16));
    o.insert("attention_bias".into(), json!(false));
    let c = HfConfig::from_json(&v.to_string(), None).unwrap();
    assert_eq!(c.num_key_value_heads, 2);
    assert_eq!(c.rope_theta, 10000.0);
    assert!(!c.tie_word_embeddings);
    assert_eq!(c.torch_dtype.as_deref(), Some("float16"));
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (None, vec![2, 3])
    );
    assert_eq!((c.head_dim, c.head_dim()), (Some(16), 16));
    assert_eq!(c.attention_bias, Some(false));
    // transformers v5 moves rope_theta into rope_parameters.
    let o = v.as_object_mut().unwrap();
    o.insert(
        "rope_parameters".into(),
        json!({"rope_type": "default", "rope_theta": 1e6}),
    );
    assert_eq!(
        HfConfig::from_json(&v.to_string(), None)
            .unwrap()
            .rope_theta,
        1e6
    );
}

fn config_err(v: &serde_json::Value) -> vtpu_modelfile::hf::HfError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    write_json(&path, v);
    let e = HfConfig::load(&path).unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");
    e
}

#[test]
fn config_errors_name_the_file_and_field() {
    for field in [
        "hidden_size",
        "model_type",
        "architectures",
        "rms_norm_eps",
        "vocab_size",
        "num_attention_heads",
    ] {
        let mut v = llama_config();
        v.as_object_mut().unwrap().remove(field);
        let e = config_err(&v);
        assert!(
            matches!(e.kind(), HfErrorKind::MissingField { field: f } if f == field),
            "{field}: {e}"
        );
        assert!(e.to_string().contains(field));
    }
    let cases = [
        ("hidden_size", json!("8"), "WrongType"),
        ("hidden_size", json!(-8), "WrongType"),
        ("hidden_size", json!(0), "BadValue"),
        ("hidden_size", json!(1u64 << 40), "BadValue"),
        ("num_key_value_heads", json!(3), "BadValue"),
        ("hidden_size", json!(9), "BadValue"),
        ("rms_norm_eps", json!(0.0), "BadValue"),
        ("rope_theta", json!(-1.0), "BadValue"),
        ("eos_token_id", json!([2, "x"]), "WrongType"),
        ("eos_token_id", json!(10), "BadValue"),
        ("bos_token_id", json!(1u64 << 33), "BadValue"),
        ("tie_word_embeddings", json!(1), "WrongType"),
        ("architectures", json!([]), "WrongType"),
        ("rope_parameters", json!(3), "Ok"),
    ];
    for (field, value, expected) in cases {
        let mut v = llama_config();
        if field == "rope_parameters" {
            // Only read when rope_theta is absent.
            v.as_object_mut().unwrap().remove("rope_theta");
        }
        v.as_object_mut()
            .unwrap()
            .insert(field.into(), value.clone());
        if expected == "Ok" {
            let e = config_err(&v);
            assert!(
                matches!(e.kind(), HfErrorKind::WrongType { field: f, .. } if f == field),
                "{e}"
            );
            continue;
        }
        let e = config_err(&v);
        let ok = match (expected, e.kind()) {
            ("WrongType", HfErrorKind::WrongType { field: f, .. }) => f == field,
            ("BadValue", HfErrorKind::BadValue { field: f, .. }) => {
                f == field || (field == "num_key_value_heads" && f == "num_key_value_heads")
            }
            _ => false,
        };
        assert!(ok, "{field} = {value}: {e}");
    }
    // Not JSON, not an object.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(&p, "{\"hidden_size\": ").unwrap();
    assert!(matches!(
        HfConfig::load(&p).unwrap_err().kind(),
        HfErrorKind::Json { .. }
    ));
    std::fs::write(&p, "[1, 2]").unwrap();
    assert!(matches!(
        HfConfig::load(&p).unwrap_err().kind(),
        HfErrorKind::WrongType { .. }
    ));
}

#[test]
fn oversized_json_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    let file = std::fs::File::create(&p).unwrap();
    file.set_len(MAX_CONFIG_JSON + 1).unwrap(); // sparse: costs no disk
    let e = HfConfig::load(&p).unwrap_err();
    assert!(
        matches!(e.kind(), HfErrorKind::TooLarge { len, cap } if *len == MAX_CONFIG_JSON + 1 && *cap == MAX_CONFIG_JSON),
        "{e}"
    );
}

#[test]
fn tokenizer_config_forms() {
    let t = TokenizerConfig::from_json(
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}], "eos_token": null}"#,
        None,
    )
    .unwrap();
    assert_eq!((t.chat_template.as_deref(), t.eos_token), (Some("D"), None));
    let e = TokenizerConfig::from_json(r#"{"chat_template": 5}"#, None).unwrap_err();
    assert!(matches!(e.kind(), HfErrorKind::WrongType { field, .. } if field == "chat_template"));
    let e = TokenizerConfig::from_json(r#"{"bos_token": {"text": "<s>"}}"#, None).unwrap_err();
    assert!(matches!(e.kind(), HfErrorKind::WrongType { field, .. } if field == "bos_token"));
    let g = GenerationConfig::from_json(r#"{"eos_token_id": 5}"#, None).unwrap();
    assert_eq!(g.eos_token_ids, vec![5]);
    let e = GenerationConfig::from_json(r#"{"temperature": "hot"}"#, None).unwrap_err();
    assert!(matches!(e.kind(), HfErrorKind::WrongType { field, .. } if field == "temperature"));
}

#[test]
fn sharded_model_via_index() {
    let dir = tempfile::tempdir().unwrap();
    write_json(&dir.path().join("config.json"), &llama_config());
    let w = weights();
    std::fs::write(
        dir.path().join("model-00001-of-00002.safetensors"),
        encode(&w[..2]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("model-00002-of-00002.safetensors"),
        encode(&w[2..]),
    )
    .unwrap();
    let index = json!({
        "metadata": {"total_size": 464},
        "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
            "model.norm.weight": "model-00002-of-00002.safetensors"
        }
    });
    let index_path = dir.path().join("model.safetensors.index.json");
    write_json(&index_path, &index);
    let m = HfModelDir::open(dir.path()).unwrap();
    assert_eq!(m.shards.len(), 2);
    assert_eq!(m.tensors().len(), 3);
    let norm = m.tensor("model.norm.weight").unwrap();
    assert_eq!(norm.shard, 1);
    assert_eq!(m.tensor_bytes(norm), &w[2].3[..]);
    assert!(m.shards[1]
        .path()
        .unwrap()
        .ends_with("model-00002-of-00002.safetensors"));
    let q = m.tensor("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert_eq!((q.shard, m.tensor_bytes(q)), (0, &w[1].3[..]));

    // Listed in the wrong shard.
    let mut bad = index.clone();
    bad["weight_map"]["model.norm.weight"] = json!("model-00001-of-00002.safetensors");
    write_json(&index_path, &bad);
    let e = HfModelDir::open(dir.path()).unwrap_err();
    assert!(
        matches!(e.kind(), HfErrorKind::IndexMismatch { tensor, .. } if tensor == "model.norm.weight"),
        "{e}"
    );
    assert!(
        e.to_string().contains("model.safetensors.index.json"),
        "{e}"
    );
    // In a shard but not listed.
    let mut bad = index.clone();
    bad["weight_map"]
        .as_object_mut()
        .unwrap()
        .remove("model.embed_tokens.weight");
    write_json(&index_path, &bad);
    let e = HfModelDir::open(dir.path()).unwrap_err();
    assert!(
        matches!(e.kind(), HfErrorKind::IndexMismatch { tensor, .. } if tensor == "model.embed_tokens.weight"),
        "{e}"
    );
    // A shard outside the directory.
    let mut bad = index.clone();
    bad["weight_map"]["model.norm.weight"] = json!("../model-00002-of-00002.safetensors");
    write_json(&index_path, &bad);
    let e = HfModelDir::open(dir.path()).unwrap_err();
    assert!(
        matches!(e.kind(), HfErrorKind::BadShardName { shard } if shard.starts_with("..")),
        "{e}"
    );
    // A missing shard file names it.
    let mut bad = index.clone();
    bad["weight_map"]["model.norm.weight"] = json!("model-00003-of-00002.safetensors");
    write_json(&index_path, &bad);
    let e = HfModelDir::open(dir.path()).unwrap_err();
    assert!(
        matches!(e.kind(), HfErrorKind::Io { .. })
            && e.to_string().contains("model-00003-of-00002"),
        "{e}"
    );
}

#[test]
fn index_parser_rejects_bad_maps() {
    for (text, what) in [
        (r#"{"weight_map": {}}"#, "no tensors"),
        (r#"{"metadata": {}}"#, "weight_map"),
        (r#"{"weight_map": {"a": 3}}"#, "`weight_map.a`"),
        (r#"{"weight_map": {"a": "/etc/passwd"}}"#, "/etc/passwd"),
        (r#"{"weight_map": {"a": "sub\\x.safetensors"}}"#, "sub"),
        (r#"{"weight_map": {"a": ".."}}"#, ".."),
        (r#"{"weight_map": {"a": ""}}"#, "``"),
    ] {
        let e = parse_index(text, None).unwrap_err();
        assert!(e.to_string().contains(what), "{text}: {e}");
    }
}

#[test]
fn no_weights_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    write_json(&dir.path().join("config.json"), &llama_config());
    let e = HfModelDir::open(dir.path()).unwrap_err();
    assert!(
        matches!(e.kind(), HfErrorKind::NotFound { what } if what.contains("model.safetensors")),
        "{e}"
    );
}

/// A safetensors file with a hand-written header (padded to 8) and `data_len` zero bytes.
fn raw_safetensors(header: &str, data_len: usize) -> Vec<u8> {
    let mut h = header.to_string();
    while !h.len().is_multiple_of(8) {
        h.push(' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.resize(out.len() + data_len, 0);
    out
}

#[test]
fn safetensors_errors_name_the_tensor() {
    let parse = |b: Vec<u8>| SafetensorsFile::parse(Arc::new(b));
    // Unsupported dtype.
    let b = raw_safetensors(
        r#"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#,
        16,
    );
    let e = parse(b).unwrap_err();
    assert!(
        matches!(e.kind(), HfErrorKind::UnsupportedDtype { tensor, dtype } if tensor == "ids" && dtype == "I64"),
        "{e}"
    );
    // Offsets beyond the data, including ones that would overflow when summed.
    for offsets in ["[0,17]", "[8,4]", "[0,18446744073709551615]"] {
        let h = format!(r#"{{"w":{{"dtype":"F32","shape":[4],"data_offsets":{offsets}}}}}"#);
        let e = parse(raw_safetensors(&h, 16)).unwrap_err();
        assert!(
            matches!(e.kind(), HfErrorKind::TensorOutOfBounds { tensor, .. } if tensor == "w"),
            "{offsets}: {e}"
        );
    }
    // Size that does not match shape x dtype: the safetensors crate's check.
    let b = raw_safetensors(
        r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
        16,
    );
    assert!(matches!(
        parse(b).unwrap_err().kind(),
        HfErrorKind::BadHeader { .. }
    ));
    // Header length past the end, and a file shorter than 8 bytes.
    let mut b = raw_safetensors("{}", 0);
    b[..8].copy_from_slice(&1000u64.to_le_bytes());
    assert!(
        matches!(parse(b).unwrap_err().kind(), HfErrorKind::BadHeader { reason } if reason.contains("past the end"))
    );
    assert!(matches!(
        parse(vec![1, 2]).unwrap_err().kind(),
        HfErrorKind::BadHeader { .. }
    ));
    let mut b = raw_safetensors("{}", 0);
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(
        matches!(parse(b).unwrap_err().kind(), HfErrorKind::BadHeader { reason } if reason.contains("cap"))
    );
    // Valid, with __metadata__.
    let b = raw_safetensors(
        r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[2,4],"data_offsets":[0,16]}}"#,
        16,
    );
    let f = parse(b).unwrap();
    assert_eq!(f.metadata().get("format").map(String::as_str), Some("pt"));
    let w = f.tensor("w").unwrap();
    assert_eq!(
        (w.dtype, w.rows_cols(), w.n_elements()),
        (HfDtype::BF16, [2, 4], 8)
    );
    assert_eq!(w.range.start, f.data_start());
    // From a path, the file is named.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.safetensors");
    std::fs::write(
        &p,
        raw_safetensors(
            r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
            1,
        ),
    )
    .unwrap();
    let e = SafetensorsFile::open(&p).unwrap_err();
    assert!(
        e.to_string().contains("model.safetensors") && e.to_string().contains("`x`"),
        "{e}"
    );
}

/// Regression: safetensors 0.8.0's `read_metadata` adds the last data offset to the
/// header length unchecked (tensor.rs:420) and panics with "attempt to add with
/// overflow" in debug builds when offsets chain up to near `usize::MAX`. Each offset here
/// is consistent with its shape, so only the sum overflows; the pre-check refuses the
/// first offset beyond the file before the crate sees it.
#[test]
fn offsets_that_overflow_inside_the_safetensors_crate_are_refused_first() {
    let big = (1u64 << 59) - 1; // F32 elements; 4 * big bytes does not overflow
    let mut parts = Vec::new();
    let mut off: u64 = 0;
    for i in 0..8 {
        let end = off + big * 4;
        parts.push(format!(
            r#""t{i}":{{"dtype":"F32","shape":[{big}],"data_offsets":[{off},{end}]}}"#
        ));
        off = end;
    }
    parts.push(format!(
        r#""t8":{{"dtype":"F32","shape":[7],"data_offsets":[{off},{}]}}"#,
        off + 28
    ));
    let b = raw_safetensors(&format!("{{{}}}", parts.join(",")), 16);
    let e = SafetensorsFile::parse(Arc::new(b)).unwrap_err();
    assert!(
        matches!(e.kind(), HfErrorKind::TensorOutOfBounds { tensor, .. } if tensor.starts_with('t')),
        "{e}"
    );
}
