//! AVX2 + FMA + F16C `matmul_bt` and `dot`: the structure of `x86_avx512_gemm.rs` with
//! 8 lanes and 16 ymm registers (tiles of 4 A rows x 3 B rows: 12 accumulators + 3 B +
//! 1 A). f32 tails use `vmaskmovps`; 16-bit weight tails go through a zero-padded stack
//! buffer. Same order contract, so the same bit-for-bit invariances hold at this level.

#![allow(clippy::needless_range_loop)] // index loops over const-size register arrays

use core::arch::x86_64::*;

use half::{bf16, f16};

use crate::x86_avx2::{hsum, tail_mask};
use crate::Weights;

const L: usize = 8;
/// Register tile of the prefill path: 4 x 3 = 12 accumulators + 3 B + 1 A of 16 ymm.
const MR: usize = 4;
const NR: usize = 3;
/// Weight rows per GEMV step (m = 1).
const NR_GEMV: usize = 8;
/// k slice: a multiple of `L`; the 3 x KC panel slice and a 4 x KC A tile fit in L1.
const KC: usize = 512;
/// A rows per block (a multiple of MR): the block's KC slice (128 KiB) sits in L2.
const MC: usize = 64;
/// Parked accumulators of one block: MC / MR tiles of MR x NR vectors (6 KiB of stack,
/// plus 6 KiB for the converted panel).
const SLOTS: usize = MC / MR * MR * NR;

/// Loading 8 weights as f32 (exact conversion for every dtype).
trait WLoad: Copy {
    /// Whether this is f32 already (no conversion, no packing).
    const IS_F32: bool = false;
    /// GEMV software prefetch distance in elements (0: none). For 16-bit weights each
    /// row advances only half a cache line per step and the hardware prefetchers fall
    /// behind; prefetching 4 KiB ahead measured +25-50% DRAM throughput on the dev
    /// machine (a 2-core Xeon with AVX-512), while for f32 it made no difference.
    const PREFETCH: usize = 2048;
    /// 8 consecutive weights.
    unsafe fn load(p: *const Self) -> __m256;
    /// The first `n < 8` weights, other lanes 0; memory past `n` is not touched.
    unsafe fn load_tail(p: *const Self, n: usize) -> __m256;
}

/// Copies `n <= 8` 16-bit values into a zero-padded 128-bit vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_u16_tail<T>(p: *const T, n: usize) -> __m128i {
    let mut buf = [0u16; 8];
    std::ptr::copy_nonoverlapping(p as *const u16, buf.as_mut_ptr(), n.min(8));
    _mm_loadu_si128(buf.as_ptr() as *const __m128i)
}

impl WLoad for f32 {
    const IS_F32: bool = true;
    const PREFETCH: usize = 0;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_tail(p: *const f32, n: usize) -> __m256 {
        _mm256_maskload_ps(p, tail_mask(n))
    }
}

impl WLoad for f16 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_tail(p: *const f16, n: usize) -> __m256 {
        _mm256_cvtph_ps(load_u16_tail(p, n))
    }
}

impl WLoad for bf16 {
    // bf16 is the top half of an f32: widen to 32 bits and shift left by 16 (exact).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const bf16) -> __m256 {
        let h = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_tail(p: *const bf16, n: usize) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
            load_u16_tail(p, n),
        )))
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
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<W: WLoad, const MR: usize, const NR: usize>(
    a: *const f32,
    lda: usize,
    b: *const W,
    ldb: usize,
    s: Slice,
    c: *mut f32,
    ldc: usize,
    park: *mut __m256,
) {
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
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
        let mut bv = [_mm256_setzero_ps(); NR];
        for j in 0..NR {
            bv[j] = W::load(b.add(j * ldb + q));
        }
        for i in 0..MR {
            let av = _mm256_loadu_ps(a.add(i * lda + q));
            for j in 0..NR {
                acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
            }
        }
        q += L;
    }
    if q < s.len {
        let (t, m) = (s.len - q, tail_mask(s.len - q));
        let mut bv = [_mm256_setzero_ps(); NR];
        for j in 0..NR {
            bv[j] = W::load_tail(b.add(j * ldb + q), t);
        }
        for i in 0..MR {
            let av = _mm256_maskload_ps(a.add(i * lda + q), m);
            for j in 0..NR {
                acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
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
#[target_feature(enable = "avx2,fma,f16c")]
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
    park: *mut __m256,
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
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack<W: WLoad>(b: *const W, ldb: usize, nr: usize, len: usize, out: *mut f32) {
    for j in 0..nr {
        let (src, dst) = (b.add(j * ldb), out.add(j * KC));
        let mut q = 0;
        while q + L <= len {
            _mm256_storeu_ps(dst.add(q), W::load(src.add(q)));
            q += L;
        }
        if q < len {
            _mm256_maskstore_ps(
                dst.add(q),
                tail_mask(len - q),
                W::load_tail(src.add(q), len - q),
            );
        }
    }
}

/// `C (m x n, row stride n) += A (m x k) * B^T`, `B` the `n x k` rows at `b`; `k > 0`.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let mut park = [_mm256_setzero_ps(); SLOTS];
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
#[target_feature(enable = "avx2,fma,f16c")]
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
#[target_feature(enable = "avx2,fma,f16c")]
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
