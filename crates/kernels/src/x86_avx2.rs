//! AVX2 + FMA + F16C kernels: 8 f32 lanes.
//!
//! Same structure and numerics as `x86_avx512.rs` (see `x86_common.rs`), with 8 lanes.
//! Tails of f32 data use `vmaskmovps` (masked lanes are neither read nor written); tails
//! of 16-bit weights are copied into a zero-padded stack buffer. Every function is
//! `unsafe`: the caller (`kernels.rs`) guarantees the CPU features and the lengths.

// Index loops over small const-size register arrays are the clearest form here.
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use crate::x86_common::{EXP_HI, EXP_LO, EXP_P, LN2_HI, LN2_LO, LOG2E};
use crate::{BinOp, UnOp};

pub(crate) use crate::x86_avx2_gemm::{dot, matmul_bt_rows};

const L: usize = 8;

/// `vmaskmovps` mask of the low `n` lanes (`n <= 8`): lane `i` has its sign bit set iff `i < n`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn tail_mask(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

macro_rules! map2 {
    ($d:expr, $a:expr, $b:expr, $n:expr, |$x:ident, $y:ident| $body:expr) => {{
        let (d, a, b, n): (*mut f32, *const f32, *const f32, usize) = ($d, $a, $b, $n);
        let mut i = 0;
        while i + L <= n {
            let $x = _mm256_loadu_ps(a.add(i));
            let $y = _mm256_loadu_ps(b.add(i));
            _mm256_storeu_ps(d.add(i), $body);
            i += L;
        }
        if i < n {
            let m = tail_mask(n - i);
            let $x = _mm256_maskload_ps(a.add(i), m);
            let $y = _mm256_maskload_ps(b.add(i), m);
            _mm256_maskstore_ps(d.add(i), m, $body);
        }
    }};
}

macro_rules! map1 {
    ($d:expr, $a:expr, $n:expr, |$x:ident| $body:expr) => {{
        let (d, a, n): (*mut f32, *const f32, usize) = ($d, $a, $n);
        let mut i = 0;
        while i + L <= n {
            let $x = _mm256_loadu_ps(a.add(i));
            _mm256_storeu_ps(d.add(i), $body);
            i += L;
        }
        if i < n {
            let m = tail_mask(n - i);
            let $x = _mm256_maskload_ps(a.add(i), m);
            _mm256_maskstore_ps(d.add(i), m, $body);
        }
    }};
}

/// `d[i] = a[i] op b[i]` for `i < n`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn binary(op: BinOp, d: *mut f32, a: *const f32, b: *const f32, n: usize) {
    match op {
        BinOp::Add => map2!(d, a, b, n, |x, y| _mm256_add_ps(x, y)),
        BinOp::Sub => map2!(d, a, b, n, |x, y| _mm256_sub_ps(x, y)),
        BinOp::Mul => map2!(d, a, b, n, |x, y| _mm256_mul_ps(x, y)),
        BinOp::Max => map2!(d, a, b, n, |x, y| _mm256_max_ps(x, y)),
    }
}

/// `d[i] = fma(a[i], b[i], d[i])`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn fma(d: *mut f32, a: *const f32, b: *const f32, n: usize) {
    let mut i = 0;
    while i + L <= n {
        let v = _mm256_fmadd_ps(
            _mm256_loadu_ps(a.add(i)),
            _mm256_loadu_ps(b.add(i)),
            _mm256_loadu_ps(d.add(i)),
        );
        _mm256_storeu_ps(d.add(i), v);
        i += L;
    }
    if i < n {
        let m = tail_mask(n - i);
        let v = _mm256_fmadd_ps(
            _mm256_maskload_ps(a.add(i), m),
            _mm256_maskload_ps(b.add(i), m),
            _mm256_maskload_ps(d.add(i), m),
        );
        _mm256_maskstore_ps(d.add(i), m, v);
    }
}

/// `d[i] = a[i] * s`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn scale(d: *mut f32, a: *const f32, s: f32, n: usize) {
    let sv = _mm256_set1_ps(s);
    map1!(d, a, n, |x| _mm256_mul_ps(x, sv));
}

/// `2^n` for integral `n` in `[-126, 127]`, as f32 bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pow2i(n: __m256i) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        n,
        _mm256_set1_epi32(127),
    )))
}

