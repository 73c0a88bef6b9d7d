//! `C (m x n) += A (m x k) * B (k x n)` with `B` row-major f32 or f16: the "not
//! transposed" product attention needs for probabilities x values (`P [T*G, S] x V [S,
//! Hd]`), where `V` is stored `[S, Hd]` because that is how the KV cache appends one
//! position per row (f16 when the cache is, `--kv-type f16`).
//!
//! Order of operations (what makes the levels comparable): at a SIMD level every output
//! element is `c = fma(a[i, p], b[p, j], c)` for `p = 0..k` in order, starting from the
//! old `c`. Blocking over rows and columns only changes which elements are computed
//! together, never that chain, so the result does not depend on `m`, on the position of
//! an element in a block, or on the level (AVX2 and AVX-512 agree bit for bit). The
//! scalar reference ([`scalar_matmul_nn`]) accumulates in f64 and rounds once; the SIMD
//! levels are within [`crate::tolerance::dot_bound`] of it.
//!
//! An f16 `B` is widened to f32 as it is loaded (exact), then goes through the same
//! chain: `matmul_nn_f16(b)` equals `matmul_nn(widen(b))` bit for bit at every level.

use crate::error::check;
use crate::{KernelError, KernelLevel, Kernels};
use half::f16;

/// The scalar reference: `c[i, j] += sum_p a[i, p] * b[p, j]`, the sum and the add to
/// `c` in f64, rounded once. Lengths must already be checked (`c`: m*n, `a`: m*k,
/// `b`: k*n); `k == 0` leaves `c` unchanged.
pub fn scalar_matmul_nn(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    scalar_nn(c, a, b, m, k, n)
}

/// [`scalar_matmul_nn`] with an f16 `B`, each element widened exactly.
pub fn scalar_matmul_nn_f16(c: &mut [f32], a: &[f32], b: &[f16], m: usize, k: usize, n: usize) {
    scalar_nn(c, a, b, m, k, n)
}

fn scalar_nn<B: Copy + Into<f64>>(c: &mut [f32], a: &[f32], b: &[B], m: usize, k: usize, n: usize) {
    if k == 0 {
        return;
    }
    for i in 0..m {
        let a_row = &a[i * k..(i + 1) * k];
        for j in 0..n {
            let dot: f64 = a_row
                .iter()
                .enumerate()
                .map(|(p, &x)| x as f64 * b[p * n + j].into())
                .sum();
            let cij = &mut c[i * n + j];
            *cij = (*cij as f64 + dot) as f32;
        }
    }
}

/// Length checks shared by the f32 and f16 entry points; `Ok(false)` when there is
/// nothing to compute.
fn check_nn(
    a: usize,
    b: usize,
    c: usize,
    m: usize,
    k: usize,
    n: usize,
    op: &'static str,
) -> Result<bool, KernelError> {
    check::len(op, "a (m x k)", check::mul(op, "a (m x k)", m, k)?, a)?;
    check::len(op, "b (k x n)", check::mul(op, "b (k x n)", k, n)?, b)?;
    check::len(op, "c (m x n)", check::mul(op, "c (m x n)", m, n)?, c)?;
    Ok(k != 0 && m != 0 && n != 0)
}

impl Kernels {
    /// `C (m x n) += A (m x k) * B (k x n)`, all row-major f32. See the module doc for
    /// the order of operations; `k == 0` leaves `C` unchanged.
    pub fn matmul_nn(
        self,
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), KernelError> {
        if !check_nn(a.len(), b.len(), c.len(), m, k, n, "matmul_nn")? {
            return Ok(());
        }
        match self.level() {
            // SAFETY: a `Kernels` only holds a level the CPU supports, so the target
            // features are present; the lengths were checked just above.
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx512 => unsafe { avx512::matmul_nn(c, a, b, m, k, n) },
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx2 => unsafe { avx2::matmul_nn(c, a, b, m, k, n) },
            _ => scalar_matmul_nn(c, a, b, m, k, n),
        }
        Ok(())
    }

    /// [`Kernels::matmul_nn`] with an f16 `B` (an f16 KV cache's values), widened to
    /// f32 as it is loaded: the result equals `matmul_nn` of the widened `B` bit for bit.
    pub fn matmul_nn_f16(
        self,
        c: &mut [f32],
        a: &[f32],
        b: &[f16],
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), KernelError> {
        if !check_nn(a.len(), b.len(), c.len(), m, k, n, "matmul_nn_f16")? {
            return Ok(());
        }
        match self.level() {
            // SAFETY: as in `matmul_nn` (the AVX-512 level includes BW and VL, which
            // the masked 16-bit loads need, and both SIMD levels include F16C).
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx512 => unsafe { avx512::matmul_nn(c, a, b, m, k, n) },
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx2 => unsafe { avx2::matmul_nn(c, a, b, m, k, n) },
            _ => scalar_matmul_nn_f16(c, a, b, m, k, n),
        }
        Ok(())
    }
}

