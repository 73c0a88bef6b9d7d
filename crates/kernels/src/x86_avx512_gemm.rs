//! AVX-512 `matmul_bt` (C += A * B^T, B = n x k weights of any dtype) and `dot`.
//!
//! Structure (all of it preserves the per-output accumulation order of `x86_common.rs`,
//! so results do not depend on m, on tiling, or on the weight-row range):
//! - decode (m = 1): a GEMV that streams B exactly once, 8 weight rows at a time (8
//!   independent FMA chains and 8 memory streams);
//! - prefill (m > 1): register tiles of 3 A rows x 8 B rows (24 zmm accumulators; each
//!   B vector loaded is used 3 times, each A vector 8 times). Row blocks of A (at most
//!   `MC_MAX` rows, [`block_rows`]), then panels of 8 B rows, then `KC`-long slices of k: a
//!   panel slice (8 x KC) stays in L1 while every A tile of the block uses it (16-bit
//!   weights are first converted into an f32 panel buffer, once per slice instead of
//!   once per tile). Between k slices a tile's 24 unreduced accumulators are parked in
//!   a buffer and reloaded, so each output still sees one unbroken chain of FMAs and one
//!   final horizontal sum: k-blocking for the cache without changing a bit of the
//!   result. The eight sums of a tile row are reduced together (`hsum8`, the very same
//!   additions as `hsum`) and added to C with one vector add.
//!
//! Weights are converted to f32 in registers as they are loaded (f16: `vcvtph2ps`;
//! bf16: zero-extend and shift left 16), exactly. AVX512_BF16 `vdpbf16ps` rounds the
//! activations to bf16, which changes the numerics: it runs only when asked for, in
//! `x86_avx512_bf16.rs` (the bf16-products mode).

#![allow(clippy::needless_range_loop)] // index loops over const-size register arrays

use core::arch::x86_64::*;
use std::cell::RefCell;

use half::{bf16, f16};

use crate::x86_avx512::{hsum, hsum8, tail_mask};
use crate::Weights;

const L: usize = 16;
/// Register tile of the prefill path: 3 x 8 = 24 accumulators + 3 A + 1 B of 32 zmm. Eight
/// outputs per row are reduced together (`hsum8`) and added to C with one vector add.
const MR: usize = 3;
const NR: usize = 8;
/// Weight rows per GEMV step (m = 1).
const NR_GEMV: usize = 8;
/// k slice: a multiple of `L`; the 8 x KC panel slice (16 KiB in f32) and a 3 x KC A
/// tile (6 KiB) fit in L1 together.
const KC: usize = 512;
/// Most A rows per block (a multiple of MR). Each block reads every weight once, so a
/// 128-token prefill reads its weights once; its A block (128 x k f32, up to 1.2 MiB for
/// the layer shapes) then streams from L2 / L3 once per panel, which measured faster on
/// Zen 4 than splitting the rows so that a block fits in L2 and reading the weights twice
/// (`examples/kernel_bench.rs`, m = 128: 896 x 4864 f32 96 vs 85 GFLOP/s).
pub(crate) const MC_MAX: usize = 132;

thread_local! {
    /// Parked accumulators of one row block (grown, never shrunk).
    static PARK: RefCell<Vec<__m512>> = const { RefCell::new(Vec::new()) };
}

/// Rows per block for `m` rows: at most `max` (a multiple of `mr`), a multiple of `mr`,
/// and the blocks of one call balanced (200 rows make blocks of 102 and 98, not 132 and 68).
pub(crate) fn block_rows(m: usize, max: usize, mr: usize) -> usize {
    let blocks = m.div_ceil(max.max(mr));
    m.div_ceil(blocks).div_ceil(mr) * mr
}

/// How many slices ahead [`Next`] prefetches: one is enough to hide DRAM latency (m = 128,
/// weights cycled through 96 MiB: ~+7% against none), two measured ~1% better still.
pub(crate) const PREFETCH_SLICES: usize = 2;

/// A weight region the prefill loops will pack ([`PREFETCH_SLICES`] ahead), prefetched
/// into L2 a little at a time while the tiles of the current panel run. In a layer the
/// weights come from L3 or DRAM, and packing a panel that is not in L2 stalls on memory
/// latency that nothing else overlaps (weights cycled through 96 MiB of copies, m = 128,
/// k <= 1024: bf16 products ~175 -> ~190 GFLOP/s, f32 ~93 -> ~95).
#[derive(Clone, Copy)]
pub(crate) struct Next {
    /// First byte of the next region (never dereferenced: prefetches do not fault).
    at: *const u8,
    /// Bytes between its rows, rows (`NR`), bytes per row.
    ldb: usize,
    rows: usize,
    row_bytes: usize,
}

