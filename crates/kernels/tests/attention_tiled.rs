//! DTATTN's tiled path (llama.cpp's arithmetic for calls of 64+ query tokens) on random
//! shapes: the dispatched kernel (AVX-512 where the CPU has it) gives the scalar
//! specification's bits, and both are close to f64 attention of the same inputs.

use half::f16;
use proptest::prelude::*;
use vtpu_kernels::attention::{
    attention, attention_tiled_scalar, is_tiled, visible_keys, AttnShape, KvRows,
};

/// Deterministic values in [-1, 1) from a seed (proptest picks the seed).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// f64 causal attention over the given (already rounded) keys and values.
fn exact(q: &[f32], k: &[f32], v: &[f32], shape: AttnShape) -> Vec<f64> {
    let AttnShape { rows, hd, s, per } = shape;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![0f64; rows * hd];
    for r in 0..rows {
        let vis = visible_keys(r, rows, per, s);
        let sc: Vec<f64> = (0..vis)
            .map(|j| {
                (0..hd)
                    .map(|d| q[r * hd + d] as f64 * k[j * hd + d] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for d in 0..hd {
            out[r * hd + d] = (0..vis).map(|j| e[j] * v[j * hd + d] as f64).sum::<f64>() / z;
        }
    }
    out
}

fn shapes() -> impl Strategy<Value = (usize, usize, usize, usize, bool, f32, u64)> {
    (
        64usize..=150, // query tokens: always the tiled path
        1usize..=4,    // query rows per token (GQA group)
        0usize..=90,   // cached keys before the call
        prop::sample::select(vec![16usize, 32, 48, 64, 80, 128]),
        any::<bool>(),                                  // f16 or f32 keys and values
        prop::sample::select(vec![0.25f32, 3.0, 30.0]), // query magnitude
        any::<u64>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn tiled_simd_matches_the_spec_and_exact_attention(
        (tokens, per, past, hd, f16kv, qmul, seed) in shapes()
    ) {
        let (rows, s) = (tokens * per, tokens + past);
        let shape = AttnShape { rows, hd, s, per };
        prop_assert!(is_tiled(shape));
        let q: Vec<f32> = values(seed, rows * hd).iter().map(|x| x * qmul).collect();
        let k16: Vec<f16> = values(seed ^ 1, s * hd).iter().map(|&x| f16::from_f32(x)).collect();
        let v16: Vec<f16> = values(seed ^ 2, s * hd).iter().map(|&x| f16::from_f32(x)).collect();
        // The f32 cache holds the same (f16-exact) values, so one reference serves both.
        let k: Vec<f32> = k16.iter().map(|x| x.to_f32()).collect();
        let v: Vec<f32> = v16.iter().map(|x| x.to_f32()).collect();
        let (kr, vr) = if f16kv {
            (KvRows::F16(&k16), KvRows::F16(&v16))
        } else {
            (KvRows::F32(&k), KvRows::F32(&v))
        };
        let mut spec = vec![0f32; rows * hd];
        let mut fast = vec![0f32; rows * hd];
        attention_tiled_scalar(&mut spec, &q, kr, vr, shape).unwrap();
        attention(&mut fast, &q, kr, vr, shape, true).unwrap();
        for (i, (a, b)) in spec.iter().zip(&fast).enumerate() {
            prop_assert_eq!(a.to_bits(), b.to_bits(), "element {}: spec {} fast {}", i, a, b);
        }
        // f32 scores (FMA chain of hd terms, |q k| <= qmul), so a score is off by at most
        // hd qmul 2^-24 / sqrt(hd) per unit and a weight by twice that relative (plus
        // ggml_v_expf's 2 ulp); the value sum of up to s terms in [-1, 1] adds s 2^-24.
        let score = qmul as f64 * (hd as f64).sqrt() * hd as f64 * 2f64.powi(-24);
        let bound = 4.0 * score + (s as f64 + 16.0) * 2f64.powi(-23);
        let want = exact(&q, &k, &v, shape);
        for (i, (a, w)) in spec.iter().zip(&want).enumerate() {
            prop_assert!((*a as f64 - w).abs() <= bound, "element {}: {} vs {} (bound {:e})", i, a, w, bound);
        }
    }
}

#[test]
fn zero_queries_average_the_visible_values() {
    // All scores 0: every visible key weighs exactly 1 (exp(0) = 1 in ggml_v_expf), so
    // row r's output is the mean of the values it sees, to f32 rounding of that sum.
    let (tokens, per, s, hd) = (80, 2, 150, 32);
    let shape = AttnShape {
        rows: tokens * per,
        hd,
        s,
        per,
    };
    let q = vec![0f32; tokens * per * hd];
    let v = values(9, s * hd);
    let k = values(10, s * hd);
    let mut out = vec![0f32; q.len()];
    attention(&mut out, &q, KvRows::F32(&k), KvRows::F32(&v), shape, true).unwrap();
    for r in 0..shape.rows {
        let vis = visible_keys(r, shape.rows, per, s);
        for d in 0..hd {
            let mean = (0..vis).map(|j| v[j * hd + d] as f64).sum::<f64>() / vis as f64;
            let got = out[r * hd + d] as f64;
            assert!(
                (got - mean).abs() <= vis as f64 * 2f64.powi(-23),
                "row {r} dim {d}: {got} vs {mean}"
            );
        }
    }
}
