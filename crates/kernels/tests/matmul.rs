//! `matmul_bt`, `matmul_bt_rows` and `dot` at every level and weight dtype against the
//! f64 reference, with the derived bound `gamma(k + 2) * (|c| + sum |a_p b_p|)`; plus the
//! bit-for-bit invariances the SIMD levels promise (m, row split, dot = 1 x 1 matmul).

mod common;

use common::{bits_eq, levels, Failures, Rng};
use half::{bf16, f16};
use proptest::prelude::*;
use vtpu_kernels::tolerance::{check_close, dot_bound};
use vtpu_kernels::{scalar, KernelLevel, Kernels, Weights};

/// Owned weights of one dtype, generated from f32 values.
enum Owned {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl Owned {
    fn new(dtype: usize, vals: &[f32]) -> Owned {
        match dtype {
            0 => Owned::F32(vals.to_vec()),
            1 => Owned::F16(vals.iter().map(|&v| f16::from_f32(v)).collect()),
            _ => Owned::BF16(vals.iter().map(|&v| bf16::from_f32(v)).collect()),
        }
    }

    fn view(&self) -> Weights<'_> {
        match self {
            Owned::F32(v) => Weights::F32(v),
            Owned::F16(v) => Weights::F16(v),
            Owned::BF16(v) => Weights::BF16(v),
        }
    }
}

/// Checks `k.matmul_bt_rows` on one shape against the reference and the derived bound.
#[allow(clippy::too_many_arguments)]
fn check_shape(
    fails: &mut Failures,
    k: Kernels,
    rng: &mut Rng,
    dtype: usize,
    m: usize,
    n: usize,
    kk: usize,
    rows: (usize, usize),
) {
    let a = rng.vec_mixed(m * kk);
    let w = Owned::new(dtype, &rng.vec_mixed(n * kk));
    let b = w.view();
    let (n0, n1) = rows;
    let c0 = rng.vec_mixed(m * (n1 - n0));
    let mut want = c0.clone();
    scalar::matmul_bt_rows(&mut want, &a, b, m, kk, n0, n1);
    let mut got = c0.clone();
    k.matmul_bt_rows(&mut got, &a, b, m, n, kk, n0, n1).unwrap();
    for i in 0..m {
        for j in n0..n1 {
            let idx = i * (n1 - n0) + (j - n0);
            let abs_sum: f64 = c0[idx].abs() as f64
                + (0..kk)
                    .map(|p| (a[i * kk + p] as f64 * b.get_f32(j * kk + p).unwrap() as f64).abs())
                    .sum::<f64>();
            let what = format!(
                "{:?} {} m={m} n={n} k={kk} rows={n0}..{n1} C[{i},{j}]",
                k.level(),
                b.dtype_name()
            );
            fails.check(check_close(
                &what,
                got[idx],
                want[idx],
                dot_bound(kk, abs_sum),
            ));
        }
    }
}

#[test]
fn matmul_matches_reference_on_odd_shapes() {
    let mut rng = Rng::new(10);
    let mut fails = Failures::default();
    let ms = [1, 2, 3, 4, 5, 7, 9];
    let ns = [1, 3, 5, 6, 7, 8, 9, 13, 17];
    let ks = [1, 3, 7, 8, 9, 15, 16, 17, 31, 63, 65, 257, 1000];
    for k in levels() {
        for dtype in 0..3 {
            for &m in &ms {
                for &n in &ns {
                    // Every k for a few (m, n); a random k otherwise, to keep the run short.
                    let kk_list: Vec<usize> = if n == 9 || m == 1 {
                        ks.to_vec()
                    } else {
                        vec![ks[rng.below(ks.len())]]
                    };
                    for kk in kk_list {
                        check_shape(&mut fails, k, &mut rng, dtype, m, n, kk, (0, n));
                    }
                }
            }
        }
    }
    fails.finish("matmul_bt");
}

#[test]
fn matmul_rows_subrange_matches_reference() {
    let mut rng = Rng::new(11);
    let mut fails = Failures::default();
    for k in levels() {
        for dtype in 0..3 {
            for &(m, n, kk, n0, n1) in &[
                (1, 37, 65, 5, 30),
                (3, 20, 17, 0, 7),
                (6, 50, 33, 13, 50),
                (1, 9, 300, 8, 9),
                (5, 12, 16, 4, 4),
            ] {
                check_shape(&mut fails, k, &mut rng, dtype, m, n, kk, (n0, n1));
            }
        }
    }
    fails.finish("matmul_bt_rows");
}

