//! The scalar specification of the quantized dot products (and the `Scalar` level).
//!
//! For one weight row and one quantized activation row, exactly the f32 operations of
//! ggml's AVX2 `ggml_vec_dot_*` (llama.cpp's x86 CPU path), with its 8-lane structure
//! written out as arrays:
//!
//! - `lanes[l]` (i32, exact): for each 32-element group, the products of its elements
//!   `4l..4l+3` (the `vpmaddubsw` + `vpmaddwd` / `vpdpbusd` lane), times the sub-block
//!   scale for the k-quants, summed over the block;
//! - per block: `acc[l] = fma(d, lanes[l] as f32, acc[l])` with `d` = weight scale x
//!   activation scale (one f32 product);
//! - at the end `hsum8(acc)` (`(v0 + v4) + (v2 + v6)` and `(v1 + v5) + (v3 + v7)`, then
//!   those two), plus the type's min term:
//!   - Q4_1 / Q5_1: `summs = fma(m, s, summs)` per block (`m * s` is a product of two
//!     f16 values, exact in f32, so fused or not gives the same bits);
//!   - Q4_K: four lanes `accm[t] = fma(dmin, (m_2t S_2t + m_2t+1 S_2t+1) as f32, accm[t])`
//!     with `S_s` the sum of the activation quants of sub-block `s` and
//!     `dmin = -(activation d x weight dmin)`, reduced as `(a0 + a2) + (a1 + a3)`;
//!   - Q5_K: one scalar `summs = fma(dmin, (sum_s m_s S_s) as f32, summs)` (ggml writes
//!     `summs += dmin * sum`; we assume the compiler contracts it to an FMA, as GCC and
//!     Clang do by default with `-mfma`).
//!
//! - Q4_0 and Q4_K are the exceptions: llama.cpp repacks their rows (8 interleaved,
//!   `q4_0_8x8` / `q4_K_8x8`, on every AVX2 CPU, which its default `use_extra_bufts`
//!   turns on), and those kernels keep one f32 chain per output: per block
//!   `acc = fma((f32) sum q a, d_w d_a, acc)` with the block's whole integer sum (for
//!   Q4_K the sub-block scales inside it), and for Q4_K a second chain
//!   `accm = fma((f32) sum_s m_s S_s, dmin_w d_a, accm)`, the result `acc - accm`; no
//!   final tree. vtpu computes Q4_0 and Q4_K that way.
//!
//! The SIMD kernels (`gemm.rs`) produce the same integers by other instruction
//! sequences and then perform these same f32 operations in the same order, so every
//! level gives the same bits (tested).

use super::act::{ActRow, ActView};
use super::blocks::{f16_at, scale_min_k4, QK, QK_K};
use super::QuantType::{self, *};

