//! The quantized matmul kernels (x86), written once over [`Dot`] and instantiated per
//! level by the `level!` macro below.
//!
//! Numerics: the integer lanes and f32 operations of `dot_ref.rs`, in the same order, so
//! results are bit-identical to the scalar level (tested). Each output element is one
//! independent chain of block updates; tiling only changes which outputs are computed
//! side by side, never the operations on one output.
//!
//! Tiles: `MR` activation rows x `NR` weight rows, over the whole of `k`:
//! - decode (m = 1): `1 x 4`: four weight rows side by side (four independent FMA
//!   chains; one chain alone would wait on the FMA latency for the 18-byte Q4_0 blocks),
//!   the activation block loaded once for them, and a software prefetch that turns the
//!   four row streams into one sequential stream ([`LinearPrefetch`]);
//! - prefill (m > 1): weight pairs in the outer loop and `4 x 2` tiles over all the
//!   activation rows in the inner loop, so each weight block is unpacked once per four
//!   activation rows and the weights stream from memory once per call (the quantized
//!   activations, `m x k` bytes, stay in L2). At the AVX-512 VNNI level, prefill with
//!   m >= 4 instead goes to `gemm/prefill.rs`: weight panels repacked once per call
//!   (quants unpacked, VNNI offset corrections and scales precomputed; Q4_0 and Q4_K
//!   with the weight rows in the i32 lanes so whole-block sums need no horizontal sums),
//!   the same integers and the same f32 operations per output. It keeps Q4_K's rule:
//!   rows in full groups of 4 from row 0 take the per-64 chains, the rest the `1 x NR`
//!   tiles here.
//!
//! Safety contract of everything here: called only from the `#[target_feature]` entry
//! points, on a CPU with those features, with the shapes `quant::matmul_rows` checked:
//! `w` holds `nw` rows of `k / block_elems` blocks, `act` holds `m` rows of `k`, `c` is
//! `m x nw`. Raw pointer offsets below stay inside those.

#![allow(clippy::needless_range_loop)] // index loops over const-size register arrays

use core::arch::x86_64::*;

use super::act::ActView;
use super::blocks::{QK, QK_K};
use super::simd::{Avx2Dot, Dot, VnniDot};
use super::{QuantImpl, QuantType};

mod prefill;

/// The arguments of one matmul call, as raw parts.
#[derive(Clone, Copy)]
struct Args<'a> {
    /// `m x nw` output, row stride `nw`.
    c: *mut f32,
    act: ActView<'a>,
    /// `nw` weight rows of `row_bytes`.
    w: *const u8,
    row_bytes: usize,
    m: usize,
    k: usize,
    nw: usize,
    /// The weights are in the 8-row layout of `quant::r8` (Q4_0 / Q5_0 / Q8_0 only):
    /// blocks are read through [`block_at`].
    r8: bool,
}

impl<'a> Args<'a> {
    /// The same product restricted to activation rows `i0..i0 + n` (and their outputs).
    ///
    /// # Safety
    /// `i0 + n <= self.m`.
    unsafe fn rows(&self, i0: usize, n: usize) -> Args<'a> {
        Args {
            c: self.c.add(i0 * self.nw),
            act: self.act.rows(i0, n),
            m: n,
            ..*self
        }
    }
}

/// Block `b` of weight row `row` in the ggml block layout of `F`: a pointer into the
/// weights, or for the 8-row layout (`a.r8`) the block rebuilt in `tmp` from its
/// superblock (a few moves in L1; the packing loops read each block once per call, so
/// the repacked weights cost prefill nothing like a second pass over them). The
/// pointer is only valid until `tmp` is reused. The field offsets are `r8::moves`'s,
/// spelled out: reading them from that table here measured 0.88-0.91x on pp128 (its
/// lengths did not fold into fixed copies on this path).
#[inline(always)]
unsafe fn block_at<F: Fmt32>(a: &Args<'_>, row: usize, b: usize, tmp: &mut [u8; 40]) -> *const u8 {
    if !a.r8 {
        return a.w.add(row * a.row_bytes + b * F::BYTES);
    }
    const G: usize = super::r8::R8_ROWS;
    let r = row % G;
    let sb = a.w.add((row / G) * G * a.row_bytes + b * G * F::BYTES);
    let t = tmp.as_mut_ptr();
    core::ptr::copy_nonoverlapping(sb.add(2 * r), t, 2);
    match F::BYTES {
        // Q8_0: 8 scales, then 32 quants per row.
        34 => core::ptr::copy_nonoverlapping(sb.add(16 + 32 * r), t.add(2), 32),
        // Q4_0: 8 scales, then 16 bytes of nibbles per row.
        18 => core::ptr::copy_nonoverlapping(sb.add(16 + 16 * r), t.add(2), 16),
        // Q5_0: 8 scales, the fifth bits as u64 masks of 4 rows' 16-bit halves, then
        // 16 bytes of nibbles per row. The two halves are joined in a register and
        // stored as one u32: the block's reader loads them as one, and a load that
        // spans two smaller stores cannot be forwarded from them (it waits for both to
        // reach the cache: with two 2-byte copies the Q5_0 prefill kernels ran at
        // ~147 GOP/s on this layout against ~178 on the ggml one).
        _ => {
            let quad = 16 * (r / 4) + 2 * (r % 4);
            let lo = (sb.add(16 + quad) as *const u16).read_unaligned() as u32;
            let hi = (sb.add(24 + quad) as *const u16).read_unaligned() as u32;
            (t.add(2) as *mut u32).write_unaligned(lo | hi << 16);
            core::ptr::copy_nonoverlapping(sb.add(48 + 16 * r), t.add(6), 16);
        }
    }
    t
}

