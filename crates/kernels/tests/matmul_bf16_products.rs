//! The bf16-products `matmul_bt` (bf16 weights x bf16-rounded activations, AVX-512 BF16)
//! against two f64 references: the exact product of the unrounded activations, within
//! the derived [`bf16_products_bound`], and the product of the activations rounded to
//! bf16 (what the kernel is meant to compute), within the f32 accumulation bound only,
//! which catches any pairing, tail or tiling mistake that a loose bound would hide. Plus
//! the order contract (m = 1 vs m > 1, row splits: bit for bit) and the fallback where
//! the CPU lacks AVX-512 BF16. On such a CPU the kernel tests are skipped with a note.

mod common;

use common::{bits_eq, Failures, Rng};
use half::bf16;
use proptest::prelude::*;
use vtpu_kernels::tolerance::{bf16_products_bound, check_close, dot_bound};
use vtpu_kernels::{KernelLevel, Kernels, Weights};

/// The AVX-512 kernels with bf16 products, or `None` (with a note) if they do not run here.
fn products() -> Option<Kernels> {
    let k = Kernels::new(KernelLevel::Avx512)?.with_bf16_products(true);
    if k.bf16_products_active() {
        Some(k)
    } else {
        println!("note: no AVX-512 BF16 on this CPU; the bf16-products kernel is not tested");
        None
    }
}

fn round_bf16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect()
}

/// Checks one shape and row range against both references.
#[allow(clippy::too_many_arguments)]
fn check_shape(
    fails: &mut Failures,
    k: Kernels,
    rng: &mut Rng,
    m: usize,
    n: usize,
    kk: usize,
    (n0, n1): (usize, usize),
) {
    let a = rng.vec_mixed(m * kk);
    let w: Vec<bf16> = rng
        .vec_mixed(n * kk)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    let c0 = rng.vec_mixed(m * (n1 - n0));
    let mut got = c0.clone();
    k.matmul_bt_rows(&mut got, &a, Weights::BF16(&w), m, n, kk, n0, n1)
        .unwrap();
    let ar = round_bf16(&a);
    for i in 0..m {
        for j in n0..n1 {
            let idx = i * (n1 - n0) + (j - n0);
            let (mut exact, mut rounded) = (c0[idx] as f64, c0[idx] as f64);
            let (mut abs, mut abs_r, mut abs_b) = (c0[idx].abs() as f64, c0[idx].abs() as f64, 0.0);
            for p in 0..kk {
                let b = w[j * kk + p].to_f32() as f64;
                let (x, xr) = (a[i * kk + p] as f64, ar[i * kk + p] as f64);
                exact += x * b;
                rounded += xr * b;
                abs += (x * b).abs();
                abs_r += (xr * b).abs();
                abs_b += b.abs();
            }
            let what = format!("bf16 products m={m} n={n} k={kk} rows={n0}..{n1} C[{i},{j}]");
            fails.check(check_close(
                &format!("{what} vs exact"),
                got[idx],
                exact as f32,
                bf16_products_bound(kk, abs, abs_b),
            ));
            // Against the bf16-rounded activations: f32 accumulation error only (plus
            // the flush-to-zero floor, which `bf16_products_bound`'s last term is).
            let tiny = f64::from(f32::MIN_POSITIVE) * (kk as f64 + 2.0 + abs_b);
            fails.check(check_close(
                &format!("{what} vs rounded"),
                got[idx],
                rounded as f32,
                dot_bound(kk, abs_r) + tiny,
            ));
        }
    }
}

#[test]
fn bf16_products_match_references_on_odd_shapes() {
    let Some(k) = products() else { return };
    let mut rng = Rng::new(40);
    let mut fails = Failures::default();
    let ms = [1, 2, 3, 4, 5, 7];
    let ns = [1, 3, 7, 8, 9, 16, 17, 25];
    let ks = [
        1, 2, 15, 31, 32, 33, 63, 64, 65, 100, 1000, 1023, 1024, 1025, 2100,
    ];
    for &m in &ms {
        for &n in &ns {
            let list: Vec<usize> = if n == 9 || m == 1 {
                ks.to_vec()
            } else {
                vec![ks[rng.below(ks.len())]]
            };
            for kk in list {
                check_shape(&mut fails, k, &mut rng, m, n, kk, (0, n));
            }
        }
    }
    fails.finish("bf16 products");
}

/// Prefill-sized products: several row blocks (m = 130 with k = 2432 makes blocks of
/// 105 rows), k slices with a tail, sub-ranges of weight rows.
#[test]
fn bf16_products_large_shapes_and_row_ranges() {
    let Some(k) = products() else { return };
    let mut rng = Rng::new(41);
    let mut fails = Failures::default();
    for &(m, n, kk, n0, n1) in &[
        (130, 9, 2432, 0, 9),
        (128, 24, 896, 3, 21),
        (1, 40, 4864, 0, 40),
        (6, 50, 33, 13, 50),
        (5, 12, 16, 4, 4),
    ] {
        check_shape(&mut fails, k, &mut rng, m, n, kk, (n0, n1));
    }
    fails.finish("bf16 products (large)");
}

