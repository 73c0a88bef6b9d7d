//! Token ids and detokenized text recorded from llama.cpp itself
//! (`testdata/llamacpp/*.json`, written by `scripts/gen_llamacpp_goldens.sh`) for the
//! real models: SmolLM2-135M (pre-tokenizer "smollm"), Qwen2.5-Coder-0.5B ("qwen2") and
//! the in-repo qwen3-tiny fixture.
//!
//! - `tokenize_<model>.json`: ids of tricky strings with `llama_tokenize(add_special =
//!   true, parse_special = true / false)`.
//! - `<model>.json`: the prompt's ids (parse_special = true) and `llama_detokenize` of the
//!   generated ids (remove_special = false, unparse_special = false).

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use vtpu_modelfile::gguf::GgufFile;
use vtpu_tokenizer::{DetokenizeOptions, Tokenizer};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn goldens_dir() -> PathBuf {
    repo_root().join("testdata/llamacpp")
}

fn load(path: &Path) -> Tokenizer {
    let file = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(name: &str) -> Option<Value> {
    let path = goldens_dir().join(name);
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("SKIP: {} not found", path.display());
        return None;
    };
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an id array, got {v}"))
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .unwrap_or_else(|| panic!("bad id {x}"))
        })
        .collect()
}

/// Whether a missing model fails the test under CI (`require`) or is skipped (`optional`).
#[derive(Clone, Copy)]
enum Need {
    Required,
    Optional,
}

fn find_model(model: &Path, need: Need, what: &str) -> Option<PathBuf> {
    match need {
        Need::Required => common::require(model, what),
        Need::Optional => common::optional(model, what),
    }
}

/// Checks a tokenize_<model>.json file; returns the number of (text, mode) pairs checked.
fn check_tokenize(json_name: &str, model: &Path, need: Need) -> usize {
    let Some(doc) = read_json(json_name) else {
        return 0;
    };
    let Some(model) = find_model(model, need, json_name) else {
        return 0;
    };
    let tok = load(&model);
    assert_eq!(
        doc["n_vocab"].as_u64(),
        Some(tok.vocab_size() as u64),
        "{json_name}: vocabulary size"
    );
    assert_eq!(
        doc["add_bos"].as_bool(),
        Some(tok.add_bos()),
        "{json_name}: add_bos"
    );
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in doc["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{json_name}: no cases"))
    {
        let text = case["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{json_name}: case without text"));
        for (key, parse_special) in [("ids", true), ("ids_parse_special_false", false)] {
            let want = ids(&case[key]);
            let got = tok.encode(text, true, parse_special);
            checked += 1;
            if got != want {
                failures.push(format!("{key} {text:?}\n  want {want:?}\n  got  {got:?}"));
            }
        }
    }
    println!("{json_name}: {}/{checked} match", checked - failures.len());
    assert!(failures.is_empty(), "{json_name}:\n{}", failures.join("\n"));
    checked
}

/// Checks prompt ids and detokenized generations of a <model>.json file.
fn check_generation(json_name: &str, model: &Path, need: Need) -> usize {
    let Some(doc) = read_json(json_name) else {
        return 0;
    };
    let Some(model) = find_model(model, need, json_name) else {
        return 0;
    };
    let tok = load(&model);
    let mut checked = 0;
    for p in doc["prompts"]
        .as_array()
        .unwrap_or_else(|| panic!("{json_name}: no prompts"))
    {
        let prompt = p["prompt"]
            .as_str()
            .unwrap_or_else(|| panic!("{json_name}: prompt"));
        assert_eq!(
            tok.encode(prompt, true, true),
            ids(&p["prompt_tokens"]),
            "{json_name}: prompt {prompt:?}"
        );
        let generated: Vec<u32> = p["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("{json_name}: steps"))
            .iter()
            .map(|s| {
                s["token"]
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .unwrap_or_else(|| panic!("bad token"))
            })
            .collect();
        let bytes = tok.detokenize(&generated, DetokenizeOptions::default());
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(
            text,
            p["text"].as_str().unwrap_or_default(),
            "{json_name}: detokenized generation of {prompt:?}"
        );
        // Printing token by token shows the same text (no clean-up applies to these
        // vocabularies).
        let mut stream = tok.stream();
        let mut streamed: String = generated.iter().map(|&id| stream.push(id)).collect();
        streamed.push_str(&stream.finish());
        assert_eq!(
            streamed, text,
            "{json_name}: streamed generation of {prompt:?}"
        );
        checked += 2;
    }
    println!("{json_name}: {checked} checks");
    checked
}

fn models_dir() -> PathBuf {
    common::cache_dir().join("models")
}

#[test]
fn smollm2_matches_llama_cpp() {
    let q4_1 = common::smollm2_gguf();
    check_tokenize(
        "tokenize_smollm2-135m-instruct-q4_1.json",
        &q4_1,
        Need::Required,
    );
    check_generation("smollm2-135m-instruct-q4_1.json", &q4_1, Need::Required);
}

#[test]
fn qwen2_5_coder_matches_llama_cpp() {
    let model = models_dir().join("Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf");
    check_tokenize(
        "tokenize_qwen2.5-coder-0.5b-instruct-q4_k_m.json",
        &model,
        Need::Optional,
    );
    check_generation(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.json",
        &model,
        Need::Optional,
    );
}

#[test]
fn qwen3_tiny_fixture_matches_llama_cpp() {
    let model = repo_root().join("testdata/models/qwen3-tiny.gguf");
    // In the repository: always required.
    assert!(model.exists(), "{} is missing", model.display());
    check_tokenize("tokenize_qwen3-tiny.json", &model, Need::Required);
    check_generation("qwen3-tiny.json", &model, Need::Required);
}
