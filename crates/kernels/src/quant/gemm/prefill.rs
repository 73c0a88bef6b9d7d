//! Prefill (m >= 4) GEMM at the AVX-512 VNNI level, on operands repacked once per call:
//! the 32-element formats ([`gemm32`]), Q4_K ([`gemm_q4k`]), Q5_K / Q6_K ([`gemm_k8`]).
//! Measured on the dev machine (Zen 4, one thread, m = 128, `examples/prefill_bench.rs`)
//! against the generic tiles: Q8_0 ~105 -> ~172-180 GOP/s, Q4_0 ~62 -> ~255-265, Q4_1
//! ~95 -> ~160, Q5_0 -> ~175-179 (in the 8-row layout too), Q4_K ~60 -> ~194-201, Q6_K
//! ~93 -> ~133. Zen 4 issues `vpdpbusd`, `vpmaddubsw`, `vpdpwssd` and the FMAs on the
//! same two pipes (`examples/pipes.rs`), so each loop is shaped to keep those busy and
//! its loads below two per cycle; the eight-lane formats (Q8_0, Q5_0, ...) need one
//! `vpdpbusd` and one FMA per 32 multiply-adds, ~213 GOP/s at most at 3.55 GHz.
//!
//! Numerics: exactly those of `dot_ref.rs` (and of the generic `Tile32`): for each output,
//! per block, the same exact i32 lanes, the same f32 product `d_w d_a`, the same FMA into
//! the same accumulator, the same final tree. Only where the integers and the products
//! come from changes:
//! - the integer lanes come from `vpdpbusd(corr_w, a + 128, w_signed)`: the activations
//!   made unsigned once per call (`a ^ 0x80`), the weights' quants with their offset
//!   removed (signed) and the correction `-128 * sum_lane(w_signed)` computed once per
//!   weight block when its panel is packed; `sum (a + 128) w - 128 sum w = sum a w`,
//!   exact in i32. The correction then depends on the weights, shared by every
//!   activation row, instead of on the activations, recomputed per weight row;
//! - the `d_w d_a` products of a `4 x NR` tile are computed eight at a time (one
//!   `vmulps` of the activation scales and the weight scales laid out in the output
//!   order; each product is the same single rounding of the same two f32 values);
//! - Q4_1 / Q5_1's min terms run eight outputs per vector (`summs = fma(m_w, s_a,
//!   summs)`, the same operation per output);
//! - Q4_0 (one f32 chain per output over whole-block sums) has its own layout with the
//!   weight rows in the i32 lanes, so whole block sums need no horizontal sums
//!   ([`run_chain`]).
//!
//! Tiling: panels of `NR` (Q4_0: [`NRC`]) weight rows, packed into a buffer that stays
//! in L1, in the outer loop, groups of 4 activation rows in the inner loop. Rows past the
//! last full group and weight rows past the last full panel go to the generic tiles (for
//! these formats the tiling does not change the numerics). Every panel pass reads all
//! the call's activation rows, so the eight-lane formats and Q5_K / Q6_K split long
//! calls into row chunks whose activations stay in L2 ([`ROW_CHUNK_BYTES`]).

use core::arch::x86_64::*;
use std::cell::RefCell;

use super::super::simd::{Dot, VnniDot};
use super::{
    f16_at, hsum8, scales_mins_k4, Args, Fmt32, FmtK, LinearPrefetch, Mins, Tile, Q4K, QK, QK_K,
};

/// Weight rows per panel. With 32 vector registers a `4 x 4` tile keeps its 16
/// accumulators, 4 activation vectors and the temporaries in registers.
const NR: usize = 4;
/// Activation rows per tile.
const MR: usize = 4;
/// Output vectors of eight per tile (`MR * NR / 8`), and activation rows per vector.
const NV: usize = MR * NR / 8;
const RV: usize = 8 / NR;
/// Vectors per block of a packed panel: the `NR` signed quant vectors, their `NR`
/// corrections, the weight scales and the mins (each laid out in output order).
const PANEL_VECS: usize = 2 * NR + 2;
// `run` lays out the activation scales as two rows of NR lanes per vector.
const _: () = assert!(RV == 2 && NR == 4);

thread_local! {
    /// Per-thread packing buffer, reused across calls (grown, never shrunk): about the
    /// size of the call's quantized activations (`m x k` bytes) plus one weight panel.
    static SCRATCH: RefCell<Vec<__m256i>> = const { RefCell::new(Vec::new()) };
}

/// The extra a 32-element format needs here.
pub(super) trait Pack32: Fmt32 {
    /// The offset the stored (unsigned) quants carry (0 for Q8_0 and the formats with a
    /// min).
    const OFFSET: i8;
    /// The block's quants as signed bytes (offset removed), from the block start.
    unsafe fn signed(blk: *const u8) -> __m256i;
}