impl Next {
    /// The region `steps` slices after slice `p0..` of the panel at row `j` of an
    /// `n x k` matrix at `b` (`elem` bytes per weight, slices of `kc`, panels of `nr`
    /// rows), in the loops' order: the next slice of the same rows, else the next panel,
    /// else the first panel (the next row block reads B again).
    pub(crate) fn ahead(
        b: *const u8,
        elem: usize,
        [j, p0, n, k, kc, nr]: [usize; 6],
        steps: usize,
    ) -> Next {
        let (mut j, mut p0) = (j, p0);
        for _ in 0..steps {
            let len = kc.min(k - p0);
            if p0 + len < k {
                p0 += len;
            } else if j + nr < n {
                (j, p0) = (j + nr, 0);
            } else {
                (j, p0) = (0, 0);
            }
        }
        Next {
            at: b.wrapping_add((j * k + p0) * elem),
            ldb: k * elem,
            rows: nr.min(n - j),
            row_bytes: kc.min(k - p0) * elem,
        }
    }

    /// Prefetches part `t` of `parts` of the region (by cache lines, row after row).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn prefetch_part(self, t: usize, parts: usize) {
        let per_row = self.row_bytes.div_ceil(64);
        let total = per_row * self.rows;
        let (lo, hi) = (total * t / parts.max(1), total * (t + 1) / parts.max(1));
        for line in lo..hi.min(total) {
            let p = self
                .at
                .wrapping_add((line / per_row) * self.ldb + (line % per_row) * 64);
            _mm_prefetch::<_MM_HINT_T1>(p as *const i8);
        }
    }
}

/// Loading 16 weights as f32 (exact conversion for every dtype).
trait WLoad: Copy {
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
/// `A[i, q] * B[j, q]` for `q < s.len`, where A rows start at `a` (`lda` apart) and
/// `B[j, q]` is at `b + j * ldb + q * qs` (`qs = 1`: rows as stored; a packed panel has
/// `ldb = L`, `qs = NR`), both already offset to the slice. On the last slice
/// `C[i, j] += hsum(acc)` (C rows `ldc` apart); otherwise the accumulators are parked at
/// `park[i * NR + j]` for the next slice.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn tile<W: WLoad, const MR: usize, const NR: usize>(
    a: *const f32,
    lda: usize,
    b: *const W,
    ldb: usize,
    qs: usize,
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
        // The A vectors first, then one B vector at a time: 24 accumulators + 3 A + 1 B
        // stay in the 32 registers (all 8 B vectors at once would spill).
        let mut av = [_mm512_setzero_ps(); MR];
        for i in 0..MR {
            av[i] = _mm512_loadu_ps(a.add(i * lda + q));
        }
        for j in 0..NR {
            let bv = W::load(b.add(j * ldb + q * qs));
            for i in 0..MR {
                acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
            }
        }
        q += L;
    }
    if q < s.len {
        let m = tail_mask(s.len - q);
        let mut av = [_mm512_setzero_ps(); MR];
        for i in 0..MR {
            av[i] = _mm512_maskz_loadu_ps(m, a.add(i * lda + q));
        }
        for j in 0..NR {
            let bv = W::load_mask(b.add(j * ldb + q * qs), m);
            for i in 0..MR {
                acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
            }
        }
    }
    if s.last {
        for i in 0..MR {
            let ci = c.add(i * ldc);
            if NR == 8 {
                let mut v = [_mm512_setzero_ps(); 8];
                v.copy_from_slice(&acc[i][..8]);
                _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), hsum8(&v)));
            } else {
                for j in 0..NR {
                    *ci.add(j) += hsum(acc[i][j]);
                }
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
/// apart), `nr <= NR` B rows from `b` (addressed as in [`tile`]; a narrow panel is
/// never packed), tile `t` parking at slots `t * MR * NR`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn block<W: WLoad>(
    mb: usize,
    nr: usize,
    a: *const f32,
    lda: usize,
    b: *const W,
    ldb: usize,
    qs: usize,
    s: Slice,
    c: *mut f32,
    ldc: usize,
    park: *mut __m512,
    next: Option<Next>,
) {
    let tiles = mb.div_ceil(MR);
    let mut i = 0;
    while i < mb {
        if let Some(nx) = next {
            nx.prefetch_part(i / MR, tiles);
        }
        let mr = MR.min(mb - i);
        let (a, c, park) = (a.add(i * lda), c.add(i * ldc), park.add(i / MR * MR * NR));
        if nr == NR {
            match mr {
                3 => tile::<W, 3, NR>(a, lda, b, ldb, qs, s, c, ldc, park),
                2 => tile::<W, 2, NR>(a, lda, b, ldb, qs, s, c, ldc, park),
                _ => tile::<W, 1, NR>(a, lda, b, ldb, qs, s, c, ldc, park),
            }
        } else {
            // A narrow last panel: column by column, each in its own MR park slots.
            for j in 0..nr {
                let (b, c, park) = (b.add(j * ldb), c.add(j), park.add(j * MR));
                match mr {
                    3 => tile::<W, 3, 1>(a, lda, b, ldb, qs, s, c, ldc, park),
                    2 => tile::<W, 2, 1>(a, lda, b, ldb, qs, s, c, ldc, park),
                    _ => tile::<W, 1, 1>(a, lda, b, ldb, qs, s, c, ldc, park),
                }
            }
        }
        i += mr;
    }
}