/// The order contract of the mode: decode (m = 1) and prefill (any m, any tile, any
/// row range) agree bit for bit.
#[test]
fn bf16_products_are_invariant_to_m_and_row_split() {
    let Some(k) = products() else { return };
    let mut rng = Rng::new(42);
    // k slices (k > 1024) with a tail; several row blocks (m > 132).
    for (m, n, kk) in [(11, 29, 203), (70, 29, 1100), (4, 17, 2432), (140, 29, 600)] {
        let a = rng.vec_mixed(m * kk);
        let w: Vec<bf16> = rng
            .vec_mixed(n * kk)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let b = Weights::BF16(&w);
        let mut full = vec![0.0; m * n];
        k.matmul_bt(&mut full, &a, b, m, n, kk).unwrap();
        for i in 0..m {
            let mut row = vec![0.0; n];
            k.matmul_bt(&mut row, &a[i * kk..(i + 1) * kk], b, 1, n, kk)
                .unwrap();
            bits_eq(
                &format!("row {i} (m=1 vs m={m}, k={kk})"),
                &row,
                &full[i * n..(i + 1) * n],
            )
            .unwrap();
        }
        for split in [[0, 1, n], [0, 13.min(n), n], [0, 8, n], [0, 16.min(n), n]] {
            for r in split.windows(2) {
                let (n0, n1) = (r[0], r[1]);
                let mut part = vec![0.0; m * (n1 - n0)];
                k.matmul_bt_rows(&mut part, &a, b, m, n, kk, n0, n1)
                    .unwrap();
                for i in 0..m {
                    bits_eq(
                        &format!("rows {n0}..{n1} row {i} (k={kk})"),
                        &part[i * (n1 - n0)..(i + 1) * (n1 - n0)],
                        &full[i * n + n0..i * n + n1],
                    )
                    .unwrap();
                }
            }
        }
    }
}

/// The mode really rounds the activations: with activations that bf16 cannot hold
/// (1 + 2^-12), the result differs from the exact path's, by the predicted amount.
#[test]
fn bf16_products_round_the_activations() {
    let Some(k) = products() else { return };
    let kk = 64;
    let a = vec![1.0 + 2f32.powi(-12); kk];
    let w = vec![bf16::from_f32(1.0); kk];
    let mut exact = [0.0f32];
    let mut prod = [0.0f32];
    k.with_bf16_products(false)
        .matmul_bt(&mut exact, &a, Weights::BF16(&w), 1, 1, kk)
        .unwrap();
    k.matmul_bt(&mut prod, &a, Weights::BF16(&w), 1, 1, kk)
        .unwrap();
    assert_eq!(exact[0], kk as f32 * (1.0 + 2f32.powi(-12)));
    assert_eq!(prod[0], kk as f32, "1 + 2^-12 rounds to 1 in bf16");
}

/// Where bf16 products cannot run (levels below AVX-512, or no AVX-512 BF16), asking for
/// them gives the exact f32-activation products, bit for bit.
#[test]
fn bf16_products_fall_back_to_exact_below_avx512_bf16() {
    let mut rng = Rng::new(43);
    let (m, n, kk) = (5, 19, 300);
    let a = rng.vec_mixed(m * kk);
    let w: Vec<bf16> = rng
        .vec_mixed(n * kk)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    for level in KernelLevel::ALL {
        let Some(k) = Kernels::new(level) else {
            continue;
        };
        let on = k.with_bf16_products(true);
        if on.bf16_products_active() {
            assert_eq!(level, KernelLevel::Avx512);
            continue;
        }
        let (mut x, mut y) = (vec![0.0; m * n], vec![0.0; m * n]);
        on.matmul_bt(&mut x, &a, Weights::BF16(&w), m, n, kk)
            .unwrap();
        k.with_bf16_products(false)
            .matmul_bt(&mut y, &a, Weights::BF16(&w), m, n, kk)
            .unwrap();
        bits_eq(&format!("{level} fallback"), &x, &y).unwrap();
    }
}

/// Other weight dtypes ignore the mode.
#[test]
fn bf16_products_leave_f32_weights_alone() {
    let Some(k) = products() else { return };
    let mut rng = Rng::new(44);
    let (m, n, kk) = (4, 9, 77);
    let a = rng.vec_mixed(m * kk);
    let w = rng.vec_mixed(n * kk);
    let (mut x, mut y) = (vec![0.0; m * n], vec![0.0; m * n]);
    k.matmul_bt(&mut x, &a, Weights::F32(&w), m, n, kk).unwrap();
    k.with_bf16_products(false)
        .matmul_bt(&mut y, &a, Weights::F32(&w), m, n, kk)
        .unwrap();
    bits_eq("f32 weights", &x, &y).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random shapes and row ranges.
    #[test]
    fn bf16_products_random_shapes(m in 1usize..8, n in 1usize..26, kk in 1usize..200, seed in any::<u64>(), lo in 0usize..26, len in 0usize..26) {
        if let Some(k) = products() {
            let n0 = lo.min(n);
            let n1 = (n0 + len).min(n);
            let mut rng = Rng::new(seed);
            let mut fails = Failures::default();
            check_shape(&mut fails, k, &mut rng, m, n, kk, (n0, n1));
            fails.finish("bf16 products proptest");
        }
    }
}
