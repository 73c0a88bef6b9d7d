//! llama.cpp's `one_chunk` attention (the module docs of `attention`) with the output
//! accumulators in registers, for head dimensions 64, 128 and 256 on AVX-512F.
//!
//! Why: the first AVX-512 version kept the f16 accumulator in memory, as llama.cpp does,
//! so every key paid a load, convert, FMA, convert and store per 16 lanes on one
//! dependency chain, and a libm `expf` call in the middle of it (a call clobbers every
//! vector register). Decode attention ran at ~10 us per call (SmolLM2, 2 sentrons), and
//! batched decoding runs it once per sequence.
//!
//! Same operations per element, in the same order, arranged differently:
//! - the query rows of one token that share the KV rows (up to `R`, the GQA group) are
//!   done together, so each key and value row is loaded and converted once for them and
//!   their accumulator chains interleave;
//! - keys go in chunks of [`KB`]: pass 1 computes the chunk's scores (the same dot
//!   product tree per score), pass 2 runs the online softmax in key order (scalar, with
//!   the `expf` calls; no vector register is live across them) and records per key the
//!   rescale factor (1 when there is none: `f16(acc * 1) = acc` and `acc * 1 = acc`, so
//!   skipping it is the same) and the value weight, pass 3 applies them to the
//!   accumulators, which stay in registers for the whole chunk;
//! - the f16 accumulator is kept as f32 values that are always f16-representable: the
//!   round trip `f32(f16(x))` after each update is what storing and reloading it did.

#![allow(clippy::needless_range_loop)] // index loops over const-size register arrays

use core::arch::x86_64::*;

use super::{attention_scale, visible_keys, AttnShape, KvRows, Online};
use half::f16;

/// Keys per chunk (the score and weight buffers live on the stack).
const KB: usize = 128;
/// Most query rows per block: accumulators `R * hd / 16` plus the score pass's `4 R`
/// partial sums fit in the 32 vector registers.
const RMAX: usize = 3;

/// Whether [`attention`] takes `shape` (`hd` one of 64, 128, 256).
pub(super) fn handles(shape: AttnShape) -> bool {
    matches!(shape.hd, 64 | 128 | 256)
}

/// Keys ahead of the score pass whose rows are prefetched.
const PF_KEYS: usize = 8;

/// Prefetches the `hd` elements at `p` (one prefetch per cache line; a prefetch past
/// the cache's end does not fault, and `wrapping_add` keeps the address defined).
#[inline(always)]
unsafe fn prefetch_row<T>(p: *const T, hd: usize) {
    let bytes = hd * core::mem::size_of::<T>();
    let p = p as *const i8;
    let mut off = 0;
    while off < bytes {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off));
        off += 64;
    }
}

#[inline(always)]
unsafe fn round16(x: __m512) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
}

/// Element type of the cache: f16 rows (converted on load; the query and accumulator
/// rounded to f16) or f32.
trait Kv: Copy {
    const F16: bool;
    unsafe fn ld(p: *const Self) -> __m512;
}

