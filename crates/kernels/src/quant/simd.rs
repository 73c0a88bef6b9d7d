//! The small SIMD abstraction the quantized kernels are written over ([`Dot`]).
//!
//! Why a trait and why this one: the quantized kernels of `gemm.rs` are written once,
//! generic over `D: Dot`, and instantiated inside `#[target_feature]` entry points per
//! level (`#[inline(always)]` makes every trait method and kernel body compile with the
//! entry point's features; no intrinsic stays a call). What differs between the levels
//! is only how 8-bit integer products are summed into the 8 i32 lanes that the f32 part
//! consumes, so that is all the trait abstracts:
//! - AVX2 (and AVX-512 F/BW/VL without VNNI): `vpmaddubsw` (u8 x i8 pairs to i16) +
//!   `vpmaddwd` (i16 pairs to i32) + `vpaddd`;
//! - AVX-512 VNNI: `vpdpbusd` (u8 x i8 quads accumulated into i32) and `vpdpwssd`
//!   (i16 pairs accumulated into i32), one instruction each.
//!
//! All levels use 256-bit vectors (the AVX-512 level through AVX-512VL's EVEX forms):
//! the 8-lane f32 structure is fixed by the numerics we match (ggml's AVX2 kernels), a
//! 32-element block is exactly one 256-bit vector, and on Zen 4 512-bit operations are
//! executed as two 256-bit halves anyway, so wider registers would buy shuffles, not
//! speed, for the bandwidth-bound decode this is for. (On Sapphire Rapids a 512-bit
//! integer path could speed up compute-bound prefill; the trait would then grow a
//! vector width, which is why the kernels only touch vectors through it and plain AVX2.)
//!
//! The integer results are exact and identical at every level: `vpmaddubsw` saturates
//! its i16 pair sums, so every caller keeps `|u0 s0 + u1 s1| <= 32767` (unsigned operand
//! at most 128 with |signed| <= 127, or at most 63 with any i8).
//! We do not use the `pulp` crate: its abstractions are f32/f64-centric and it has no
//! VNNI byte dot product, which is the one operation that matters here.

use core::arch::x86_64::*;

/// 8-bit integer dot products into 8 i32 lanes: lane `l` covers bytes `4l..4l+3`.
pub(crate) trait Dot: Copy {
    /// `acc + sum_{b in lane} u[b] * s[b]` (u unsigned, s signed; see the module doc
    /// for the range callers keep).
    unsafe fn dot_us(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;

    /// `acc + (a[2l] b[2l] + a[2l+1] b[2l+1])` over i16 lanes (`vpmaddwd`).
    unsafe fn madd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;

    /// A signed weight vector prepared for [`Dot::dot_ss`] (shared by several
    /// activation vectors).
    type Signed: Copy;
    unsafe fn prep_ss(w: __m256i) -> Self::Signed;
    /// Per activation vector, whatever [`Dot::dot_ss`] needs besides it.
    unsafe fn corr_ss(a: __m256i) -> __m256i;
    /// `sum_{b in lane} w[b] * a[b]` for signed `w` (any i8) and `a` in [-127, 127].
    unsafe fn dot_ss(w: Self::Signed, a: __m256i, corr: __m256i) -> __m256i;
}

/// AVX2 (`vpmaddubsw` / `vpmaddwd`); also the AVX-512 level on CPUs without VNNI.
#[derive(Clone, Copy)]
pub(crate) struct Avx2Dot;

impl Dot for Avx2Dot {
    #[inline(always)]
    unsafe fn dot_us(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let p16 = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    #[inline(always)]
    unsafe fn madd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }

    /// `(|w|, w)`: `|w| * sign(a, w) = w * a` with `|w| <= 128` as u8.
    type Signed = (__m256i, __m256i);

    #[inline(always)]
    unsafe fn prep_ss(w: __m256i) -> (__m256i, __m256i) {
        (_mm256_sign_epi8(w, w), w)
    }

    #[inline(always)]
    unsafe fn corr_ss(_a: __m256i) -> __m256i {
        _mm256_setzero_si256()
    }

    #[inline(always)]
    unsafe fn dot_ss(w: (__m256i, __m256i), a: __m256i, _corr: __m256i) -> __m256i {
        // `vpsignb` negates `a` where `w < 0` and zeroes it where `w == 0`; `a` never
        // holds -128, so the negation cannot wrap.
        Self::dot_us(_mm256_setzero_si256(), w.0, _mm256_sign_epi8(a, w.1))
    }
}

/// AVX-512 VNNI on 256-bit vectors (`vpdpbusd` / `vpdpwssd`, EVEX via AVX-512VL).
#[derive(Clone, Copy)]
pub(crate) struct VnniDot;

impl Dot for VnniDot {
    #[inline(always)]
    unsafe fn dot_us(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }

    #[inline(always)]
    unsafe fn madd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }

    /// `w + 128` as u8 (`w ^ 0x80`): `sum (w + 128) a = sum w a + 128 sum a`, and the
    /// activation-only `-128 sum a` is [`Dot::corr_ss`], computed once per activation
    /// vector instead of once per weight.
    type Signed = __m256i;

    #[inline(always)]
    unsafe fn prep_ss(w: __m256i) -> __m256i {
        _mm256_xor_si256(w, _mm256_set1_epi8(i8::MIN))
    }

    #[inline(always)]
    unsafe fn corr_ss(a: __m256i) -> __m256i {
        let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(i8::MIN), a);
        _mm256_sub_epi32(_mm256_setzero_si256(), s)
    }

    #[inline(always)]
    unsafe fn dot_ss(w: __m256i, a: __m256i, corr: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(corr, w, a)
    }
}