/// The `hsum_float_8` tree.
#[inline]
pub(crate) fn hsum8(v: &[f32; 8]) -> f32 {
    let s4 = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

#[inline]
fn fma8(acc: &mut [f32; 8], d: f32, lanes: &[i32; 8]) {
    for (a, &l) in acc.iter_mut().zip(lanes) {
        *a = d.mul_add(l as f32, *a);
    }
}

/// The 32 quants of a 32-element block as integers (offset already removed for the
/// symmetric types), its scale `d` and its min `m` (0 for the symmetric types).
fn block32(qtype: QuantType, b: &[u8]) -> ([i32; QK], f32, f32) {
    let mut q = [0i32; QK];
    let d = f16_at(b, 0);
    let mut m = 0.0;
    match qtype {
        Q8_0 => {
            for (q, &v) in q.iter_mut().zip(&b[2..2 + QK]) {
                *q = v as i8 as i32;
            }
        }
        Q4_0 | Q4_1 => {
            let (o, off) = if qtype == Q4_0 { (2, 8) } else { (4, 0) };
            for j in 0..16 {
                q[j] = (b[o + j] & 0x0f) as i32 - off;
                q[j + 16] = (b[o + j] >> 4) as i32 - off;
            }
            if qtype == Q4_1 {
                m = f16_at(b, 2);
            }
        }
        Q5_0 | Q5_1 => {
            let (o, off) = if qtype == Q5_0 { (2, 16) } else { (4, 0) };
            let qh = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            for j in 0..16 {
                let lo = (b[o + 4 + j] & 0x0f) as u32 | (((qh >> j) & 1) << 4);
                let hi = (b[o + 4 + j] >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4);
                q[j] = lo as i32 - off;
                q[j + 16] = hi as i32 - off;
            }
            if qtype == Q5_1 {
                m = f16_at(b, 2);
            }
        }
        _ => {}
    }
    (q, d, m)
}

/// The 256 quants of a k-quant super-block (offset removed for Q6_K) and the scale of
/// each element's sub-block (`sc[e / 32]` for Q4_K / Q5_K, `sc[e / 16]` for Q6_K).
fn superblock(qtype: QuantType, b: &[u8]) -> ([i32; QK_K], [i32; QK_K]) {
    let (mut q, mut sc) = ([0i32; QK_K], [0i32; QK_K]);
    match qtype {
        Q4K | Q5K => {
            let (qh, qs) = if qtype == Q5K {
                (&b[16..48], &b[48..176])
            } else {
                (&b[0..0], &b[16..144])
            };
            for j in 0..4 {
                for l in 0..32 {
                    let v = qs[32 * j + l];
                    let (mut lo, mut hi) = ((v & 0x0f) as i32, (v >> 4) as i32);
                    if qtype == Q5K {
                        lo |= ((qh[l] >> (2 * j)) as i32 & 1) << 4;
                        hi |= ((qh[l] >> (2 * j + 1)) as i32 & 1) << 4;
                    }
                    q[64 * j + l] = lo;
                    q[64 * j + 32 + l] = hi;
                }
            }
            for (e, s) in sc.iter_mut().enumerate() {
                *s = scale_min_k4(e / 32, &b[4..16]).0 as i32;
            }
        }
        Q6K => {
            let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
            for h in 0..2 {
                for l in 0..32 {
                    let (lo, hi, bits) = (ql[64 * h + l], ql[64 * h + 32 + l], qh[32 * h + l]);
                    let v = [
                        (lo & 0x0f) | ((bits & 3) << 4),
                        (hi & 0x0f) | (((bits >> 2) & 3) << 4),
                        (lo >> 4) | (((bits >> 4) & 3) << 4),
                        (hi >> 4) | (((bits >> 6) & 3) << 4),
                    ];
                    for (t, &v) in v.iter().enumerate() {
                        q[128 * h + 32 * t + l] = v as i32 - 32;
                    }
                }
            }
            for (e, s) in sc.iter_mut().enumerate() {
                *s = scales[e / 16] as i8 as i32;
            }
        }
        _ => {}
    }
    (q, sc)
}

/// The dot product of one weight row (`w`, whole blocks of `qtype`) with one quantized
/// activation row of the matching `vec_dot_type`; `grouped` for a row of a full group
/// of 4 activation rows of a matmul:
/// llama.cpp's repacked Q4_K GEMM (`ggml_gemm_q4_K_8x8_q8_K`, AVX-512) updates its
/// chains once per 64 elements instead of once per 256; everything else is the same.
pub(crate) fn vec_dot_in(qtype: QuantType, w: &[u8], a: &ActRow<'_>, grouped: bool) -> f32 {
    let mut acc = [0f32; 8];
    match qtype {
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => {
            let mut summs = 0f32;
            let mut chain = 0f32;
            for (blk, b) in w.chunks_exact(qtype.block_bytes()).enumerate() {
                let (q, dw, mw) = block32(qtype, b);
                let aq = &a.qs[blk * QK..(blk + 1) * QK];
                let mut lanes = [0i32; 8];
                for (e, (&q, &x)) in q.iter().zip(aq).enumerate() {
                    lanes[e / 4] += q * x as i32;
                }
                if qtype == Q4_0 {
                    let t = lanes.iter().sum::<i32>() as f32;
                    chain = t.mul_add(dw * a.d[blk], chain);
                    continue;
                }
                fma8(&mut acc, dw * a.d[blk], &lanes);
                if matches!(qtype, Q4_1 | Q5_1) {
                    summs = mw.mul_add(a.s[blk], summs);
                }
            }
            if qtype == Q4_0 {
                chain
            } else if matches!(qtype, Q4_1 | Q5_1) {
                hsum8(&acc) + summs
            } else {
                hsum8(&acc)
            }
        }
        Q4K | Q5K | Q6K => {
            let (mut chain, mut chain_min) = (0f32, 0f32);
            let mut summs = 0f32;
            for (blk, b) in w.chunks_exact(qtype.block_bytes()).enumerate() {
                let (q, sc) = superblock(qtype, b);
                let aq = &a.qs[blk * QK_K..(blk + 1) * QK_K];
                let mut lanes = [0i32; 8];
                if qtype == Q6K {
                    // ggml's AVX2 Q6_K: the unsigned 6-bit quants in the lanes, then the
                    // offset 32 removed per lane as `32 (sc_2l S_2l + sc_2l+1 S_2l+1)`
                    // with S_k the activation sum of elements 16k..16k+16 (its `q8sclsub`):
                    // the same total, spread over the lanes differently.
                    for e in 0..QK_K {
                        lanes[(e % 32) / 4] += sc[e] * (q[e] + 32) * aq[e] as i32;
                    }
                    let bs = &a.bsums[blk * 16..(blk + 1) * 16];
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        let (s0, s1) = (sc[16 * (2 * l)], sc[16 * (2 * l + 1)]);
                        *lane -= 32 * (s0 * bs[2 * l] as i32 + s1 * bs[2 * l + 1] as i32);
                    }
                } else {
                    for e in 0..QK_K {
                        lanes[(e % 32) / 4] += sc[e] * q[e] * aq[e] as i32;
                    }
                }
                let ad = a.d[blk];
                let dw = f16_at(b, if qtype == Q6K { 208 } else { 0 });
                if qtype == Q4K && grouped {
                    // Per 64 elements (chunks 2p, 2p + 1): their lanes are not split out
                    // above, so sum them here.
                    for p in 0..4 {
                        let t: i32 = (64 * p..64 * (p + 1))
                            .map(|e| sc[e] * q[e] * aq[e] as i32)
                            .sum();
                        chain = (t as f32).mul_add(dw * ad, chain);
                    }
                } else if qtype == Q4K {
                    let t = lanes.iter().sum::<i32>() as f32;
                    chain = t.mul_add(dw * ad, chain);
                } else {
                    fma8(&mut acc, ad * dw, &lanes);
                }
                if qtype == Q6K {
                    continue;
                }
                let dmin = -ad * f16_at(b, 2);
                let bs = &a.bsums[blk * 16..(blk + 1) * 16];
                let prod: [i32; 4] = std::array::from_fn(|t| {
                    (0..2)
                        .map(|u| {
                            let s = 2 * t + u;
                            let m = scale_min_k4(s, &b[4..16]).1 as i32;
                            m * (bs[2 * s] as i32 + bs[2 * s + 1] as i32)
                        })
                        .sum()
                });
                if qtype == Q4K && grouped {
                    for &p in &prod {
                        chain_min = (p as f32).mul_add(f16_at(b, 2) * ad, chain_min);
                    }
                } else if qtype == Q4K {
                    let t = prod.iter().sum::<i32>() as f32;
                    chain_min = t.mul_add(f16_at(b, 2) * ad, chain_min);
                } else {
                    summs = dmin.mul_add(prod.iter().sum::<i32>() as f32, summs);
                }
            }
            match qtype {
                Q4K => chain - chain_min,
                Q5K => hsum8(&acc) + summs,
                _ => hsum8(&acc),
            }
        }
        // Not matmul weights (refused by `check_weights`).
        // Not weights, or read through `matmul_r8` (ggml layout restored first).
        Q8_1 | Q8K | Q4_0R8 | Q5_0R8 | Q8_0R8 => 0.0,
    }
}

/// `C (m x nw) += A * W^T` over `nw` weight rows `w`, one [`vec_dot`] per output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    c: &mut [f32],
    act: &ActView<'_>,
    qtype: QuantType,
    w: &[u8],
    m: usize,
    k: usize,
    nw: usize,
) {
    let Some(row_bytes) = qtype.row_bytes(k) else {
        return;
    };
    // Rows in full groups of 4 of a call of several rows, as llama.cpp's repacked GEMM
    // takes them (the rest, and single rows, as its GEMV).
    let grouped = if m > 1 { m / 4 * 4 } else { 0 };
    for i in 0..m {
        let a = act.row(i);
        for (j, wr) in w.chunks_exact(row_bytes).take(nw).enumerate() {
            c[i * nw + j] += vec_dot_in(qtype, wr, &a, i < grouped);
        }
    }
}
