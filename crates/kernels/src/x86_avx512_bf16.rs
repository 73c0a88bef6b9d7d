//! AVX-512 BF16 `matmul_bt` for bf16 weights in the bf16-products mode
//! ([`crate::Kernels::with_bf16_products`]): `C (m x n) += bf16(A) (m x k) * B^T`.
//!
//! The activations are rounded to bf16 (nearest even, `vcvtne2ps2bf16`) once per call
//! into a zero-padded buffer (rows of `k` rounded up to 32), then each `vdpbf16ps`
//! multiplies 32 activation / weight pairs, exactly, into 16 f32 lanes: twice the work
//! of an f32 FMA per instruction, and the weights are read as stored.
//!
//! Order of operations (the same whatever `m`, the tile or the row range, so decode and
//! prefill agree bit for bit, as in `x86_common.rs`): each output has one 16-lane
//! accumulator; lane `l` takes the pairs `(32 s + 2 l, 32 s + 2 l + 1)` for `s = 0, 1, ..`
//! in order, one `vdpbf16ps` step each (the k tail reads zeros); then the lanes are
//! added in `hsum`'s tree and the sum is added to `C` once.
//!
//! Tiling, for prefill (m > 1), as in `x86_avx512_gemm.rs`: row blocks of at most
//! `MC_MAX` rows (each weight is read from memory once per block: once for a 128-token
//! prefill), panels of [`NR`] weight rows, [`KC`]-long k slices of a panel, copied into
//! a contiguous buffer ([`pack`], 16 KiB, in L1 while every row tile of the block uses
//! it; the slices after it are prefetched into L2 meanwhile), register tiles of [`MR`] x
//! [`NR`] accumulators (24 zmm, plus 3 activation vectors and one weight vector).
//! Between k slices a tile's unreduced accumulators are parked and reloaded (nothing
//! rounds in between). A tile's eight outputs per row are reduced together ([`hsum8`])
//! and added to `C` with one vector add. Decode (m = 1) is the same tile with one row
//! reading the weights in place, prefetching them ahead.
//!
//! Measured on Zen 4 (one thread, m = 128, `examples/kernel_bench.rs`): 195-215 GFLOP/s,
//! 85-90% of `vdpbf16ps`'s peak, against ~100 for the exact bf16 x f32 path. (The same
//! tile with 256-bit `vdpbf16ps`, 8-lane sums and cheaper reductions measured 2-4% slower.)

#![allow(clippy::needless_range_loop)] // index loops over const-size register arrays

use core::arch::x86_64::*;
use std::cell::RefCell;

use half::bf16;

use crate::x86_avx512::{hsum, hsum8};
use crate::x86_avx512_gemm::{block_rows, Next, MC_MAX, PREFETCH_SLICES};

/// Activation rows per register tile.
const MR: usize = 3;
/// Weight rows per panel (outputs per tile row).
const NR: usize = 8;
/// bf16 elements per `vdpbf16ps` (16 lanes x 2).
const KV: usize = 32;
/// k slice (a multiple of `KV`): an `NR x KC` bf16 panel slice is 16 KiB.
const KC: usize = 1024;
/// Weights prefetched this many elements ahead in decode (4 KiB, as the exact path).
const PREFETCH: usize = 2048;

thread_local! {
    /// Per-thread buffers, reused across calls (grown, never shrunk): the bf16
    /// activations of one row block followed by the packed panel slice, and the parked
    /// accumulators of the block's tiles.
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch { a: Vec::new(), park: Vec::new() }) };
}

struct Scratch {
    /// bf16 activations, 32 per vector, rows `lda` vectors apart; then the panel.
    a: Vec<__m512i>,
    park: Vec<__m512>,
}

/// Where a tile's k slice sits in the whole dot product.
#[derive(Clone, Copy)]
struct Slice {
    /// Elements of this slice (a multiple of `KV` except in the last slice).
    len: usize,
    /// Start from zero (else reload the parked accumulators).
    first: bool,
    /// Reduce into C (else park).
    last: bool,
}