/// Rows of `A` per register block: 4 rows x 4 vectors of accumulators.
#[cfg(target_arch = "x86_64")]
const MR: usize = 4;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::MR;
    use half::f16;
    use std::arch::x86_64::*;

    const LANES: usize = 16;
    const NV: usize = 4;

    /// Elements of `B` as f32 vectors: the block is written once for every `B` dtype.
    pub(super) trait Load: Copy {
        /// 16 elements from `p` as f32, lanes outside `m` zero and not read.
        ///
        /// # Safety
        /// AVX-512F/BW/VL present; the lanes of `m` are readable from `p`.
        unsafe fn load(p: *const Self, m: __mmask16) -> __m512;
    }

    impl Load for f32 {
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load(p: *const f32, m: __mmask16) -> __m512 {
            // SAFETY: the caller's contract.
            unsafe { _mm512_maskz_loadu_ps(m, p) }
        }
    }

    impl Load for f16 {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        unsafe fn load(p: *const f16, m: __mmask16) -> __m512 {
            // SAFETY: the caller's contract; the 16-bit masked load touches only the
            // lanes of `m`, and the widening to f32 is exact.
            unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p as *const i16)) }
        }
    }

    fn mask(cols: usize) -> __mmask16 {
        if cols >= LANES {
            0xffff
        } else {
            ((1u32 << cols) - 1) as __mmask16
        }
    }

    /// One block: rows `i0..i0 + R`, columns `j0..j0 + NV * 16` (masked to `n`).
    ///
    /// # Safety
    /// AVX-512F/BW/VL and FMA present; `c`, `a`, `b` hold m*n, m*k, k*n elements with
    /// `i0 + R <= m` and `j0 < n`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    unsafe fn block<B: Load, const R: usize>(
        c: *mut f32,
        a: *const f32,
        b: *const B,
        i0: usize,
        j0: usize,
        k: usize,
        n: usize,
    ) {
        let mut masks = [0 as __mmask16; NV];
        for (v, m) in masks.iter_mut().enumerate() {
            *m = mask(n.saturating_sub(j0 + v * LANES));
        }
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                if masks[v] != 0 {
                    // SAFETY: masked lanes are not read; unmasked ones are inside c.
                    *x = unsafe {
                        _mm512_maskz_loadu_ps(masks[v], c.add((i0 + r) * n + j0 + v * LANES))
                    };
                }
            }
        }
        for p in 0..k {
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                if masks[v] != 0 {
                    // SAFETY: row p of b, columns inside [0, n) by the mask.
                    *x = unsafe { B::load(b.add(p * n + j0 + v * LANES), masks[v]) };
                }
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: (i0 + r, p) is inside a.
                let s = _mm512_set1_ps(unsafe { *a.add((i0 + r) * k + p) });
                for (x, &bb) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(s, bb, *x);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                if masks[v] != 0 {
                    // SAFETY: as for the loads.
                    unsafe {
                        _mm512_mask_storeu_ps(c.add((i0 + r) * n + j0 + v * LANES), masks[v], *x)
                    };
                }
            }
        }
    }

    /// # Safety
    /// AVX-512F/BW/VL and FMA present; lengths checked by the caller (m*n, m*k, k*n).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    pub(super) unsafe fn matmul_nn<B: Load>(
        c: &mut [f32],
        a: &[f32],
        b: &[B],
        m: usize,
        k: usize,
        n: usize,
    ) {
        let (cp, ap, bp) = (c.as_mut_ptr(), a.as_ptr(), b.as_ptr());
        let mut j0 = 0;
        while j0 < n {
            let mut i0 = 0;
            while i0 < m {
                // SAFETY: i0 + rows <= m and j0 < n; the caller checked the lengths.
                unsafe {
                    match (m - i0).min(MR) {
                        4 => block::<B, 4>(cp, ap, bp, i0, j0, k, n),
                        3 => block::<B, 3>(cp, ap, bp, i0, j0, k, n),
                        2 => block::<B, 2>(cp, ap, bp, i0, j0, k, n),
                        _ => block::<B, 1>(cp, ap, bp, i0, j0, k, n),
                    }
                }
                i0 += MR;
            }
            j0 += NV * LANES;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::MR;
    use half::f16;
    use std::arch::x86_64::*;

    const LANES: usize = 8;
    /// 2 vectors x 4 rows = 8 accumulators: with the B vectors and the broadcast they
    /// fit the 16 ymm registers.
    const NV: usize = 2;

    /// Elements of `B` as f32 vectors (see the AVX-512 `Load`).
    pub(super) trait Load: Copy {
        /// `min(rest, 8)` elements from `p` as f32 (`mask` is the lane mask of `rest`),
        /// the other lanes zero and not read.
        ///
        /// # Safety
        /// AVX2, FMA and F16C present; `min(rest, 8)` elements are readable from `p`.
        unsafe fn load(p: *const Self, rest: usize, mask: __m256i) -> __m256;
    }

    impl Load for f32 {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load(p: *const f32, _: usize, mask: __m256i) -> __m256 {
            // SAFETY: the caller's contract (masked-off lanes are not accessed).
            unsafe { _mm256_maskload_ps(p, mask) }
        }
    }

    impl Load for f16 {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load(p: *const f16, rest: usize, _: __m256i) -> __m256 {
            // There is no masked 16-bit load before AVX-512: a tail goes through a
            // zero-padded buffer. The widening to f32 is exact.
            // SAFETY: the caller's contract.
            unsafe {
                let h = if rest >= LANES {
                    _mm_loadu_si128(p as *const __m128i)
                } else {
                    let mut buf = [0u16; LANES];
                    std::ptr::copy_nonoverlapping(p as *const u16, buf.as_mut_ptr(), rest);
                    _mm_loadu_si128(buf.as_ptr() as *const __m128i)
                };
                _mm256_cvtph_ps(h)
            }
        }
    }

    /// Lane mask for `cols` remaining columns (all ones up to 8).
    ///
    /// # Safety
    /// AVX2 present.
    #[target_feature(enable = "avx2")]
    unsafe fn mask(cols: usize) -> __m256i {
        let live = cols.min(LANES) as i32;
        let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(live), idx)
    }

    /// As the AVX-512 block, 8 lanes.
    ///
    /// # Safety
    /// AVX2, FMA and F16C present; bounds as for the AVX-512 block.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block<B: Load, const R: usize>(
        c: *mut f32,
        a: *const f32,
        b: *const B,
        i0: usize,
        j0: usize,
        k: usize,
        n: usize,
    ) {
        let mut rests = [0usize; NV];
        let mut masks = [_mm256_setzero_si256(); NV];
        for v in 0..NV {
            rests[v] = n.saturating_sub(j0 + v * LANES);
            // SAFETY: AVX2 is present (this function's own requirement).
            masks[v] = unsafe { mask(rests[v]) };
        }
        let mut acc = [[_mm256_setzero_ps(); NV]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                if rests[v] > 0 {
                    // SAFETY: masked-off lanes are not accessed.
                    *x = unsafe {
                        _mm256_maskload_ps(c.add((i0 + r) * n + j0 + v * LANES), masks[v])
                    };
                }
            }
        }
        for p in 0..k {
            let mut bv = [_mm256_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                if rests[v] > 0 {
                    // SAFETY: row p of b, limited to [0, n).
                    *x = unsafe { B::load(b.add(p * n + j0 + v * LANES), rests[v], masks[v]) };
                }
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: (i0 + r, p) is inside a.
                let s = _mm256_set1_ps(unsafe { *a.add((i0 + r) * k + p) });
                for (x, &bb) in row.iter_mut().zip(&bv) {
                    *x = _mm256_fmadd_ps(s, bb, *x);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                if rests[v] > 0 {
                    // SAFETY: as for the loads.
                    unsafe {
                        _mm256_maskstore_ps(c.add((i0 + r) * n + j0 + v * LANES), masks[v], *x)
                    };
                }
            }
        }
    }

    /// # Safety
    /// AVX2, FMA and F16C present; lengths checked by the caller (m*n, m*k, k*n).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn matmul_nn<B: Load>(
        c: &mut [f32],
        a: &[f32],
        b: &[B],
        m: usize,
        k: usize,
        n: usize,
    ) {
        let (cp, ap, bp) = (c.as_mut_ptr(), a.as_ptr(), b.as_ptr());
        let mut j0 = 0;
        while j0 < n {
            let mut i0 = 0;
            while i0 < m {
                // SAFETY: i0 + rows <= m and j0 < n; the caller checked the lengths.
                unsafe {
                    match (m - i0).min(MR) {
                        4 => block::<B, 4>(cp, ap, bp, i0, j0, k, n),
                        3 => block::<B, 3>(cp, ap, bp, i0, j0, k, n),
                        2 => block::<B, 2>(cp, ap, bp, i0, j0, k, n),
                        _ => block::<B, 1>(cp, ap, bp, i0, j0, k, n),
                    }
                }
                i0 += MR;
            }
            j0 += NV * LANES;
        }
    }
}
