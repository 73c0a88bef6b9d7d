//! Whole models on the vTPU against the f64 reference forward: synthetic GGUF files of
//! each architecture (random weights, f32 / f16 / bf16 matrices), prefill then decode,
//! 1 and 2 sentrons, both executors. Quantized weights are covered by
//! `model_quant.rs` and the llama.cpp goldens.

use std::path::PathBuf;
use vtpu_llm::model::reference::ReferenceModel;
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelOptions};
use vtpu_llm::SplitMix64;
use vtpu_modelfile::gguf::{GgmlType, GgufFile, GgufWriter, MetaValue};
use vtpu_runtime::ExecutorKind;

#[derive(Clone, Copy)]
struct Shape {
    arch: &'static str,
    dim: usize,
    heads: usize,
    kv: usize,
    hd: usize,
    ffn: usize,
    vocab: usize,
    layers: usize,
    tied: bool,
}

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

fn bytes(v: &[f32], ty: GgmlType) -> Vec<u8> {
    match ty {
        GgmlType::F16 => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        GgmlType::BF16 => v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// A random-weight GGUF model of `s` with matrices stored as `ty`.
fn write_model(s: Shape, ty: GgmlType, seed: u64) -> PathBuf {
    let mut rng = SplitMix64::new(seed);
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale)
            .collect()
    };
    let mut w = GgufWriter::new();
    let a = s.arch;
    w.add_meta("general.architecture", MetaValue::String(a.into()));
    w.add_meta(format!("{a}.block_count"), MetaValue::U32(s.layers as u32));
    w.add_meta(
        format!("{a}.embedding_length"),
        MetaValue::U32(s.dim as u32),
    );
    w.add_meta(
        format!("{a}.feed_forward_length"),
        MetaValue::U32(s.ffn as u32),
    );
    w.add_meta(
        format!("{a}.attention.head_count"),
        MetaValue::U32(s.heads as u32),
    );
    w.add_meta(
        format!("{a}.attention.head_count_kv"),
        MetaValue::U32(s.kv as u32),
    );
    w.add_meta(
        format!("{a}.attention.key_length"),
        MetaValue::U32(s.hd as u32),
    );
    w.add_meta(format!("{a}.rope.freq_base"), MetaValue::F32(10000.0));
    w.add_meta(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        MetaValue::F32(1e-5),
    );
    w.add_meta(format!("{a}.context_length"), MetaValue::U32(256));
    w.add_meta(format!("{a}.vocab_size"), MetaValue::U32(s.vocab as u32));
    let (d, q, kv, f) = (
        s.dim as u64,
        (s.heads * s.hd) as u64,
        (s.kv * s.hd) as u64,
        s.ffn as u64,
    );
    let mut mat =
        |w: &mut GgufWriter, name: String, rows: u64, cols: u64, scale: f32, ty: GgmlType| {
            let v = rand((rows * cols) as usize, scale);
            if rows == 1 {
                w.add_tensor(name, &[cols], ty, bytes(&v, ty));
            } else {
                w.add_tensor(name, &[cols, rows], ty, bytes(&v, ty));
            }
        };
    mat(
        &mut w,
        "token_embd.weight".into(),
        s.vocab as u64,
        d,
        1.0,
        ty,
    );
    mat(
        &mut w,
        "output_norm.weight".into(),
        1,
        d,
        1.0,
        GgmlType::F32,
    );
    if !s.tied {
        mat(&mut w, "output.weight".into(), s.vocab as u64, d, 0.3, ty);
    }
    let ws = 0.25;
    for l in 0..s.layers {
        let n = |t: &str| format!("blk.{l}.{t}");
        mat(&mut w, n("attn_norm.weight"), 1, d, 1.0, GgmlType::F32);
        mat(&mut w, n("ffn_norm.weight"), 1, d, 1.0, GgmlType::F32);
        mat(&mut w, n("attn_q.weight"), q, d, ws, ty);
        mat(&mut w, n("attn_k.weight"), kv, d, ws, ty);
        mat(&mut w, n("attn_v.weight"), kv, d, ws, ty);
        mat(&mut w, n("attn_output.weight"), d, q, ws, ty);
        mat(&mut w, n("ffn_gate.weight"), f, d, ws, ty);
        mat(&mut w, n("ffn_up.weight"), f, d, ws, ty);
        mat(&mut w, n("ffn_down.weight"), d, f, ws, ty);
        if a == "qwen2" {
            mat(&mut w, n("attn_q.bias"), 1, q, 0.2, GgmlType::F32);
            mat(&mut w, n("attn_k.bias"), 1, kv, 0.2, GgmlType::F32);
            mat(&mut w, n("attn_v.bias"), 1, kv, 0.2, GgmlType::F32);
        }
        if a == "qwen3" {
            mat(
                &mut w,
                n("attn_q_norm.weight"),
                1,
                s.hd as u64,
                1.0,
                GgmlType::F32,
            );
            mat(
                &mut w,
                n("attn_k_norm.weight"),
                1,
                s.hd as u64,
                1.0,
                GgmlType::F32,
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("vtpu-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{a}-{}-{seed}.gguf", ty.name()));
    w.write(&path).unwrap();
    path
}

fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / scale)
        .fold(0.0, f64::max)
}

fn check(s: Shape, ty: GgmlType, sentrons: usize, executor: ExecutorKind, max_tokens: usize) {
    let path = write_model(s, ty, 7 + sentrons as u64);
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
    let e = max_rel_err(&got, &want);
    assert!(
        e < tol,
        "{} {} x{sentrons} prefill: rel err {e:.2e}",
        s.arch,
        ty.name()
    );
    for &t in &[9u32, 2, 6, 5] {
        let want = reference.forward(&[t]).unwrap();
        let got = m.forward(&[t]).unwrap().to_vec();
        let e = max_rel_err(&got, &want);
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
