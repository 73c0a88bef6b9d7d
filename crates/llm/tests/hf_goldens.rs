//! The f64 reference layer against Hugging Face transformers (an independent
//! implementation), on the golden files written by `scripts/gen_layer_goldens.py`:
//! `testdata/goldens/{llama,qwen2,qwen3}_layer.safetensors`. Each holds random f32
//! weights, the inputs `x` [6, D] at positions 0..5, HF's outputs for a 5-token prefill
//! (`expected_prefill` [5, D]) and for one decode step at position 5 through its KV cache
//! (`expected_decode` [1, D]), and the layer config as JSON metadata.
//!
//! Run with `--nocapture` to see the measured errors.
//!
//! # Tolerance
//!
//! The reference computes in f64 from the same f32 weights and inputs, so its own error
//! (~1e-16) is negligible: what we measure is HF's f32 rounding. A length-n dot product
//! in f32 is off by at most gamma_n = n * u times sum|a_i b_i| (Higham, Thm 3.1), with
//! u = f32::EPSILON / 2 the unit roundoff. The goldens scale every stage to O(1) gain
//! (projections N(0, 1/in), norm scales in [0.5, 1.5]), so the errors of the chained
//! stages add up, each relative to the output's magnitude:
//!
//! ```text
//! K = D (q/k/v proj) + Hd (scores) + S (softmax . V) + H*Hd (o_proj)
//!   + D (gate/up) + F (down) + 16 (norms, RoPE, exp, silu, residuals: O(1) ops each)
//! tol = u * K * max|expected|
//! ```
//!
//! e.g. llama (D 64, Hd 16, S 6, H*Hd 64, F 128): K = 358, tol ~ 2.1e-5 x max|out|.
//! This is a worst-case bound (errors of random sign grow like sqrt(n), not n), yet it is
//! still ~1e4 below what a real mistake costs: `wrong_rope_layout_is_caught` checks that
//! the same comparison fails by orders of magnitude when the RoPE layout is wrong.

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use vtpu_llm::{layer_forward_f64, KvCacheF64, LayerConfig, LayerWeights, RopeLayout};

const ARCHS: [&str; 3] = ["llama", "qwen2", "qwen3"];

struct Golden {
    name: &'static str,
    cfg: LayerConfig,
    weights: LayerWeights,
    prefill_tokens: usize,
    x: Vec<f32>,                // [P+1, D]
    expected_prefill: Vec<f32>, // [P, D]
    expected_decode: Vec<f32>,  // [1, D]
}

fn goldens_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/goldens")
}

fn load(name: &'static str) -> Golden {
    let path = goldens_dir().join(format!("{name}_layer.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("safetensors header");
    let empty = HashMap::new();
    let meta = meta.metadata().as_ref().unwrap_or(&empty);
    let c: serde_json::Value =
        serde_json::from_str(meta.get("config").expect("config metadata")).expect("config json");
    let int = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("config.{k}")) as usize;
    let float = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("config.{k}")) as f32;
    let flag = |k: &str| c[k].as_bool().unwrap_or_else(|| panic!("config.{k}"));
    let rope_layout = match c["rope_layout"].as_str() {
        Some("HalfSplit") => RopeLayout::HalfSplit,
        Some("Interleaved") => RopeLayout::Interleaved,
        other => panic!("rope_layout {other:?}"),
    };
    let cfg = LayerConfig {
        dim: int("dim"),
        n_heads: int("n_heads"),
        n_kv_heads: int("n_kv_heads"),
        head_dim: int("head_dim"),
        ffn_dim: int("ffn_dim"),
        rms_eps: float("rms_eps"),
        rope_theta: float("rope_theta"),
        rope_layout,
        qkv_bias: flag("qkv_bias"),
        qk_norm: flag("qk_norm"),
        max_seq: int("max_seq"),
    };
    cfg.validate().expect("golden config is valid");

    // Reads an f32 tensor and checks its shape against what the config implies.
    let tensor = |field: &str, shape: &[usize]| -> Vec<f32> {
        let view = st
            .tensor(field)
            .unwrap_or_else(|e| panic!("{name}.{field}: {e}"));
        assert_eq!(view.dtype(), Dtype::F32, "{name}.{field} dtype");
        assert_eq!(view.shape(), shape, "{name}.{field} shape");
        view.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let optional = |field: &str, shape: &[usize]| -> Option<Vec<f32>> {
        st.tensor(field).is_ok().then(|| tensor(field, shape))
    };
    let (d, q, kv, hd, f) = (
        cfg.dim,
        cfg.q_dim(),
        cfg.kv_dim(),
        cfg.head_dim,
        cfg.ffn_dim,
    );
    let weights = LayerWeights {
        attn_norm: tensor("attn_norm", &[d]),
        wq: tensor("wq", &[q, d]),
        wk: tensor("wk", &[kv, d]),
        wv: tensor("wv", &[kv, d]),
        bq: optional("bq", &[q]),
        bk: optional("bk", &[kv]),
        bv: optional("bv", &[kv]),
        q_norm: optional("q_norm", &[hd]),
        k_norm: optional("k_norm", &[hd]),
        wo: tensor("wo", &[d, q]),
        ffn_norm: tensor("ffn_norm", &[d]),
        w_gate: tensor("w_gate", &[f, d]),
        w_up: tensor("w_up", &[f, d]),
        w_down: tensor("w_down", &[d, f]),
    };
    weights
        .check_shapes(&cfg)
        .expect("golden weights match the config");
    let p = int("prefill_tokens");
    assert_eq!(
        int("decode_pos"),
        p,
        "decode continues right after the prefill"
    );
    Golden {
        name,
        prefill_tokens: p,
        x: tensor("x", &[p + 1, d]),
        expected_prefill: tensor("expected_prefill", &[p, d]),
        expected_decode: tensor("expected_decode", &[1, d]),
        cfg,
        weights,
    }
}

/// The derived tolerance of the module doc, relative to max|expected|.
fn relative_tolerance(cfg: &LayerConfig, kv_len: usize) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let k = cfg.dim + cfg.head_dim + kv_len + cfg.q_dim() + cfg.dim + cfg.ffn_dim + 16;
    u * k as f64
}

