//! The GGML block layouts (`ggml-common.h`), their dequantizers (`dequantize_row_*`) and
//! the reference weight quantizers (`quantize_row_*_ref`), in plain scalar Rust.
//!
//! Byte layouts (all multi-byte fields little-endian; `f16` is IEEE half):
//!
//! | type | elems | bytes | fields, in order |
//! |------|-------|-------|------------------|
//! | Q4_0 | 32  | 18  | f16 d, 16 B nibbles: element j < 16 low nibble of byte j, j + 16 the high one; x = d (q - 8) |
//! | Q4_1 | 32  | 20  | f16 d, f16 m, 16 B nibbles; x = d q + m |
//! | Q5_0 | 32  | 22  | f16 d, u32 qh (bit j = 5th bit of element j), 16 B nibbles; x = d (q - 16) |
//! | Q5_1 | 32  | 24  | f16 d, f16 m, u32 qh, 16 B nibbles; x = d q + m |
//! | Q8_0 | 32  | 34  | f16 d, 32 x i8; x = d q |
//! | Q8_1 | 32  | 36  | f16 d, f16 s (= d sum q), 32 x i8; x = d q |
//! | Q4_K | 256 | 144 | f16 d, f16 dmin, 12 B of 6-bit scales/mins (8 each), 128 B nibbles |
//! | Q5_K | 256 | 176 | f16 d, f16 dmin, 12 B scales/mins, 32 B high bits, 128 B nibbles |
//! | Q6_K | 256 | 210 | 128 B low nibbles, 64 B high 2-bit pairs, 16 x i8 scales, f16 d |
//! | Q8_K | 256 | 292 | f32 d, 256 x i8, 16 x i16 sums of 16 quants |
//!
//! Q4_K / Q5_K: sub-block `s` (32 elements) has scale `sc_s` and min `m_s` (6 bits each,
//! [`scale_min_k4`]); `x = d sc_s q - dmin m_s`. In each 64-element chunk `j` the low
//! nibbles of bytes `32j..32j+32` are sub-block `2j`, the high nibbles sub-block `2j + 1`;
//! Q5_K's 5th bit of element `l` of those sub-blocks is bit `2j` / `2j + 1` of `qh[l]`.
//! Q6_K: in each 128-element half `h`, element `l < 32` takes the low nibble of
//! `ql[64h + l]` and bits 0-1 of `qh[32h + l]`, `l + 32` the low nibble of
//! `ql[64h + 32 + l]` and bits 2-3, `l + 64` the high nibble of `ql[64h + l]` and bits 4-5,
//! `l + 96` the high nibble of `ql[64h + 32 + l]` and bits 6-7; `x = d sc_(e / 16) (q - 32)`.
//!
//! Callers ([`super::dequantize_row`], [`super::quantize_row`]) have checked that the
//! byte and element counts are whole, matching numbers of blocks; the loops below walk
//! `chunks_exact`, so nothing here can index out of bounds.

use half::f16;

use super::QuantType::{self, *};

/// Elements per block of the 32-element formats, and of a k-quant super-block.
pub(crate) const QK: usize = 32;
pub(crate) const QK_K: usize = 256;

/// The f16 at `b[off..off + 2]`, as f32 (exact).
#[inline]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

#[inline]
fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

