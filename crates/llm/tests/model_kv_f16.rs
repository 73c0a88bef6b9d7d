//! Whole models with an f16 KV cache (`ModelOptions::kv_type = F16`, `--kv-type f16`).
//!
//! 1. Synthetic GGUF models (random f32 / bf16 weights, as in `model_vtpu.rs`) against
//!    the f64 reference whose cache rounds every key and value to f16 as it is stored
//!    (`KvStore::F16`): that is the only rounding an f16 cache adds, so the vTPU must stay
//!    within the f32 bound `model_vtpu.rs` derives for the f32 cache. The f16 rounding
//!    itself must be visible (the exact-cache reference is over 10x further away than
//!    the vTPU), so the test cannot pass with the option silently ignored.
//! 2. The llama.cpp goldens of the qwen3 fixture still agree token for token (llama.cpp
//!    recorded them with its default f16 KV cache).

use serde_json::Value;
use std::path::{Path, PathBuf};
use vtpu_llm::layer_coords as lc;
use vtpu_llm::model::reference::ReferenceModel;
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelError, ModelOptions};
use vtpu_llm::{KvStore, SplitMix64};
use vtpu_modelfile::gguf::{GgmlType, GgufFile, GgufWriter, MetaValue};
use vtpu_phext::DType;
use vtpu_runtime::ExecutorKind;
use vtpu_tokenizer::Tokenizer;

/// The bound of `model_vtpu.rs` for the f32 cache: f32 accumulation over K = max(D, F)
/// terms per layer through L layers, a few hundred ulps of the largest logit for these
/// sizes, relative to the largest |logit|.
const TOL_F32: f64 = 2e-4;

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
};

