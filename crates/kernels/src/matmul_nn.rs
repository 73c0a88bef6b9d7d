//! `C (m x n) += A (m x k) * B (k x n)` with `B` row-major f32: the "not transposed"
//! product attention needs for probabilities x values (`P [T*G, S] x V [S, Hd]`), where
//! `V` is stored `[S, Hd]` because that is how the KV cache appends one position per row.
//!
//! Order of operations (what makes the levels comparable): at a SIMD level every output
//! element is `c = fma(a[i, p], b[p, j], c)` for `p = 0..k` in order, starting from the
//! old `c`. Blocking over rows and columns only changes which elements are computed
//! together, never that chain, so the result does not depend on `m`, on the position of
//! an element in a block, or on the level (AVX2 and AVX-512 agree bit for bit). The
//! scalar reference ([`scalar_matmul_nn`]) accumulates in f64 and rounds once; the SIMD
//! levels are within [`crate::tolerance::dot_bound`] of it.

use crate::error::check;
use crate::{KernelError, KernelLevel, Kernels};

/// The scalar reference: `c[i, j] += sum_p a[i, p] * b[p, j]`, the sum and the add to
/// `c` in f64, rounded once. Lengths must already be checked (`c`: m*n, `a`: m*k,
/// `b`: k*n); `k == 0` leaves `c` unchanged.
pub fn scalar_matmul_nn(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    if k == 0 {
        return;
    }
    for i in 0..m {
        let a_row = &a[i * k..(i + 1) * k];
        for j in 0..n {
            let dot: f64 = a_row
                .iter()
                .enumerate()
                .map(|(p, &x)| x as f64 * b[p * n + j] as f64)
                .sum();
            let cij = &mut c[i * n + j];
            *cij = (*cij as f64 + dot) as f32;
        }
    }
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
        const OP: &str = "matmul_nn";
        check::len(OP, "a (m x k)", check::mul(OP, "a (m x k)", m, k)?, a.len())?;
        check::len(OP, "b (k x n)", check::mul(OP, "b (k x n)", k, n)?, b.len())?;
        check::len(OP, "c (m x n)", check::mul(OP, "c (m x n)", m, n)?, c.len())?;
        if k == 0 || m == 0 || n == 0 {
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
}

/// Rows of `A` per register block: 4 rows x 4 vectors of accumulators.
#[cfg(target_arch = "x86_64")]
const MR: usize = 4;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::MR;
    use std::arch::x86_64::*;

    const LANES: usize = 16;
    const NV: usize = 4;

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
    /// AVX-512F and FMA present; `c`, `a`, `b` hold m*n, m*k, k*n elements with
    /// `i0 + R <= m` and `j0 < n`.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn block<const R: usize>(
        c: *mut f32,
        a: *const f32,
        b: *const f32,
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
                    *x = unsafe { _mm512_maskz_loadu_ps(masks[v], b.add(p * n + j0 + v * LANES)) };
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
    /// AVX-512F and FMA present; lengths checked by the caller (m*n, m*k, k*n).
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn matmul_nn(
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
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
                        4 => block::<4>(cp, ap, bp, i0, j0, k, n),
                        3 => block::<3>(cp, ap, bp, i0, j0, k, n),
                        2 => block::<2>(cp, ap, bp, i0, j0, k, n),
                        _ => block::<1>(cp, ap, bp, i0, j0, k, n),
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
    use std::arch::x86_64::*;

    const LANES: usize = 8;
    /// 2 vectors x 4 rows = 8 accumulators: with the B vectors and the broadcast they
    /// fit the 16 ymm registers.
    const NV: usize = 2;

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
    /// AVX2 and FMA present; bounds as for the AVX-512 block.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const R: usize>(
        c: *mut f32,
        a: *const f32,
        b: *const f32,
        i0: usize,
        j0: usize,
        k: usize,
        n: usize,
    ) {
        let mut live = [false; NV];
        let mut masks = [_mm256_setzero_si256(); NV];
        for v in 0..NV {
            let rest = n.saturating_sub(j0 + v * LANES);
            live[v] = rest > 0;
            // SAFETY: AVX2 is present (this function's own requirement).
            masks[v] = unsafe { mask(rest) };
        }
        let mut acc = [[_mm256_setzero_ps(); NV]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                if live[v] {
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
                if live[v] {
                    // SAFETY: row p of b, masked to [0, n).
                    *x = unsafe { _mm256_maskload_ps(b.add(p * n + j0 + v * LANES), masks[v]) };
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
                if live[v] {
                    // SAFETY: as for the loads.
                    unsafe {
                        _mm256_maskstore_ps(c.add((i0 + r) * n + j0 + v * LANES), masks[v], *x)
                    };
                }
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA present; lengths checked by the caller (m*n, m*k, k*n).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn matmul_nn(
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
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
                        4 => block::<4>(cp, ap, bp, i0, j0, k, n),
                        3 => block::<3>(cp, ap, bp, i0, j0, k, n),
                        2 => block::<2>(cp, ap, bp, i0, j0, k, n),
                        _ => block::<1>(cp, ap, bp, i0, j0, k, n),
                    }
                }
                i0 += MR;
            }
            j0 += NV * LANES;
        }
    }
}
