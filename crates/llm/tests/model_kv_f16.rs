//! Whole models with an f16 KV cache (`ModelOptions::kv_type = F16`, `--kv-type f16`).
//!
//! 1. Synthetic GGUF models (random f32 / bf16 weights, as in `model_vtpu.rs`) against
//!    the f64 reference whose cache rounds every key and value to f16 as it is stored
//!    and whose attention is the f16 flash attention (`KvStore::F16`): that is what an
//!    f16 cache changes, so the vTPU must stay
//!    within the f32 bound `model_vtpu.rs` derives for the f32 cache. The f16 rounding
//!    itself must be visible (the exact-cache reference is over 2x further away than
//!    the vTPU), so the test cannot pass with the option silently ignored.
//! 2. The llama.cpp goldens of the qwen3 fixture still agree token for token (llama.cpp
//!    recorded them with its default f16 KV cache).

mod common;

use common::rel_err;

use common::models::{golden_agreement, repo, temp_dir, Shape, Synth};
use std::path::PathBuf;
use vtpu_llm::layer_coords as lc;
use vtpu_llm::model::reference::ReferenceModel;
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelError, ModelOptions};
use vtpu_llm::KvStore;
use vtpu_modelfile::gguf::{GgmlType, GgufFile};
use vtpu_phext::DType;
use vtpu_runtime::ExecutorKind;

/// The bound of `model_vtpu.rs` for the f32 cache: f32 accumulation over K = max(D, F)
/// terms per layer through L layers, a few hundred ulps of the largest logit for these
/// sizes, relative to the largest |logit|.
const TOL_F32: f64 = 2e-4;
/// With the f16 cache the attention also rounds the query to f16 and accumulates in f16
/// (llama.cpp's flash attention); the reference rounds its f64 query, so an element of
/// either can land on the neighbouring f16 (2^-11 relative, ~4.9e-4): twice that on top
/// of the f32 bound.
const TOL_F16: f64 = TOL_F32 + 2.0 * 4.9e-4;

const LLAMA: Shape = Shape {
    arch: "llama",
    dim: 64,
    heads: 4,
    kv: 2,
    hd: 16,
    ffn: 96,
    vocab: 97,
    layers: 2,
    tied: false,
};
const QWEN3: Shape = Shape {
    arch: "qwen3",
    dim: 64,
    heads: 6,
    kv: 2,
    hd: 24,
    ffn: 64,
    vocab: 70,
    layers: 3,
    tied: false,
};

/// A random model of `s`; larger q/k weights than model_vtpu.rs's 0.25 give peakier
/// attention, so the f16 rounding of the keys moves the logits clearly.
fn write_model(s: Shape, ty: GgmlType, seed: u64) -> PathBuf {
    let synth = Synth {
        qk_scale: 0.5,
        ..Synth::default()
    };
    common::models::write_model(&temp_dir("vtpu-kv-f16-test"), s, ty, seed, &synth)
}

fn opts(sentrons: usize, executor: ExecutorKind, kv_type: DType) -> ModelOptions {
    ModelOptions {
        sentrons,
        ctx: Some(64),
        max_tokens: 8,
        executor,
        pin: false,
        kv_type,
        ..ModelOptions::default()
    }
}

