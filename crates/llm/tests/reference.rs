//! Self-consistency tests of the f64 reference layer: hand-checked RoPE, prefill vs
//! decode, causality, GQA grouping, and typed errors instead of panics.

use vtpu_llm::{
    layer_forward_f64, rope_f64, ConfigError, KvCacheF64, LayerConfig, LayerWeights,
    ReferenceError, RopeLayout, SplitMix64, WeightsError,
};

/// Tolerance for comparing two f64 evaluations of the same math whose operations may
/// be ordered differently: f64 epsilon x (longest dot product: max(D, H*Hd, F, S)) x
/// max |value| x 4 (a few chained stages). Prefill and decode in fact perform the same
/// operations in the same order, so they agree bit for bit; the bound keeps the test
/// honest if the reference is ever restructured.
fn f64_tol(cfg: &LayerConfig, seq: usize, max_abs: f64) -> f64 {
    let n = cfg.dim.max(cfg.q_dim()).max(cfg.ffn_dim).max(seq) as f64;
    4.0 * f64::EPSILON * n * max_abs.max(1.0)
}

fn small(cfg: LayerConfig) -> LayerConfig {
    LayerConfig { max_seq: 32, ..cfg }
}

/// A tiny layer of each flavour: plain Llama, QKV bias, q/k norm with H*Hd != D.
fn tiny_configs() -> Vec<LayerConfig> {
    let llama = LayerConfig {
        dim: 24,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 6,
        ffn_dim: 40,
        ..small(LayerConfig::smollm2_135m())
    };
    let qwen2 = LayerConfig {
        dim: 28,
        n_heads: 4,
        n_kv_heads: 1,
        head_dim: 8,
        ffn_dim: 36,
        ..small(LayerConfig::qwen25_05b())
    };
    let qwen3 = LayerConfig {
        dim: 16,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 8,
        ffn_dim: 24,
        ..small(LayerConfig::qwen3_style())
    };
    vec![llama, qwen2, qwen3]
}

fn random_input(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..rows * dim).map(|_| rng.uniform(-2.0, 2.0)).collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn rope_hand_checked_head_dim_4() {
    // Hd = 4, theta = 10000: inv_freq = [1, 10000^(-1/2)] = [1, 0.01]; at pos 1 pair 0
    // turns by 1 rad, pair 1 by 0.01 rad.
    // cos 1 = 0.5403023058681398, sin 1 = 0.8414709848078965,
    // cos .01 = 0.9999500004166653, sin .01 = 0.009999833334166664.
    let x = [1.0, 2.0, 3.0, 4.0];

    // Interleaved pairs (x0, x1) = (1, 2) by 1 rad and (x2, x3) = (3, 4) by 0.01 rad.
    let mut inter = x;
    rope_f64(&mut inter, 1, 10000.0, RopeLayout::Interleaved);
    // Expected values: the formulas in the comments, evaluated independently (Python math).
    let want_inter = [
        -1.1426396637476532, // 1 cos1 - 2 sin1
        1.922075596544176,   // 1 sin1 + 2 cos1
        2.9598506679133294,  // 3 cos.01 - 4 sin.01
        4.029799501669161,   // 3 sin.01 + 4 cos.01
    ];
    // Half-split pairs (x0, x2) = (1, 3) by 1 rad and (x1, x3) = (2, 4) by 0.01 rad.
    let mut half = x;
    rope_f64(&mut half, 1, 10000.0, RopeLayout::HalfSplit);
    let want_half = [
        -1.9841106485555495, // 1 cos1 - 3 sin1
        1.959900667496664,   // 2 cos.01 - 4 sin.01
        2.4623779024123156,  // 1 sin1 + 3 cos1
        4.019799668334994,   // 2 sin.01 + 4 cos.01
    ];
    for (got, want) in [(inter, want_inter), (half, want_half)] {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-14, "{got:?} vs {want:?}");
        }
    }

    // Position 0 is the identity in both layouts.
    for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
        let mut y = x;
        rope_f64(&mut y, 0, 10000.0, layout);
        assert_eq!(y, x);
    }
}