/// `C (m x nw) += A * W^T` with `A` already quantized in `act`.
///
/// # Safety
/// `imp` is supported by this CPU; shapes as in the module doc.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    imp: QuantImpl,
    c: &mut [f32],
    act: &ActView<'_>,
    qtype: QuantType,
    w: &[u8],
    m: usize,
    k: usize,
    nw: usize,
    r8: bool,
) {
    let Some(row_bytes) = qtype.row_bytes(k) else {
        return;
    };
    if r8 && !matches!(qtype, QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0) {
        return; // defensive: only these formats have the 8-row layout
    }
    if c.len() < m * nw || w.len() < nw * row_bytes || act.qs.len() < m * k {
        return; // defensive: the caller checked these; never read out of bounds
    }
    let args = Args {
        c: c.as_mut_ptr(),
        act: *act,
        w: w.as_ptr(),
        row_bytes,
        m,
        k,
        nw,
        r8,
    };
    match imp {
        QuantImpl::Avx2 => avx2::run(qtype, &args),
        QuantImpl::Avx512Bw => avx512bw::run(qtype, &args),
        QuantImpl::Avx512Vnni => avx512vnni::run(qtype, &args),
        QuantImpl::Scalar => {
            super::dot_ref::matmul(c, act, qtype, w, m, k, nw);
        }
    }
}