fn bytes(v: &[f32], ty: GgmlType) -> Vec<u8> {
    match ty {
        GgmlType::BF16 => v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// A random-weight GGUF model of `s`, matrices stored as `ty` (F32 or BF16).
fn write_model(s: Shape, ty: GgmlType, seed: u64) -> PathBuf {
    let mut rng = SplitMix64::new(seed);
    let mut w = GgufWriter::new();
    let a = s.arch;
    w.add_meta("general.architecture", MetaValue::String(a.into()));
    let u = |v: usize| MetaValue::U32(v as u32);
    w.add_meta(format!("{a}.block_count"), u(s.layers));
    w.add_meta(format!("{a}.embedding_length"), u(s.dim));
    w.add_meta(format!("{a}.feed_forward_length"), u(s.ffn));
    w.add_meta(format!("{a}.attention.head_count"), u(s.heads));
    w.add_meta(format!("{a}.attention.head_count_kv"), u(s.kv));
    w.add_meta(format!("{a}.attention.key_length"), u(s.hd));
    w.add_meta(format!("{a}.rope.freq_base"), MetaValue::F32(10000.0));
    w.add_meta(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        MetaValue::F32(1e-5),
    );
    w.add_meta(format!("{a}.context_length"), u(256));
    w.add_meta(format!("{a}.vocab_size"), u(s.vocab));
    let (d, q, kv, f) = (
        s.dim as u64,
        (s.heads * s.hd) as u64,
        (s.kv * s.hd) as u64,
        s.ffn as u64,
    );
    let mut mat =
        |w: &mut GgufWriter, name: String, rows: u64, cols: u64, scale: f32, ty: GgmlType| {
            let v: Vec<f32> = (0..rows * cols)
                .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale)
                .collect();
            let dims: Vec<u64> = if rows == 1 {
                vec![cols]
            } else {
                vec![cols, rows]
            };
            w.add_tensor(name, &dims, ty, bytes(&v, ty));
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
    mat(&mut w, "output.weight".into(), s.vocab as u64, d, 0.3, ty);
    // Larger q/k weights than model_vtpu.rs's 0.25 give peakier attention, so the f16
    // rounding of the keys moves the logits clearly.
    for l in 0..s.layers {
        let n = |t: &str| format!("blk.{l}.{t}");
        mat(&mut w, n("attn_norm.weight"), 1, d, 1.0, GgmlType::F32);
        mat(&mut w, n("ffn_norm.weight"), 1, d, 1.0, GgmlType::F32);
        mat(&mut w, n("attn_q.weight"), q, d, 0.5, ty);
        mat(&mut w, n("attn_k.weight"), kv, d, 0.5, ty);
        mat(&mut w, n("attn_v.weight"), kv, d, 0.25, ty);
        mat(&mut w, n("attn_output.weight"), d, q, 0.25, ty);
        mat(&mut w, n("ffn_gate.weight"), f, d, 0.25, ty);
        mat(&mut w, n("ffn_up.weight"), f, d, 0.25, ty);
        mat(&mut w, n("ffn_down.weight"), d, f, 0.25, ty);
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
    let dir = std::env::temp_dir().join(format!("vtpu-kv-f16-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{a}-{}-{seed}.gguf", ty.name()));
    w.write(&path).unwrap();
    path
}

/// max |got - want| over the largest |want|.
fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / scale)
        .fold(0.0, f64::max)
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
        let e = max_rel_err(&got, &want);
        assert!(
            e < TOL_F32,
            "{name} at {}: rel err {e:.2e} vs the f16-cache reference",
            m.pos()
        );
        let want32: Vec<f32> = want.iter().map(|&x| x as f32).collect();
        worst = worst.max(e);
        f16_effect = f16_effect.min(max_rel_err(&want32, &ex));
    };
    step(&mut m, &prompt);
    for t in [9u32, 2, 6, 5, 1, 8] {
        step(&mut m, &[t]);
    }
    // The f16 rounding moves every step's logits by more than 10x what separates the
    // vTPU from the f16-storing reference: a vTPU that ignored the option would sit at
    // that distance and fail this.
    assert!(
        f16_effect > 10.0 * worst,
        "{name}: f16 rounding moves the logits by only {f16_effect:.2e} (vTPU error {worst:.2e})"
    );
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
fn f32_stays_the_default_and_other_kv_types_are_refused() {
    assert_eq!(ModelOptions::default().kv_type, DType::F32);
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

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
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

/// llama.cpp's top-2 logits closer than this make a step a tie either may break (the
/// criterion of `llamacpp_goldens.rs`).
const TIE_GAP: f64 = 0.1;

/// The check of `llamacpp_goldens.rs` (teacher-forced greedy decoding against the
/// recorded tokens) with an f16 KV cache. Returns (steps, near-ties that differed, max
/// |logit - llama.cpp| over the recorded top-5).
fn golden_steps(golden: &str, model: &Path, sentrons: usize) -> (usize, usize, f64) {
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
        kv_type: DType::F16,
        ..ModelOptions::default()
    };
    let mut m = Model::load(&src, cfg, &opts).unwrap();
    let (mut steps, mut ties, mut top5_err) = (0, 0, 0.0f64);
    for p in g["prompts"].as_array().unwrap() {
        let text = p["prompt_text"].as_str().or(p["prompt"].as_str()).unwrap();
        let ids = tok.encode(text, tok.add_bos(), true);
        let want_prompt: Vec<u32> = p["prompt_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            ids, want_prompt,
            "{golden}: prompt {text:?} tokenizes differently"
        );
        m.reset();
        let recorded = p["steps"].as_array().unwrap();
        let mut logits = m.forward(&ids).unwrap().to_vec();
        for (i, s) in recorded.iter().enumerate() {
            let want = s["token"].as_u64().unwrap() as u32;
            let top5: Vec<(usize, f64)> = s["top5"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e[0].as_u64().unwrap() as usize, e[1].as_f64().unwrap()))
                .collect();
            for &(id, l) in &top5 {
                top5_err = top5_err.max((logits[id] as f64 - l).abs());
            }
            let top: Vec<f64> = top5.iter().map(|e| e.1).collect();
            let got = argmax(&logits);
            if got != want {
                let gap = top[0] - top[1];
                eprintln!("{golden} (kv f16): prompt {text:?} step {i}: vTPU {got}, llama.cpp {want}, top-2 gap {gap:.4}");
                assert!(
                    gap < TIE_GAP,
                    "{golden} (kv f16): divergence at step {i}, top-2 gap {gap:.4}"
                );
                ties += 1;
            }
            steps += 1;
            if i + 1 < recorded.len() {
                logits = m.forward(&[want]).unwrap().to_vec();
            }
        }
    }
    (steps, ties, top5_err)
}

#[test]
fn qwen3_fixture_matches_llama_cpp_with_f16_cache() {
    let path = repo().join("testdata/models/qwen3-tiny.gguf");
    for sentrons in [1, 2] {
        let (steps, ties, err) = golden_steps("qwen3-tiny.json", &path, sentrons);
        assert!(steps >= 32, "only {steps} steps recorded");
        eprintln!(
            "qwen3-tiny kv f16 x{sentrons}: {} of {steps} steps agree ({ties} near-ties differ), max |logit - llama.cpp| over the top-5: {err:.4}",
            steps - ties
        );
    }
}
