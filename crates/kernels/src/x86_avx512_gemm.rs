//! AVX-512 `matmul_bt` (C += A * B^T, B = n x k weights of any dtype) and `dot`.
//!
//! Structure (all of it preserves the per-output accumulation order of `x86_common.rs`,
//! so results do not depend on m, on tiling, or on the weight-row range):
//! - decode (m = 1): a GEMV that streams B exactly once, 8 weight rows at a time (8
//!   independent FMA chains and 8 memory streams);
//! - prefill (m > 1): register tiles of 4 A rows x 6 B rows (24 zmm accumulators; each
//!   B vector loaded is used 4 times, each A vector 6 times). Blocks of `MC` A rows, then
//!   panels of 6 B rows, then `KC`-long slices of k: a panel slice (6 x KC) stays in L1
//!   while every A tile of the block uses it (16-bit weights are first converted into an
//!   f32 panel buffer, once per slice instead of once per tile). Between k slices a tile's 24 unreduced
//!   accumulators are parked in a stack buffer and reloaded, so each output still sees
//!   one unbroken chain of FMAs and one final horizontal sum: k-blocking for the cache
//!   without changing a bit of the result.
//!
//! Weights are converted to f32 in registers as they are loaded (f16: `vcvtph2ps`;
//! bf16: zero-extend and shift left 16), exactly. We deliberately do not use AVX512_BF16
//! `vdpbf16ps`: it would round the f32 activations to bf16, changing numerics.

#![allow(clippy::needless_range_loop)] // index loops over const-size register arrays

use core::arch::x86_64::*;

use half::{bf16, f16};

use crate::x86_avx512::{hsum, tail_mask};
use crate::Weights;

const L: usize = 16;
/// Register tile of the prefill path: 4 x 6 = 24 accumulators + 6 B + 1 A of 32 zmm.
const MR: usize = 4;
const NR: usize = 6;
/// Weight rows per GEMV step (m = 1).
const NR_GEMV: usize = 8;
/// k slice: a multiple of `L`; the 6 x KC panel slice (12 KiB in f32) and a 4 x KC A
/// tile (8 KiB) fit in L1 together.
const KC: usize = 512;
/// A rows per block (a multiple of MR): the block's KC slice (128 KiB) sits in L2.
const MC: usize = 64;
/// Parked accumulators of one block: MC / MR tiles of MR x NR vectors (24 KiB of stack,
/// plus 12 KiB for the converted panel).
const SLOTS: usize = MC / MR * MR * NR;

/// Loading 16 weights as f32 (exact conversion for every dtype).
trait WLoad: Copy {
    /// Whether this is f32 already (no conversion, no packing).
    const IS_F32: bool = false;
    /// GEMV software prefetch distance in elements (0: none). For 16-bit weights each
    /// row advances only half a cache line per step and the hardware prefetchers fall
    /// behind; prefetching 4 KiB ahead measured +25-50% DRAM throughput on the dev
    /// machine (a 2-core Xeon with AVX-512), while for f32 it made no difference.
    const PREFETCH: usize = 2048;
    /// 16 consecutive weights.
    unsafe fn load(p: *const Self) -> __m512;
    /// The low lanes of `m`; other lanes are 0 and their memory is not touched.
    unsafe fn load_mask(p: *const Self, m: __mmask16) -> __m512;
}

impl WLoad for f32 {
    const IS_F32: bool = true;
    const PREFETCH: usize = 0;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn load_mask(p: *const f32, m: __mmask16) -> __m512 {
        _mm512_maskz_loadu_ps(m, p)
    }
}

impl WLoad for f16 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn load(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn load_mask(p: *const f16, m: __mmask16) -> __m512 {
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p as *const i16))
    }
}

impl WLoad for bf16 {
    // bf16 is the top half of an f32: widen to 32 bits and shift left by 16 (exact).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn load(p: *const bf16) -> __m512 {
        let h = _mm256_loadu_si256(p as *const __m256i);
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn load_mask(p: *const bf16, m: __mmask16) -> __m512 {
        let h = _mm256_maskz_loadu_epi16(m, p as *const i16);
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }
}