/// The prefill GEMM over `a` (m >= 4) of a 32-element format; `T` is the generic tile
/// for the outputs outside the panels and groups (all of them if the buffer is busy,
/// which only reentrancy could cause).
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C; shapes as in `gemm.rs`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm32<F: Pack32, T: Tile>(a: &Args<'_>) {
    if F::SINGLE_CHAIN {
        // Q4_0's layout reads a quarter of the activation bytes per multiply-add that the
        // eight-lane formats do: whole calls measured as fast at m = 512 as at 128.
        gemm32_rows::<F, T>(a);
    } else {
        for (i0, n) in row_chunks(a.m, a.k) {
            gemm32_rows::<F, T>(&a.rows(i0, n));
        }
    }
}

// Not a closure over the chunks: a closure would not be compiled with the target
// features, and the intrinsics inlined into it would become calls (measured 100x slower).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm32_rows<F: Pack32, T: Tile>(a: &Args<'_>) {
    let done = SCRATCH.with(|s| {
        let Ok(mut buf) = s.try_borrow_mut() else {
            return None;
        };
        if F::SINGLE_CHAIN {
            Some(run_chain::<F>(a, &mut buf))
        } else {
            run::<F>(a, &mut buf);
            Some((a.m / MR * MR, a.nw / NR * NR))
        }
    });
    let (m4, nwp) = done.unwrap_or((0, 0));
    tails::<T>(a, m4, nwp);
}

/// Quantized activation bytes a call sweeps per weight panel before the rows are split
/// into chunks (each chunk then runs the whole product over its rows, panels packed
/// again per chunk). Every panel pass reads all of a call's activation rows (`k` bytes
/// each, plus one byte per element of scales in the 32-element formats' packed form,
/// or of accumulators in the k-quant one), so they must stay in the 1 MiB L2 of Zen 4
/// next to the panels and the outputs. Measured (`examples/prefill_bench`, m = 512, one
/// thread, best of 5): Q8_0 at k = 1536 145 -> 175 GOP/s, at k = 576 169 -> 181; Q5_0
/// 141-158 -> 172-181; Q6_K at k = 4864 114 -> 140 (384 KiB gave less, 192 KiB the
/// same or less).
const ROW_CHUNK_BYTES: usize = 256 << 10;

/// Rows per chunk for `m` rows of `k` elements: all of them up to twice
/// [`ROW_CHUNK_BYTES`] (SmolLM2's `ffn_down` at m = 128, 384 KiB, measured 2-5% faster
/// whole than as two chunks, which pack every panel twice); beyond, the fewest chunks
/// within it (at least 16 rows each), split evenly in multiples of [`MR`].
fn chunk_rows(m: usize, k: usize) -> usize {
    if m * 2 * k <= 2 * ROW_CHUNK_BYTES {
        return m.max(1);
    }
    let cap = (ROW_CHUNK_BYTES / (2 * k) / MR * MR).max(16);
    let chunks = m.div_ceil(cap);
    m.div_ceil(chunks).next_multiple_of(MR)
}

/// Consecutive row ranges `(first, count)` of `m` rows of [`chunk_rows`] rows (the last
/// one shorter). Every range but the last is a whole number of [`MR`] groups, so the
/// rows in full groups are the same as in one call, and the chunked formats' outputs do
/// not depend on the tiling (module doc): the same bits as one call.
fn row_chunks(m: usize, k: usize) -> impl Iterator<Item = (usize, usize)> {
    let rows = chunk_rows(m, k);
    (0..m).step_by(rows).map(move |i0| (i0, rows.min(m - i0)))
}

/// Outputs outside `[0, m4) x [0, nwp)` with the generic tiles (`m4` a multiple of 4,
/// `nwp` of 2): weight rows past the panels (all activation rows, the full groups of 4
/// as `4 x 1` tiles), then activation rows past the groups (the panels' weight rows).
/// The tiles are those `drive` uses for these rows, so Q4_K's grouping is the same.
#[inline(always)]
unsafe fn tails<T: Tile>(a: &Args<'_>, m4: usize, nwp: usize) {
    let mut j = nwp;
    while j < a.nw {
        let mut i = 0;
        while i + 4 <= a.m {
            T::tile::<4, 1>(a, i, j);
            i += 4;
        }
        while i < a.m {
            T::tile::<1, 1>(a, i, j);
            i += 1;
        }
        j += 1;
    }
    for i in m4..a.m {
        let mut j = 0;
        while j + 2 <= nwp {
            T::tile::<1, 2>(a, i, j);
            j += 2;
        }
    }
}

