//! The vTPU layer against Hugging Face transformers: the golden files of
//! `testdata/goldens/` (written by `scripts/gen_layer_goldens.py`: random-weight Llama,
//! Qwen2 and Qwen3 layers, a 5-token prefill and one decode step at position 5). Runs
//! the fast executor with 1 and 2 sentrons and the reference executor with 2.
//!
//! Tolerance: the same derivation as `tests/common` (u times the summed reduction
//! lengths, relative to max|expected|), doubled because both sides now round in f32 in
//! different orders (HF's error and ours add). `--nocapture` prints the errors.

mod common;

use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::PathBuf;
use vtpu_llm::{LayerConfig, LayerOptions, LayerRunner, LayerWeights, RopeLayout};
use vtpu_phext::DType;
use vtpu_runtime::ExecutorKind;

struct Golden {
    cfg: LayerConfig,
    w: LayerWeights,
    p: usize,
    x: Vec<f32>,
    prefill: Vec<f32>,
    decode: Vec<f32>,
}

fn load(name: &str) -> Golden {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/goldens")
        .join(format!("{name}_layer.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("header");
    let empty = HashMap::new();
    let meta = meta.metadata().as_ref().unwrap_or(&empty);
    let c: serde_json::Value = serde_json::from_str(&meta["config"]).expect("config json");
    let int = |k: &str| c[k].as_u64().expect(k) as usize;
    let cfg = LayerConfig {
        dim: int("dim"),
        n_heads: int("n_heads"),
        n_kv_heads: int("n_kv_heads"),
        head_dim: int("head_dim"),
        ffn_dim: int("ffn_dim"),
        rms_eps: c["rms_eps"].as_f64().expect("eps") as f32,
        rope_theta: c["rope_theta"].as_f64().expect("theta") as f32,
        rope_layout: match c["rope_layout"].as_str() {
            Some("Interleaved") => RopeLayout::Interleaved,
            _ => RopeLayout::HalfSplit,
        },
        qkv_bias: c["qkv_bias"].as_bool().expect("bias"),
        qk_norm: c["qk_norm"].as_bool().expect("qk_norm"),
        max_seq: int("max_seq"),
    };
    let t = |f: &str| -> Option<Vec<f32>> {
        let v = st.tensor(f).ok()?;
        assert_eq!(v.dtype(), Dtype::F32, "{name}.{f}");
        Some(
            v.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    };
    let req = |f: &str| t(f).unwrap_or_else(|| panic!("{name}.{f} missing"));
    let w = LayerWeights {
        attn_norm: req("attn_norm"),
        wq: req("wq"),
        wk: req("wk"),
        wv: req("wv"),
        bq: t("bq"),
        bk: t("bk"),
        bv: t("bv"),
        q_norm: t("q_norm"),
        k_norm: t("k_norm"),
        wo: req("wo"),
        ffn_norm: req("ffn_norm"),
        w_gate: req("w_gate"),
        w_up: req("w_up"),
        w_down: req("w_down"),
    };
    w.check_shapes(&cfg).expect("golden weights fit the config");
    Golden {
        p: int("prefill_tokens"),
        x: req("x"),
        prefill: req("expected_prefill"),
        decode: req("expected_decode"),
        cfg,
        w,
    }
}

/// max|got - want| / max|want|.
fn rel(got: &[f32], want: &[f32]) -> f64 {
    let want64: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
    common::rel_err(got, &want64)
}

#[test]
fn vtpu_layer_matches_hf_goldens() {
    let mut worst = 0.0f64;
    for name in ["llama", "qwen2", "qwen3"] {
        let g = load(name);
        let d = g.cfg.dim;
        for (sentrons, executor) in [
            (1, ExecutorKind::Fast),
            (2, ExecutorKind::Fast),
            (2, ExecutorKind::Reference),
        ] {
            let opts = LayerOptions {
                sentrons,
                executor,
                weight_dtype: DType::F32,
                max_tokens: g.p,
                kv_capacity: g.p + 1,
                pin: false,
                ..LayerOptions::default()
            };
            let mut r = LayerRunner::new(&g.cfg, &g.w, &opts).expect("layer");
            let (pre, _) = r.forward(&g.x[..g.p * d], 0).expect("prefill");
            let (dec, _) = r.forward(&g.x[g.p * d..], g.p).expect("decode");
            for (what, got, want, kv) in [
                ("prefill", &pre, &g.prefill, g.p),
                ("decode", &dec, &g.decode, g.p + 1),
            ] {
                let e = rel(got, want);
                let tol = 2.0 * common::tolerance(&g.cfg, kv);
                println!(
                    "{name:5} {what:7} {sentrons} sentron(s) {executor:?}: max rel err vs HF {e:.2e} (tolerance {tol:.2e})"
                );
                assert!(e <= tol, "{name} {what}: {e:.3e} > {tol:.3e}");
                worst = worst.max(e);
            }
        }
    }
    println!("worst max relative error of the vTPU layer vs HF transformers: {worst:.2e}");
}
