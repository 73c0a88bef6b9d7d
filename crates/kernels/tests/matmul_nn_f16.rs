//! `matmul_nn_f16` (C += A x B with B in f16, an f16 KV cache's values) at every level:
//! within the derived bound `gamma(k + 2) * (|c| + sum_p |a_ip b_pj|)` of the f64 scalar
//! reference, bit for bit equal to `matmul_nn` of the widened B at the same level (the
//! widening is exact and the order of operations is the same), rows independent of `m`,
//! AVX2 equal to AVX-512, and bad lengths rejected.

mod common;

use common::{bits_eq, levels, Failures, Rng};
use half::f16;
use vtpu_kernels::tolerance::{check_close, dot_bound};
use vtpu_kernels::{scalar_matmul_nn, scalar_matmul_nn_f16, KernelLevel, Kernels};

/// Shapes around the register blocks (4 rows; 16 / 8 columns per vector, so tails of
/// 1..15 columns take the masked and the buffered 16-bit loads) and the attention
/// shapes of the presets (G = 3..8 rows, Hd = 64 / 128 columns, S up to a few hundred).
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 0, 5),
    (0, 3, 4),
    (1, 7, 64),
    (3, 33, 64),
    (3, 257, 64),
    (4, 17, 16),
    (5, 9, 65),
    (7, 130, 64),
    (2, 64, 128),
    (9, 5, 31),
    (2, 6, 7),
    (16, 100, 80),
];

/// Random f16 values of mixed magnitudes (f16 subnormals included) and their exact f32
/// widening.
fn f16_vec(rng: &mut Rng, n: usize) -> (Vec<f16>, Vec<f32>) {
    let h: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.mixed())).collect();
    let w = h.iter().map(|x| x.to_f32()).collect();
    (h, w)
}

#[test]
fn matmul_nn_f16_matches_reference_within_bound() {
    let mut rng = Rng::new(21);
    let mut fails = Failures::default();
    for k in levels() {
        for &(m, kk, n) in SHAPES {
            let a = rng.vec_mixed(m * kk);
            let (b, bw) = f16_vec(&mut rng, kk * n);
            let c0 = rng.vec_mixed(m * n);
            let mut want = c0.clone();
            scalar_matmul_nn_f16(&mut want, &a, &b, m, kk, n);
            let mut got = c0.clone();
            k.matmul_nn_f16(&mut got, &a, &b, m, kk, n).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let abs: f64 = (0..kk)
                        .map(|p| (a[i * kk + p] as f64 * bw[p * n + j] as f64).abs())
                        .sum::<f64>()
                        + (c0[i * n + j] as f64).abs();
                    fails.check(check_close(
                        &format!("{} matmul_nn_f16 {m}x{kk}x{n} [{i},{j}]", k.level()),
                        got[i * n + j],
                        want[i * n + j],
                        dot_bound(kk, abs),
                    ));
                }
            }
        }
    }
    fails.finish("matmul_nn_f16");
}

#[test]
fn f16_equals_f32_on_the_widened_values_at_every_level() {
    let mut rng = Rng::new(22);
    for k in levels() {
        for &(m, kk, n) in SHAPES {
            let a = rng.vec_mixed(m * kk);
            let (b, bw) = f16_vec(&mut rng, kk * n);
            let c0 = rng.vec_mixed(m * n);
            let (mut h, mut w) = (c0.clone(), c0.clone());
            k.matmul_nn_f16(&mut h, &a, &b, m, kk, n).unwrap();
            k.matmul_nn(&mut w, &a, &bw, m, kk, n).unwrap();
            let what = format!("{} {m}x{kk}x{n}: f16 vs widened f32", k.level());
            bits_eq(&what, &h, &w).unwrap();
            // The scalar references agree the same way.
            let (mut h, mut w) = (c0.clone(), c0);
            scalar_matmul_nn_f16(&mut h, &a, &b, m, kk, n);
            scalar_matmul_nn(&mut w, &a, &bw, m, kk, n);
            bits_eq(&format!("scalar {what}"), &h, &w).unwrap();
        }
    }
}

#[test]
fn simd_f16_rows_do_not_depend_on_m_and_levels_agree() {
    let mut rng = Rng::new(23);
    let (m, kk, n) = (11, 70, 72);
    let a = rng.vec_mixed(m * kk);
    let (b, _) = f16_vec(&mut rng, kk * n);
    let simd: Vec<Kernels> = levels()
        .into_iter()
        .filter(|k| k.level() != KernelLevel::Scalar)
        .collect();
    let mut results = Vec::new();
    for k in &simd {
        let mut all = vec![0.0; m * n];
        k.matmul_nn_f16(&mut all, &a, &b, m, kk, n).unwrap();
        for i in 0..m {
            let mut one = vec![0.0; n];
            k.matmul_nn_f16(&mut one, &a[i * kk..(i + 1) * kk], &b, 1, kk, n)
                .unwrap();
            bits_eq(
                &format!("{} row {i} alone vs in a block", k.level()),
                &one,
                &all[i * n..(i + 1) * n],
            )
            .unwrap();
        }
        results.push(all);
    }
    for w in results.windows(2) {
        bits_eq("avx2 vs avx512", &w[0], &w[1]).unwrap();
    }
}

#[test]
fn matmul_nn_f16_rejects_bad_lengths() {
    let z = f16::ZERO;
    for k in levels() {
        let mut c = vec![0.0; 6];
        assert!(k
            .matmul_nn_f16(&mut c, &[0.0; 6], &[z; 6], 2, 3, 3)
            .is_err());
        assert!(k
            .matmul_nn_f16(&mut c, &[0.0; 5], &[z; 9], 2, 3, 3)
            .is_err());
        assert!(k
            .matmul_nn_f16(&mut c[..5], &[0.0; 6], &[z; 9], 2, 3, 3)
            .is_err());
        assert!(k
            .matmul_nn_f16(&mut c, &[0.0; 6], &[z; 9], usize::MAX, 3, 3)
            .is_err());
        assert!(k.matmul_nn_f16(&mut c, &[0.0; 6], &[z; 9], 2, 3, 3).is_ok());
    }
}