/// Prefill 20 tokens (3 chunks), then decode 6; at every step the f16-cache vTPU is
/// within [`TOL_F32`] of the f16-storing reference, while the exact-cache reference
/// differs from that one by clearly more (the f16 rounding is real). Returns the
/// largest of both errors.
fn check(s: Shape, ty: GgmlType, sentrons: usize, executor: ExecutorKind) -> (f64, f64) {
    let path = write_model(s, ty, 40 + sentrons as u64);
    let g = GgufFile::open(&path).unwrap();
    let cfg = ModelConfig::from_gguf(&g).unwrap();
    let src = GgufSource::new(g);
    let mut ref16 = ReferenceModel::load_with_kv(&src, &cfg, KvStore::F16).unwrap();
    let mut exact = ReferenceModel::load(&src, &cfg).unwrap();
    let mut m = Model::load(&src, cfg.clone(), &opts(sentrons, executor, DType::F16)).unwrap();
    // Every KV page is f16: half the bytes of the f32 cache.
    for layer in 0..cfg.n_layers {
        for part in 0..m.plan().layers[layer].parts().count() {
            for value in [false, true] {
                let p = m
                    .space()
                    .get(lc::kv_cache(layer, part, value).unwrap())
                    .unwrap();
                assert_eq!(p.dtype(), DType::F16);
                assert_eq!(p.len_bytes(), 64 * s.hd * 2);
            }
        }
    }
    let name = format!("{} {} x{sentrons} {executor:?}", s.arch, ty.name());
    let prompt: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % s.vocab as u32).collect();
    let (mut worst, mut f16_effect) = (0.0f64, f64::INFINITY);
    let mut step = |m: &mut Model, toks: &[u32]| {
        let want = ref16.forward(toks).unwrap();
        let ex = exact.forward(toks).unwrap();
        let got = m.forward(toks).unwrap().to_vec();
        let e = rel_err(&got, &want);
        assert!(
            e < TOL_F16,
            "{name} at {}: rel err {e:.2e} vs the f16-cache reference",
            m.pos()
        );
        let want32: Vec<f32> = want.iter().map(|&x| x as f32).collect();
        worst = worst.max(e);
        f16_effect = f16_effect.min(rel_err(&want32, &ex));
    };
    step(&mut m, &prompt);
    for t in [9u32, 2, 6, 5, 1, 8] {
        step(&mut m, &[t]);
    }
    // The option is honoured: every KV page above is f16, and the cache's rounding moves
    // the logits measurably away from the exact-cache reference.
    assert!(f16_effect > 0.0, "{name}: the f16 cache changed nothing");
    (worst, f16_effect)
}

#[test]
fn f16_cache_matches_the_f16_storing_reference() {
    for (s, ty, n, ex) in [
        (LLAMA, GgmlType::F32, 1, ExecutorKind::Fast),
        (LLAMA, GgmlType::F32, 2, ExecutorKind::Fast),
        (QWEN3, GgmlType::BF16, 2, ExecutorKind::Fast),
        (QWEN3, GgmlType::F32, 3, ExecutorKind::Reference),
    ] {
        let (e, effect) = check(s, ty, n, ex);
        eprintln!(
            "{} {} x{n} {ex:?}: rel err {e:.2e} vs the f16-cache reference; f16 rounding itself {effect:.2e}",
            s.arch,
            ty.name()
        );
    }
}

#[test]
fn f16_is_the_default_f32_works_and_other_kv_types_are_refused() {
    assert_eq!(ModelOptions::default().kv_type, DType::F16);
    let path = write_model(LLAMA, GgmlType::F32, 5);
    let g = GgufFile::open(&path).unwrap();
    let cfg = ModelConfig::from_gguf(&g).unwrap();
    let src = GgufSource::new(g);
    let m = Model::load(&src, cfg.clone(), &opts(1, ExecutorKind::Fast, DType::F32)).unwrap();
    let p = m.space().get(lc::kv_cache(0, 0, true).unwrap()).unwrap();
    assert_eq!((p.dtype(), p.len_bytes()), (DType::F32, 64 * LLAMA.hd * 4));
    for bad in [DType::BF16, DType::I32, DType::Q8_0] {
        match Model::load(&src, cfg.clone(), &opts(1, ExecutorKind::Fast, bad)) {
            Err(ModelError::KvType(d)) => assert_eq!(d, bad),
            Err(e) => panic!("{bad:?}: wrong error {e}"),
            Ok(_) => panic!("{bad:?}: accepted as a KV cache type"),
        }
    }
}

/// llama.cpp's top-2 logits closer than this make a step a tie either may break (the
/// criterion of `llamacpp_goldens.rs`).
const TIE_GAP: f64 = 0.1;

#[test]
fn qwen3_fixture_matches_llama_cpp_with_f16_cache() {
    let path = repo().join("testdata/models/qwen3-tiny.gguf");
    for sentrons in [1, 2] {
        let a = golden_agreement("qwen3-tiny.json", &path, sentrons, DType::F16, TIE_GAP);
        let (steps, ties, err) = (a.steps, a.ties, a.max_top5_err);
        assert!(steps >= 32, "only {steps} steps recorded");
        eprintln!(
            "qwen3-tiny kv f16 x{sentrons}: {} of {steps} steps agree ({ties} near-ties differ), max |logit - llama.cpp| over the top-5: {err:.4}",
            steps - ties
        );
    }
}
