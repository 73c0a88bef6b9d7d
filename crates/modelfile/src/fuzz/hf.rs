//! Hugging Face fuzzing: `config.json`, `tokenizer_config.json`,
//! `generation_config.json` and shard-index text, and safetensors files. JSON is mutated
//! both as text (bytes, tokens) and as a tree (a field replaced by a boundary value,
//! removed, or added); safetensors files additionally get header-length and header-JSON
//! mutations that keep the length consistent, so the checks past the JSON are reached.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::{kind_name, mutate_bytes, FuzzReport, Rng};
use crate::hf::{
    encode_safetensors, parse_index, GenerationConfig, HfConfig, HfDtype, SafetensorsFile, StInput,
    TokenizerConfig,
};

/// Valid inputs for each HF target.
#[derive(Debug, Clone)]
pub struct HfSeeds {
    pub configs: Vec<String>,
    pub tokenizer_configs: Vec<String>,
    pub generation_configs: Vec<String>,
    pub indexes: Vec<String>,
    pub safetensors: Vec<Vec<u8>>,
}

/// Configs shaped like SmolLM2-135M, Qwen2.5-0.5B and Qwen3-0.6B, and small files of
/// the other kinds.
pub fn hf_seeds() -> HfSeeds {
    let smollm2 = json!({
        "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
        "initializer_range": 0.041666666666666664, "intermediate_size": 1536,
        "max_position_embeddings": 8192, "mlp_bias": false, "model_type": "llama",
        "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 100000,
        "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 49152
    });
    let qwen2 = json!({
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "intermediate_size": 4864,
        "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2",
        "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
        "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_sliding_window": false,
        "vocab_size": 151936
    });
    let qwen3 = json!({
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "bos_token_id": 151643,
        "eos_token_id": [151645, 151643], "head_dim": 128, "hidden_size": 1024,
        "intermediate_size": 3072, "max_position_embeddings": 40960, "model_type": "qwen3",
        "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06, "rope_scaling": {"rope_type": "yarn", "factor": 4.0},
        "rope_parameters": {"rope_theta": 1000000}, "tie_word_embeddings": true,
        "dtype": "bfloat16", "vocab_size": 151936
    });
    let tokenizer_configs = vec![
        json!({"add_bos_token": false, "bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>", "lstrip": false},
               "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}", "tokenizer_class": "GPT2Tokenizer"}),
        json!({"chat_template": [{"name": "default", "template": "A"}, {"name": "rag", "template": "B"}], "pad_token": null}),
    ];
    let generation_configs = vec![
        json!({"bos_token_id": 1, "eos_token_id": [2, 3], "do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.8,
               "repetition_penalty": 1.05, "max_new_tokens": 256}),
    ];
    let indexes = vec![json!({"metadata": {"total_size": 100},
        "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}})];

    let f32s: Vec<u8> = (0..24u8).collect();
    let b16: Vec<u8> = (0..16u8).collect();
    let mut safetensors = Vec::new();
    let sets: [&[StInput<'_>]; 3] = [
        &[
            ("w", HfDtype::F32, &[2, 3], &f32s),
            ("n", HfDtype::BF16, &[8], &b16),
        ],
        &[("model.embed_tokens.weight", HfDtype::F16, &[2, 4], &b16)],
        &[],
    ];
    for set in sets {
        if let Ok(b) = encode_safetensors(set) {
            safetensors.push(b);
        }
    }
    let text = |v: Vec<Value>| v.into_iter().map(|v| v.to_string()).collect();
    HfSeeds {
        configs: text(vec![smollm2, qwen2, qwen3]),
        tokenizer_configs: text(tokenizer_configs),
        generation_configs: text(generation_configs),
        indexes: text(indexes),
        safetensors,
    }
}

fn boundary_json(rng: &mut Rng) -> Value {
    let choices = [
        json!(null),
        json!(0),
        json!(1),
        json!(-1),
        json!(3),
        json!(1u64 << 31),
        json!((1u64 << 31) + 1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e308),
        json!(-0.0),
        json!(1.5),
        json!(""),
        json!("x"),
        json!("F32"),
        json!("BF16"),
        json!("I64"),
        json!("../x"),
        json!(true),
        json!([]),
        json!([1, 2]),
        json!([0, 18446744073709551615u64]),
        json!(["a"]),
        json!({}),
        json!({"content": 1}),
        json!([{"name": "default"}]),
    ];
    rng.pick(&choices).clone()
}

/// Replace, remove or add a field somewhere in the tree.
fn mutate_tree(rng: &mut Rng, v: &mut Value, depth: u32) {
    match v {
        Value::Object(map) if !map.is_empty() && (depth == 0 || rng.chance(3, 4)) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            match rng.below(4) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(format!("{key}_"), boundary_json(rng));
                }
                2 if depth < 4 => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate_tree(rng, child, depth + 1);
                    }
                }
                _ => {
                    map.insert(key, boundary_json(rng));
                }
            }
        }
        Value::Array(items) if !items.is_empty() && rng.chance(1, 2) => {
            let i = rng.below(items.len());
            if rng.chance(1, 2) && depth < 4 {
                mutate_tree(rng, &mut items[i], depth + 1);
            } else {
                items[i] = boundary_json(rng);
            }
        }
        other => *other = boundary_json(rng),
    }
}

