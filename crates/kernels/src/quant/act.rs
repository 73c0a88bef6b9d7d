//! Activation quantization: the rows of `A` to Q8_0, Q8_1 or Q8_K, once per matmul call,
//! into a thread-local scratch buffer that is reused (no allocation in the steady state).
//!
//! Rounding follows what llama.cpp runs on x86 (the activations, unlike the weights, are
//! quantized by the CPU backend at run time, so this is what decides its integers):
//! - Q8_0 / Q8_1 (`ggml-cpu/arch/x86/quants.c`, AVX2 path): `amax = max |x|`,
//!   `d = amax / 127`, `q = round_half_even(x * (127 / amax))`, `d` stored as f16; Q8_1
//!   also stores `s = f16(d * sum q)` with the unrounded f32 `d`. (ggml's portable
//!   `quantize_row_q8_0_ref` instead multiplies by `1 / d` and rounds half away from zero,
//!   which differs in the last step for a few inputs: we follow the x86 build.)
//! - Q8_K (`quantize_row_q8_K_ref`, which x86 also uses): `max` = the first element of
//!   largest magnitude, `iscale = -127 / max`, `q = min(127, round_half_even(iscale x))`,
//!   `d = 1 / iscale` (f32), plus the sums of each 16 quants.
//!
//! For finite inputs the SIMD quantizers below are bit-identical to the scalar ones
//! (tested); for NaN / infinite activations the results are unspecified (but memory-safe).
//!
//! Stored layout ([`ActBuf`]): the quants of row `i` at `qs[i k..(i + 1) k]`; per block
//! its `d` (the f16-rounded value as f32 for Q8_0 / Q8_1, the f32 for Q8_K) and for Q8_1
//! its `s`, for Q8_K its 16 `bsums`.

use std::cell::RefCell;

use half::f16;

use super::blocks::{QK, QK_K};
use super::{QuantImpl, QuantType};

/// Quantized activation rows of one matmul call.
#[derive(Default)]
pub(crate) struct ActBuf {
    /// `m x k` quants.
    qs: Vec<i8>,
    /// `m x (k / 32)` (Q8_0, Q8_1) or `m x (k / 256)` (Q8_K) scales.
    d: Vec<f32>,
    /// `m x (k / 32)` Q8_1 `s = d * sum(q)` (f16-rounded), else empty.
    s: Vec<f32>,
    /// `m x (k / 16)` Q8_K sums of 16 quants, else empty.
    bsums: Vec<i16>,
}

/// A read-only view of `m` quantized rows of `k` elements.
#[derive(Clone, Copy)]
pub(crate) struct ActView<'a> {
    pub(crate) qs: &'a [i8],
    pub(crate) d: &'a [f32],
    pub(crate) s: &'a [f32],
    pub(crate) bsums: &'a [i16],
    pub(crate) k: usize,
    /// Elements per scale (32 or 256).
    pub(crate) block: usize,
}

/// One quantized row.
#[derive(Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub(crate) qs: &'a [i8],
    pub(crate) d: &'a [f32],
    pub(crate) s: &'a [f32],
    pub(crate) bsums: &'a [i16],
}

impl<'a> ActView<'a> {
    /// The view of rows `i0..i0 + n`.
    pub(crate) fn rows(&self, i0: usize, n: usize) -> ActView<'a> {
        let nb = self.k / self.block;
        let sub =
            |len: usize, per_row: usize| (i0 * per_row).min(len)..((i0 + n) * per_row).min(len);
        ActView {
            qs: &self.qs[sub(self.qs.len(), self.k)],
            d: &self.d[sub(self.d.len(), nb)],
            s: &self.s[sub(self.s.len(), nb)],
            bsums: &self.bsums[sub(self.bsums.len(), self.k / 16)],
            k: self.k,
            block: self.block,
        }
    }

    pub(crate) fn row(&self, i: usize) -> ActRow<'a> {
        let ActView {
            qs, d, s, bsums, ..
        } = self.rows(i, 1);
        ActRow { qs, d, s, bsums }
    }
}

