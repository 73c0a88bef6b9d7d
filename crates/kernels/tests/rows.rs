//! Row reductions, rmsnorm and softmax at every level against the f64 references, with
//! bounds derived from the row length and magnitudes.

mod common;

use common::{levels, Failures, Rng, SIZES};
use vtpu_kernels::tolerance::{check_close, dot_bound, rmsnorm_bound, softmax_bound, sumsq_bound};
use vtpu_kernels::{scalar, Kernels};

#[test]
fn row_sum_sumsq_max_match_reference() {
    let mut rng = Rng::new(20);
    let mut fails = Failures::default();
    for k in levels() {
        for &cols in SIZES {
            for rows in [0, 1, 3] {
                let a = rng.vec_mixed(rows * cols);
                let (mut s, mut q, mut mx) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
                k.row_sum(&mut s, &a, rows, cols).unwrap();
                k.row_sumsq(&mut q, &a, rows, cols).unwrap();
                k.row_max(&mut mx, &a, rows, cols).unwrap();
                let (mut ws, mut wq, mut wm) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
                scalar::row_sum(&mut ws, &a, rows, cols);
                scalar::row_sumsq(&mut wq, &a, rows, cols);
                scalar::row_max(&mut wm, &a, rows, cols);
                for r in 0..rows {
                    let row = &a[r * cols..(r + 1) * cols];
                    let abs: f64 = row.iter().map(|&x| x.abs() as f64).sum();
                    let sq: f64 = row.iter().map(|&x| x as f64 * x as f64).sum();
                    let what = format!("{:?} rows={rows} cols={cols} row {r}", k.level());
                    fails.check(check_close(
                        &format!("row_sum {what}"),
                        s[r],
                        ws[r],
                        dot_bound(cols, abs),
                    ));
                    fails.check(check_close(
                        &format!("row_sumsq {what}"),
                        q[r],
                        wq[r],
                        sumsq_bound(cols, sq),
                    ));
                    // max is exact whatever the order (no zeros of both signs or NaN here).
                    fails.check(check_close(&format!("row_max {what}"), mx[r], wm[r], 0.0));
                }
            }
        }
    }
    fails.finish("row reductions");
}

#[test]
fn empty_rows() {
    for k in levels() {
        let mut d = [1.0; 2];
        k.row_max(&mut d, &[], 2, 0).unwrap();
        assert_eq!(d, [f32::NEG_INFINITY; 2]);
        k.row_sum(&mut d, &[], 2, 0).unwrap();
        assert_eq!(d, [0.0; 2]);
    }
}

/// The kernels' rmsnorm (four rows side by side) is the spec's, bit for bit: llama.cpp's
/// sequential f64 sum per row, whatever the number of rows.
#[test]
fn rmsnorm_is_the_spec_bit_for_bit() {
    let mut rng = Rng::new(22);
    for k in levels() {
        for &dim in &[0usize, 1, 7, 64, 576, 1000] {
            for rows in 0..10 {
                let x = rng.vec_mixed(rows * dim);
                let w = rng.vec_uniform(dim, -2.0, 2.0);
                let (mut got, mut want) = (vec![0.0; rows * dim], vec![0.0; rows * dim]);
                k.rmsnorm(&mut got, &x, &w, rows, dim, 1e-6).unwrap();
                scalar::rmsnorm(&mut want, &x, &w, rows, dim, 1e-6);
                common::bits_eq(
                    &format!("rmsnorm {:?} rows={rows} dim={dim}", k.level()),
                    &got,
                    &want,
                )
                .unwrap();
            }
        }
    }
}

#[test]
fn rmsnorm_matches_reference() {
    let mut rng = Rng::new(21);
    let mut fails = Failures::default();
    for k in levels() {
        for &dim in SIZES.iter().chain(&[576, 896]) {
            for rows in [1, 2, 5] {
                let x = rng.vec_mixed(rows * dim);
                let w = rng.vec_uniform(dim, -2.0, 2.0);
                for eps in [1e-5, 1e-6, 0.5] {
                    let mut got = vec![0.0; rows * dim];
                    k.rmsnorm(&mut got, &x, &w, rows, dim, eps).unwrap();
                    let mut want = vec![0.0; rows * dim];
                    scalar::rmsnorm(&mut want, &x, &w, rows, dim, eps);
                    for i in 0..rows * dim {
                        let what = format!(
                            "rmsnorm {:?} rows={rows} dim={dim} eps={eps} [{i}]",
                            k.level()
                        );
                        fails.check(check_close(
                            &what,
                            got[i],
                            want[i],
                            rmsnorm_bound(dim, want[i]),
                        ));
                    }
                }
            }
        }
    }
    fails.finish("rmsnorm");
}