fn mutate_json_text(rng: &mut Rng, text: &str, donors: &[&[u8]]) -> Vec<u8> {
    if rng.chance(1, 2) {
        if let Ok(mut v) = serde_json::from_str::<Value>(text) {
            for _ in 0..1 + rng.below(3) {
                mutate_tree(rng, &mut v, 0);
            }
            return v.to_string().into_bytes();
        }
    }
    let mut b = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_bytes(rng, &mut b, donors);
    }
    b
}

fn mutate_safetensors(rng: &mut Rng, seed: &[u8], donors: &[&[u8]]) -> Vec<u8> {
    let header_len = seed
        .get(..8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])) as usize)
        .unwrap_or(0);
    let header = seed
        .get(8..8 + header_len)
        .and_then(|h| serde_json::from_slice::<Value>(h).ok());
    match (rng.below(5), header) {
        (3, _) => relayout(rng),
        (4, _) => huge_layout(rng),
        (0, Some(mut h)) => {
            // Header-tree mutation with a consistent length prefix.
            for _ in 0..1 + rng.below(3) {
                mutate_tree(rng, &mut h, 0);
            }
            let text = h.to_string();
            let mut out = (text.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(text.as_bytes());
            let data = seed.get(8 + header_len..).unwrap_or(&[]);
            out.extend_from_slice(data);
            if rng.chance(1, 3) {
                mutate_bytes(rng, &mut out, donors);
            }
            out
        }
        (1, _) => {
            let mut out = seed.to_vec();
            let v = *rng.pick(&[
                0u64,
                1,
                7,
                8,
                header_len as u64 + 1,
                header_len as u64 - 1,
                100_000_000,
                100_000_001,
                u64::MAX,
            ]);
            if out.len() >= 8 {
                out[..8].copy_from_slice(&v.to_le_bytes());
            }
            out
        }
        _ => {
            let mut out = seed.to_vec();
            for _ in 0..1 + rng.below(4) {
                mutate_bytes(rng, &mut out, donors);
            }
            out
        }
    }
}

/// A valid file with random names, dtypes and shapes (including scalars, empty dims and
/// empty tensors), so the success path sees more than the seeds' layouts.
fn relayout(rng: &mut Rng) -> Vec<u8> {
    let dtypes = [HfDtype::F32, HfDtype::F16, HfDtype::BF16];
    let names = [
        "a",
        "b.weight",
        "model.layers.0.mlp.up_proj.weight",
        "__x__",
        "é",
        "",
    ];
    let mut specs: Vec<(String, HfDtype, Vec<usize>)> = Vec::new();
    for _ in 0..rng.below(5) {
        let name = format!("{}{}", rng.pick(&names), specs.len());
        let rank = rng.below(4);
        let shape = (0..rank)
            .map(|_| *rng.pick(&[0usize, 1, 2, 3, 7]))
            .collect();
        specs.push((name, *rng.pick(&dtypes), shape));
    }
    let data: Vec<Vec<u8>> = specs
        .iter()
        .map(|(_, d, s)| vec![0xab; s.iter().product::<usize>() * d.size_bytes()])
        .collect();
    let inputs: Vec<StInput<'_>> = specs
        .iter()
        .zip(&data)
        .map(|((n, d, s), b)| (n.as_str(), *d, s.as_slice(), b.as_slice()))
        .collect();
    encode_safetensors(&inputs).unwrap_or_default()
}

/// A header whose offsets are consistent with huge shapes (so every per-tensor check
/// passes) while the data section is tiny: aims at overflow in offset sums. Half the
/// time the chain is steered to end just below 2^64, where adding the header length
/// overflows.
fn huge_layout(rng: &mut Rng) -> Vec<u8> {
    let dims = [
        1u64,
        7,
        1 << 20,
        (1 << 59) - 1,
        1 << 60,
        1 << 61,
        u64::MAX / 4,
        u64::MAX,
    ];
    let mut tensors: Vec<(&str, u64)> = Vec::new();
    if rng.chance(1, 2) {
        // F32 tensors of (2^59 - 1) elements (just under 2^61 bytes) until less than
        // that remains, then one F16 tensor ending `gap` bytes short of 2^64.
        let gap = rng.below(64) as u64;
        let big = (1u64 << 59) - 1;
        let mut off = 0u64;
        while u64::MAX - off > big * 4 + gap {
            tensors.push(("F32", big));
            off += big * 4;
        }
        tensors.push(("F16", (u64::MAX - off - gap) / 2));
    } else {
        for _ in 0..1 + rng.below(12) {
            let (dtype, _) = *rng.pick(&[("F32", 4u64), ("F16", 2), ("BF16", 2)]);
            tensors.push((dtype, *rng.pick(&dims)));
        }
    }
    let mut parts = Vec::new();
    let mut off: u64 = 0;
    for (i, (dtype, n)) in tensors.into_iter().enumerate() {
        let size = if dtype == "F32" { 4 } else { 2 };
        let end = off.wrapping_add(n.wrapping_mul(size));
        parts.push(format!(
            r#""t{i}":{{"dtype":"{dtype}","shape":[{n}],"data_offsets":[{off},{end}]}}"#
        ));
        off = end;
    }
    let header = format!("{{{}}}", parts.join(","));
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + rng.below(64), 0);
    out
}

