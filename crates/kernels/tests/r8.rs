//! The R8 layout (Q4_0 / Q5_0 / Q8_0 in groups of 8 interleaved rows) and its GEMV:
//! the layout against an independent, bit-by-bit construction from the written spec,
//! round trips, single-row extraction, the GEMV bit for bit against the scalar
//! specification on the original layout, and shape errors.

mod common;

use common::{bits_eq, Failures, Rng};
use half::f16;
use vtpu_kernels::quant::r8::{
    gemv_r8_for_tests, r8_row, r8_supported, repack_r8, unrepack_r8, R8_ROWS,
};
use vtpu_kernels::quant::{matmul_bt_rows_with, QuantImpl};
use vtpu_kernels::{quantize_row, KernelError, QuantType};

const R8_TYPES: [QuantType; 3] = [QuantType::Q4_0, QuantType::Q5_0, QuantType::Q8_0];

/// `rows x k` weights of `qtype` in the ggml layout: half the rows reference-quantized
/// from mixed-magnitude values, half random bytes with random f16 scales of both signs
/// (what a file may hold: negative and tiny scales, Q8_0 quants of -128).
fn weights(rng: &mut Rng, qtype: QuantType, rows: usize, k: usize) -> Vec<u8> {
    let rb = qtype.row_bytes(k).expect("whole blocks");
    let mut w = vec![0u8; rows * rb];
    for (r, row) in w.chunks_exact_mut(rb).enumerate() {
        if r % 2 == 0 {
            quantize_row(qtype, &rng.vec_mixed(k), row).expect("quantize");
            continue;
        }
        for b in row.iter_mut() {
            *b = rng.next_u64() as u8;
        }
        for blk in row.chunks_exact_mut(qtype.block_bytes()) {
            let d = f16::from_f32(rng.uniform(-1.0, 1.0) * 2f32.powi(rng.below(20) as i32 - 14));
            blk[..2].copy_from_slice(&d.to_bits().to_le_bytes());
        }
    }
    w
}

/// The R8 bytes of `w`, built from the layout description one bit / byte at a time
/// (independent of the library's move table).
fn spec_r8(qtype: QuantType, w: &[u8], rows: usize, k: usize) -> Vec<u8> {
    let bb = qtype.block_bytes();
    let rb = qtype.row_bytes(k).unwrap();
    let nb = k / 32;
    let mut out = vec![0u8; w.len()];
    for g in 0..rows / 8 {
        for b in 0..nb {
            let sb = g * 8 * rb + b * 8 * bb;
            for r in 0..8 {
                let blk = &w[(8 * g + r) * rb + b * bb..][..bb];
                out[sb + 2 * r] = blk[0];
                out[sb + 2 * r + 1] = blk[1];
                match qtype {
                    QuantType::Q8_0 => {
                        out[sb + 16 + 32 * r..][..32].copy_from_slice(&blk[2..34]);
                    }
                    QuantType::Q4_0 => {
                        out[sb + 16 + 16 * r..][..16].copy_from_slice(&blk[2..18]);
                    }
                    QuantType::Q5_0 => {
                        let qh = u32::from_le_bytes(blk[2..6].try_into().unwrap());
                        for j in 0..32 {
                            if qh >> j & 1 == 0 {
                                continue;
                            }
                            // Mask: rows 0..4 low halves, rows 0..4 high halves, then
                            // rows 4..8 likewise; row r % 4 at bits 16 (r % 4).
                            let mask = 2 * (r / 4) + j / 16;
                            let bit = 16 * (r % 4) + j % 16;
                            out[sb + 16 + 8 * mask + bit / 8] |= 1 << (bit % 8);
                        }
                        out[sb + 48 + 16 * r..][..16].copy_from_slice(&blk[6..22]);
                    }
                    _ => unreachable!(),
                }
            }
        }
    }
    out
}

const LAYOUT_SHAPES: [(usize, usize); 3] = [(16, 64), (64, 576), (8, 4864)];