impl ActBuf {
    /// The view of the rows last written by [`quantize_rows`].
    pub(crate) fn view(&self, act: QuantType, m: usize, k: usize) -> ActView<'_> {
        let block = if act == QuantType::Q8K { QK_K } else { QK };
        let nb = m * (k / block);
        ActView {
            qs: &self.qs[..m * k],
            d: &self.d[..nb],
            s: if act == QuantType::Q8_1 {
                &self.s[..nb]
            } else {
                &[]
            },
            bsums: if act == QuantType::Q8K {
                &self.bsums[..m * (k / 16)]
            } else {
                &[]
            },
            k,
            block,
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<ActBuf> = RefCell::new(ActBuf::default());
}

/// Runs `f` with this thread's scratch buffer (a fresh one in the impossible case that
/// it is already borrowed, rather than panicking).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut ActBuf) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut ActBuf::default()),
    })
}

/// Grows `v` to at least `len` elements (never shrinks, so steady-state calls reuse it).
fn ensure<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}

/// Quantizes the `m x k` rows `a` to `act` (Q8_0, Q8_1 or Q8_K) into `buf`; `k` is a
/// whole number of blocks of `act` (checked by the caller).
pub(crate) fn quantize_rows(
    imp: QuantImpl,
    act: QuantType,
    a: &[f32],
    m: usize,
    k: usize,
    buf: &mut ActBuf,
) {
    let block = if act == QuantType::Q8K { QK_K } else { QK };
    let nb = k / block;
    ensure(&mut buf.qs, m * k);
    ensure(&mut buf.d, m * nb);
    if act == QuantType::Q8_1 {
        ensure(&mut buf.s, m * nb);
    }
    if act == QuantType::Q8K {
        ensure(&mut buf.bsums, m * (k / 16));
    }
    let simd = imp != QuantImpl::Scalar;
    // SAFETY (both calls): a SIMD `QuantImpl` is only chosen on a CPU with AVX2, FMA and
    // F16C (`QuantImpl::supported` / `for_level`); `a` and `qs` hold `m k` elements, `d`
    // and `s` `m nb` blocks, `bsums` 16 per block (`ensure` above, the caller's checks).
    #[cfg(target_arch = "x86_64")]
    if simd {
        let (x, qs, d) = (&a[..m * k], &mut buf.qs[..m * k], &mut buf.d[..m * nb]);
        if act == QuantType::Q8K {
            // SAFETY: above.
            unsafe { x86::quantize_q8k_blocks(x, qs, d, &mut buf.bsums[..m * nb * 16]) };
        } else {
            let s = (act == QuantType::Q8_1).then(|| &mut buf.s[..m * nb]);
            // SAFETY: above.
            unsafe { x86::quantize_q8_blocks(x, qs, d, s) };
        }
        return;
    }
    // The scalar specification (and any CPU without the x86 paths above).
    let _ = simd;
    for (blk, x) in a[..m * k].chunks_exact(block).enumerate() {
        let qs = &mut buf.qs[blk * block..(blk + 1) * block];
        if act == QuantType::Q8K {
            let mut out = Q8KBlock::default();
            quantize_q8k_block(x, &mut out);
            qs.copy_from_slice(&out.qs);
            buf.d[blk] = out.d;
            buf.bsums[blk * 16..(blk + 1) * 16].copy_from_slice(&out.bsums);
        } else {
            let (d, s) = quantize_q8_block(x, qs);
            buf.d[blk] = d;
            if act == QuantType::Q8_1 {
                buf.s[blk] = s;
            }
        }
    }
}

/// One block of 32 activations to Q8_0 / Q8_1 quants (the spec of the x86 rounding, see
/// the module doc). Returns `(d, s)` as stored: each rounded to f16, given as f32.
pub(crate) fn quantize_q8_block(x: &[f32], qs: &mut [i8]) -> (f32, f32) {
    // `maxps` semantics; for finite input the order does not matter.
    let amax = x
        .iter()
        .fold(0.0f32, |m, &v| if m > v.abs() { m } else { v.abs() });
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        // `vcvtps2dq` rounds half to even; the packs saturate to i8.
        let qi = ((v * id).round_ties_even() as i32).clamp(-128, 127);
        sum += qi;
        *q = qi as i8;
    }
    let s = d * sum as f32;
    (f16::from_f32(d).to_f32(), f16::from_f32(s).to_f32())
}

/// A Q8_K block in registers-friendly form.
#[derive(Clone, Copy)]
pub(crate) struct Q8KBlock {
    pub(crate) d: f32,
    pub(crate) qs: [i8; QK_K],
    pub(crate) bsums: [i16; 16],
}

