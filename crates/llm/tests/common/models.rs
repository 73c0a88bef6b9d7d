//! Helpers shared by the whole-model tests: random-weight GGUF models, error measures, and
//! the llama.cpp golden check (teacher-forced greedy decoding against recorded tokens).
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;
use std::path::{Path, PathBuf};
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelOptions};
use vtpu_llm::SplitMix64;
use vtpu_modelfile::gguf::{GgmlType, GgufFile, GgufWriter, MetaValue};
use vtpu_phext::DType;
use vtpu_tokenizer::Tokenizer;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh directory under the system temp dir, per test binary and process.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first index of the largest logit.
pub fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

/// `v` stored as `ty` (f16 / bf16 round to nearest even; anything else f32).
pub fn encode(v: &[f32], ty: GgmlType) -> Vec<u8> {
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

/// The hyper-parameters of a synthetic model.
#[derive(Clone, Copy)]
pub struct Shape {
    pub arch: &'static str,
    pub dim: usize,
    pub heads: usize,
    pub kv: usize,
    pub hd: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub layers: usize,
    pub tied: bool,
}

/// How a synthetic model's weights are drawn and stored.
#[derive(Clone, Copy)]
pub struct Synth {
    /// Scale of the uniform q and k projection weights (every other matrix: 0.25).
    pub qk_scale: f32,
    /// Store each layer's attention norm in the matrices' type (the loader widens it).
    pub attn_norm_in_matrix_type: bool,
    /// Add a `rope_freqs.weight` tensor (one vtpu places nowhere).
    pub rope_freqs: bool,
}

impl Default for Synth {
    fn default() -> Self {
        Synth {
            qk_scale: 0.25,
            attn_norm_in_matrix_type: false,
            rope_freqs: false,
        }
    }
}

/// A random-weight GGUF model of `s` with its matrices stored as `ty`, written to
/// `dir/{arch}-{type}-{seed}.gguf`.
pub fn write_model(dir: &Path, s: Shape, ty: GgmlType, seed: u64, o: &Synth) -> PathBuf {
    let mut rng = SplitMix64::new(seed);
    let mut w = GgufWriter::new();
    let a = s.arch;
    let u = |v: usize| MetaValue::U32(v as u32);
    w.add_meta("general.architecture", MetaValue::String(a.into()));
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
    let mut mat = |w: &mut GgufWriter, name: String, rows: u64, cols: u64, scale: f32, ty| {
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale)
            .collect();
        let dims: &[u64] = if rows == 1 { &[cols] } else { &[cols, rows] };
        w.add_tensor(name, dims, ty, encode(&v, ty));
    };
    let f32t = GgmlType::F32;
    mat(
        &mut w,
        "token_embd.weight".into(),
        s.vocab as u64,
        d,
        1.0,
        ty,
    );
    mat(&mut w, "output_norm.weight".into(), 1, d, 1.0, f32t);
    if o.rope_freqs {
        mat(
            &mut w,
            "rope_freqs.weight".into(),
            1,
            s.hd as u64 / 2,
            1.0,
            f32t,
        );
    }
    if !s.tied {
        mat(&mut w, "output.weight".into(), s.vocab as u64, d, 0.3, ty);
    }
    let (ws, qk) = (0.25, o.qk_scale);
    let norm_ty = if o.attn_norm_in_matrix_type { ty } else { f32t };
    for l in 0..s.layers {
        let n = |t: &str| format!("blk.{l}.{t}");
        mat(&mut w, n("attn_norm.weight"), 1, d, 1.0, norm_ty);
        mat(&mut w, n("ffn_norm.weight"), 1, d, 1.0, f32t);
        mat(&mut w, n("attn_q.weight"), q, d, qk, ty);
        mat(&mut w, n("attn_k.weight"), kv, d, qk, ty);
        mat(&mut w, n("attn_v.weight"), kv, d, ws, ty);
        mat(&mut w, n("attn_output.weight"), d, q, ws, ty);
        mat(&mut w, n("ffn_gate.weight"), f, d, ws, ty);
        mat(&mut w, n("ffn_up.weight"), f, d, ws, ty);
        mat(&mut w, n("ffn_down.weight"), d, f, ws, ty);
        if a == "qwen2" {
            mat(&mut w, n("attn_q.bias"), 1, q, 0.2, f32t);
            mat(&mut w, n("attn_k.bias"), 1, kv, 0.2, f32t);
            mat(&mut w, n("attn_v.bias"), 1, kv, 0.2, f32t);
        }
        if a == "qwen3" {
            mat(&mut w, n("attn_q_norm.weight"), 1, s.hd as u64, 1.0, f32t);
            mat(&mut w, n("attn_k_norm.weight"), 1, s.hd as u64, 1.0, f32t);
        }
    }
    let path = dir.join(format!("{a}-{}-{seed}.gguf", ty.name()));
    w.write(&path).unwrap();
    path
}

/// Steps that must be recorded per prompt (unless llama.cpp stopped at end of generation).
pub const MIN_STEPS: usize = 32;

/// What a golden check measured.
pub struct Agreement {
    pub steps: usize,
    /// Steps where the vTPU picked another token (each a near-tie of llama.cpp's).
    pub ties: usize,
    /// Largest |logit - llama.cpp| over the recorded top-5 of every step.
    pub max_top5_err: f64,
}

/// Greedy decoding on the vTPU against the llama.cpp golden `golden`
/// (testdata/llamacpp/): the prompt ids must be identical, and at every recorded step,
/// with llama.cpp's tokens fed back, the vTPU's argmax must be llama.cpp's token unless
/// llama.cpp's own top-2 logits are closer than `tie_gap` (printed when it happens).
pub fn golden_agreement(
    golden: &str,
    model: &Path,
    sentrons: usize,
    kv_type: DType,
    tie_gap: f64,
) -> Agreement {
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
        // The whole prompt in one call, as llama.cpp ran it (one ubatch: n_ubatch 512):
        // attention's arithmetic depends on the tokens per call (64+ take its tiled path).
        max_tokens: 256,
        pin: false,
        kv_type,
        ..ModelOptions::default()
    };
    let mut m = Model::load(&src, cfg, &opts).unwrap();
    let mut out = Agreement {
        steps: 0,
        ties: 0,
        max_top5_err: 0.0,
    };
    let kv = kv_type.name();
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
                // The JSON holds the shortest decimal that round-trips the f32.
                out.max_top5_err = out
                    .max_top5_err
                    .max((logits[id as usize] - l as f32).abs() as f64);
            }
            if got != want {
                let gap = top5[0].1 - top5[1].1;
                eprintln!(
                    "{golden} (kv {kv}): prompt {text:?} step {i}: vTPU picks {got} (logit {:.4}), llama.cpp {want} (logit {:.4}); llama.cpp's top-2 gap {gap:.4}",
                    logits[got as usize], top5[0].1
                );
                assert!(
                    gap < tie_gap,
                    "{golden} (kv {kv}): divergence at step {i} where llama.cpp's top-2 gap is {gap:.4} >= {tie_gap}"
                );
                out.ties += 1;
            }
            out.steps += 1;
            if i + 1 < steps.len() {
                logits = m.forward(&[want]).unwrap().to_vec();
            }
        }
    }
    out
}