#[test]
fn rope_layouts_differ_only_by_permutation() {
    // llama.cpp's converter permutes Llama Q/K rows so that Interleaved on the permuted
    // vector equals HalfSplit on the original: component i -> 2i, i + Hd/2 -> 2i + 1.
    let hd = 16;
    let mut rng = SplitMix64::new(3);
    let x: Vec<f64> = (0..hd).map(|_| rng.next_f64() - 0.5).collect();
    let perm = |v: &[f64]| -> Vec<f64> {
        let mut p = vec![0.0; hd];
        for i in 0..hd / 2 {
            p[2 * i] = v[i];
            p[2 * i + 1] = v[i + hd / 2];
        }
        p
    };
    for pos in [1, 7, 1000] {
        let mut half = x.clone();
        rope_f64(&mut half, pos, 1e6, RopeLayout::HalfSplit);
        let mut inter = perm(&x);
        rope_f64(&mut inter, pos, 1e6, RopeLayout::Interleaved);
        assert!(max_abs_diff(&perm(&half), &inter) == 0.0, "pos {pos}");
        // A rotation keeps the norm.
        let n0: f64 = x.iter().map(|v| v * v).sum();
        let n1: f64 = half.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-14);
    }
}

#[test]
fn prefill_equals_successive_decodes() {
    for cfg in tiny_configs() {
        let w = LayerWeights::random(&cfg, 11).unwrap();
        let t = 7;
        let x = random_input(t, cfg.dim, 5);

        let mut cache_p = KvCacheF64::new(&cfg).unwrap();
        let prefill = layer_forward_f64(&cfg, &w, &x, 0, &mut cache_p).unwrap();
        assert_eq!(prefill.len(), t * cfg.dim);
        assert_eq!(cache_p.len(), t);

        let mut cache_d = KvCacheF64::new(&cfg).unwrap();
        let mut decoded = Vec::new();
        for (pos, x_t) in x.chunks_exact(cfg.dim).enumerate() {
            decoded.extend(layer_forward_f64(&cfg, &w, x_t, pos, &mut cache_d).unwrap());
        }
        let max_abs = prefill.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&prefill, &decoded);
        assert!(
            err <= f64_tol(&cfg, t, max_abs),
            "{cfg:?}: prefill vs decode {err}"
        );
        assert_eq!(cache_p, cache_d);

        // Mixed: prefill 3, then 4 decodes continuing the same cache.
        let mut cache_m = KvCacheF64::new(&cfg).unwrap();
        let mut mixed = layer_forward_f64(&cfg, &w, &x[..3 * cfg.dim], 0, &mut cache_m).unwrap();
        for pos in 3..t {
            let row = &x[pos * cfg.dim..(pos + 1) * cfg.dim];
            mixed.extend(layer_forward_f64(&cfg, &w, row, pos, &mut cache_m).unwrap());
        }
        assert!(max_abs_diff(&prefill, &mixed) <= f64_tol(&cfg, t, max_abs));
    }
}

#[test]
fn attention_is_causal_and_reads_history() {
    let cfg = tiny_configs().remove(0);
    let w = LayerWeights::random(&cfg, 2).unwrap();
    let d = cfg.dim;
    let x = random_input(4, d, 9);
    let run = |x: &[f32]| {
        let mut cache = KvCacheF64::new(&cfg).unwrap();
        layer_forward_f64(&cfg, &w, x, 0, &mut cache).unwrap()
    };
    let base = run(&x);
    // Changing token 2 leaves rows 0..2 exactly as they were (causality) ...
    let mut x2 = x.clone();
    x2[2 * d..3 * d].iter_mut().for_each(|v| *v = -*v);
    let changed = run(&x2);
    assert_eq!(base[..2 * d], changed[..2 * d]);
    // ... and changes row 3, which attends to it (history is really read).
    assert!(max_abs_diff(&base[3 * d..], &changed[3 * d..]) > 1e-6);
}