impl Kv for f16 {
    const F16: bool = true;
    #[inline(always)]
    unsafe fn ld(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
}

impl Kv for f32 {
    const F16: bool = false;
    #[inline(always)]
    unsafe fn ld(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
}

/// The whole call; shapes checked by the caller and `handles(shape)`.
///
/// # Safety
/// The CPU has AVX-512F; `out` and `q` hold `rows * hd`, `k` and `v` `s * hd` elements.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn attention(
    out: &mut [f32],
    q: &[f32],
    k: KvRows<'_>,
    v: KvRows<'_>,
    shape: AttnShape,
) {
    match (k, v, shape.hd) {
        (KvRows::F16(k), KvRows::F16(v), 64) => rows::<f16, 4>(out, q, k, v, shape),
        (KvRows::F16(k), KvRows::F16(v), 128) => rows::<f16, 8>(out, q, k, v, shape),
        (KvRows::F16(k), KvRows::F16(v), 256) => rows::<f16, 16>(out, q, k, v, shape),
        (KvRows::F32(k), KvRows::F32(v), 64) => rows::<f32, 4>(out, q, k, v, shape),
        (KvRows::F32(k), KvRows::F32(v), 128) => rows::<f32, 8>(out, q, k, v, shape),
        (KvRows::F32(k), KvRows::F32(v), 256) => rows::<f32, 16>(out, q, k, v, shape),
        // Refused by the caller.
        _ => {}
    }
}

/// Splits the rows into blocks of one token's rows (they see the same keys), at most
/// as many as fit in registers for `C` vectors per row.
#[inline(always)]
unsafe fn rows<T: Kv, const C: usize>(
    out: &mut [f32],
    q: &[f32],
    k: &[T],
    v: &[T],
    shape: AttnShape,
) {
    let AttnShape { rows, per, s, .. } = shape;
    let rmax = match C {
        4 => RMAX,
        8 => 2,
        _ => 1,
    };
    let mut r = 0;
    while r < rows {
        let token_end = (r / per + 1) * per;
        let n = rmax.min(token_end - r);
        let vis = visible_keys(r, rows, per, s);
        let (o, qr) = (out.as_mut_ptr().add(r * C * 16), q.as_ptr().add(r * C * 16));
        match n {
            1 => block::<T, C, 1>(o, qr, k.as_ptr(), v.as_ptr(), vis),
            2 => block::<T, C, 2>(o, qr, k.as_ptr(), v.as_ptr(), vis),
            _ => block::<T, C, 3>(o, qr, k.as_ptr(), v.as_ptr(), vis),
        }
        r += n;
    }
}

/// `R` consecutive query rows of `C * 16` elements over the first `vis` keys.
#[inline(always)]
unsafe fn block<T: Kv, const C: usize, const R: usize>(
    o: *mut f32,
    q: *const f32,
    k: *const T,
    v: *const T,
    vis: usize,
) {
    let hd = C * 16;
    let scale = attention_scale(hd);
    // The query rows as the dot products read them (f16-rounded for an f16 cache).
    let mut qb = [[_mm512_setzero_ps(); C]; R];
    for r in 0..R {
        for c in 0..C {
            let x = _mm512_loadu_ps(q.add(r * hd + 16 * c));
            qb[r][c] = if T::F16 { round16(x) } else { x };
        }
    }
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    let mut on: [Online; R] = core::array::from_fn(|_| Online::new());
    let mut sc = [[0f32; KB]; R];
    let mut ms = [[0f32; KB]; R];
    let mut ic0 = 0;
    while ic0 < vis {
        let n = KB.min(vis - ic0);
        // Pass 1: the scores, `ggml_vec_dot_*`'s tree, times the scale, plus the mask 0.
        for j in 0..n {
            let kr = k.add((ic0 + j) * hd);
            // The cache rows of a decode step come from DRAM (a batch reads every
            // sequence's): key rows PF_KEYS ahead, and this chunk's value rows for pass 3.
            prefetch_row(k.wrapping_add((ic0 + j + PF_KEYS) * hd), hd);
            prefetch_row(v.add((ic0 + j) * hd), hd);
            let mut a = [[_mm512_setzero_ps(); 4]; R];
            for c in 0..C {
                let kc = T::ld(kr.add(16 * c));
                for r in 0..R {
                    a[r][c % 4] = _mm512_fmadd_ps(kc, qb[r][c], a[r][c % 4]);
                }
            }
            for r in 0..R {
                let s0 = _mm512_add_ps(
                    _mm512_add_ps(a[r][0], a[r][2]),
                    _mm512_add_ps(a[r][1], a[r][3]),
                );
                sc[r][j] = super::avx512::reduce16(s0) * scale + 0.0;
            }
        }
        // Pass 2: the online softmax, key by key; `sc` becomes the value weight.
        for r in 0..R {
            for j in 0..n {
                let (rescale, vs) = on[r].key(sc[r][j]);
                ms[r][j] = rescale.unwrap_or(1.0);
                sc[r][j] = vs;
            }
        }
        // Pass 3: rescale (where a new maximum came) and accumulate the values.
        for j in 0..n {
            for r in 0..R {
                let m = ms[r][j];
                if m != 1.0 {
                    let mv = _mm512_set1_ps(m);
                    for c in 0..C {
                        let y = _mm512_mul_ps(acc[r][c], mv);
                        acc[r][c] = if T::F16 { round16(y) } else { y };
                    }
                }
            }
            let vr = v.add((ic0 + j) * hd);
            for c in 0..C {
                let vc = T::ld(vr.add(16 * c));
                for r in 0..R {
                    let y = _mm512_fmadd_ps(vc, _mm512_set1_ps(sc[r][j]), acc[r][c]);
                    acc[r][c] = if T::F16 { round16(y) } else { y };
                }
            }
        }
        ic0 += n;
    }
    for r in 0..R {
        let inv = _mm512_set1_ps(on[r].inv());
        for c in 0..C {
            _mm512_storeu_ps(o.add(r * hd + 16 * c), _mm512_mul_ps(acc[r][c], inv));
        }
    }
}