/// One entry point per (level, format): the generic drivers compiled with the level's
/// target features and its [`Dot`].
macro_rules! level {
    ($module:ident, $features:literal, $dot:ty, $gemv_nr:literal, $prefill:literal) => {
        mod $module {
            use super::*;

            #[target_feature(enable = $features)]
            unsafe fn q32<F: prefill::Pack32>(a: &Args<'_>) {
                if $prefill && a.m >= 4 {
                    prefill::gemm32::<F, F::Kernel<$dot>>(a)
                } else {
                    drive::<F::Kernel<$dot>, $gemv_nr>(a)
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn qk8<F: FmtK>(a: &Args<'_>) {
                if $prefill && a.m >= 4 {
                    prefill::gemm_k8::<F, KTile<$dot, F>>(a)
                } else {
                    drive::<KTile<$dot, F>, $gemv_nr>(a)
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn q4k(a: &Args<'_>) {
                if $prefill && a.m >= 4 {
                    prefill::gemm_q4k::<KTile<$dot, Q4K>>(a)
                } else {
                    drive::<KTile<$dot, Q4K>, $gemv_nr>(a)
                }
            }

            /// # Safety
            /// The CPU has `$features`; shapes as in the module doc.
            pub(super) unsafe fn run(qtype: QuantType, a: &Args<'_>) {
                match qtype {
                    QuantType::Q4_0 => q32::<Q4_0>(a),
                    QuantType::Q4_1 => q32::<Q4_1>(a),
                    QuantType::Q5_0 => q32::<Q5_0>(a),
                    QuantType::Q5_1 => q32::<Q5_1>(a),
                    QuantType::Q8_0 => q32::<Q8_0>(a),
                    QuantType::Q4K => q4k(a),
                    QuantType::Q5K => qk8::<Q5K>(a),
                    QuantType::Q6K => qk8::<Q6K>(a),
                    // Not matmul weights (refused by `check_weights`).
                    QuantType::Q8_1 | QuantType::Q8K => {}
                    // `matmul_r8` restores the ggml layout before calling in here.
                    QuantType::Q4_0R8 | QuantType::Q5_0R8 | QuantType::Q8_0R8 => {}
                }
            }
        }
    };
}

// The last argument is the number of weight rows of the decode tile. 4 everywhere: with
// AVX-512's 32 registers 8 rows computed ~7% faster from cache, but the prefetched tile
// (8 rows, up to 27 KiB for Q6_K 896 x 4864) then no longer fits next to the current one
// in L1 and decode from DRAM lost up to half its bandwidth (measured on the dev machine).
// The last one: prefill (m >= 4) of the 32-element formats through `prefill.rs`
// (it needs VNNI's unsaturated u8 x i8 products).
level!(avx2, "avx2,fma,f16c", Avx2Dot, 4, false);
level!(
    avx512bw,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
    Avx2Dot,
    4,
    false
);
level!(
    avx512vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    VnniDot,
    4,
    true
);

/// A tile kernel: `MR x NR` outputs starting at activation row `i0`, weight row `j0`.
trait Tile {
    unsafe fn tile<const MR: usize, const NR: usize>(a: &Args<'_>, i0: usize, j0: usize);
}

/// Walks the output in tiles (see the module doc for the shapes); `GEMV_NR` weight rows
/// side by side for decode.
#[inline(always)]
unsafe fn drive<T: Tile, const GEMV_NR: usize>(a: &Args<'_>) {
    let (m, nw) = (a.m, a.nw);
    if m == 1 {
        let mut j = 0;
        while j + GEMV_NR <= nw {
            T::tile::<1, GEMV_NR>(a, 0, j);
            j += GEMV_NR;
        }
        while j < nw {
            T::tile::<1, 1>(a, 0, j);
            j += 1;
        }
        return;
    }
    let mut j = 0;
    while j < nw {
        let pair = j + 2 <= nw;
        let mut i = 0;
        while i + 4 <= m {
            if pair {
                T::tile::<4, 2>(a, i, j);
            } else {
                T::tile::<4, 1>(a, i, j);
            }
            i += 4;
        }
        while i < m {
            if pair {
                T::tile::<1, 2>(a, i, j);
            } else {
                T::tile::<1, 1>(a, i, j);
            }
            i += 1;
        }
        j += if pair { 2 } else { 1 };
    }
}

/// The f16 at `p` (unaligned), as f32.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = (p as *const u16).read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// The sum of 8 i32 lanes (exact: a block's products sum far below 2^31).
#[inline(always)]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32::<1>(s2)))
}

/// The `hsum_float_8` tree of `dot_ref::hsum8`.
#[inline(always)]
unsafe fn hsum8(v: __m256) -> f32 {
    let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// 16 bytes of nibbles as 32 bytes: low nibbles (elements 0..16), then high ones.
/// (Both halves hold the 16 bytes; the high half's dwords are shifted right by 4, so
/// each byte's high nibble lands in its low bits, and the mask keeps those.)
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let v = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
    let v = _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
}

/// The f16 at `p` (unaligned) as f32 in all 8 lanes (`vpbroadcastw` + `vcvtph2ps`).
#[inline(always)]
unsafe fn f16_bcast(p: *const u8) -> __m256 {
    let bits = (p as *const i16).read_unaligned();
    _mm256_cvtph_ps(_mm_set1_epi16(bits))
}

/// Decode (m = 1) reads `NR` weight rows side by side: `NR` interleaved streams, which
/// the hardware prefetchers of the dev machine (Zen 4 under KVM) serve at a third of the
/// bandwidth of one sequential stream (measured: Q8_0 GEMV from DRAM 7-10 GB/s with 2 to
/// 8 rows side by side, 19-24 GB/s one row at a time). The rows of a tile are adjacent
/// in memory, so a tile is one contiguous range and consecutive tiles follow each other:
/// [`LinearPrefetch`] walks the range of the *next* tile (at least [`Self::MIN_AHEAD`]
/// bytes on), one cache line at a time in address order, spread evenly over the current
/// tile's iterations. That is a single sequential stream again, and a tile's rows are in
/// cache before it starts however long they are.
struct LinearPrefetch {
    /// Next line to prefetch.
    next: *const u8,
    /// The tile's start plus the distance.
    base: *const u8,
}

impl LinearPrefetch {
    /// The least distance: about 150 ns of DRAM bandwidth, more than its latency.
    const MIN_AHEAD: usize = 4096;

    /// For a tile of `tile_bytes` starting at `tile_start`.
    #[inline(always)]
    fn new(tile_start: *const u8, tile_bytes: usize) -> LinearPrefetch {
        let base = tile_start.wrapping_add(tile_bytes.max(Self::MIN_AHEAD));
        LinearPrefetch { next: base, base }
    }

    /// Prefetches the lines below `base + upto` not yet prefetched. Prefetches never
    /// fault; `wrapping_add` keeps the address arithmetic defined past the weights' end.
    #[inline(always)]
    unsafe fn upto(&mut self, upto: usize) {
        let end = self.base.wrapping_add(upto);
        while self.next < end {
            _mm_prefetch::<_MM_HINT_T0>(self.next as *const i8);
            self.next = self.next.wrapping_add(64);
        }
    }
}

/// 32 bits at `p` as 32 bytes: `0x10` where bit `i` is set, else 0 (the 5th bits).
#[inline(always)]
unsafe fn fifth_bits(p: *const u8) -> __m256i {
    let bits = (p as *const u32).read_unaligned();
    // Byte i takes byte i / 8 of the word, then all-ones iff its bit i % 8 is set.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

// ---------------------------------------------------------------------------------
// 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.

/// A 32-element block format, as the generic [`Tile32`] kernel needs it.
trait Fmt32 {
    const BYTES: usize;
    /// Has a min (`x = d q + m`, the `m * s` term): Q4_1, Q5_1.
    const HAS_MIN: bool;
    /// One f32 chain per output over the blocks' whole integer sums (llama.cpp's
    /// repacked Q4_0 kernels, see `dot_ref.rs`), instead of eight lanes and a final sum.
    const SINGLE_CHAIN: bool = false;
    /// The tile kernel for this format with [`Dot`] `D`.
    type Kernel<D: Dot>: Tile;
}

/// The integer part of a 32-element format: the block's quants as one vector and their
/// lane dot products with a Q8 activation vector.
trait Quants32<D: Dot> {
    type W: Copy;
    /// The block's quants, from the block start `blk`.
    unsafe fn load(blk: *const u8) -> Self::W;
    /// Per activation vector: the offset correction (for an offset `o`, `-o` times the
    /// lane sums of `a`), or whatever [`Quants32::dot`] needs.
    unsafe fn act_corr(a: __m256i) -> __m256i;
    /// The 8 exact i32 lanes `sum q * a` of the block (offset removed).
    unsafe fn dot(w: Self::W, a: __m256i, corr: __m256i) -> __m256i;
}

/// `-o * (lane sums of a)` for the unsigned formats with offset `o` (8 or 16).
#[inline(always)]
unsafe fn neg_offset<D: Dot>(o: i8, a: __m256i) -> __m256i {
    let s = D::dot_us(_mm256_setzero_si256(), _mm256_set1_epi8(o), a);
    _mm256_sub_epi32(_mm256_setzero_si256(), s)
}

#[allow(non_camel_case_types)]
struct Q4_0;
#[allow(non_camel_case_types)]
struct Q4_1;
#[allow(non_camel_case_types)]
struct Q5_0;
#[allow(non_camel_case_types)]
struct Q5_1;
#[allow(non_camel_case_types)]
struct Q8_0;

/// Declares a 32-element format: bytes, whether it has a min, its quant loader (an
/// unsigned vector `u`, at most 31) and its offset (subtracted through `act_corr`).
macro_rules! unsigned32 {
    ($t:ident, $bytes:expr, $min:expr, $offset:expr, $single:expr, |$blk:ident| $load:expr) => {
        impl Fmt32 for $t {
            const BYTES: usize = $bytes;
            const HAS_MIN: bool = $min;
            const SINGLE_CHAIN: bool = $single;
            type Kernel<D: Dot> = Tile32<D, $t>;
        }
        impl prefill::Pack32 for $t {
            const OFFSET: i8 = $offset;
            #[inline(always)]
            unsafe fn signed($blk: *const u8) -> __m256i {
                _mm256_sub_epi8($load, _mm256_set1_epi8($offset))
            }
        }
        impl<D: Dot> Quants32<D> for $t {
            type W = __m256i;
            #[inline(always)]
            unsafe fn load($blk: *const u8) -> __m256i {
                $load
            }
            #[inline(always)]
            unsafe fn act_corr(a: __m256i) -> __m256i {
                if $offset == 0 {
                    _mm256_setzero_si256()
                } else {
                    neg_offset::<D>($offset, a)
                }
            }
            #[inline(always)]
            unsafe fn dot(u: __m256i, a: __m256i, corr: __m256i) -> __m256i {
                D::dot_us(corr, u, a)
            }
        }
    };
}

// Layouts: see `blocks.rs`.
unsigned32!(Q4_0, 18, false, 8, true, |b| nibbles(b.add(2)));
unsigned32!(Q4_1, 20, true, 0, false, |b| nibbles(b.add(4)));
unsigned32!(Q5_0, 22, false, 16, false, |b| _mm256_or_si256(
    nibbles(b.add(6)),
    fifth_bits(b.add(2))
));
unsigned32!(Q5_1, 24, true, 0, false, |b| _mm256_or_si256(
    nibbles(b.add(8)),
    fifth_bits(b.add(4))
));

impl Fmt32 for Q8_0 {
    const BYTES: usize = 34;
    const HAS_MIN: bool = false;
    type Kernel<D: Dot> = Tile32<D, Q8_0>;
}

impl prefill::Pack32 for Q8_0 {
    const OFFSET: i8 = 0;
    #[inline(always)]
    unsafe fn signed(blk: *const u8) -> __m256i {
        _mm256_loadu_si256(blk.add(2) as *const __m256i)
    }
}

impl<D: Dot> Quants32<D> for Q8_0 {
    type W = D::Signed;
    #[inline(always)]
    unsafe fn load(blk: *const u8) -> D::Signed {
        D::prep_ss(_mm256_loadu_si256(blk.add(2) as *const __m256i))
    }
    #[inline(always)]
    unsafe fn act_corr(a: __m256i) -> __m256i {
        D::corr_ss(a)
    }
    #[inline(always)]
    unsafe fn dot(w: D::Signed, a: __m256i, corr: __m256i) -> __m256i {
        D::dot_ss(w, a, corr)
    }
}

/// The tile kernel of the 32-element formats.
struct Tile32<D, F>(core::marker::PhantomData<(D, F)>);

impl<D: Dot, F: Fmt32 + Quants32<D>> Tile for Tile32<D, F> {
    #[inline(always)]
    unsafe fn tile<const MR: usize, const NR: usize>(a: &Args<'_>, i0: usize, j0: usize) {
        let (k, nb) = (a.k, a.k / QK);
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let mut summs = [[0f32; NR]; MR];
        let mut chain = [[0f32; NR]; MR];
        // Decode of a single-chain format: the 4 rows' chains side by side in 4 lanes
        // (each lane the same `fma(t, d_w d_a, chain)` as the scalar chain).
        let lanes4 = F::SINGLE_CHAIN && MR == 1 && NR == 4;
        let mut chain4 = _mm_setzero_ps();
        let aq = a.act.qs.as_ptr();
        let ad = a.act.d.as_ptr();
        let asum = a.act.s.as_ptr();
        let mut pf = LinearPrefetch::new(a.w.add(j0 * a.row_bytes), NR * a.row_bytes);
        let mut tmp = [0u8; 40];
        for b in 0..nb {
            if MR == 1 {
                // This iteration reads NR x BYTES bytes of the tile: prefetch as many.
                // (In the 8-row layout the addresses are approximate: only a hint.)
                pf.upto((b + 1) * NR * F::BYTES);
            }
            if lanes4 {
                let av = _mm256_loadu_si256(aq.add(i0 * k + b * QK) as *const __m256i);
                let corr = F::act_corr(av);
                let da = *ad.add(i0 * nb + b);
                let mut sums = [_mm256_setzero_si256(); 4];
                let mut ds = [0f32; 4];
                for r in 0..4 {
                    let blk = block_at::<F>(a, j0 + r, b, &mut tmp);
                    sums[r] = F::dot(F::load(blk), av, corr);
                    ds[r] = f16_at(blk) * da;
                }
                // Four 8-lane integer sums to one vector of 4 totals (exact).
                let h = _mm256_hadd_epi32(
                    _mm256_hadd_epi32(sums[0], sums[1]),
                    _mm256_hadd_epi32(sums[2], sums[3]),
                );
                let t = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
                let d = _mm_loadu_ps(ds.as_ptr());
                chain4 = _mm_fmadd_ps(_mm_cvtepi32_ps(t), d, chain4);
                continue;
            }
            let mut av = [_mm256_setzero_si256(); MR];
            let mut corr = [_mm256_setzero_si256(); MR];
            let mut da = [_mm256_setzero_ps(); MR];
            for i in 0..MR {
                av[i] = _mm256_loadu_si256(aq.add((i0 + i) * k + b * QK) as *const __m256i);
                corr[i] = F::act_corr(av[i]);
                da[i] = _mm256_set1_ps(*ad.add((i0 + i) * nb + b));
            }
            for r in 0..NR {
                let blk = block_at::<F>(a, j0 + r, b, &mut tmp);
                let wq = F::load(blk);
                let dw = f16_bcast(blk);
                let mw = if F::HAS_MIN { f16_at(blk.add(2)) } else { 0.0 };
                for i in 0..MR {
                    let isum = F::dot(wq, av[i], corr[i]);
                    if F::SINGLE_CHAIN {
                        // The block's whole sum (exact in i32 and in f32) times
                        // d_w d_a, one FMA per block on one chain.
                        let t = hsum_epi32(isum) as f32;
                        let d = _mm256_cvtss_f32(dw) * *ad.add((i0 + i) * nb + b);
                        chain[i][r] = t.mul_add(d, chain[i][r]);
                        continue;
                    }
                    // f16 x f16: exact, as the scalar spec's `dw * da`.
                    let d = _mm256_mul_ps(dw, da[i]);
                    acc[i][r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc[i][r]);
                    if F::HAS_MIN {
                        let s = *asum.add((i0 + i) * nb + b);
                        summs[i][r] = mw.mul_add(s, summs[i][r]);
                    }
                }
            }
        }
        if lanes4 {
            let mut out = [0f32; 4];
            _mm_storeu_ps(out.as_mut_ptr(), chain4);
            for (r, &v) in out.iter().enumerate() {
                *a.c.add(i0 * a.nw + j0 + r) += v;
            }
            return;
        }
        for i in 0..MR {
            for r in 0..NR {
                let mut v = if F::SINGLE_CHAIN {
                    chain[i][r]
                } else {
                    hsum8(acc[i][r])
                };
                if F::HAS_MIN {
                    v += summs[i][r];
                }
                *a.c.add((i0 + i) * a.nw + j0 + r) += v;
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// k-quants: Q4_K, Q5_K, Q6_K (super-blocks of 256 = 8 chunks of 32).

/// How a k-quant adds its mins (see `dot_ref.rs`).
#[derive(PartialEq, Eq)]
enum Mins {
    /// Q4_K (llama.cpp's repacked kernels): one chain of `fma(m . S, dmin_w d_a, accm)`
    /// subtracted at the end, next to one chain of the whole integer sums.
    Chains,
    /// Q5_K: one f32, `fma(dmin, sum(m . S), summs)`.
    Scalar,
    /// Q6_K: symmetric (offset 32 removed per lane instead).
    None,
}

trait FmtK {
    const BYTES: usize;
    /// Byte offset of the f16 `d`.
    const D_AT: usize;
    const MINS: Mins;
    /// The 8 chunks of unsigned quants (element order) and, per chunk, its scales as 16
    /// i16 lanes matching the `vpmaddubsw` pair lanes.
    unsafe fn unpack(blk: *const u8, q: &mut [__m256i; 8], sc: &mut [__m256i; 8]);
    /// The 8 mins as i16 (Q4_K, Q5_K).
    unsafe fn mins(_blk: *const u8) -> __m128i {
        _mm_setzero_si128()
    }
    /// The 16 i8 sub-block scales (Q6_K).
    unsafe fn scales16(_blk: *const u8) -> __m128i {
        _mm_setzero_si128()
    }
}

/// Q4_K / Q5_K 6-bit scales and mins from the 12 packed bytes at `p`: bytes 0..8 of the
/// result are the scales, bytes 8..16 the mins (the `scale_min_k4` decoding, done on
/// whole words).
#[inline(always)]
unsafe fn scales_mins_k4(p: *const u8) -> __m128i {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let w = p as *const u32;
    let (u0, u1, u2) = (
        w.read_unaligned(),
        w.add(1).read_unaligned(),
        w.add(2).read_unaligned(),
    );
    let s_lo = u0 & K1; // scales 0..4
    let s_hi = (u2 & K2) | (((u0 >> 6) & K3) << 4); // scales 4..8
    let m_lo = u1 & K1; // mins 0..4
    let m_hi = ((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4); // mins 4..8
    _mm_setr_epi32(s_lo as i32, s_hi as i32, m_lo as i32, m_hi as i32)
}

/// Broadcast of 16-bit lane `c` of `sc16` (8 i16 duplicated in both 128-bit halves).
#[inline(always)]
unsafe fn bcast16(sc16: __m256i, c: usize) -> __m256i {
    let lo = (2 * c) as i8;
    let pair = _mm256_set1_epi16(i16::from_le_bytes([lo as u8, lo as u8 + 1]));
    _mm256_shuffle_epi8(sc16, pair)
}

#[allow(non_camel_case_types)]
struct Q4K;
#[allow(non_camel_case_types)]
struct Q5K;
#[allow(non_camel_case_types)]
struct Q6K;

/// The 8 scales of a Q4_K / Q5_K block as i16 lanes, broadcast per chunk.
#[inline(always)]
unsafe fn k4_scales(blk: *const u8, sc: &mut [__m256i; 8]) {
    let s = _mm_cvtepu8_epi16(scales_mins_k4(blk.add(4)));
    let s2 = _mm256_set_m128i(s, s);
    for c in 0..8 {
        sc[c] = bcast16(s2, c);
    }
}

impl FmtK for Q4K {
    const BYTES: usize = 144;
    const D_AT: usize = 0;
    const MINS: Mins = Mins::Chains;
    #[inline(always)]
    unsafe fn unpack(blk: *const u8, q: &mut [__m256i; 8], sc: &mut [__m256i; 8]) {
        let m4 = _mm256_set1_epi8(0x0f);
        for j in 0..4 {
            let v = _mm256_loadu_si256(blk.add(16 + 32 * j) as *const __m256i);
            q[2 * j] = _mm256_and_si256(v, m4);
            q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
        }
        k4_scales(blk, sc);
    }
    #[inline(always)]
    unsafe fn mins(blk: *const u8) -> __m128i {
        _mm_cvtepu8_epi16(_mm_unpackhi_epi64(
            scales_mins_k4(blk.add(4)),
            _mm_setzero_si128(),
        ))
    }
}

impl FmtK for Q5K {
    const BYTES: usize = 176;
    const D_AT: usize = 0;
    const MINS: Mins = Mins::Scalar;
    #[inline(always)]
    unsafe fn unpack(blk: *const u8, q: &mut [__m256i; 8], sc: &mut [__m256i; 8]) {
        let (m4, one) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(1));
        // Bit c of qh[l] is the 5th bit of element l of chunk c: test bit 0, shift down.
        let mut h = _mm256_loadu_si256(blk.add(16) as *const __m256i);
        for j in 0..4 {
            let v = _mm256_loadu_si256(blk.add(48 + 32 * j) as *const __m256i);
            let lo = _mm256_and_si256(v, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
            let b0 = _mm256_slli_epi16::<4>(_mm256_and_si256(h, one));
            h = _mm256_srli_epi16::<1>(h);
            let b1 = _mm256_slli_epi16::<4>(_mm256_and_si256(h, one));
            h = _mm256_srli_epi16::<1>(h);
            q[2 * j] = _mm256_or_si256(lo, b0);
            q[2 * j + 1] = _mm256_or_si256(hi, b1);
        }
        k4_scales(blk, sc);
    }
    #[inline(always)]
    unsafe fn mins(blk: *const u8) -> __m128i {
        _mm_cvtepu8_epi16(_mm_unpackhi_epi64(
            scales_mins_k4(blk.add(4)),
            _mm_setzero_si128(),
        ))
    }
}

impl FmtK for Q6K {
    const BYTES: usize = 210;
    const D_AT: usize = 208;
    const MINS: Mins = Mins::None;
    #[inline(always)]
    unsafe fn scales16(blk: *const u8) -> __m128i {
        _mm_loadu_si128(blk.add(192) as *const __m128i)
    }
    #[inline(always)]
    unsafe fn unpack(blk: *const u8, q: &mut [__m256i; 8], sc: &mut [__m256i; 8]) {
        let (m4, m3) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3));
        for h in 0..2 {
            let l0 = _mm256_loadu_si256(blk.add(64 * h) as *const __m256i);
            let l1 = _mm256_loadu_si256(blk.add(64 * h + 32) as *const __m256i);
            let hb = _mm256_loadu_si256(blk.add(128 + 32 * h) as *const __m256i);
            // Two high bits per element, moved to bits 4-5 of each byte.
            let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(hb, m3));
            let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(hb), m3));
            let h2 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(hb), m3));
            let h3 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(hb), m3));
            q[4 * h] = _mm256_or_si256(_mm256_and_si256(l0, m4), h0);
            q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), h1);
            q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4), h2);
            q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4), h3);
        }
        // Chunk c uses scales 2c (its first 16 elements) and 2c + 1: the 16 scales
        // widened to i16 once (scales 0-7 in both 128-bit halves of one vector, 8-15 of
        // another), then one in-lane byte shuffle per chunk picks i16 lane 2c mod 8 for
        // the low half and 2c + 1 mod 8 for the high half (one op per chunk instead of
        // a shuffle and a widening).
        let s = _mm_loadu_si128(blk.add(192) as *const __m128i);
        let lo = _mm_cvtepi8_epi16(s);
        let hi = _mm_cvtepi8_epi16(_mm_unpackhi_epi64(s, s));
        let halves = [_mm256_set_m128i(lo, lo), _mm256_set_m128i(hi, hi)];
        for c in 0..8 {
            // Bytes (l, l + 1) of i16 lane 2c mod 8 in the low half, (l + 2, l + 3) of
            // lane 2c + 1 mod 8 in the high half.
            let l = (4 * (c % 4)) as i16;
            let pick = _mm256_set_m128i(
                _mm_set1_epi16((l + 2) | ((l + 3) << 8)),
                _mm_set1_epi16(l | ((l + 1) << 8)),
            );
            sc[c] = _mm256_shuffle_epi8(halves[c / 4], pick);
        }
    }
}

