//! `matmul_nn` (C += A x B, B not transposed) at every level against the f64 reference
//! with the derived bound `gamma(k + 2) * (|c| + sum_p |a_ip b_pj|)`, plus the bit-for-bit
//! promises of the SIMD levels: the result of a row does not depend on `m` (decode and
//! prefill agree), and AVX2 equals AVX-512.

mod common;

use common::{bits_eq, levels, Failures, Rng};
use vtpu_kernels::tolerance::{check_close, dot_bound};
use vtpu_kernels::{scalar_matmul_nn, KernelLevel, Kernels};

/// Shapes around the register blocks (4 rows; 64 / 16 columns) and the attention shapes
/// of the layer presets (G = 3..8 rows, Hd = 64 / 128 columns, S up to a few hundred).
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 0, 5),
    (0, 3, 4),
    (1, 7, 64),
    (3, 33, 64),
    (4, 17, 16),
    (5, 9, 65),
    (7, 130, 64),
    (2, 64, 128),
    (9, 5, 31),
    (16, 100, 80),
];

#[test]
fn matmul_nn_matches_reference_within_bound() {
    let mut rng = Rng::new(11);
    let mut fails = Failures::default();
    for k in levels() {
        for &(m, kk, n) in SHAPES {
            let a = rng.vec_mixed(m * kk);
            let b = rng.vec_mixed(kk * n);
            let c0 = rng.vec_mixed(m * n);
            let mut want = c0.clone();
            scalar_matmul_nn(&mut want, &a, &b, m, kk, n);
            let mut got = c0.clone();
            k.matmul_nn(&mut got, &a, &b, m, kk, n).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let abs: f64 = (0..kk)
                        .map(|p| (a[i * kk + p] as f64 * b[p * n + j] as f64).abs())
                        .sum::<f64>()
                        + (c0[i * n + j] as f64).abs();
                    fails.check(check_close(
                        &format!("{} matmul_nn {m}x{kk}x{n} [{i},{j}]", k.level()),
                        got[i * n + j],
                        want[i * n + j],
                        dot_bound(kk, abs),
                    ));
                }
            }
        }
    }
    fails.finish("matmul_nn");
}

#[test]
fn simd_rows_do_not_depend_on_m_and_levels_agree() {
    let mut rng = Rng::new(12);
    let (m, kk, n) = (11, 70, 72);
    let a = rng.vec_mixed(m * kk);
    let b = rng.vec_mixed(kk * n);
    let simd: Vec<Kernels> = levels()
        .into_iter()
        .filter(|k| k.level() != KernelLevel::Scalar)
        .collect();
    let mut results = Vec::new();
    for k in &simd {
        let mut all = vec![0.0; m * n];
        k.matmul_nn(&mut all, &a, &b, m, kk, n).unwrap();
        for i in 0..m {
            let mut one = vec![0.0; n];
            k.matmul_nn(&mut one, &a[i * kk..(i + 1) * kk], &b, 1, kk, n)
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
fn matmul_nn_rejects_bad_lengths() {
    let k = Kernels::new(KernelLevel::Scalar).unwrap();
    let mut c = vec![0.0; 6];
    assert!(k.matmul_nn(&mut c, &[0.0; 6], &[0.0; 6], 2, 3, 3).is_err());
    assert!(k.matmul_nn(&mut c, &[0.0; 5], &[0.0; 9], 2, 3, 3).is_err());
    assert!(k
        .matmul_nn(&mut c, &[0.0; 6], &[0.0; 9], usize::MAX, 3, 3)
        .is_err());
    assert!(k.matmul_nn(&mut c, &[0.0; 6], &[0.0; 9], 2, 3, 3).is_ok());
}