fn err_kind(target: &str, e: &crate::hf::HfError) -> String {
    format!("{target}:{}", kind_name(&format!("{:?}", e.kind())))
}

/// Run `n` mutated inputs spread over the HF targets.
pub fn fuzz_hf(
    seeds: &HfSeeds,
    n: u64,
    rng_seed: u64,
    mut progress: impl FnMut(&FuzzReport),
) -> FuzzReport {
    let t0 = Instant::now();
    let mut rng = Rng::new(rng_seed);
    let mut report = FuzzReport::new("hf");
    let text_donors: Vec<&[u8]> = seeds
        .configs
        .iter()
        .chain(&seeds.tokenizer_configs)
        .chain(&seeds.generation_configs)
        .chain(&seeds.indexes)
        .map(|s| s.as_bytes())
        .collect();
    let st_donors: Vec<&[u8]> = seeds.safetensors.iter().map(Vec::as_slice).collect();
    for i in 0..n {
        let which = rng.below(10);
        let pick_text = |rng: &mut Rng, list: &[String]| -> Option<Vec<u8>> {
            if list.is_empty() {
                return None;
            }
            let seed = &list[rng.below(list.len())];
            Some(mutate_json_text(rng, seed, &text_donors))
        };
        match which {
            0..=3 => {
                let Some(b) = pick_text(&mut rng, &seeds.configs) else {
                    continue;
                };
                report.run(&b, || {
                    let text = String::from_utf8_lossy(&b);
                    match HfConfig::from_json(&text, None) {
                        Ok(c) => {
                            // Derived values stay consistent with the checks.
                            assert_eq!(c.num_attention_heads % c.num_key_value_heads, 0);
                            assert!(c.head_dim() > 0);
                            Ok(())
                        }
                        Err(e) => Err(err_kind("config", &e)),
                    }
                });
            }
            4 => {
                let Some(b) = pick_text(&mut rng, &seeds.tokenizer_configs) else {
                    continue;
                };
                report.run(&b, || {
                    TokenizerConfig::from_json(&String::from_utf8_lossy(&b), None)
                        .map(|_| ())
                        .map_err(|e| err_kind("tokenizer_config", &e))
                });
            }
            5 => {
                let Some(b) = pick_text(&mut rng, &seeds.generation_configs) else {
                    continue;
                };
                report.run(&b, || {
                    GenerationConfig::from_json(&String::from_utf8_lossy(&b), None)
                        .map(|_| ())
                        .map_err(|e| err_kind("generation_config", &e))
                });
            }
            6 => {
                let Some(b) = pick_text(&mut rng, &seeds.indexes) else {
                    continue;
                };
                report.run(&b, || {
                    match parse_index(&String::from_utf8_lossy(&b), None) {
                        Ok(map) => {
                            for (_, shard) in &map {
                                assert!(!shard.contains('/') && shard != "..");
                            }
                            Ok(())
                        }
                        Err(e) => Err(err_kind("index", &e)),
                    }
                });
            }
            _ => {
                if seeds.safetensors.is_empty() {
                    continue;
                }
                let seed = &seeds.safetensors[rng.below(seeds.safetensors.len())];
                let b = mutate_safetensors(&mut rng, seed, &st_donors);
                let input = Arc::new(b);
                let keep = Arc::clone(&input);
                report.run(&keep, move || match SafetensorsFile::parse(input) {
                    Ok(f) => {
                        let len = f.backing().bytes().len();
                        for t in f.tensors() {
                            assert!(t.range.start >= f.data_start() && t.range.end <= len);
                            assert_eq!(
                                f.tensor_bytes(t).len(),
                                t.n_elements() * t.dtype.size_bytes()
                            );
                            let [r, c] = t.rows_cols();
                            assert_eq!(
                                r * c,
                                t.n_elements().max(if t.shape.is_empty() { 1 } else { 0 })
                            );
                        }
                        Ok(())
                    }
                    Err(e) => Err(err_kind("safetensors", &e)),
                });
            }
        }
        if (i + 1) % 100_000 == 0 {
            report.elapsed = t0.elapsed();
            progress(&report);
        }
    }
    report.elapsed = t0.elapsed();
    report
}