/// Mask of the low `n < 32` 16-bit lanes.
fn mask32(n: usize) -> __mmask32 {
    ((1u64 << n) - 1) as __mmask32
}

/// Rounds `rows` rows of `k` f32 (`a`, `k` apart) to bf16 into `out`, rows `lda`
/// vectors apart, `kv` vectors each, the padding zero.
///
/// # Safety
/// AVX-512 F/BW/BF16; `a` holds `rows * k` floats, `out` `rows * lda` vectors,
/// `lda >= kv`, `kv * 32 >= k`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn to_bf16(a: *const f32, k: usize, rows: usize, out: *mut __m512i, kv: usize, lda: usize) {
    for r in 0..rows {
        let (src, dst) = (a.add(r * k), out.add(r * lda));
        for v in 0..kv {
            let q = v * KV;
            let left = k.saturating_sub(q);
            let (lo, hi) = if left >= KV {
                (
                    _mm512_loadu_ps(src.add(q)),
                    _mm512_loadu_ps(src.add(q + 16)),
                )
            } else {
                let m = |n: usize| ((1u32 << n.min(16)) - 1) as __mmask16;
                let lo = _mm512_maskz_loadu_ps(m(left), src.add(q));
                let hi = if left > 16 {
                    _mm512_maskz_loadu_ps(m(left - 16), src.add(q + 16))
                } else {
                    _mm512_setzero_ps()
                };
                (lo, hi)
            };
            // Lanes 0..16 from `lo`, 16..32 from `hi`: element order kept.
            let h: __m512bh = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(dst.add(v), std::mem::transmute::<__m512bh, __m512i>(h));
        }
    }
}

/// One register tile over one k slice: for `i < R`, `j < N`, accumulates the products of
/// activation row `i` (bf16 vectors at `a`, `lda` vectors apart) and weight row `j`, whose
/// elements `32 v .. 32 v + 32` are at `b + j * ldb + 32 v * qs` (`qs = 1`: rows as stored;
/// a packed panel has `ldb = 32`, `qs = NR`), both offset to the slice. On the last
/// slice, `C[i, j] +=`
/// the lane sum (C rows `ldc` apart); otherwise the accumulators go to `park[i * N + j]`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")]
unsafe fn tile<const R: usize, const N: usize>(
    a: *const __m512i,
    lda: usize,
    b: *const bf16,
    ldb: usize,
    qs: usize,
    s: Slice,
    c: *mut f32,
    ldc: usize,
    park: *mut __m512,
) {
    let mut acc = [[_mm512_setzero_ps(); N]; R];
    if !s.first {
        for i in 0..R {
            for j in 0..N {
                acc[i][j] = *park.add(i * N + j);
            }
        }
    }
    let b = b as *const u16;
    let full = s.len / KV;
    for v in 0..full {
        if R == 1 {
            for j in 0..N {
                // Prefetch never faults; `wrapping_add` keeps the arithmetic defined
                // past the end of the weights.
                let ahead = b.wrapping_add(j * ldb + v * KV * qs + PREFETCH);
                _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
            }
        }
        let mut av = [_mm512_setzero_si512(); R];
        for i in 0..R {
            av[i] = _mm512_loadu_si512(a.add(i * lda + v));
        }
        for j in 0..N {
            let bv: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                b.add(j * ldb + v * KV * qs) as *const __m512i,
            ));
            for i in 0..R {
                acc[i][j] = _mm512_dpbf16_ps(
                    acc[i][j],
                    std::mem::transmute::<__m512i, __m512bh>(av[i]),
                    bv,
                );
            }
        }
    }
    let rest = s.len - full * KV;
    if rest > 0 {
        // The activations are zero-padded; the weights are read under a mask.
        let m = mask32(rest);
        let mut av = [_mm512_setzero_si512(); R];
        for i in 0..R {
            av[i] = _mm512_loadu_si512(a.add(i * lda + full));
        }
        for j in 0..N {
            let bv: __m512bh = std::mem::transmute(_mm512_maskz_loadu_epi16(
                m,
                b.add(j * ldb + full * KV * qs) as *const i16,
            ));
            for i in 0..R {
                acc[i][j] = _mm512_dpbf16_ps(
                    acc[i][j],
                    std::mem::transmute::<__m512i, __m512bh>(av[i]),
                    bv,
                );
            }
        }
    }
    if s.last {
        for i in 0..R {
            let ci = c.add(i * ldc);
            if N == NR {
                let mut v = [_mm512_setzero_ps(); 8];
                v.copy_from_slice(&acc[i][..8]);
                let sums = hsum8(&v);
                _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), sums));
            } else {
                for j in 0..N {
                    *ci.add(j) += hsum(acc[i][j]);
                }
            }
        }
    } else {
        for i in 0..R {
            for j in 0..N {
                *park.add(i * N + j) = acc[i][j];
            }
        }
    }
}

