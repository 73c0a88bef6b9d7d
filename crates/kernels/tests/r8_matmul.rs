//! Repacked (8-row) weights through the public matmul entry points, as the runtime
//! calls them: every implementation (scalar, AVX2, AVX-512 with and without VNNI), m = 1
//! (the VNNI GEMV on the repacked layout) and m > 1 (the ggml layout restored in chunks),
//! row ranges of whole groups, must give exactly the bits of the same weights in the
//! ggml layout; row ranges that split a group, and weights that are not whole groups, are
//! errors; rows are dequantized from either layout alike.

mod common;

use common::{bits_eq, Rng};
use vtpu_kernels::quant::r8::{repack_r8, R8_ROWS};
use vtpu_kernels::quant::{dequantize_row_of, matmul_bt_rows_with, QuantImpl};
use vtpu_kernels::{dequantize_row, quantize_row, QuantType};

const BASES: [QuantType; 3] = [QuantType::Q4_0, QuantType::Q5_0, QuantType::Q8_0];

/// `rows x k` reference-quantized weights of `base` (ggml layout).
fn weights(rng: &mut Rng, base: QuantType, rows: usize, k: usize) -> Vec<u8> {
    let rb = base.row_bytes(k).expect("whole blocks");
    let mut w = vec![0u8; rows * rb];
    for row in w.chunks_exact_mut(rb) {
        quantize_row(base, &rng.vec_mixed(k), row).expect("quantize");
    }
    w
}

fn repacked(base: QuantType, w: &[u8], rows: usize, k: usize) -> Vec<u8> {
    let mut out = vec![0u8; w.len()];
    repack_r8(base, w, rows, k, &mut out).expect("repack");
    out
}

#[test]
fn repacked_weights_give_the_ggml_layouts_bits_for_every_implementation_and_m() {
    let mut rng = Rng::new(0x5eed_0008);
    let mut checked = 0;
    for base in BASES {
        let r8 = base.r8().expect("has an 8-row layout");
        assert_eq!(r8.r8_base(), Some(base));
        for &(n, k) in &[(8usize, 32usize), (64, 576), (136, 96)] {
            let w = weights(&mut rng, base, n, k);
            let w8 = repacked(base, &w, n, k);
            for &m in &[1usize, 2, 3, 4, 5, 9] {
                let a = rng.vec_mixed(m * k);
                for imp in QuantImpl::supported() {
                    // Whole matrix and a range of whole groups inside it.
                    for &(n0, n1) in &[(0, n), (8.min(n), n), (0, 8)] {
                        // A non-zero C: the kernels add into it.
                        let c0: Vec<f32> = rng.vec_mixed(m * (n1 - n0));
                        let mut want = c0.clone();
                        matmul_bt_rows_with(imp, &mut want, &a, base, &w, m, n, k, n0, n1)
                            .expect("ggml layout");
                        let mut got = c0.clone();
                        matmul_bt_rows_with(imp, &mut got, &a, r8, &w8, m, n, k, n0, n1)
                            .expect("repacked layout");
                        let what = format!("{r8} {imp:?} m={m} {n}x{k} rows {n0}..{n1}");
                        if let Err(e) = bits_eq(&what, &got, &want) {
                            panic!("{e}");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} cases ran");
}

#[test]
fn repacked_weights_outside_whole_groups_are_errors() {
    let mut rng = Rng::new(7);
    let (n, k) = (16, 64);
    for base in BASES {
        let r8 = base.r8().unwrap();
        let w8 = repacked(base, &weights(&mut rng, base, n, k), n, k);
        let a = rng.vec_mixed(k);
        let imp = QuantImpl::Scalar;
        // A row range that splits a group.
        let mut c = vec![0.0; 4];
        let e = matmul_bt_rows_with(imp, &mut c, &a, r8, &w8, 1, n, k, 4, 8).unwrap_err();
        assert!(e.to_string().contains("splits a group"), "{e}");
        // Weights that are not whole groups (12 rows of the 16's bytes cut short).
        let rb = base.row_bytes(k).unwrap();
        let mut c = vec![0.0; 12];
        let e =
            matmul_bt_rows_with(imp, &mut c, &a, r8, &w8[..12 * rb], 1, 12, k, 0, 8).unwrap_err();
        assert!(e.to_string().contains("whole groups"), "{e}");
        // A repacked row cannot be dequantized alone.
        let mut row = vec![0.0; k];
        assert!(dequantize_row(r8, &w8[..rb], &mut row).is_err());
    }
}

#[test]
fn rows_dequantize_alike_from_either_layout() {
    let mut rng = Rng::new(99);
    let (n, k) = (24, 96);
    for base in BASES {
        let w = weights(&mut rng, base, n, k);
        let w8 = repacked(base, &w, n, k);
        let r8 = base.r8().unwrap();
        for row in 0..n {
            let (mut want, mut got) = (vec![0.0; k], vec![0.0; k]);
            dequantize_row_of(base, &w, row, &mut want).unwrap();
            dequantize_row_of(r8, &w8, row, &mut got).unwrap();
            if let Err(e) = bits_eq(&format!("{r8} row {row}"), &got, &want) {
                panic!("{e}");
            }
        }
        let mut out = vec![0.0; k];
        assert!(
            dequantize_row_of(r8, &w8, n, &mut out).is_err(),
            "row past the end"
        );
        assert!(
            dequantize_row_of(base, &w, n, &mut out).is_err(),
            "row past the end"
        );
    }
    assert_eq!(R8_ROWS, 8);
}