/// The tile kernel of the k-quants.
struct KTile<D, F>(core::marker::PhantomData<(D, F)>);

impl<D: Dot, F: FmtK> Tile for KTile<D, F> {
    #[inline(always)]
    unsafe fn tile<const MR: usize, const NR: usize>(a: &Args<'_>, i0: usize, j0: usize) {
        let (k, nsb) = (a.k, a.k / QK_K);
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let mut chain = [[0f32; NR]; MR];
        let mut chain_min = [[0f32; NR]; MR];
        let mut summs = [[0f32; NR]; MR];
        let aq = a.act.qs.as_ptr();
        let ad = a.act.d.as_ptr();
        let bsums = a.act.bsums.as_ptr();
        let (mut q, mut sc) = ([_mm256_setzero_si256(); 8], [_mm256_setzero_si256(); 8]);
        let mut pf = LinearPrefetch::new(a.w.add(j0 * a.row_bytes), NR * a.row_bytes);
        for sb in 0..nsb {
            if MR == 1 {
                pf.upto((sb + 1) * NR * F::BYTES);
            }
            // Per activation row: Q6_K's 16 sums of 16 activations (its offset 32 is
            // removed per lane as ggml's AVX2 kernel does, see `dot_ref.rs`), or the
            // sub-block sums S_s = bsums[2s] + bsums[2s + 1].
            let mut bs16 = [_mm256_setzero_si256(); MR];
            let mut s16 = [_mm_setzero_si128(); MR];
            for i in 0..MR {
                let bs = bsums.add(((i0 + i) * nsb + sb) * 16) as *const __m128i;
                if F::MINS == Mins::None {
                    bs16[i] = _mm256_loadu_si256(bs as *const __m256i);
                } else {
                    s16[i] = _mm_hadd_epi16(_mm_loadu_si128(bs), _mm_loadu_si128(bs.add(1)));
                }
            }
            for r in 0..NR {
                let blk = a.w.add((j0 + r) * a.row_bytes + sb * F::BYTES);
                F::unpack(blk, &mut q, &mut sc);
                let dw = f16_at(blk.add(F::D_AT));
                let (dminw, mins) = if F::MINS == Mins::None {
                    (0.0, _mm_setzero_si128())
                } else {
                    (f16_at(blk.add(2)), F::mins(blk))
                };
                for i in 0..MR {
                    let ap = aq.add((i0 + i) * k + sb * QK_K);
                    let dact = *ad.add((i0 + i) * nsb + sb);
                    if F::MINS == Mins::Chains && MR == 4 {
                        // A full group of 4 rows: llama.cpp's repacked GEMM updates its
                        // chains once per 64 elements (see `dot_ref::vec_dot_in`).
                        let prod = _mm_madd_epi16(mins, s16[i]);
                        let mut pm = [0i32; 4];
                        _mm_storeu_si128(pm.as_mut_ptr() as *mut __m128i, prod);
                        for p in 0..4 {
                            let mut sp = _mm256_setzero_si256();
                            for c in 2 * p..2 * p + 2 {
                                let av = _mm256_loadu_si256(ap.add(32 * c) as *const __m256i);
                                sp = D::madd(sp, sc[c], _mm256_maddubs_epi16(q[c], av));
                            }
                            let t = hsum_epi32(sp) as f32;
                            chain[i][r] = t.mul_add(dw * dact, chain[i][r]);
                        }
                        for &m in &pm {
                            chain_min[i][r] = (m as f32).mul_add(dminw * dact, chain_min[i][r]);
                        }
                        continue;
                    }
                    let mut sumi = _mm256_setzero_si256();
                    for c in 0..8 {
                        let av = _mm256_loadu_si256(ap.add(32 * c) as *const __m256i);
                        let p = _mm256_maddubs_epi16(q[c], av);
                        sumi = D::madd(sumi, sc[c], p);
                    }
                    if F::MINS == Mins::None {
                        // q8sclsub: 32 (sc_2l S_2l + sc_2l+1 S_2l+1) per lane l.
                        let sc16 = _mm256_cvtepi8_epi16(F::scales16(blk));
                        let sub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs16[i], sc16));
                        sumi = _mm256_sub_epi32(sumi, sub);
                    }
                    if F::MINS == Mins::Chains {
                        let t = hsum_epi32(sumi) as f32;
                        chain[i][r] = t.mul_add(dw * dact, chain[i][r]);
                    } else {
                        acc[i][r] = _mm256_fmadd_ps(
                            _mm256_set1_ps(dact * dw),
                            _mm256_cvtepi32_ps(sumi),
                            acc[i][r],
                        );
                    }
                    if F::MINS != Mins::None {
                        let dmin = -dact * dminw;
                        let prod = _mm_madd_epi16(mins, s16[i]);
                        if F::MINS == Mins::Chains {
                            let s2 = _mm_add_epi32(prod, _mm_unpackhi_epi64(prod, prod));
                            let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32::<0b01>(s2));
                            let t = _mm_cvtsi128_si32(s1) as f32;
                            chain_min[i][r] = t.mul_add(dminw * dact, chain_min[i][r]);
                        } else {
                            let s2 = _mm_add_epi32(prod, _mm_unpackhi_epi64(prod, prod));
                            let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32::<0b01>(s2));
                            let total = _mm_cvtsi128_si32(s1);
                            summs[i][r] = dmin.mul_add(total as f32, summs[i][r]);
                        }
                    }
                }
            }
        }
        for i in 0..MR {
            for r in 0..NR {
                let v = match F::MINS {
                    Mins::Chains => chain[i][r] - chain_min[i][r],
                    Mins::Scalar => hsum8(acc[i][r]) + summs[i][r],
                    Mins::None => hsum8(acc[i][r]),
                };
                *a.c.add((i0 + i) * a.nw + j0 + r) += v;
            }
        }
    }
}