/// Copies the `NR` rows of `len` weights (`ldb` apart) into `out` as f32 (exact), step
/// by step: the 16 weights `q..q + 16` of row `j` at `out + q * NR + j * 16`, the tail
/// zero-filled. The tiles of a block then read their B vectors from one contiguous,
/// L1-resident run instead of from `NR` rows `ldb` apart: rows 4 KiB apart (k = 1024 in
/// f32, k = 2048 in 16 bits) all map to the same L1 sets and evict one another, which
/// measured 66-75 instead of ~105 GFLOP/s. 16-bit weights are also converted once per
/// block instead of once per tile.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn pack<W: WLoad>(b: *const W, ldb: usize, len: usize, out: *mut f32) {
    for j in 0..NR {
        let src = b.add(j * ldb);
        let mut q = 0;
        while q + L <= len {
            _mm512_store_ps(out.add(q * NR + j * L), W::load(src.add(q)));
            q += L;
        }
        if q < len {
            let m = tail_mask(len - q);
            _mm512_store_ps(out.add(q * NR + j * L), W::load_mask(src.add(q), m));
        }
    }
}

/// The packed panel slice of [`pack`], aligned to cache lines.
#[repr(C, align(64))]
struct Panel([f32; NR * KC]);

/// `C (m x n, row stride n) += A (m x k) * B^T`, `B` the `n x k` rows at `b`; `k > 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn gemm<W: WLoad>(c: *mut f32, a: *const f32, b: *const W, m: usize, n: usize, k: usize) {
    let none = std::ptr::null_mut();
    if m == 1 {
        // Decode: stream B once, NR_GEMV rows at a time.
        let mut j = 0;
        while j + NR_GEMV <= n {
            tile::<W, 1, NR_GEMV>(a, k, b.add(j * k), k, 1, Slice::whole(k), c.add(j), n, none);
            j += NR_GEMV;
        }
        while j < n {
            tile::<W, 1, 1>(a, k, b.add(j * k), k, 1, Slice::whole(k), c.add(j), n, none);
            j += 1;
        }
        return;
    }
    let mc = block_rows(m, MC_MAX, MR);
    let slots = mc.min(m).div_ceil(MR) * MR * NR;
    PARK.with(|p| match p.try_borrow_mut() {
        Ok(mut p) => {
            if p.len() < slots {
                p.resize(slots, _mm512_setzero_ps());
            }
            gemm_blocks::<W>(c, a, b, m, n, k, mc, p.as_mut_ptr())
        }
        // Only reentrancy could find the buffer busy: use a fresh one.
        Err(_) => gemm_blocks::<W>(
            c,
            a,
            b,
            m,
            n,
            k,
            mc,
            vec![_mm512_setzero_ps(); slots].as_mut_ptr(),
        ),
    });
}

/// The prefill loops (see the module doc): row blocks of `mc` rows, panels, k slices.
/// `park` holds `ceil(min(mc, m) / MR) * MR * NR` vectors.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn gemm_blocks<W: WLoad>(
    c: *mut f32,
    a: *const f32,
    b: *const W,
    m: usize,
    n: usize,
    k: usize,
    mc: usize,
    park: *mut __m512,
) {
    let mut panel = Panel([0f32; NR * KC]);
    let packed = panel.0.as_mut_ptr();
    let b0 = b;
    let mut i0 = 0;
    while i0 < m {
        let mb = mc.min(m - i0);
        // Packing a panel once pays off when several tiles share it.
        let pack_b = mb > MR;
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
                let next = Next::ahead(
                    b0 as *const u8,
                    size_of::<W>(),
                    [j, p0, n, k, KC, NR],
                    PREFETCH_SLICES,
                );
                if pack_b && nr == NR {
                    pack::<W>(b, k, len, packed);
                    block::<f32>(mb, nr, a, k, packed, L, NR, s, c, n, park, Some(next));
                } else {
                    block::<W>(mb, nr, a, k, b, k, 1, s, c, n, park, None);
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
        1,
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