/// Errors of `got` (f64 reference) against `want` (HF f32).
struct Errors {
    /// max |got - want| / max |want|: error relative to the output's scale (the test).
    normwise: f64,
    /// max over elements with |want| >= 0.1 * rms(want) of |got - want| / |want|.
    elementwise: f64,
}

fn errors(got: &[f64], want: &[f32]) -> Errors {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, &w| m.max(f64::from(w).abs()));
    let rms = (want.iter().map(|&w| f64::from(w).powi(2)).sum::<f64>() / want.len() as f64).sqrt();
    let mut e = Errors {
        normwise: 0.0,
        elementwise: 0.0,
    };
    for (&g, &w) in got.iter().zip(want) {
        let (w, diff) = (f64::from(w), (g - f64::from(w)).abs());
        e.normwise = e.normwise.max(diff / scale);
        if w.abs() >= 0.1 * rms {
            e.elementwise = e.elementwise.max(diff / w.abs());
        }
    }
    e
}

/// Runs the reference like HF did: prefill of P tokens at 0.., then one decode at P.
fn run_reference(g: &Golden, cfg: &LayerConfig) -> (Vec<f64>, Vec<f64>) {
    let d = cfg.dim;
    let p = g.prefill_tokens;
    let mut cache = KvCacheF64::new(cfg).expect("cache");
    let prefill =
        layer_forward_f64(cfg, &g.weights, &g.x[..p * d], 0, &mut cache).expect("prefill");
    let decode = layer_forward_f64(cfg, &g.weights, &g.x[p * d..], p, &mut cache).expect("decode");
    (prefill, decode)
}

#[test]
fn reference_matches_hf_goldens() {
    let mut worst = 0.0f64;
    for name in ARCHS {
        let g = load(name);
        let (prefill, decode) = run_reference(&g, &g.cfg);
        for (what, got, want, kv_len) in [
            ("prefill", &prefill, &g.expected_prefill, g.prefill_tokens),
            ("decode", &decode, &g.expected_decode, g.prefill_tokens + 1),
        ] {
            let e = errors(got, want);
            let tol = relative_tolerance(&g.cfg, kv_len);
            println!(
                "{:5} {what:7}: max rel error {:.2e} (of max|out|), elementwise {:.2e}, tolerance {:.2e}",
                g.name, e.normwise, e.elementwise, tol
            );
            assert!(
                e.normwise <= tol,
                "{} {what}: {:.3e} > tolerance {:.3e}",
                g.name,
                e.normwise,
                tol
            );
            worst = worst.max(e.normwise);
        }
    }
    println!("worst max relative error vs HF: {worst:.2e}");
}

#[test]
fn wrong_rope_layout_is_caught() {
    // The goldens are HF checkpoints (half-split RoPE). The same weights read with the
    // interleaved layout must miss by far more than the tolerance, or the golden test
    // above could not tell the two layouts apart.
    for name in ARCHS {
        let g = load(name);
        let wrong = LayerConfig {
            rope_layout: RopeLayout::Interleaved,
            ..g.cfg.clone()
        };
        let (_, decode) = run_reference(&g, &wrong);
        let e = errors(&decode, &g.expected_decode);
        let tol = relative_tolerance(&g.cfg, g.prefill_tokens + 1);
        println!(
            "{name}: interleaved layout misses by {:.2e} ({:.0}x tolerance)",
            e.normwise,
            e.normwise / tol
        );
        assert!(
            e.normwise > 100.0 * tol,
            "{name}: wrong layout only off by {:.2e}",
            e.normwise
        );
    }
}