/// Every tile of one (row block, panel, k slice): `mb` activation rows from `a` (`lda`
/// vectors apart), `nr <= NR` weight rows from `b` (addressed as in [`tile`]; a narrow
/// panel is never packed); tile `t` parks at `t * MR * NR`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")]
unsafe fn block(
    mb: usize,
    nr: usize,
    a: *const __m512i,
    lda: usize,
    b: *const bf16,
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
                3 => tile::<3, NR>(a, lda, b, ldb, qs, s, c, ldc, park),
                2 => tile::<2, NR>(a, lda, b, ldb, qs, s, c, ldc, park),
                _ => tile::<1, NR>(a, lda, b, ldb, qs, s, c, ldc, park),
            }
        } else {
            // A narrow last panel: column by column, each in its own MR park slots.
            for j in 0..nr {
                let (b, c, park) = (b.add(j * ldb), c.add(j), park.add(j * MR));
                match mr {
                    3 => tile::<3, 1>(a, lda, b, ldb, qs, s, c, ldc, park),
                    2 => tile::<2, 1>(a, lda, b, ldb, qs, s, c, ldc, park),
                    _ => tile::<1, 1>(a, lda, b, ldb, qs, s, c, ldc, park),
                }
            }
        }
        i += mr;
    }
}

/// Copies the `NR` weight rows of one slice (`len` elements, rows `ldb` apart) into
/// `out` step by step: elements `32 v .. 32 v + 32` of row `j` are vector `v * NR + j`,
/// the tail zero-filled. The tiles then read one contiguous L1-resident run instead of
/// `NR` rows `ldb` apart, which conflict in L1 when that is a multiple of 4 KiB
/// (k = 2048: 135 instead of ~210 GFLOP/s).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn pack(b: *const bf16, ldb: usize, len: usize, out: *mut __m512i) {
    let b = b as *const i16;
    let steps = len.div_ceil(KV);
    for j in 0..NR {
        let src = b.add(j * ldb);
        for v in 0..steps {
            let left = len - v * KV;
            let x = if left >= KV {
                _mm512_loadu_si512(src.add(v * KV) as *const __m512i)
            } else {
                _mm512_maskz_loadu_epi16(mask32(left), src.add(v * KV))
            };
            _mm512_store_si512(out.add(v * NR + j), x);
        }
    }
}