#[test]
fn repack_matches_the_written_layout_and_round_trips() {
    let mut rng = Rng::new(1);
    for qtype in R8_TYPES {
        for (rows, k) in LAYOUT_SHAPES {
            let w = weights(&mut rng, qtype, rows, k);
            let mut r8 = vec![0u8; w.len()];
            repack_r8(qtype, &w, rows, k, &mut r8).unwrap();
            assert!(
                r8 == spec_r8(qtype, &w, rows, k),
                "{qtype} {rows}x{k}: repack differs from the layout spec"
            );
            let mut back = vec![0xa5u8; w.len()];
            unrepack_r8(qtype, &r8, rows, k, &mut back).unwrap();
            assert!(back == w, "{qtype} {rows}x{k}: unrepack(repack(w)) != w");
        }
    }
}

#[test]
fn r8_row_gives_each_original_row() {
    let mut rng = Rng::new(2);
    for qtype in R8_TYPES {
        for (rows, k) in LAYOUT_SHAPES {
            let w = weights(&mut rng, qtype, rows, k);
            let rb = qtype.row_bytes(k).unwrap();
            let mut r8 = vec![0u8; w.len()];
            repack_r8(qtype, &w, rows, k, &mut r8).unwrap();
            let mut one = vec![0u8; rb];
            for row in 0..rows {
                one.fill(0x5a);
                r8_row(qtype, &r8, row, k, &mut one).unwrap();
                assert!(
                    one == w[row * rb..(row + 1) * rb],
                    "{qtype} {rows}x{k}: row {row} differs"
                );
            }
        }
    }
}

/// Activation rows that stress the integer and f32 paths: mixed magnitudes, zeros
/// (whole zero blocks: d = 0), large values, and all-negative blocks.
fn activations(rng: &mut Rng, k: usize, case: usize) -> Vec<f32> {
    (0..k)
        .map(|i| match case {
            0 => rng.mixed(),
            1 => {
                if (i / 32) % 3 == 0 || rng.below(4) == 0 {
                    0.0
                } else {
                    rng.mixed()
                }
            }
            2 => rng.uniform(-1.0, 1.0) * 1e5,
            _ => -rng.uniform(0.0, 3.0) - if i % 32 == 5 { 1e3 } else { 0.0 },
        })
        .collect()
}

fn has_vnni() -> bool {
    let ok = QuantImpl::Avx512Vnni.is_supported();
    if !ok {
        println!("note: no AVX-512 VNNI on this CPU; the R8 GEMV is not run");
    }
    ok
}

#[test]
fn gemv_is_bit_identical_to_the_scalar_spec() {
    if !has_vnni() {
        return;
    }
    let shapes = [(8, 32), (576, 576), (1536, 576), (896, 4864), (128, 896)];
    let mut rng = Rng::new(3);
    let mut fails = Failures::default();
    for qtype in R8_TYPES {
        for (nw, k) in shapes {
            let w = weights(&mut rng, qtype, nw, k);
            let mut r8 = vec![0u8; w.len()];
            repack_r8(qtype, &w, nw, k, &mut r8).unwrap();
            for case in 0..4 {
                let a = activations(&mut rng, k, case);
                // Non-zero C: the kernel adds to it.
                let c0 = rng.vec_mixed(nw);
                let (mut got, mut want) = (c0.clone(), c0);
                matmul_bt_rows_with(QuantImpl::Scalar, &mut want, &a, qtype, &w, 1, nw, k, 0, nw)
                    .unwrap();
                gemv_r8_for_tests(qtype, &mut got, &a, &r8, k, nw).unwrap();
                fails.check(bits_eq(
                    &format!("{qtype} {nw}x{k} case {case}"),
                    &got,
                    &want,
                ));
            }
        }
    }
    fails.finish("R8 GEMV vs scalar spec");
}