/// Packs and computes rows `[0, m / 4 * 4)` x weight rows `[0, nw / NR * NR)`.
#[inline(always)]
unsafe fn run<F: Pack32>(a: &Args<'_>, buf: &mut Vec<__m256i>) {
    let (m, k, nw) = (a.m, a.k, a.nw);
    let nb = k / QK;
    let (groups, panels) = (m / MR, nw / NR);
    if groups == 0 || panels == 0 {
        return;
    }
    // Layout (in vectors): unsigned activations (`m4 x k` bytes), per group and block
    // the activation scales and sums in output order (2 NV), one panel, and one tile's
    // products d_w d_a.
    let a_len = groups * MR * k / 32;
    let ascale_len = groups * nb * 2 * NV;
    let panel_len = nb * PANEL_VECS;
    let dprod_len = nb * NV;
    let total = a_len + ascale_len + panel_len + dprod_len;
    if buf.len() < total {
        buf.resize(total, _mm256_setzero_si256());
    }
    let base = buf.as_mut_ptr();
    let au = base as *mut u8;
    let ascale = base.add(a_len) as *mut f32;
    let panel = base.add(a_len + ascale_len);
    let dprod = base.add(a_len + ascale_len + panel_len) as *mut f32;

    // Activations: a + 128 as u8; scales (and Q8_1 sums) per group and block, lane l of
    // vector v belonging to row v RV + l / NR of the group.
    let aq = a.act.qs.as_ptr() as *const u8;
    let flip = _mm256_set1_epi8(i8::MIN);
    for e in (0..groups * MR * k).step_by(32) {
        let v = _mm256_loadu_si256(aq.add(e) as *const __m256i);
        _mm256_storeu_si256(au.add(e) as *mut __m256i, _mm256_xor_si256(v, flip));
    }
    let (ad, asum) = (a.act.d.as_ptr(), a.act.s.as_ptr());
    // Vector v = rows RV v.., each value repeated NR times (RV = 2, NR = 4: two halves).
    // The sums are only read by the formats with a min.
    let halves = |p: *const f32, row: usize, b: usize| {
        _mm256_setr_m128(
            _mm_set1_ps(*p.add(row * nb + b)),
            _mm_set1_ps(*p.add((row + 1) * nb + b)),
        )
    };
    for g in 0..groups {
        for b in 0..nb {
            let dst = ascale.add((g * nb + b) * 2 * NV * 8);
            for v in 0..NV {
                let row = g * MR + v * RV;
                _mm256_storeu_ps(dst.add(v * 8), halves(ad, row, b));
                if F::HAS_MIN {
                    _mm256_storeu_ps(dst.add((NV + v) * 8), halves(asum, row, b));
                }
            }
        }
    }

    let corr_one = _mm256_set1_epi8(i8::MIN); // 128 as u8
    let mut tmp = [0u8; 40];
    for p in 0..panels {
        let j0 = p * NR;
        let mut pf = LinearPrefetch::new(a.w.add(j0 * a.row_bytes), NR * a.row_bytes);
        for b in 0..nb {
            pf.upto((b + 1) * NR * F::BYTES);
            let dst = panel.add(b * PANEL_VECS);
            let mut dw = [0f32; NR];
            let mut mw = [0f32; NR];
            for r in 0..NR {
                let blk = super::block_at::<F>(a, j0 + r, b, &mut tmp);
                let ws = F::signed(blk);
                let s128 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), corr_one, ws);
                _mm256_storeu_si256(dst.add(r), ws);
                _mm256_storeu_si256(
                    dst.add(NR + r),
                    _mm256_sub_epi32(_mm256_setzero_si256(), s128),
                );
                dw[r] = f16_at(blk);
                mw[r] = if F::HAS_MIN { f16_at(blk.add(2)) } else { 0.0 };
            }
            let (pd, pm) = (dst.add(2 * NR) as *mut f32, dst.add(2 * NR + 1) as *mut f32);
            for l in 0..8 {
                *pd.add(l) = dw[l % NR];
                *pm.add(l) = mw[l % NR];
            }
        }
        for g in 0..groups {
            let i0 = g * MR;
            let arow = au.add(i0 * k);
            let asc = ascale.add(g * nb * 2 * NV * 8);
            // The tile's d_w d_a, eight per `vmulps`, read back as broadcasts.
            for b in 0..nb {
                let dwv = _mm256_loadu_ps(panel.add(b * PANEL_VECS + 2 * NR) as *const f32);
                for v in 0..NV {
                    let dav = _mm256_loadu_ps(asc.add((b * 2 * NV + v) * 8));
                    _mm256_storeu_ps(dprod.add((b * NV + v) * 8), _mm256_mul_ps(dav, dwv));
                }
            }
            tile_lanes::<F>(a, arow, asc, panel, dprod, i0, j0);
        }
    }
}