#[test]
fn softmax_matches_reference() {
    let mut rng = Rng::new(22);
    let mut fails = Failures::default();
    for k in levels() {
        for &cols in SIZES.iter().chain(&[4096]) {
            for rows in [1, 3] {
                for spread in [1.0f32, 10.0, 80.0] {
                    let mut x = rng.vec_uniform(rows * cols, -spread, spread);
                    // Causal-mask style -inf entries (never a whole row).
                    for r in 0..rows {
                        for c in 1..cols {
                            if rng.below(7) == 0 {
                                x[r * cols + c] = f32::NEG_INFINITY;
                            }
                        }
                        if cols > 0 {
                            x[r * cols] = x[r * cols].max(-spread / 2.0);
                        }
                    }
                    let mut got = x.clone();
                    k.softmax_rows(&mut got, rows, cols).unwrap();
                    let mut want = x.clone();
                    scalar::softmax_rows(&mut want, rows, cols);
                    for r in 0..rows {
                        let row = &x[r * cols..(r + 1) * cols];
                        let mx = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                        for (c, &xc) in row.iter().enumerate() {
                            let i = r * cols + c;
                            let what = format!(
                                "softmax {:?} rows={rows} cols={cols} spread={spread} [{r},{c}]",
                                k.level()
                            );
                            fails.check(check_close(
                                &what,
                                got[i],
                                want[i],
                                softmax_bound(cols, mx, xc, want[i]),
                            ));
                        }
                        if cols > 0 {
                            // The outputs sum to 1 within the sum of their bounds (+ the
                            // reference's own rounding, one u per element).
                            let total: f64 = got[r * cols..(r + 1) * cols]
                                .iter()
                                .map(|&v| v as f64)
                                .sum();
                            let bound: f64 = (0..cols)
                                .map(|c| {
                                    softmax_bound(cols, mx, row[c], want[r * cols + c])
                                        + want[r * cols + c] as f64 * 6e-8
                                })
                                .sum();
                            if (total - 1.0).abs() > bound {
                                fails.check(Err(format!(
                                    "softmax row total {total} off by more than {bound:e}"
                                )));
                            }
                        }
                    }
                }
            }
        }
    }
    fails.finish("softmax");
}

#[test]
fn softmax_special_rows() {
    for k in levels() {
        // All masked, or a +inf or NaN max: NaN, as the reference (and PyTorch).
        for row in [
            [f32::NEG_INFINITY; 3],
            [1.0, f32::INFINITY, 0.0],
            [1.0, f32::NAN, 0.0],
        ] {
            let mut got = row;
            k.softmax_rows(&mut got, 1, 3).unwrap();
            let mut want = row;
            scalar::softmax_rows(&mut want, 1, 3);
            assert!(
                got.iter().all(|v| v.is_nan()),
                "{:?} {row:?} -> {got:?}",
                k.level()
            );
            assert!(want.iter().all(|v| v.is_nan()));
        }
        let mut one = [3.0];
        k.softmax_rows(&mut one, 1, 1).unwrap();
        assert_eq!(one, [1.0]);
    }
}

#[test]
fn free_function_rmsnorm_and_softmax() {
    let x = [3.0f32, 4.0];
    let mut out = [0.0; 2];
    vtpu_kernels::rmsnorm(&mut out, &x, &[1.0, 2.0], 1, 2, 0.0).unwrap();
    // rms = sqrt(12.5)
    let r = 12.5f64.sqrt();
    assert!((out[0] as f64 - 3.0 / r).abs() < 1e-6 && (out[1] as f64 - 8.0 / r).abs() < 1e-6);
    let mut s = [0.0f32, 0.0];
    vtpu_kernels::softmax_rows(&mut s, 1, 2).unwrap();
    assert_eq!(s, [0.5, 0.5]);
    let _ = Kernels::current();
}