/// The SIMD order contract: each output element is computed identically whatever `m`,
/// the tile it falls in, or the row range, so decode and prefill agree bit for bit.
#[test]
fn simd_matmul_is_invariant_to_m_and_row_split() {
    let mut rng = Rng::new(12);
    for k in levels()
        .into_iter()
        .filter(|k| k.level() != KernelLevel::Scalar)
    {
        // Second shape: k slices (k > 512) with a tail and (for f16 / bf16) the
        // converted-panel path; third: several A blocks (m > 132, the most per block).
        for (dtype, (m, n, kk)) in
            (0..3).flat_map(|d| [(d, (11, 29, 203)), (d, (70, 29, 1100)), (d, (140, 29, 600))])
        {
            let a = rng.vec_mixed(m * kk);
            let w = Owned::new(dtype, &rng.vec_mixed(n * kk));
            let b = w.view();
            let mut full = vec![0.0; m * n];
            k.matmul_bt(&mut full, &a, b, m, n, kk).unwrap();
            // Row by row (m = 1, the GEMV path).
            for i in 0..m {
                let mut row = vec![0.0; n];
                k.matmul_bt(&mut row, &a[i * kk..(i + 1) * kk], b, 1, n, kk)
                    .unwrap();
                bits_eq(
                    &format!("{:?} {} row {i} (m=1 vs m={m})", k.level(), b.dtype_name()),
                    &row,
                    &full[i * n..(i + 1) * n],
                )
                .unwrap();
            }
            // Split by weight rows into uneven ranges, as threads would.
            for split in [[0, 1, n], [0, 13, n], [0, 6, n], [0, 28.min(n), n]] {
                for r in split.windows(2) {
                    let (n0, n1) = (r[0], r[1]);
                    let mut part = vec![0.0; m * (n1 - n0)];
                    k.matmul_bt_rows(&mut part, &a, b, m, n, kk, n0, n1)
                        .unwrap();
                    for i in 0..m {
                        let want = &full[i * n + n0..i * n + n1];
                        let got = &part[i * (n1 - n0)..(i + 1) * (n1 - n0)];
                        bits_eq(
                            &format!("{:?} {} rows {n0}..{n1} row {i}", k.level(), b.dtype_name()),
                            got,
                            want,
                        )
                        .unwrap();
                    }
                }
            }
            // A single-row A in a prefill batch of 2 (m = 2 takes the tile path).
            let mut two = vec![0.0; 2 * n];
            k.matmul_bt(&mut two, &a[..2 * kk], b, 2, n, kk).unwrap();
            bits_eq(&format!("m=2 vs m={m}"), &two, &full[..2 * n]).unwrap();
        }
    }
}

#[test]
fn dot_matches_reference_and_the_1x1_matmul() {
    let mut rng = Rng::new(13);
    let mut fails = Failures::default();
    for k in levels() {
        for &n in common::SIZES.iter().chain(&[4864]) {
            let (a, b) = (rng.vec_mixed(n), rng.vec_mixed(n));
            let got = k.dot(&a, &b).unwrap();
            let abs_sum: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| (x as f64 * y as f64).abs())
                .sum();
            fails.check(check_close(
                &format!("dot {:?} n={n}", k.level()),
                got,
                scalar::dot(&a, &b),
                dot_bound(n, abs_sum),
            ));
            if k.level() != KernelLevel::Scalar {
                let mut c = [0.0];
                k.matmul_bt(&mut c, &a, Weights::F32(&b), 1, 1, n).unwrap();
                fails.check(bits_eq(
                    &format!("dot vs 1x1 matmul {:?} n={n}", k.level()),
                    &[got],
                    &c,
                ));
            }
        }
    }
    fails.finish("dot");
}

/// A decode-sized GEMV and a prefill-sized GEMM (long k, several A blocks) at SIMD levels.
#[test]
fn matmul_large_shapes() {
    let mut rng = Rng::new(14);
    let mut fails = Failures::default();
    for k in levels()
        .into_iter()
        .filter(|k| k.level() != KernelLevel::Scalar)
    {
        for &(m, n, kk, dtype) in &[
            (1, 40, 4864, 0),
            (1, 33, 896, 1),
            (1, 17, 1536, 2),
            (37, 14, 4864, 2),
            (130, 7, 896, 0),
        ] {
            check_shape(&mut fails, k, &mut rng, dtype, m, n, kk, (0, n));
        }
    }
    fails.finish("matmul_bt (large)");
}

#[test]
fn k_zero_leaves_c_unchanged() {
    for k in levels() {
        let mut c = vec![-0.0, 1.5, f32::NAN];
        k.matmul_bt(&mut c, &[], Weights::F32(&[]), 1, 3, 0)
            .unwrap();
        assert_eq!(c[0].to_bits(), (-0.0f32).to_bits());
        assert_eq!(c[1], 1.5);
        assert!(c[2].is_nan());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random shapes, row ranges and dtypes at every level.
    #[test]
    fn matmul_random_shapes(m in 1usize..7, n in 1usize..20, kk in 1usize..140, dtype in 0usize..3, seed in any::<u64>(), lo in 0usize..20, len in 0usize..20) {
        let n0 = lo.min(n);
        let n1 = (n0 + len).min(n);
        let mut rng = Rng::new(seed);
        let mut fails = Failures::default();
        for k in levels() {
            check_shape(&mut fails, k, &mut rng, dtype, m, n, kk, (n0, n1));
        }
        fails.finish("matmul proptest");
    }
}