/// A `4 x NR` tile of an eight-lane format (Q8_0, Q4_1, Q5_0, Q5_1).
#[inline(always)]
unsafe fn tile_lanes<F: Pack32>(
    a: &Args<'_>,
    arow: *const u8,
    asc: *const f32,
    panel: *const __m256i,
    dprod: *const f32,
    i0: usize,
    j0: usize,
) {
    let (k, nb) = (a.k, a.k / QK);
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
    let mut summs = [_mm256_setzero_ps(); NV];
    for b in 0..nb {
        let pb = panel.add(b * PANEL_VECS);
        let mut av = [_mm256_setzero_si256(); MR];
        for i in 0..MR {
            av[i] = _mm256_loadu_si256(arow.add(i * k + b * QK) as *const __m256i);
        }
        let d = dprod.add(b * NV * 8);
        for r in 0..NR {
            let ws = _mm256_loadu_si256(pb.add(r));
            let corr = _mm256_loadu_si256(pb.add(NR + r));
            for i in 0..MR {
                let isum = _mm256_dpbusd_epi32(corr, av[i], ws);
                let dv = _mm256_set1_ps(*d.add(i * NR + r));
                acc[i][r] = _mm256_fmadd_ps(dv, _mm256_cvtepi32_ps(isum), acc[i][r]);
            }
        }
        if F::HAS_MIN {
            let mwv = _mm256_loadu_ps(pb.add(2 * NR + 1) as *const f32);
            for v in 0..NV {
                let sv = _mm256_loadu_ps(asc.add((b * 2 * NV + NV + v) * 8));
                summs[v] = _mm256_fmadd_ps(mwv, sv, summs[v]);
            }
        }
    }
    // Output vector v holds outputs 8v..8v + 8 in the order i * NR + r: rows RV v..RV
    // (v + 1) of the tile, NR outputs each, contiguous in `c`.
    for v in 0..NV {
        let mut sums = hsum8x8(core::array::from_fn(|o| {
            let o = 8 * v + o;
            acc[o / NR][o % NR]
        }));
        if F::HAS_MIN {
            sums = _mm256_add_ps(sums, summs[v]);
        }
        for h in 0..RV {
            let c = a.c.add((i0 + RV * v + h) * a.nw + j0);
            let part = if h == 0 {
                _mm256_castps256_ps128(sums)
            } else {
                _mm256_extractf128_ps::<1>(sums)
            };
            _mm_storeu_ps(c, _mm_add_ps(_mm_loadu_ps(c), part));
        }
    }
}

/// Lane `j` = [`hsum8`] of `a[j]`, the same tree for each: `((x0 + x4) + (x2 + x6)) +
/// ((x1 + x5) + (x3 + x7))`, eight reductions in 22 vector operations instead of 48
/// (the epilogue of a `4 x 4` tile over k = 576 was about a tenth of its instructions).
#[inline(always)]
unsafe fn hsum8x8(a: [__m256; 8]) -> __m256 {
    // Each lane's low half plus its high half: lanes 0..4 of `p[q]` for a[2q], 4..8 for
    // a[2q + 1].
    let p: [__m256; 4] = core::array::from_fn(|q| {
        let (x, y) = (a[2 * q], a[2 * q + 1]);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(x, y),
            _mm256_permute2f128_ps::<0x31>(x, y),
        )
    });
    // (s0 + s2, s1 + s3) of each: half 0 of `q[0]` holds a0's pair then a2's, half 1
    // a1's then a3's; `q[1]` the same for a4..a8.
    let q: [__m256; 2] = core::array::from_fn(|t| {
        let (x, y) = (p[2 * t], p[2 * t + 1]);
        _mm256_add_ps(
            _mm256_shuffle_ps::<0b01_00_01_00>(x, y),
            _mm256_shuffle_ps::<0b11_10_11_10>(x, y),
        )
    });
    // The pair's first plus its second: half 0 = a0, a2, a4, a6, half 1 = a1, a3, a5, a7.
    let r = _mm256_add_ps(
        _mm256_shuffle_ps::<0b10_00_10_00>(q[0], q[1]),
        _mm256_shuffle_ps::<0b11_01_11_01>(q[0], q[1]),
    );
    _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Weight rows per panel of the single-chain path (one per i32 lane).
const NRC: usize = 8;