/// The whole product with the buffers: `C (m x n, row stride n) += bf16(A) * B^T`, `B`
/// the `n x k` rows at `b`; `k > 0`, `m > 0`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")]
unsafe fn gemm(
    c: *mut f32,
    a: *const f32,
    b: *const bf16,
    m: usize,
    n: usize,
    k: usize,
    s: &mut Scratch,
) {
    let kv = k.div_ceil(KV);
    // Row stride of the bf16 activations in vectors: odd, so that rows a multiple of
    // 4 KiB apart do not share L1 sets.
    let lda = kv | 1;
    // Rows per block: a multiple of MR, at most MC_MAX.
    let mc = if m == 1 { 1 } else { block_rows(m, MC_MAX, MR) };
    let rows = mc.min(m);
    let panel = if m > 1 { NR * KC / KV } else { 0 };
    if s.a.len() < rows * lda + panel {
        s.a.resize(rows * lda + panel, _mm512_setzero_si512());
    }
    let tiles = rows.div_ceil(MR);
    let slices = k.div_ceil(KC);
    if slices > 1 && s.park.len() < tiles * MR * NR {
        s.park.resize(tiles * MR * NR, _mm512_setzero_ps());
    }
    let (ab, park) = (s.a.as_mut_ptr(), s.park.as_mut_ptr());
    // The packed panel slice sits after the activations (both 64-byte aligned vectors).
    let packed = ab.add(rows * lda);
    let b0 = b;
    let mut i0 = 0;
    while i0 < m {
        let mb = mc.min(m - i0);
        to_bf16(a.add(i0 * k), k, mb, ab, kv, lda);
        let mut j = 0;
        while j < n {
            let nr = NR.min(n - j);
            let mut p0 = 0;
            while p0 < k {
                let len = KC.min(k - p0);
                let sl = Slice {
                    len,
                    first: p0 == 0,
                    last: p0 + len == k,
                };
                let (a, b, c) = (ab.add(p0 / KV), b.add(j * k + p0), c.add(i0 * n + j));
                // The park pointer is only used when there is more than one slice.
                if mb > MR && nr == NR {
                    // Packing pays off when several tiles share the panel.
                    let next =
                        Next::ahead(b0 as *const u8, 2, [j, p0, n, k, KC, NR], PREFETCH_SLICES);
                    pack(b, k, len, packed);
                    let pb = packed as *const bf16;
                    block(mb, nr, a, lda, pb, KV, NR, sl, c, n, park, Some(next));
                } else {
                    block(mb, nr, a, lda, b, k, 1, sl, c, n, park, None);
                }
                p0 += len;
            }
            j += nr;
        }
        i0 += mb;
    }
}

/// `C (m x (n1 - n0)) += bf16(A) (m x k) * B[n0..n1]^T`.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL and BF16 (and FMA, F16C); `c`, `a`, `b` hold
/// `m * (n1 - n0)`, `m * k`, at least `n1 * k` elements; `n0 <= n1`; `k > 0`, `m > 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")]
pub(crate) unsafe fn matmul_bt_rows(
    c: &mut [f32],
    a: &[f32],
    b: &[bf16],
    m: usize,
    k: usize,
    n0: usize,
    n1: usize,
) {
    let (cp, ap, bp, n) = (c.as_mut_ptr(), a.as_ptr(), b.as_ptr().add(n0 * k), n1 - n0);
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => gemm(cp, ap, bp, m, n, k, &mut s),
        // Only reentrancy could find the buffers busy: use fresh ones.
        Err(_) => gemm(
            cp,
            ap,
            bp,
            m,
            n,
            k,
            &mut Scratch {
                a: Vec::new(),
                park: Vec::new(),
            },
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hsum8` must add exactly what `hsum` adds, lane for lane (the decode / prefill
    /// bit-equality rests on it): random vectors of mixed magnitudes and signs, where a
    /// different tree would round differently.
    #[test]
    fn hsum8_is_hsum_bit_for_bit() {
        if !crate::is_supported(crate::KernelLevel::Avx512) {
            println!("note: no AVX-512 on this CPU; hsum8 not tested");
            return;
        }
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let e = (state >> 58) as i32 - 32; // 2^-32 .. 2^31: cancellation and absorption
            let f = (state as u32 >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            f * 2f32.powi(e / 2)
        };
        for _ in 0..2000 {
            let mut lanes = [[0f32; 16]; 8];
            for v in lanes.iter_mut() {
                for x in v.iter_mut() {
                    *x = next();
                }
            }
            // SAFETY: AVX-512 F/BW/VL (and FMA, F16C at that level) checked above.
            let (got, want) = unsafe {
                let v: [__m512; 8] = std::array::from_fn(|i| _mm512_loadu_ps(lanes[i].as_ptr()));
                let mut got = [0f32; 8];
                _mm256_storeu_ps(got.as_mut_ptr(), hsum8(&v));
                (got, v.map(|x| hsum(x)))
            };
            for i in 0..8 {
                assert_eq!(
                    got[i].to_bits(),
                    want[i].to_bits(),
                    "vector {i}: {:?}",
                    lanes[i]
                );
            }
        }
    }
}