#[inline]
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K / Q5_K block from its 12 packed
/// bytes: sub-blocks 0-3 keep the low 6 bits of bytes `j` (scale) and `j + 4` (min);
/// sub-blocks 4-7 take a nibble of byte `j + 4` and the top 2 bits of byte `j - 4`
/// (scale) or byte `j` (min) as their high bits.
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// `dst` (a whole number of blocks) from `src` (as many blocks of `qtype`).
pub(crate) fn dequantize(qtype: QuantType, src: &[u8], dst: &mut [f32]) {
    let (be, bb) = (qtype.block_elems(), qtype.block_bytes());
    for (b, y) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(be)) {
        match qtype {
            Q4_0 => {
                let d = f16_at(b, 0);
                for j in 0..16 {
                    y[j] = ((b[2 + j] & 0x0f) as i32 - 8) as f32 * d;
                    y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
                }
            }
            Q4_1 => {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                for j in 0..16 {
                    y[j] = (b[4 + j] & 0x0f) as f32 * d + m;
                    y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
                }
            }
            Q5_0 | Q5_1 => {
                // Q5_0: d, qh, qs; Q5_1: d, m, qh, qs.
                let has_min = qtype == Q5_1;
                let o = if has_min { 4 } else { 2 };
                let (d, qh) = (f16_at(b, 0), u32_at(b, o));
                let m = if has_min { f16_at(b, 2) } else { 0.0 };
                for j in 0..16 {
                    let lo = (b[o + 4 + j] & 0x0f) as u32 | (((qh >> j) & 1) << 4);
                    let hi = (b[o + 4 + j] >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4);
                    if has_min {
                        y[j] = lo as f32 * d + m;
                        y[j + 16] = hi as f32 * d + m;
                    } else {
                        y[j] = (lo as i32 - 16) as f32 * d;
                        y[j + 16] = (hi as i32 - 16) as f32 * d;
                    }
                }
            }
            Q8_0 | Q8_1 => {
                let o = if qtype == Q8_0 { 2 } else { 4 };
                let d = f16_at(b, 0);
                for (y, &q) in y.iter_mut().zip(&b[o..o + QK]) {
                    *y = q as i8 as f32 * d;
                }
            }
            Q4K | Q5K => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let (qh, qs) = if qtype == Q5K {
                    (&b[16..48], &b[48..176])
                } else {
                    (&b[0..0], &b[16..144])
                };
                for j in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (d1, mm1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, mm2) = (d * sc2 as f32, dmin * m2 as f32);
                    for l in 0..32 {
                        let q = qs[32 * j + l];
                        let (mut lo, mut hi) = ((q & 0x0f) as u32, (q >> 4) as u32);
                        if qtype == Q5K {
                            lo |= ((qh[l] >> (2 * j)) as u32 & 1) << 4;
                            hi |= ((qh[l] >> (2 * j + 1)) as u32 & 1) << 4;
                        }
                        y[64 * j + l] = d1 * lo as f32 - mm1;
                        y[64 * j + 32 + l] = d2 * hi as f32 - mm2;
                    }
                }
            }
            Q6K => {
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = f16_at(b, 208);
                for h in 0..2 {
                    for l in 0..32 {
                        let (lo, hi_l) = (ql[64 * h + l], ql[64 * h + 32 + l]);
                        let bits = qh[32 * h + l];
                        let q = [
                            (lo & 0x0f) | ((bits & 3) << 4),
                            (hi_l & 0x0f) | (((bits >> 2) & 3) << 4),
                            (lo >> 4) | (((bits >> 4) & 3) << 4),
                            (hi_l >> 4) | (((bits >> 6) & 3) << 4),
                        ];
                        for (t, &q) in q.iter().enumerate() {
                            let s = sc[8 * h + l / 16 + 2 * t] as i8;
                            y[128 * h + 32 * t + l] = d * s as f32 * (q as i32 - 32) as f32;
                        }
                    }
                }
            }
            Q8K => {
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                for (y, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
                    *y = d * q as i8 as f32;
                }
            }
            // Refused by `dequantize_row` (a repacked row is spread over its group).
            Q4_0R8 | Q5_0R8 | Q8_0R8 => {}
        }
    }
}