#[test]
fn gqa_equals_mha_with_repeated_kv_heads() {
    // Query head h reads kv head h / (H/KV): expanding K/V weights to one kv head per
    // query head must give the same layer.
    let cfg = tiny_configs().remove(1); // H = 4, KV = 1, with bias
    let w = LayerWeights::random(&cfg, 4).unwrap();
    let mha_cfg = LayerConfig {
        n_kv_heads: cfg.n_heads,
        ..cfg.clone()
    };
    let rows = cfg.kv_dim() * cfg.dim;
    let repeat = |m: &[f32], block: usize| -> Vec<f32> {
        m.chunks_exact(block)
            .flat_map(|kv| std::iter::repeat_n(kv, cfg.group_size()).flatten().copied())
            .collect()
    };
    let hd_d = cfg.head_dim * cfg.dim;
    let mha_w = LayerWeights {
        wk: repeat(&w.wk, hd_d),
        wv: repeat(&w.wv, hd_d),
        bk: w.bk.as_deref().map(|b| repeat(b, cfg.head_dim)),
        bv: w.bv.as_deref().map(|b| repeat(b, cfg.head_dim)),
        ..w.clone()
    };
    assert_eq!(mha_w.wk.len(), rows * cfg.group_size());
    let x = random_input(5, cfg.dim, 1);
    let gqa = layer_forward_f64(&cfg, &w, &x, 0, &mut KvCacheF64::new(&cfg).unwrap()).unwrap();
    let mha = layer_forward_f64(
        &mha_cfg,
        &mha_w,
        &x,
        0,
        &mut KvCacheF64::new(&mha_cfg).unwrap(),
    )
    .unwrap();
    assert_eq!(gqa, mha);
}

#[test]
fn bad_inputs_are_errors_and_leave_the_cache_alone() {
    let cfg = LayerConfig {
        max_seq: 4,
        ..tiny_configs().remove(0)
    };
    let w = LayerWeights::random(&cfg, 1).unwrap();
    let d = cfg.dim;
    let mut cache = KvCacheF64::new(&cfg).unwrap();
    let x3 = random_input(3, d, 1);
    layer_forward_f64(&cfg, &w, &x3, 0, &mut cache).unwrap();
    let before = cache.clone();

    let err = |x: &[f32], pos: usize, cache: &mut KvCacheF64| {
        layer_forward_f64(&cfg, &w, x, pos, cache).unwrap_err()
    };
    assert_eq!(
        err(&[], 3, &mut cache),
        ReferenceError::InputLength { len: 0, dim: d }
    );
    assert_eq!(
        err(&x3[..d + 1], 3, &mut cache),
        ReferenceError::InputLength { len: d + 1, dim: d }
    );
    assert_eq!(
        err(&x3[..2 * d], 3, &mut cache),
        ReferenceError::PositionOutOfRange {
            start_pos: 3,
            end: 5,
            max_seq: 4
        }
    );
    assert_eq!(
        err(&x3[..d], usize::MAX, &mut cache),
        ReferenceError::PositionOutOfRange {
            start_pos: usize::MAX,
            end: usize::MAX,
            max_seq: 4
        }
    );
    assert_eq!(
        err(&x3[..d], 1, &mut cache),
        ReferenceError::NonContiguousPosition {
            start_pos: 1,
            cache_len: 3
        }
    );
    let other = LayerConfig {
        max_seq: 8,
        ..cfg.clone()
    };
    assert!(matches!(
        err(&x3[..d], 3, &mut KvCacheF64::new(&other).unwrap()),
        ReferenceError::CacheShapeMismatch { .. }
    ));
    let mut short = w.clone();
    short.w_down.truncate(5);
    assert_eq!(
        layer_forward_f64(&cfg, &short, &x3[..d], 3, &mut cache),
        Err(ReferenceError::Weights(WeightsError::WrongLength {
            tensor: "w_down",
            expected: d * cfg.ffn_dim,
            got: 5
        }))
    );
    let bad_cfg = LayerConfig {
        head_dim: 5,
        ..cfg.clone()
    };
    assert_eq!(
        layer_forward_f64(&bad_cfg, &w, &x3[..d], 3, &mut cache),
        Err(ReferenceError::Weights(WeightsError::Config(
            ConfigError::OddHeadDim { head_dim: 5 }
        )))
    );
    assert_eq!(cache, before, "a failed call must not touch the cache");

    // The last free position still works; then the cache is full.
    layer_forward_f64(&cfg, &w, &x3[..d], 3, &mut cache).unwrap();
    assert_eq!(cache.len(), 4);
    assert!(matches!(
        err(&x3[..d], 4, &mut cache),
        ReferenceError::PositionOutOfRange { .. }
    ));
    cache.clear();
    assert!(cache.is_empty());
}