impl Default for Q8KBlock {
    fn default() -> Self {
        Q8KBlock {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; 16],
        }
    }
}

/// ggml's `nearest_int`: round half to even through the `1.5 * 2^23` trick (valid for
/// `|x| <= 2^22`, far beyond the `|x| <= 127` used here).
#[inline]
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// ggml's `quantize_row_q8_K_ref` for one block of 256 (an all-zero block gives d = 0,
/// zero quants and zero sums; ggml leaves its sums stale there, which never matters as
/// they are multiplied by d = 0).
pub(crate) fn quantize_q8k_block(x: &[f32], out: &mut Q8KBlock) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        *out = Q8KBlock::default();
        return;
    }
    let iscale = -127.0 / max;
    for (q, &v) in out.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, g) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
        *s = g.iter().map(|&q| q as i16).sum();
    }
    out.d = 1.0 / iscale;
}

/// The x86 quantizers (AVX2 + F16C, also used at the AVX-512 level: these are a few
/// instructions per 32 elements, not worth a second copy).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// Largest `|x|` of 8 lanes (lane order irrelevant for non-NaN input).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hmax_abs(v: __m256) -> f32 {
        let m4 = _mm_max_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)))
    }

    /// The eight sums of four consecutive i8 of `v`, as i32 (exact).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn sums_of_4(v: __m256i) -> __m256i {
        _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_set1_epi8(1), v),
            _mm256_set1_epi16(1),
        )
    }

    /// The sum of the 32 i8 of `v` (exact).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn sum_i8(v: __m256i) -> i32 {
        let s32 = sums_of_4(v);
        let s4 = _mm_add_epi32(
            _mm256_castsi256_si128(s32),
            _mm256_extracti128_si256::<1>(s32),
        );
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32::<0b01>(s2)))
    }

    /// f32 -> f16 -> f32 (round to nearest even; `vcvtps2ph` with imm 0).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn via_f16(x: f32) -> f32 {
        let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x));
        _mm_cvtss_f32(_mm_cvtph_ps(h))
    }

    /// 32 i32 lanes (four vectors in element order) -> 32 i8 with signed saturation.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn pack_i8(i: [__m256i; 4]) -> __m256i {
        let a = _mm256_packs_epi32(i[0], i[1]);
        let b = _mm256_packs_epi32(i[2], i[3]);
        // The packs work per 128-bit lane: fix the order of the eight 4-byte groups.
        _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(a, b),
            _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
        )
    }

    /// SIMD [`super::quantize_q8_block`] (same bits for finite input).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `x` and `qs` hold at least 32 elements.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize_q8_block(x: &[f32], qs: &mut [i8]) -> (f32, f32) {
        let p = x.as_ptr();
        let v = [0, 8, 16, 24].map(|o| _mm256_loadu_ps(p.add(o)));
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for &vi in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, vi));
        }
        let amax = hmax_abs(m);
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        // cvtps2dq rounds half to even under the default MXCSR, which Rust never changes.
        let i = v.map(|vi| _mm256_cvtps_epi32(_mm256_mul_ps(vi, id)));
        let packed = pack_i8(i);
        _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, packed);
        // Sum of the saturated quants, as the scalar spec (i8 values, so no overflow).
        let sum = sum_i8(packed);
        (via_f16(d), via_f16(d * sum as f32))
    }

    /// Lane `j` = the largest lane of `m[j]` (max is exact and, for non-NaN input,
    /// order-free: the same value as [`hmax_abs`] of each).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hmax8x8(m: [__m256; 8]) -> __m256 {
        // Pairwise maxima within 128-bit lanes, as `hadd` pairs sums.
        let h = |a: __m256, b: __m256| {
            _mm256_max_ps(
                _mm256_shuffle_ps::<0b10_00_10_00>(a, b),
                _mm256_shuffle_ps::<0b11_01_11_01>(a, b),
            )
        };
        // Lanes 0..4 hold m[0..4]'s low-half maxima, lanes 4..8 their high halves.
        let lo = h(h(m[0], m[1]), h(m[2], m[3]));
        let hi = h(h(m[4], m[5]), h(m[6], m[7]));
        _mm256_max_ps(
            _mm256_permute2f128_ps::<0x20>(lo, hi),
            _mm256_permute2f128_ps::<0x31>(lo, hi),
        )
    }

    /// [`quantize_q8_block`] over the `d.len()` consecutive blocks of `x`, eight at a
    /// time: the eight maxima, scales `amax / 127`, inverses `127 / amax` and f16
    /// roundings come out of one vector each (each lane the same IEEE operation as the
    /// scalar one), so the per-block work is the multiply, round and pack. `s`: Q8_1's
    /// `d * sum(q)`, when given. Same bits as the per-block function for finite input.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `x` and `qs` hold `32 d.len()` elements, `s`
    /// (if any) `d.len()`.
    #[allow(clippy::needless_range_loop)] // `j` indexes register arrays and pointers alike
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize_q8_blocks(
        x: &[f32],
        qs: &mut [i8],
        d: &mut [f32],
        mut s: Option<&mut [f32]>,
    ) {
        let nb = d.len();
        let (px, pq) = (x.as_ptr(), qs.as_mut_ptr());
        let sign = _mm256_set1_ps(-0.0);
        let c127 = _mm256_set1_ps(127.0);
        let mut b = 0;
        while b + 8 <= nb {
            let mut mx = [_mm256_setzero_ps(); 8];
            for j in 0..8 {
                let p = px.add((b + j) * 32);
                let mut m = _mm256_andnot_ps(sign, _mm256_loadu_ps(p));
                for o in [8, 16, 24] {
                    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(o))));
                }
                mx[j] = m;
            }
            let amax = hmax8x8(mx);
            let dv = _mm256_div_ps(amax, c127);
            // 127 / amax, or 0 where amax == 0 (NaN stays NaN, as `amax != 0.0` does).
            let nz = _mm256_cmp_ps::<_CMP_NEQ_UQ>(amax, _mm256_setzero_ps());
            let idv = _mm256_and_ps(_mm256_div_ps(c127, amax), nz);
            let mut sums = [0i32; 8];
            for j in 0..8 {
                let id = _mm256_permutevar8x32_ps(idv, _mm256_set1_epi32(j as i32));
                let p = px.add((b + j) * 32);
                let i = [0, 8, 16, 24]
                    .map(|o| _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(o)), id)));
                let packed = pack_i8(i);
                _mm256_storeu_si256(pq.add((b + j) * 32) as *mut __m256i, packed);
                if s.is_some() {
                    sums[j] = sum_i8(packed);
                }
            }
            let round =
                |v: __m256| _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v));
            _mm256_storeu_ps(d.as_mut_ptr().add(b), round(dv));
            if let Some(s) = s.as_deref_mut() {
                let sv = _mm256_mul_ps(
                    dv,
                    _mm256_cvtepi32_ps(_mm256_loadu_si256(sums.as_ptr() as *const __m256i)),
                );
                _mm256_storeu_ps(s.as_mut_ptr().add(b), round(sv));
            }
            b += 8;
        }
        for b in b..nb {
            let blk = core::slice::from_raw_parts(px.add(b * 32), 32);
            let q = core::slice::from_raw_parts_mut(pq.add(b * 32), 32);
            let (db, sb) = quantize_q8_block(blk, q);
            d[b] = db;
            if let Some(s) = s.as_deref_mut() {
                s[b] = sb;
            }
        }
    }

    /// [`quantize_q8k_block`] over the `d.len()` consecutive blocks of 256 in `x`,
    /// writing straight into the call's buffers: the largest `|x|` over four
    /// independent chains (one chain of 32 dependent maxima took ~100 cycles a block),
    /// the sums of 16 quants by vector. The same values (exact integer sums; the rest
    /// is the per-block function's arithmetic). 128 x 4864 rows (Qwen2.5's `ffn_down`
    /// input at pp128, 2.5 MB of f32 that both sentrons read) went from 231 to 164-192
    /// us, which is about the memory's rate for those bytes.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `x` and `qs` hold `256 d.len()` elements,
    /// `bsums` `16 d.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize_q8k_blocks(
        x: &[f32],
        qs: &mut [i8],
        d: &mut [f32],
        bsums: &mut [i16],
    ) {
        let sign = _mm256_set1_ps(-0.0);
        let top = _mm256_set1_epi32(127);
        for b in 0..d.len() {
            let p = x.as_ptr().add(b * 256);
            let q = qs.as_mut_ptr().add(b * 256);
            let mut m = [_mm256_setzero_ps(); 4];
            for o in (0..256).step_by(32) {
                for (j, mj) in m.iter_mut().enumerate() {
                    let v = _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(o + 8 * j)));
                    *mj = _mm256_max_ps(*mj, v);
                }
            }
            let amax = hmax_abs(_mm256_max_ps(
                _mm256_max_ps(m[0], m[1]),
                _mm256_max_ps(m[2], m[3]),
            ));
            let sums = &mut bsums[b * 16..(b + 1) * 16];
            if amax == 0.0 {
                core::ptr::write_bytes(q, 0, 256);
                sums.fill(0);
                d[b] = 0.0;
                continue;
            }
            // The first element attaining amax (the scalar scan keeps the first strict
            // max).
            let target = _mm256_set1_ps(amax);
            let mut max = amax;
            for o in (0..256).step_by(8) {
                let a = _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(o)));
                let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(a, target));
                if hit != 0 {
                    max = *p.add(o + hit.trailing_zeros() as usize);
                    break;
                }
            }
            let iscale = -127.0 / max;
            let is = _mm256_set1_ps(iscale);
            for o in (0..256).step_by(32) {
                let i = [0, 8, 16, 24].map(|j| {
                    let v = _mm256_mul_ps(_mm256_loadu_ps(p.add(o + j)), is);
                    _mm256_min_epi32(_mm256_cvtps_epi32(v), top)
                });
                let packed = pack_i8(i);
                _mm256_storeu_si256(q.add(o) as *mut __m256i, packed);
                // Two sums of 16: pairs, then fours, then the two 128-bit halves' eights
                // and sixteens (exact in i32; each fits an i16, |sum| <= 16 * 128).
                let s32 = sums_of_4(packed);
                let h = _mm256_hadd_epi32(s32, s32);
                let h = _mm256_hadd_epi32(h, h);
                sums[o / 16] = _mm256_extract_epi32::<0>(h) as i16;
                sums[o / 16 + 1] = _mm256_extract_epi32::<4>(h) as i16;
            }
            d[b] = 1.0 / iscale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Inputs that stress the rounding: random, ties (x * id exactly k + 0.5), zeros,
    /// equal magnitudes of both signs, tiny and huge scales.
    fn cases() -> Vec<Vec<f32>> {
        let mut seed = 7u64;
        let mut v = Vec::new();
        for scale in [1e-30f32, 1e-3, 1.0, 3.0, 1e4, 1e30] {
            v.push((0..256).map(|_| rng(&mut seed) * scale).collect());
        }
        v.push(vec![0.0; 256]);
        // amax = 127: x * id = x exactly, so halves are ties.
        v.push(
            (0..256)
                .map(|i| {
                    if i % 32 == 0 {
                        127.0
                    } else {
                        (i % 64) as f32 - 31.5
                    }
                })
                .collect(),
        );
        v.push(
            (0..256)
                .map(|i| if i % 2 == 0 { -2.5 } else { 2.5 })
                .collect(),
        );
        v.push(
            (0..256)
                .map(|i| if i == 200 { -1.0 } else { 0.0 })
                .collect(),
        );
        v
    }

    #[test]
    fn q8k_scalar_examples() {
        let mut out = Q8KBlock::default();
        let x: Vec<f32> = (0..256).map(|i| if i == 3 { -2.0 } else { 1.0 }).collect();
        quantize_q8k_block(&x, &mut out);
        // max = -2 -> iscale = 63.5; 1.0 -> 63.5 -> 64 (tie to even); -2 -> -127.
        assert_eq!(out.d, 1.0 / 63.5);
        assert_eq!(out.qs[3], -127);
        assert_eq!(out.qs[0], 64);
        assert_eq!(out.bsums[0], 15 * 64 - 127);
    }

    #[test]
    fn q8_scalar_rounds_half_to_even() {
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        let mut q = [0i8; 32];
        let (d, s) = quantize_q8_block(&x, &mut q);
        assert_eq!((q[0], q[1], q[2]), (127, 2, -4));
        assert_eq!(d, 1.0);
        assert_eq!(s, 125.0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_quantizers_match_the_scalar_spec() {
        if !crate::is_supported(crate::KernelLevel::Avx2) {
            return;
        }
        for x in cases() {
            for b in x.chunks_exact(32) {
                let (mut q0, mut q1) = ([0i8; 32], [0i8; 32]);
                let r0 = quantize_q8_block(b, &mut q0);
                // SAFETY: AVX2 checked above; 32 elements.
                let r1 = unsafe { x86::quantize_q8_block(b, &mut q1) };
                assert_eq!(q0, q1, "{b:?}");
                assert_eq!(
                    (r0.0.to_bits(), r0.1.to_bits()),
                    (r1.0.to_bits(), r1.1.to_bits())
                );
            }
            // Eight blocks at a time and the rest one by one: every count of blocks
            // from 1 to 8, as Q8_0 (no sums) and Q8_1.
            for nb in 1..=x.len() / 32 {
                let (mut qa, mut qb) = (vec![0i8; nb * 32], vec![0i8; nb * 32]);
                let (mut da, mut db) = (vec![0f32; nb], vec![0f32; nb]);
                let (mut sa, mut sb) = (vec![0f32; nb], vec![0f32; nb]);
                for (i, blk) in x[..nb * 32].chunks_exact(32).enumerate() {
                    (da[i], sa[i]) = quantize_q8_block(blk, &mut qa[i * 32..(i + 1) * 32]);
                }
                // SAFETY: AVX2 checked above; `nb` blocks everywhere.
                unsafe { x86::quantize_q8_blocks(&x[..nb * 32], &mut qb, &mut db, Some(&mut sb)) };
                assert_eq!(qa, qb);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    (bits(&da), bits(&sa)),
                    (bits(&db), bits(&sb)),
                    "{nb} blocks"
                );
                let mut dc = vec![0f32; nb];
                // SAFETY: as above.
                unsafe { x86::quantize_q8_blocks(&x[..nb * 32], &mut qb, &mut dc, None) };
                assert_eq!((qa, bits(&da)), (qb, bits(&dc)));
            }
            let mut o0 = Q8KBlock::default();
            quantize_q8k_block(&x, &mut o0);
            let (mut q1, mut d1, mut b1) = ([0i8; 256], [0f32; 1], [0i16; 16]);
            // SAFETY: AVX2 checked above; one block of 256.
            unsafe { x86::quantize_q8k_blocks(&x, &mut q1, &mut d1, &mut b1) };
            assert_eq!(o0.qs, q1);
            assert_eq!(o0.bsums, b1);
            assert_eq!(o0.d.to_bits(), d1[0].to_bits());
        }
        // Q8_K over several blocks at once: every case, one after another.
        let all: Vec<f32> = cases().concat();
        let nk = all.len() / 256;
        let (mut qk, mut dk, mut bk) = (vec![0i8; nk * 256], vec![0f32; nk], vec![0i16; nk * 16]);
        // SAFETY: AVX2 checked above; `nk` blocks of 256 everywhere.
        unsafe { x86::quantize_q8k_blocks(&all, &mut qk, &mut dk, &mut bk) };
        for (i, x) in all.chunks_exact(256).enumerate() {
            let mut o = Q8KBlock::default();
            quantize_q8k_block(x, &mut o);
            assert_eq!(&qk[i * 256..(i + 1) * 256], &o.qs[..], "block {i}");
            assert_eq!(&bk[i * 16..(i + 1) * 16], &o.bsums[..], "block {i}");
            assert_eq!(dk[i].to_bits(), o.d.to_bits(), "block {i}");
        }
        // More than eight blocks: the cases one after another.
        for nb in [9, 17, all.len() / 32] {
            let mut qa = vec![0i8; nb * 32];
            let (mut da, mut sa) = (vec![0f32; nb], vec![0f32; nb]);
            for (i, blk) in all[..nb * 32].chunks_exact(32).enumerate() {
                (da[i], sa[i]) = quantize_q8_block(blk, &mut qa[i * 32..(i + 1) * 32]);
            }
            let mut qb = vec![0i8; nb * 32];
            let (mut db, mut sb) = (vec![0f32; nb], vec![0f32; nb]);
            // SAFETY: AVX2 checked above; `nb` blocks everywhere.
            unsafe { x86::quantize_q8_blocks(&all[..nb * 32], &mut qb, &mut db, Some(&mut sb)) };
            assert_eq!(qa, qb);
            assert!(da.iter().zip(&db).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(sa.iter().zip(&sb).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