/// `e^x` per lane (see `x86_common.rs`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn exp8(x: __m256) -> __m256 {
    let xc = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(EXP_LO)),
        _mm256_set1_ps(EXP_HI),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(EXP_P[0]);
    for &c in &EXP_P[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    let y = _mm256_add_ps(y, _mm256_set1_ps(1.0));
    // y * 2^n as (y * 2^(n - n/2)) * 2^(n/2): n is in [-150, 128], so both factors are
    // normal and the first product is exact; the second rounds once (like vscalefps).
    let ni = _mm256_cvtps_epi32(n);
    let n1 = _mm256_srai_epi32::<1>(ni);
    let n2 = _mm256_sub_epi32(ni, n1);
    let y = _mm256_mul_ps(_mm256_mul_ps(y, pow2i(n2)), pow2i(n1));
    _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x))
}

/// `silu(x)` as in `x86_avx512::silu16`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn silu8(x: __m256) -> __m256 {
    let neg_abs = _mm256_or_ps(x, _mm256_set1_ps(-0.0));
    let e = exp8(neg_abs);
    let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_setzero_ps());
    let num = _mm256_blendv_ps(x, _mm256_mul_ps(x, e), negative);
    _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rsqrt8(x: __m256) -> __m256 {
    _mm256_div_ps(_mm256_set1_ps(1.0), _mm256_sqrt_ps(x))
}

/// `d[i] = op(a[i])`; `d` may equal `a`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn unary(op: UnOp, d: *mut f32, a: *const f32, n: usize) {
    match op {
        UnOp::Exp => map1!(d, a, n, |x| exp8(x)),
        UnOp::Silu => map1!(d, a, n, |x| silu8(x)),
        UnOp::Rsqrt => map1!(d, a, n, |x| rsqrt8(x)),
    }
}

/// Sum of the 8 lanes in a fixed tree: `s4[i] = v[i] + v[i+4]`, `s2[i] = s4[i] + s4[i+2]`, `s2[0] + s2[1]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hmax(v: __m256) -> f32 {
    let s4 = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_max_ss(s2, _mm_movehdup_ps(s2)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sum_vec<const SQ: bool>(a: *const f32, n: usize) -> __m256 {
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + L <= n {
        let x = _mm256_loadu_ps(a.add(i));
        acc = if SQ {
            _mm256_fmadd_ps(x, x, acc)
        } else {
            _mm256_add_ps(acc, x)
        };
        i += L;
    }
    if i < n {
        let x = _mm256_maskload_ps(a.add(i), tail_mask(n - i));
        acc = if SQ {
            _mm256_fmadd_ps(x, x, acc)
        } else {
            _mm256_add_ps(acc, x)
        };
    }
    acc
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn max_vec(a: *const f32, n: usize) -> __m256 {
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut acc = ninf;
    let mut i = 0;
    while i + L <= n {
        acc = _mm256_max_ps(_mm256_loadu_ps(a.add(i)), acc);
        i += L;
    }
    if i < n {
        let m = tail_mask(n - i);
        let x = _mm256_blendv_ps(
            ninf,
            _mm256_maskload_ps(a.add(i), m),
            _mm256_castsi256_ps(m),
        );
        acc = _mm256_max_ps(x, acc);
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn row_sum(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (r, d) in d.iter_mut().enumerate().take(rows) {
        *d = hsum(sum_vec::<false>(a.as_ptr().add(r * cols), cols));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn row_sumsq(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (r, d) in d.iter_mut().enumerate().take(rows) {
        *d = hsum(sum_vec::<true>(a.as_ptr().add(r * cols), cols));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn row_max(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (r, d) in d.iter_mut().enumerate().take(rows) {
        *d = hmax(max_vec(a.as_ptr().add(r * cols), cols));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn softmax_rows(x: &mut [f32], rows: usize, cols: usize) {
    for r in 0..rows {
        let p = x.as_mut_ptr().add(r * cols);
        let mv = _mm256_set1_ps(hmax(max_vec(p, cols)));
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + L <= cols {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv));
            _mm256_storeu_ps(p.add(i), e);
            acc = _mm256_add_ps(acc, e);
            i += L;
        }
        if i < cols {
            let m = tail_mask(cols - i);
            let e = exp8(_mm256_sub_ps(_mm256_maskload_ps(p.add(i), m), mv));
            _mm256_maskstore_ps(p.add(i), m, e);
            acc = _mm256_add_ps(acc, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
        }
        let inv = _mm256_set1_ps(1.0 / hsum(acc));
        map1!(p, p, cols, |v| _mm256_mul_ps(v, inv));
    }
}
