//! Whole models on the vTPU against the f64 reference forward: synthetic GGUF files of
//! each architecture (random weights, f32 / f16 / bf16 matrices), prefill then decode,
//! 1 and 2 sentrons, both executors. Quantized weights are covered by
//! `model_quant.rs` and the llama.cpp goldens.

mod common;

use common::rel_err;

use common::models::{temp_dir, write_model, Shape, Synth};
use vtpu_llm::model::reference::ReferenceModel;
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelOptions};
use vtpu_modelfile::gguf::{GgmlType, GgufFile};
use vtpu_runtime::ExecutorKind;

const LLAMA: Shape = Shape {
    arch: "llama",
    dim: 64,
    heads: 4,
    kv: 2,
    hd: 16,
    ffn: 96,
    vocab: 97,
    layers: 2,
    tied: true,
};
const QWEN2: Shape = Shape {
    arch: "qwen2",
    dim: 64,
    heads: 4,
    kv: 1,
    hd: 16,
    ffn: 128,
    vocab: 80,
    layers: 2,
    tied: false,
};
const QWEN3: Shape = Shape {
    arch: "qwen3",
    dim: 64,
    heads: 4,
    kv: 2,
    hd: 32,
    ffn: 64,
    vocab: 70,
    layers: 3,
    tied: false,
};

fn check(s: Shape, ty: GgmlType, sentrons: usize, executor: ExecutorKind, max_tokens: usize) {
    let dir = temp_dir("vtpu-model-test");
    let path = write_model(&dir, s, ty, 7 + sentrons as u64, &Synth::default());
    let g = GgufFile::open(&path).unwrap();
    let cfg = ModelConfig::from_gguf(&g).unwrap();
    let src = GgufSource::new(g);
    let mut reference = ReferenceModel::load(&src, &cfg).unwrap();
    let opts = ModelOptions {
        sentrons,
        ctx: Some(64),
        max_tokens,
        executor,
        pin: false,
        // The f32 bound below is for an f32 cache (model_kv_f16.rs checks the f16 one).
        kv_type: vtpu_phext::DType::F32,
        ..ModelOptions::default()
    };
    let mut m = Model::load(&src, cfg.clone(), &opts).unwrap();
    assert!(
        vtpu_isa::dead::dead_ops(m.program()).is_empty(),
        "dead ops in the model program"
    );
    // Prefill 5 tokens (in chunks when max_tokens < 5), then decode 4 one at a time.
    let prompt = [3u32, 1, 4, 1, 5];
    let want = reference.forward(&prompt).unwrap();
    let got = m.forward(&prompt).unwrap().to_vec();
    // f32 accumulation over K = max(D, F) terms per layer, through L layers: a few
    // hundred ulps of the largest logit at most for these sizes.
    let tol = 2e-4;
    let e = rel_err(&got, &want);
    assert!(
        e < tol,
        "{} {} x{sentrons} prefill: rel err {e:.2e}",
        s.arch,
        ty.name()
    );
    for &t in &[9u32, 2, 6, 5] {
        let want = reference.forward(&[t]).unwrap();
        let got = m.forward(&[t]).unwrap().to_vec();
        let e = rel_err(&got, &want);
        assert!(
            e < tol,
            "{} {} x{sentrons} decode at {}: rel err {e:.2e}",
            s.arch,
            ty.name(),
            m.pos()
        );
    }
    let st = m.take_stats();
    assert_eq!(st.tokens, 9);
    assert!(st.counters.iter().all(|c| c.siws > 0 && c.flops > 0));
}

#[test]
fn llama_f32_one_and_two_sentrons() {
    check(LLAMA, GgmlType::F32, 1, ExecutorKind::Fast, 16);
    check(LLAMA, GgmlType::F32, 2, ExecutorKind::Fast, 2);
}

#[test]
fn qwen2_f16_with_biases() {
    check(QWEN2, GgmlType::F16, 2, ExecutorKind::Fast, 16);
}

#[test]
fn qwen3_bf16_qk_norm() {
    check(QWEN3, GgmlType::BF16, 2, ExecutorKind::Fast, 3);
}

#[test]
fn reference_executor_runs_the_model_program() {
    check(LLAMA, GgmlType::F32, 2, ExecutorKind::Reference, 16);
}