/// Q4_0 (one f32 chain per output over whole-block integer sums) with the weight rows
/// in the lanes: a panel holds, per block, 8 vectors whose lane `j` is weight row `j`'s
/// quants `4e..4e + 4` (unsigned, offset kept), and one `vpdpbusd` per `e` with the
/// activation row's 4 bytes broadcast adds those products to every row's lane. After
/// the 8 of a block each lane is the row's whole block sum, with no horizontal sums;
/// the offset is removed by starting from `-offset * sum(a)` of the block (per
/// activation row and block, computed once per call). Then per block and activation row:
/// one conversion, one `vmulps` for the 8 products `d_w d_a` and one FMA into the 8
/// rows' chains. Returns the activation rows and weight rows done (`[0, m4) x [0, nwp)`).
#[inline(always)]
unsafe fn run_chain<F: Pack32>(a: &Args<'_>, buf: &mut Vec<__m256i>) -> (usize, usize) {
    let (m, k, nw) = (a.m, a.k, a.nw);
    let nb = k / QK;
    let (m4, nwp) = (m / MR * MR, nw / NRC * NRC);
    if m4 == 0 || nwp == 0 {
        return (0, 0);
    }
    let corr_len = (m4 * nb).div_ceil(8);
    let panel_len = nb * (NRC + 1);
    if buf.len() < corr_len + panel_len {
        buf.resize(corr_len + panel_len, _mm256_setzero_si256());
    }
    let corr = buf.as_mut_ptr() as *mut i32;
    let panel = buf.as_mut_ptr().add(corr_len);
    let aq = a.act.qs.as_ptr();
    let ad = a.act.d.as_ptr();
    let ones = _mm256_set1_epi8(1);
    for e in 0..m4 * nb {
        let v = _mm256_loadu_si256(aq.add(e * QK) as *const __m256i);
        let s = super::hsum_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, v));
        *corr.add(e) = -(F::OFFSET as i32) * s;
    }
    let offset = _mm256_set1_epi8(F::OFFSET);
    let mut tmp = [0u8; 40];
    for j0 in (0..nwp).step_by(NRC) {
        let mut pf = LinearPrefetch::new(a.w.add(j0 * a.row_bytes), NRC * a.row_bytes);
        for b in 0..nb {
            pf.upto((b + 1) * NRC * F::BYTES);
            let dst = panel.add(b * (NRC + 1));
            let mut u = [_mm256_setzero_si256(); NRC];
            let mut dw = [0f32; NRC];
            for r in 0..NRC {
                let blk = super::block_at::<F>(a, j0 + r, b, &mut tmp);
                u[r] = _mm256_add_epi8(F::signed(blk), offset);
                dw[r] = f16_at(blk);
            }
            let t = transpose8x32(&u);
            for e in 0..8 {
                _mm256_storeu_si256(dst.add(e), t[e]);
            }
            _mm256_storeu_ps(dst.add(NRC) as *mut f32, _mm256_loadu_ps(dw.as_ptr()));
        }
        for i0 in (0..m4).step_by(MR) {
            let mut chain = [_mm256_setzero_ps(); MR];
            for b in 0..nb {
                let pb = panel.add(b * (NRC + 1));
                let dwv = _mm256_loadu_ps(pb.add(NRC) as *const f32);
                for i in 0..MR {
                    let row = i0 + i;
                    let ap = aq.add(row * k + b * QK) as *const i32;
                    let mut s = _mm256_set1_epi32(*corr.add(row * nb + b));
                    for e in 0..8 {
                        let x = _mm256_set1_epi32(ap.add(e).read_unaligned());
                        s = _mm256_dpbusd_epi32(s, _mm256_loadu_si256(pb.add(e)), x);
                    }
                    let d = _mm256_mul_ps(dwv, _mm256_set1_ps(*ad.add(row * nb + b)));
                    chain[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, chain[i]);
                }
            }
            for i in 0..MR {
                let mut out = [0f32; NRC];
                _mm256_storeu_ps(out.as_mut_ptr(), chain[i]);
                for j in 0..NRC {
                    *a.c.add((i0 + i) * nw + j0 + j) += out[j];
                }
            }
        }
    }
    (m4, nwp)
}

