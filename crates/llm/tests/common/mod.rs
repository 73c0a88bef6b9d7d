//! Shared helpers of the vTPU layer tests: small configs, O(1)-gain random weights, the
//! derived tolerance, and a driver that runs the vTPU layer and the f64 reference side
//! by side through prefill and decode steps.
#![allow(dead_code)]

use vtpu_llm::{
    layer_forward_f64, KvCacheF64, LayerConfig, LayerOptions, LayerRunner, LayerWeights,
    RopeLayout, SplitMix64,
};

/// Small shapes of the three architectures (GQA everywhere; `qwen3` has H*Hd != D and
/// q/k norm; `smol3` has 3 kv heads so 2 sentrons get an uneven split).
pub fn small_configs() -> Vec<(&'static str, LayerConfig)> {
    let base = LayerConfig {
        dim: 64,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        ffn_dim: 96,
        rms_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_layout: RopeLayout::Interleaved,
        qkv_bias: false,
        qk_norm: false,
        max_seq: 64,
    };
    vec![
        ("llama", base.clone()),
        (
            "qwen2",
            LayerConfig {
                dim: 48,
                n_heads: 6,
                n_kv_heads: 2,
                head_dim: 8,
                ffn_dim: 80,
                rms_eps: 1e-6,
                rope_theta: 1_000_000.0,
                rope_layout: RopeLayout::HalfSplit,
                qkv_bias: true,
                ..base.clone()
            },
        ),
        (
            "qwen3",
            LayerConfig {
                dim: 32,
                n_heads: 4,
                n_kv_heads: 2,
                head_dim: 32,
                ffn_dim: 64,
                rope_layout: RopeLayout::HalfSplit,
                qk_norm: true,
                ..base.clone()
            },
        ),
        (
            "smol3",
            LayerConfig {
                dim: 48,
                n_heads: 6,
                n_kv_heads: 3,
                head_dim: 8,
                ffn_dim: 64,
                ..base
            },
        ),
    ]
}

/// Random weights with O(1) gain per stage (projections uniform with std 1/sqrt(in),
/// norm scales in [0.5, 1.5], biases with std 0.5), so attention is far from uniform
/// and every stage matters in the output (LayerWeights::random's std 0.02 makes the
/// layer nearly the identity, which would hide errors behind the residual).
pub fn scaled_weights(cfg: &LayerConfig, seed: u64) -> LayerWeights {
    let mut w = LayerWeights::random(cfg, seed).expect("valid config");
    let mut rng = SplitMix64::new(seed ^ 0x5eed);
    let mut fill = |v: &mut Vec<f32>, fan_in: usize| {
        let a = (3.0 / fan_in as f64).sqrt() as f32;
        v.iter_mut().for_each(|x| *x = rng.uniform(-a, a));
    };
    let (d, q, f) = (cfg.dim, cfg.q_dim(), cfg.ffn_dim);
    fill(&mut w.wq, d);
    fill(&mut w.wk, d);
    fill(&mut w.wv, d);
    fill(&mut w.wo, q);
    fill(&mut w.w_gate, d);
    fill(&mut w.w_up, d);
    fill(&mut w.w_down, f);
    let mut rng = SplitMix64::new(seed ^ 0xb1a5);
    for b in [&mut w.bq, &mut w.bk, &mut w.bv].into_iter().flatten() {
        b.iter_mut().for_each(|x| *x = rng.uniform(-0.87, 0.87));
    }
    for n in [&mut w.attn_norm, &mut w.ffn_norm]
        .into_iter()
        .chain([&mut w.q_norm, &mut w.k_norm].into_iter().flatten())
    {
        n.iter_mut().for_each(|x| *x = rng.uniform(0.5, 1.5));
    }
    w
}

/// Inputs `[T, D]` uniform in [-2, 2].
pub fn inputs(rng: &mut SplitMix64, t: usize, d: usize) -> Vec<f32> {
    (0..t * d).map(|_| rng.uniform(-2.0, 2.0)).collect()
}

/// The derived tolerance, relative to max|reference output|.
///
/// Every stage of the layer is a reduction computed in f32 (the vTPU) vs f64 (the
/// reference, whose own error is ~1e-16). A length-n sum or dot product in f32 is off by
/// at most gamma(n) ~ n u times the sum of the magnitudes of its terms (Higham, Thm 3.1;
/// u = 2^-24, the unit roundoff). The weights give every stage O(1) gain, so each
/// stage's error is of order n u relative to the output's scale, and the stages add:
///
/// ```text
/// K = D   (q/k/v projections)    + Hd  (scores)       + S (probabilities . V)
///   + H*Hd (output projection)   + D   (gate/up)      + F (down projection)
///   + 2 D  (the two RMSNorm sums of squares)
///   + 16   (rope table and rotation, exp, silu, residual adds, the all-reduce:
///           O(1) roundings each)
/// tol = u * K * max|out|
/// ```
///
/// A worst-case-flavoured bound (random-sign errors grow like sqrt(n), not n): measured
/// errors sit one to two orders of magnitude below it, while a wrong head grouping,
/// rope layout or mask is off by O(1).
pub fn tolerance(cfg: &LayerConfig, kv_len: usize) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let k =
        cfg.dim + cfg.head_dim + kv_len + cfg.q_dim() + cfg.dim + cfg.ffn_dim + 2 * cfg.dim + 16;
    u * k as f64
}

/// max|got - want| / max|want|.
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    got.iter()
        .zip(want)
        .map(|(&g, w)| (f64::from(g) - w).abs())
        .fold(0.0, f64::max)
        / scale.max(f64::MIN_POSITIVE)
}

/// Run `steps` (token counts: the first is a prefill from position 0, the rest continue
/// the cache) on the vTPU and on the f64 reference; returns the worst relative error and
/// checks each step against the tolerance.
pub fn compare(
    name: &str,
    cfg: &LayerConfig,
    w: &LayerWeights,
    opts: &LayerOptions,
    steps: &[usize],
    seed: u64,
) -> f64 {
    // The f64 reference sees exactly the weights the vTPU stores.
    let reference_w = vtpu_llm::layer_pages::rounded_to(w, opts.weight_dtype);
    let mut runner = LayerRunner::new(cfg, w, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut cache = KvCacheF64::new(cfg).expect("cache");
    let mut rng = SplitMix64::new(seed);
    let mut pos = 0;
    let mut worst = 0.0f64;
    for &t in steps {
        let x = inputs(&mut rng, t, cfg.dim);
        let (got, _) = runner
            .forward(&x, pos)
            .unwrap_or_else(|e| panic!("{name} at {pos}: {e}"));
        let want = layer_forward_f64(cfg, &reference_w, &x, pos, &mut cache).expect("reference");
        pos += t;
        let e = rel_err(&got, &want);
        let tol = tolerance(cfg, pos);
        assert!(
            e <= tol,
            "{name} ({} sentrons, {:?}, {}): step of {t} tokens ending at {pos}: rel err {e:.3e} > tolerance {tol:.3e}",
            opts.sentrons,
            opts.executor,
            opts.weight_dtype.name()
        );
        worst = worst.max(e);
    }
    worst
}

/// Whole-model helpers: synthetic GGUF models and the llama.cpp golden check.
pub mod models;