#[test]
fn gemv_on_a_range_of_groups_is_that_row_range() {
    if !has_vnni() {
        return;
    }
    let (nw, k) = (64, 576);
    let mut rng = Rng::new(4);
    for qtype in R8_TYPES {
        let w = weights(&mut rng, qtype, nw, k);
        let rb = qtype.row_bytes(k).unwrap();
        let mut r8 = vec![0u8; w.len()];
        repack_r8(qtype, &w, nw, k, &mut r8).unwrap();
        let a = activations(&mut rng, k, 0);
        let (n0, n1) = (16, 40);
        let mut want = vec![0f32; n1 - n0];
        matmul_bt_rows_with(
            QuantImpl::Scalar,
            &mut want,
            &a,
            qtype,
            &w,
            1,
            nw,
            k,
            n0,
            n1,
        )
        .unwrap();
        let mut got = vec![0f32; n1 - n0];
        gemv_r8_for_tests(qtype, &mut got, &a, &r8[n0 * rb..n1 * rb], k, n1 - n0).unwrap();
        bits_eq(&format!("{qtype} rows {n0}..{n1}"), &got, &want).unwrap();
    }
}

fn is_shape(r: Result<(), KernelError>) -> bool {
    matches!(r, Err(KernelError::ShapeMismatch { .. }))
}

fn is_unsupported(r: Result<(), KernelError>) -> bool {
    matches!(r, Err(KernelError::Unsupported { .. }))
}

#[test]
fn shape_and_type_errors() {
    assert_eq!(R8_ROWS, 8);
    assert!(R8_TYPES.iter().all(|&t| r8_supported(t)));
    let q = QuantType::Q4_0;
    let (rows, k) = (16, 64);
    let n = rows * q.row_bytes(k).unwrap();
    let src = vec![0u8; n];
    let mut dst = vec![0u8; n];
    for f in [repack_r8, unrepack_r8] {
        assert!(f(q, &src, rows, k, &mut dst).is_ok());
        assert!(is_shape(f(
            q,
            &src[..n - 36],
            rows - 1,
            k,
            &mut dst[..n - 36]
        )));
        assert!(is_shape(f(q, &src[..n - 1], rows, k, &mut dst)));
        assert!(is_shape(f(q, &src, rows, k, &mut dst[..n - 1])));
        assert!(is_shape(f(q, &src, rows, 48, &mut dst)));
        for t in [
            QuantType::Q4_1,
            QuantType::Q5_1,
            QuantType::Q4K,
            QuantType::Q8K,
        ] {
            assert!(!r8_supported(t));
            assert!(is_unsupported(f(t, &src, rows, k, &mut dst)), "{t}");
        }
    }
    let msg = repack_r8(q, &src[..n - 36], 15, k, &mut dst[..n - 36])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("rows = 15") && msg.contains("multiple of 8"),
        "{msg}"
    );

    let mut row = vec![0u8; 36];
    assert!(r8_row(q, &src, 15, k, &mut row).is_ok());
    assert!(is_shape(r8_row(q, &src, 16, k, &mut row)));
    assert!(is_shape(r8_row(q, &src[..n - 1], 0, k, &mut row)));
    assert!(is_shape(r8_row(q, &src, 0, k, &mut row[..35])));
    assert!(is_unsupported(r8_row(QuantType::Q6K, &src, 0, k, &mut row)));

    let a = vec![0f32; k];
    let mut c = vec![0f32; rows];
    let g = |c: &mut [f32], a: &[f32], w: &[u8], nw| gemv_r8_for_tests(q, c, a, w, k, nw);
    assert!(is_shape(g(&mut c[..12], &a, &src[..12 * 36], 12)));
    assert!(is_shape(g(&mut c, &a[..k - 1], &src, rows)));
    assert!(is_shape(g(&mut c[..8], &a, &src, 8)));
    assert!(is_shape(g(&mut c, &a, &src[..n - 36], rows)));
    assert!(is_unsupported(gemv_r8_for_tests(
        QuantType::Q4_1,
        &mut c,
        &a,
        &src,
        k,
        rows
    )));
}