/// The 8 x 8 transpose of 32-bit elements: lane `j` of result `e` is lane `e` of `v[j]`.
#[inline(always)]
unsafe fn transpose8x32(v: &[__m256i; 8]) -> [__m256i; 8] {
    // Pairs of rows interleaved by dword, then by qword, then the 128-bit halves.
    let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
    let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
    let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    let t4 = _mm256_unpacklo_epi32(v[4], v[5]);
    let t5 = _mm256_unpackhi_epi32(v[4], v[5]);
    let t6 = _mm256_unpacklo_epi32(v[6], v[7]);
    let t7 = _mm256_unpackhi_epi32(v[6], v[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// Vectors per super-block of a Q4_K panel: 64 quant vectors (chunk `c`, group `e`), 8
/// scale vectors, 4 min-pair vectors, `d` and `dmin`.
const K4_PANEL: usize = 64 + 8 + 4 + 2;

/// Q4_K prefill (m >= 4) at the VNNI level: the rows of full groups of 4, which keep
/// llama.cpp's per-64-element chains (`dot_ref::vec_dot_in` with `grouped`), with the
/// weight rows in the lanes as [`run_chain`]; the other rows with the generic tiles.
///
/// # Safety
/// As [`gemm32`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm_q4k<T: Tile>(a: &Args<'_>) {
    let done = SCRATCH.with(|s| {
        let Ok(mut buf) = s.try_borrow_mut() else {
            return None;
        };
        Some(run_q4k(a, &mut buf))
    });
    let (m4, nwp) = done.unwrap_or((0, 0));
    tails::<T>(a, m4, nwp);
}

/// Per panel of 8 weight rows and super-block: the quants transposed into lanes, the
/// scales and min pairs per lane; then for every grouped activation row, per 64
/// elements (chunks `2p`, `2p + 1`), the exact `sum sc q a` of the 8 rows in one vector
/// (8 `vpdpbusd` per chunk, times the chunk's scales with `vpmulld`), one conversion and
/// one FMA into the 8 chains; the mins per pair of sub-blocks with one `vpmaddwd`. The
/// chains of every row live in the buffer across super-blocks, so only one super-block
/// of the panel (2.5 KiB) is packed at a time. Returns `(m4, nwp)` done.
#[inline(always)]
unsafe fn run_q4k(a: &Args<'_>, buf: &mut Vec<__m256i>) -> (usize, usize) {
    let (m, k, nw) = (a.m, a.k, a.nw);
    let nsb = k / QK_K;
    let (m4, nwp) = (m / MR * MR, nw / NRC * NRC);
    if m4 == 0 || nwp == 0 {
        return (0, 0);
    }
    if buf.len() < 2 * m4 + K4_PANEL {
        buf.resize(2 * m4 + K4_PANEL, _mm256_setzero_si256());
    }
    let state = buf.as_mut_ptr() as *mut __m256;
    let panel = buf.as_mut_ptr().add(2 * m4);
    let aq = a.act.qs.as_ptr();
    let ad = a.act.d.as_ptr();
    let bsums = a.act.bsums.as_ptr();
    for j0 in (0..nwp).step_by(NRC) {
        for e in 0..2 * m4 {
            *state.add(e) = _mm256_setzero_ps();
        }
        let mut pf = LinearPrefetch::new(a.w.add(j0 * a.row_bytes), NRC * a.row_bytes);
        for sb in 0..nsb {
            pf.upto((sb + 1) * NRC * Q4K::BYTES);
            // Pack this super-block of the 8 rows.
            let mut q = [[_mm256_setzero_si256(); 8]; NRC];
            let mut sm = [[0u8; 16]; NRC];
            let (mut dw, mut dmin) = ([0f32; NRC], [0f32; NRC]);
            for r in 0..NRC {
                let blk = a.w.add((j0 + r) * a.row_bytes + sb * Q4K::BYTES);
                let mut sc = [_mm256_setzero_si256(); 8];
                Q4K::unpack(blk, &mut q[r], &mut sc);
                _mm_storeu_si128(
                    sm[r].as_mut_ptr() as *mut __m128i,
                    scales_mins_k4(blk.add(4)),
                );
                dw[r] = f16_at(blk);
                dmin[r] = f16_at(blk.add(2));
            }
            for c in 0..8 {
                let rows: [__m256i; NRC] = core::array::from_fn(|r| q[r][c]);
                let t = transpose8x32(&rows);
                for e in 0..8 {
                    _mm256_storeu_si256(panel.add(8 * c + e), t[e]);
                }
                let scv: [i32; NRC] = core::array::from_fn(|r| sm[r][c] as i32);
                _mm256_storeu_si256(panel.add(64 + c), _mm256_loadu_si256(scv.as_ptr() as _));
            }
            for t in 0..4 {
                // Lane r: the i16 pair (m_2t, m_2t+1) of row r.
                let mp: [i32; NRC] = core::array::from_fn(|r| {
                    sm[r][8 + 2 * t] as i32 | ((sm[r][8 + 2 * t + 1] as i32) << 16)
                });
                _mm256_storeu_si256(panel.add(72 + t), _mm256_loadu_si256(mp.as_ptr() as _));
            }
            _mm256_storeu_ps(panel.add(76) as *mut f32, _mm256_loadu_ps(dw.as_ptr()));
            _mm256_storeu_ps(panel.add(77) as *mut f32, _mm256_loadu_ps(dmin.as_ptr()));
            let dwv = _mm256_loadu_ps(panel.add(76) as *const f32);
            let dminv = _mm256_loadu_ps(panel.add(77) as *const f32);

            // Two activation rows per pass over the panel: each weight vector is loaded
            // once for both rows' `vpdpbusd`s (one load per product instead of two: the
            // loop was bound by loads, not by the two pipes the products issue on).
            for r0 in (0..m4).step_by(2) {
                let rows = [r0, r0 + 1];
                let ap = rows.map(|row| aq.add(row * k + sb * QK_K) as *const i32);
                let dact = rows.map(|row| _mm256_set1_ps(*ad.add(row * nsb + sb)));
                let d = dact.map(|x| _mm256_mul_ps(dwv, x));
                let dm = dact.map(|x| _mm256_mul_ps(dminv, x));
                let mut chain = rows.map(|row| *state.add(2 * row));
                let mut chain_min = rows.map(|row| *state.add(2 * row + 1));
                for p in 0..4 {
                    let mut t = [_mm256_setzero_si256(); 2];
                    for c in 2 * p..2 * p + 2 {
                        // Two accumulators per row halve the dependent `vpdpbusd` chain.
                        let mut x0 = [_mm256_setzero_si256(); 2];
                        let mut x1 = [_mm256_setzero_si256(); 2];
                        for e in 0..4 {
                            let w0 = _mm256_loadu_si256(panel.add(8 * c + e));
                            let w1 = _mm256_loadu_si256(panel.add(8 * c + 4 + e));
                            for h in 0..2 {
                                let a0 = _mm256_set1_epi32(ap[h].add(8 * c + e).read_unaligned());
                                let a1 =
                                    _mm256_set1_epi32(ap[h].add(8 * c + 4 + e).read_unaligned());
                                x0[h] = _mm256_dpbusd_epi32(x0[h], w0, a0);
                                x1[h] = _mm256_dpbusd_epi32(x1[h], w1, a1);
                            }
                        }
                        let sc = _mm256_loadu_si256(panel.add(64 + c));
                        for h in 0..2 {
                            let x = _mm256_add_epi32(x0[h], x1[h]);
                            t[h] = _mm256_add_epi32(t[h], _mm256_mullo_epi32(x, sc));
                        }
                    }
                    for h in 0..2 {
                        chain[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t[h]), d[h], chain[h]);
                    }
                }
                for h in 0..2 {
                    let bs = bsums.add((rows[h] * nsb + sb) * 16);
                    for t in 0..4 {
                        let s0 = *bs.add(4 * t) as i32 + *bs.add(4 * t + 1) as i32;
                        let s1 = *bs.add(4 * t + 2) as i32 + *bs.add(4 * t + 3) as i32;
                        // S fits i16: 32 activations of at most 127 in magnitude.
                        let pair = _mm256_set1_epi32((s0 & 0xffff) | (s1 << 16));
                        let prod = _mm256_madd_epi16(_mm256_loadu_si256(panel.add(72 + t)), pair);
                        chain_min[h] =
                            _mm256_fmadd_ps(_mm256_cvtepi32_ps(prod), dm[h], chain_min[h]);
                    }
                    *state.add(2 * rows[h]) = chain[h];
                    *state.add(2 * rows[h] + 1) = chain_min[h];
                }
            }
        }
        for row in 0..m4 {
            let v = _mm256_sub_ps(*state.add(2 * row), *state.add(2 * row + 1));
            let mut out = [0f32; NRC];
            _mm256_storeu_ps(out.as_mut_ptr(), v);
            for j in 0..NRC {
                *a.c.add(row * nw + j0 + j) += out[j];
            }
        }
    }
    (m4, nwp)
}

/// Vectors per super-block and weight row of a Q5_K / Q6_K panel: the 8 unpacked chunks,
/// their 8 scale vectors, Q6_K's 16 scales as i16, and `d`, `dmin` (f32 lanes 0, 1) with
/// the 8 mins as i16 (upper 128 bits).
const K8_ROW: usize = 8 + 8 + 2;

/// Q5_K / Q6_K prefill (m >= 4) at the VNNI level (eight f32 lanes per output, so the
/// generic tile's integer and f32 operations, in its order): per panel of `NR` weight
/// rows, each super-block is unpacked once (the generic tile unpacks it once per 4
/// activation rows) into a buffer that stays in L1, then used by every grouped
/// activation row; the accumulators of all rows live in the buffer across super-blocks.
///
/// # Safety
/// As [`gemm32`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm_k8<F: FmtK, T: Tile>(a: &Args<'_>) {
    for (i0, n) in row_chunks(a.m, a.k) {
        gemm_k8_rows::<F, T>(&a.rows(i0, n));
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_k8_rows<F: FmtK, T: Tile>(a: &Args<'_>) {
    let done = SCRATCH.with(|s| {
        let Ok(mut buf) = s.try_borrow_mut() else {
            return None;
        };
        Some(run_k8::<F>(a, &mut buf))
    });
    let (m4, nwp) = done.unwrap_or((0, 0));
    tails::<T>(a, m4, nwp);
}

#[inline(always)]
unsafe fn run_k8<F: FmtK>(a: &Args<'_>, buf: &mut Vec<__m256i>) -> (usize, usize) {
    let (m, k, nw) = (a.m, a.k, a.nw);
    let nsb = k / QK_K;
    let (m4, nwp) = (m / MR * MR, nw / NR * NR);
    if m4 == 0 || nwp == 0 || F::MINS == Mins::Chains {
        return (0, 0);
    }
    let acc_len = m4 * NR;
    let summs_len = (m4 * NR).div_ceil(8);
    let total = acc_len + summs_len + NR * K8_ROW;
    if buf.len() < total {
        buf.resize(total, _mm256_setzero_si256());
    }
    let accs = buf.as_mut_ptr() as *mut __m256;
    let summs = buf.as_mut_ptr().add(acc_len) as *mut f32;
    let panel = buf.as_mut_ptr().add(acc_len + summs_len);
    let aq = a.act.qs.as_ptr();
    let ad = a.act.d.as_ptr();
    let bsums = a.act.bsums.as_ptr();
    for j0 in (0..nwp).step_by(NR) {
        for e in 0..acc_len {
            *accs.add(e) = _mm256_setzero_ps();
            *summs.add(e) = 0.0;
        }
        let mut pf = LinearPrefetch::new(a.w.add(j0 * a.row_bytes), NR * a.row_bytes);
        for sb in 0..nsb {
            pf.upto((sb + 1) * NR * F::BYTES);
            for r in 0..NR {
                let blk = a.w.add((j0 + r) * a.row_bytes + sb * F::BYTES);
                let (mut q, mut sc) = ([_mm256_setzero_si256(); 8], [_mm256_setzero_si256(); 8]);
                F::unpack(blk, &mut q, &mut sc);
                let p = panel.add(r * K8_ROW);
                for c in 0..8 {
                    _mm256_storeu_si256(p.add(c), q[c]);
                    _mm256_storeu_si256(p.add(8 + c), sc[c]);
                }
                _mm256_storeu_si256(p.add(16), _mm256_cvtepi8_epi16(F::scales16(blk)));
                let dw = f16_at(blk.add(F::D_AT));
                let dminw = if F::MINS == Mins::None {
                    0.0
                } else {
                    f16_at(blk.add(2))
                };
                let misc = p.add(17) as *mut f32;
                *misc = dw;
                *misc.add(1) = dminw;
                _mm_storeu_si128(misc.add(4) as *mut __m128i, F::mins(blk));
            }
            // Four activation rows per pass over a weight row's vectors: each quant and
            // scale vector is loaded once for four products (one per row, the
            // activations read as memory operands). Loading both for every (row, weight
            // row) pair made this loop load-bound: Zen 4 issues `vpmaddubsw`,
            // `vpdpwssd` and the FMA on the same two pipes, at 9 cycles per super-block
            // and output, and the loads needed more.
            for r0 in (0..m4).step_by(MR) {
                let mut dact = [0f32; MR];
                let mut bs16 = [_mm256_setzero_si256(); MR];
                let mut s16 = [_mm_setzero_si128(); MR];
                for i in 0..MR {
                    let row = r0 + i;
                    dact[i] = *ad.add(row * nsb + sb);
                    let bs = bsums.add((row * nsb + sb) * 16) as *const __m128i;
                    if F::MINS == Mins::None {
                        bs16[i] = _mm256_loadu_si256(bs as *const __m256i);
                    } else {
                        s16[i] = _mm_hadd_epi16(_mm_loadu_si128(bs), _mm_loadu_si128(bs.add(1)));
                    }
                }
                for r in 0..NR {
                    let p = panel.add(r * K8_ROW);
                    let mut sumi = [_mm256_setzero_si256(); MR];
                    for c in 0..8 {
                        let (qv, scv) = (
                            _mm256_loadu_si256(p.add(c)),
                            _mm256_loadu_si256(p.add(8 + c)),
                        );
                        for i in 0..MR {
                            let av = _mm256_loadu_si256(
                                aq.add((r0 + i) * k + sb * QK_K + 32 * c) as *const __m256i
                            );
                            sumi[i] = VnniDot::madd(sumi[i], scv, _mm256_maddubs_epi16(qv, av));
                        }
                    }
                    let misc = p.add(17) as *const f32;
                    let dw = *misc;
                    let sc16 = _mm256_loadu_si256(p.add(16));
                    for i in 0..MR {
                        let mut si = sumi[i];
                        if F::MINS == Mins::None {
                            // q8sclsub: 32 (sc_2l S_2l + sc_2l+1 S_2l+1) per lane l.
                            let sub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs16[i], sc16));
                            si = _mm256_sub_epi32(si, sub);
                        }
                        let o = (r0 + i) * NR + r;
                        *accs.add(o) = _mm256_fmadd_ps(
                            _mm256_set1_ps(dact[i] * dw),
                            _mm256_cvtepi32_ps(si),
                            *accs.add(o),
                        );
                        if F::MINS == Mins::Scalar {
                            let dmin = -dact[i] * *misc.add(1);
                            let mins = _mm_loadu_si128(misc.add(4) as *const __m128i);
                            let prod = _mm_madd_epi16(mins, s16[i]);
                            let s2 = _mm_add_epi32(prod, _mm_unpackhi_epi64(prod, prod));
                            let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32::<0b01>(s2));
                            let total = _mm_cvtsi128_si32(s1);
                            *summs.add(o) = dmin.mul_add(total as f32, *summs.add(o));
                        }
                    }
                }
            }
        }
        for row in 0..m4 {
            for r in 0..NR {
                let o = row * NR + r;
                let mut v = hsum8(*accs.add(o));
                if F::MINS == Mins::Scalar {
                    v += *summs.add(o);
                }
                *a.c.add(row * nw + j0 + r) += v;
            }
        }
    }
    (m4, nwp)
}