/// Largest `|v|` and the first `v` attaining it (ggml's `amax` / `max` scan with `<`).
fn abs_max_first(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// `1 / d`, or 0 for `d == 0` (ggml's `id = d ? 1.0f/d : 0.0f`).
#[inline]
fn inv(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Reference quantizers, block by block. `as i8` / `as u8` truncate toward zero like C's
/// float-to-integer conversion for every value these formulas can produce from finite
/// input (NaN input gives 0 where C is undefined).
pub(crate) fn quantize(qtype: QuantType, src: &[f32], dst: &mut [u8]) {
    let (be, bb) = (qtype.block_elems(), qtype.block_bytes());
    for (x, b) in src.chunks_exact(be).zip(dst.chunks_exact_mut(bb)) {
        match qtype {
            Q8_0 | Q8_1 => {
                // MAX(amax, fabsf(v)) = amax > |v| ? amax : |v|
                let amax = x
                    .iter()
                    .fold(0.0f32, |a, &v| if a > v.abs() { a } else { v.abs() });
                let d = amax / 127.0;
                let id = inv(d);
                put_f16(b, 0, d);
                let o = if qtype == Q8_0 { 2 } else { 4 };
                let mut sum = 0i32;
                for (q, &v) in b[o..o + QK].iter_mut().zip(x) {
                    let qi = (v * id).round() as i8; // roundf: half away from zero
                    sum += qi as i32;
                    *q = qi as u8;
                }
                if qtype == Q8_1 {
                    put_f16(b, 2, sum as f32 * d);
                }
            }
            Q4_0 | Q5_0 => {
                let (_, max) = abs_max_first(x);
                let (div, top, off) = if qtype == Q4_0 {
                    (-8.0, 15, 8.5)
                } else {
                    (-16.0, 31, 16.5)
                };
                let d = max / div;
                let id = inv(d);
                put_f16(b, 0, d);
                let q = |v: f32| ((v * id + off) as i8).min(top) as u8;
                let o = if qtype == Q4_0 { 2 } else { 6 };
                let mut qh = 0u32;
                for j in 0..16 {
                    let (x0, x1) = (q(x[j]), q(x[j + 16]));
                    b[o + j] = (x0 & 0x0f) | ((x1 & 0x0f) << 4);
                    qh |= (((x0 & 0x10) >> 4) as u32) << j;
                    qh |= (((x1 & 0x10) >> 4) as u32) << (j + 16);
                }
                if qtype == Q5_0 {
                    b[2..6].copy_from_slice(&qh.to_le_bytes());
                }
            }
            Q4_1 | Q5_1 => {
                let (mut min, mut max) = (f32::MAX, -f32::MAX);
                for &v in x {
                    if v < min {
                        min = v;
                    }
                    if v > max {
                        max = v;
                    }
                }
                let levels = if qtype == Q4_1 { 15.0 } else { 31.0 };
                let d = (max - min) / levels;
                let id = inv(d);
                put_f16(b, 0, d);
                put_f16(b, 2, min);
                // Q4_1 clamps with MIN(15, (int8_t)..); Q5_1 converts with (uint8_t) only.
                let q = |v: f32| {
                    let t = (v - min) * id + 0.5;
                    if qtype == Q4_1 {
                        (t as i8).min(15) as u8
                    } else {
                        t as u8
                    }
                };
                let o = if qtype == Q4_1 { 4 } else { 8 };
                let mut qh = 0u32;
                for j in 0..16 {
                    let (x0, x1) = (q(x[j]), q(x[j + 16]));
                    b[o + j] = (x0 & 0x0f) | ((x1 & 0x0f) << 4);
                    qh |= (((x0 & 0x10) >> 4) as u32) << j;
                    qh |= (((x1 & 0x10) >> 4) as u32) << (j + 16);
                }
                if qtype == Q5_1 {
                    b[4..8].copy_from_slice(&qh.to_le_bytes());
                }
            }
            Q8K => {
                let mut blk = super::act::Q8KBlock::default();
                super::act::quantize_q8k_block(x, &mut blk);
                b[0..4].copy_from_slice(&blk.d.to_le_bytes());
                for (o, &q) in b[4..4 + QK_K].iter_mut().zip(&blk.qs) {
                    *o = q as u8;
                }
                for (o, s) in b[4 + QK_K..].chunks_exact_mut(2).zip(&blk.bsums) {
                    o.copy_from_slice(&s.to_le_bytes());
                }
            }
            // Refused by `quantize_row` before we get here.
            Q4K | Q5K | Q6K | Q4_0R8 | Q5_0R8 | Q8_0R8 => {}
        }
    }
}