/// Where a tile's k slice sits in the whole dot product.
#[derive(Clone, Copy)]
struct Slice {
    /// Elements in this slice (a multiple of `L` except in the last slice).
    len: usize,
    /// Start from zero (else reload the parked accumulators).
    first: bool,
    /// Reduce into C (else park the accumulators).
    last: bool,
}

impl Slice {
    fn whole(k: usize) -> Slice {
        Slice {
            len: k,
            first: true,
            last: true,
        }
    }
}

/// One register tile over one k slice: for `i < MR`, `j < NR`, accumulates
/// `A[i, q] * B[j, q]` for `q < s.len`, where A rows start at `a` (`lda` apart) and B rows
/// at `b` (`ldb` apart), both already offset to the slice. On the last slice
/// `C[i, j] += hsum(acc)` (C rows `ldc` apart); otherwise the accumulators are parked at
/// `park[i * NR + j]` for the next slice.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn tile<W: WLoad, const MR: usize, const NR: usize>(
    a: *const f32,
    lda: usize,
    b: *const W,
    ldb: usize,
    s: Slice,
    c: *mut f32,
    ldc: usize,
    park: *mut __m512,
) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    if !s.first {
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = *park.add(i * NR + j);
            }
        }
    }
    let mut q = 0;
    while q + L <= s.len {
        if MR == 1 && W::PREFETCH > 0 {
            for j in 0..NR {
                // Prefetch never faults; `wrapping_add` keeps the address arithmetic
                // defined when it runs past the end of the weights.
                let ahead = b.wrapping_add(j * ldb + q + W::PREFETCH);
                _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
            }
        }
        let mut bv = [_mm512_setzero_ps(); NR];
        for j in 0..NR {
            bv[j] = W::load(b.add(j * ldb + q));
        }
        for i in 0..MR {
            let av = _mm512_loadu_ps(a.add(i * lda + q));
            for j in 0..NR {
                acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
            }
        }
        q += L;
    }
    if q < s.len {
        let m = tail_mask(s.len - q);
        let mut bv = [_mm512_setzero_ps(); NR];
        for j in 0..NR {
            bv[j] = W::load_mask(b.add(j * ldb + q), m);
        }
        for i in 0..MR {
            let av = _mm512_maskz_loadu_ps(m, a.add(i * lda + q));
            for j in 0..NR {
                acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
            }
        }
    }
    if s.last {
        for i in 0..MR {
            for j in 0..NR {
                *c.add(i * ldc + j) += hsum(acc[i][j]);
            }
        }
    } else {
        for i in 0..MR {
            for j in 0..NR {
                *park.add(i * NR + j) = acc[i][j];
            }
        }
    }
}

/// Every tile of one (A block, B panel, k slice): A rows `[0, mb)` from `a` (`lda`
/// apart), `nr <= NR` B rows from `b` (`ldb` apart), tile `t` parking at slots `t * MR * NR`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn block<W: WLoad>(
    mb: usize,
    nr: usize,
    a: *const f32,
    lda: usize,
    b: *const W,
    ldb: usize,
    s: Slice,
    c: *mut f32,
    ldc: usize,
    park: *mut __m512,
) {
    let mut i = 0;
    while i < mb {
        let mr = MR.min(mb - i);
        let (a, c, park) = (a.add(i * lda), c.add(i * ldc), park.add(i / MR * MR * NR));
        if nr == NR {
            match mr {
                4 => tile::<W, 4, NR>(a, lda, b, ldb, s, c, ldc, park),
                3 => tile::<W, 3, NR>(a, lda, b, ldb, s, c, ldc, park),
                2 => tile::<W, 2, NR>(a, lda, b, ldb, s, c, ldc, park),
                _ => tile::<W, 1, NR>(a, lda, b, ldb, s, c, ldc, park),
            }
        } else {
            // A narrow last panel: column by column, each in its own MR park slots.
            for j in 0..nr {
                let (b, c, park) = (b.add(j * ldb), c.add(j), park.add(j * MR));
                match mr {
                    4 => tile::<W, 4, 1>(a, lda, b, ldb, s, c, ldc, park),
                    3 => tile::<W, 3, 1>(a, lda, b, ldb, s, c, ldc, park),
                    2 => tile::<W, 2, 1>(a, lda, b, ldb, s, c, ldc, park),
                    _ => tile::<W, 1, 1>(a, lda, b, ldb, s, c, ldc, park),
                }
            }
        }
        i += mr;
    }
}

/// Converts `nr` rows of `len` weights (`ldb` apart) to f32 rows `KC` apart in `out`
/// (exact), so the tiles of a block convert each weight once instead of once per tile.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn pack<W: WLoad>(b: *const W, ldb: usize, nr: usize, len: usize, out: *mut f32) {
    for j in 0..nr {
        let (src, dst) = (b.add(j * ldb), out.add(j * KC));
        let mut q = 0;
        while q + L <= len {
            _mm512_storeu_ps(dst.add(q), W::load(src.add(q)));
            q += L;
        }
        if q < len {
            let m = tail_mask(len - q);
            _mm512_mask_storeu_ps(dst.add(q), m, W::load_mask(src.add(q), m));
        }
    }
}

/// `C (m x n, row stride n) += A (m x k) * B^T`, `B` the `n x k` rows at `b`; `k > 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn gemm<W: WLoad>(c: *mut f32, a: *const f32, b: *const W, m: usize, n: usize, k: usize) {
    let none = std::ptr::null_mut();
    if m == 1 {
        // Decode: stream B once, NR_GEMV rows at a time.
        let mut j = 0;
        while j + NR_GEMV <= n {
            tile::<W, 1, NR_GEMV>(a, k, b.add(j * k), k, Slice::whole(k), c.add(j), n, none);
            j += NR_GEMV;
        }
        while j < n {
            tile::<W, 1, 1>(a, k, b.add(j * k), k, Slice::whole(k), c.add(j), n, none);
            j += 1;
        }
        return;
    }
    let mut park = [_mm512_setzero_ps(); SLOTS];
    let park = park.as_mut_ptr();
    let mut packed = [0f32; NR * KC];
    let packed = packed.as_mut_ptr();
    let mut i0 = 0;
    while i0 < m {
        let mb = MC.min(m - i0);
        // Converting a 16-bit panel once pays off when several tiles share it.
        let pack_b = !W::IS_F32 && mb > MR;
        let mut j = 0;
        while j < n {
            let nr = NR.min(n - j);
            let mut p0 = 0;
            while p0 < k {
                let len = KC.min(k - p0);
                let s = Slice {
                    len,
                    first: p0 == 0,
                    last: p0 + len == k,
                };
                let (a, b, c) = (a.add(i0 * k + p0), b.add(j * k + p0), c.add(i0 * n + j));
                if pack_b {
                    pack::<W>(b, k, nr, len, packed);
                    block::<f32>(mb, nr, a, k, packed, KC, s, c, n, park);
                } else {
                    block::<W>(mb, nr, a, k, b, k, s, c, n, park);
                }
                p0 += len;
            }
            j += nr;
        }
        i0 += mb;
    }
}

/// `dot(a, b)`: the 1 x 1 tile's order, added to a zero `C`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let k = a.len().min(b.len());
    let mut out = 0.0f32;
    tile::<f32, 1, 1>(
        a.as_ptr(),
        k,
        b.as_ptr(),
        k,
        Slice::whole(k),
        &mut out,
        1,
        std::ptr::null_mut(),
    );
    out
}

/// `C (m x (n1 - n0)) += A (m x k) * B[n0..n1]^T`; shapes checked by the caller, `k > 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn matmul_bt_rows(
    c: &mut [f32],
    a: &[f32],
    b: Weights<'_>,
    m: usize,
    k: usize,
    n0: usize,
    n1: usize,
) {
    let (cp, ap, w) = (c.as_mut_ptr(), a.as_ptr(), n1 - n0);
    match b {
        Weights::F32(b) => gemm(cp, ap, b.as_ptr().add(n0 * k), m, w, k),
        Weights::F16(b) => gemm(cp, ap, b.as_ptr().add(n0 * k), m, w, k),
        Weights::BF16(b) => gemm(cp, ap, b.as_ptr().add(n0 * k), m, w, k),
        // Quantized weights take their own path (`quant/`) before dispatch reaches here.
        Weights::Quant { .. } => {}
    }
}
