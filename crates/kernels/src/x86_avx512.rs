//! AVX-512 kernels (F + BW + VL, with FMA and F16C): 16 f32 lanes, masked tails.
//!
//! Every function is `unsafe` and compiled with the `Avx512` level's target features: the
//! caller (`kernels.rs`) guarantees the CPU has them and that every length was checked
//! (raw pointers cover `n` elements; slices have the documented shapes). Tails use masked
//! loads and stores, which never touch memory outside the mask, so a kernel reads and
//! writes exactly the elements it was given.
//!
//! Numerics are described in `x86_common.rs`; the scalar references in `scalar.rs` are
//! the specification.

// Index loops over small const-size register arrays are the clearest form here, and
// they are fully unrolled by the compiler.
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use half::{bf16, f16};

use crate::x86_common::{rms_inv_scale, EXP_HI, EXP_LO, EXP_P, LN2_HI, LN2_LO, LOG2E};
use crate::{BinOp, UnOp, Weights};

const L: usize = 16;

/// Mask of the low `n` lanes (`n <= 16`).
#[inline(always)]
fn tail_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// Applies `$body` (an expression in `$x`, `$y`) to 16-lane chunks of `a` and `b`,
/// storing into `d`; `d` may equal `a` or `b` (each chunk is read before it is written).
macro_rules! map2 {
    ($d:expr, $a:expr, $b:expr, $n:expr, |$x:ident, $y:ident| $body:expr) => {{
        let (d, a, b, n): (*mut f32, *const f32, *const f32, usize) = ($d, $a, $b, $n);
        let mut i = 0;
        while i + L <= n {
            let $x = _mm512_loadu_ps(a.add(i));
            let $y = _mm512_loadu_ps(b.add(i));
            _mm512_storeu_ps(d.add(i), $body);
            i += L;
        }
        if i < n {
            let m = tail_mask(n - i);
            let $x = _mm512_maskz_loadu_ps(m, a.add(i));
            let $y = _mm512_maskz_loadu_ps(m, b.add(i));
            _mm512_mask_storeu_ps(d.add(i), m, $body);
        }
    }};
}

/// Like `map2!` for one input.
macro_rules! map1 {
    ($d:expr, $a:expr, $n:expr, |$x:ident| $body:expr) => {{
        let (d, a, n): (*mut f32, *const f32, usize) = ($d, $a, $n);
        let mut i = 0;
        while i + L <= n {
            let $x = _mm512_loadu_ps(a.add(i));
            _mm512_storeu_ps(d.add(i), $body);
            i += L;
        }
        if i < n {
            let m = tail_mask(n - i);
            let $x = _mm512_maskz_loadu_ps(m, a.add(i));
            _mm512_mask_storeu_ps(d.add(i), m, $body);
        }
    }};
}

/// `d[i] = a[i] op b[i]` for `i < n`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn binary(op: BinOp, d: *mut f32, a: *const f32, b: *const f32, n: usize) {
    match op {
        BinOp::Add => map2!(d, a, b, n, |x, y| _mm512_add_ps(x, y)),
        BinOp::Sub => map2!(d, a, b, n, |x, y| _mm512_sub_ps(x, y)),
        BinOp::Mul => map2!(d, a, b, n, |x, y| _mm512_mul_ps(x, y)),
        // maxps returns its second operand unless the first is greater: `scalar::max_f32`.
        BinOp::Max => map2!(d, a, b, n, |x, y| _mm512_max_ps(x, y)),
    }
}

/// `d[i] = fma(a[i], b[i], d[i])`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn fma(d: *mut f32, a: *const f32, b: *const f32, n: usize) {
    let mut i = 0;
    while i + L <= n {
        let v = _mm512_fmadd_ps(
            _mm512_loadu_ps(a.add(i)),
            _mm512_loadu_ps(b.add(i)),
            _mm512_loadu_ps(d.add(i)),
        );
        _mm512_storeu_ps(d.add(i), v);
        i += L;
    }
    if i < n {
        let m = tail_mask(n - i);
        let v = _mm512_fmadd_ps(
            _mm512_maskz_loadu_ps(m, a.add(i)),
            _mm512_maskz_loadu_ps(m, b.add(i)),
            _mm512_maskz_loadu_ps(m, d.add(i)),
        );
        _mm512_mask_storeu_ps(d.add(i), m, v);
    }
}

/// `d[i] = a[i] * s`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn scale(d: *mut f32, a: *const f32, s: f32, n: usize) {
    let sv = _mm512_set1_ps(s);
    map1!(d, a, n, |x| _mm512_mul_ps(x, sv));
}

/// `e^x` per lane (see `x86_common.rs` for the algorithm and its error bound).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn exp16(x: __m512) -> __m512 {
    let xc = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(EXP_LO)),
        _mm512_set1_ps(EXP_HI),
    );
    // Round to nearest, suppress exceptions.
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(xc, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_P[0]);
    for &c in &EXP_P[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    let y = _mm512_add_ps(y, _mm512_set1_ps(1.0));
    // y * 2^n with a single rounding (handles overflow to inf and subnormal results).
    let y = _mm512_scalef_ps(y, n);
    // The clamp turned NaN into a number; give NaN back.
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_mov_ps(y, nan, x)
}

/// `silu(x) = x / (1 + e^-x)`, computed as `(x >= 0 ? x : x e) / (1 + e)` with
/// `e = e^-|x|`, so `e` never overflows and large negative inputs keep their tiny value.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn silu16(x: __m512) -> __m512 {
    let sign = _mm512_set1_epi32(i32::MIN);
    let neg_abs = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(x), sign));
    let e = exp16(neg_abs);
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
    let num = _mm512_mask_mul_ps(x, negative, x, e);
    _mm512_div_ps(num, _mm512_add_ps(_mm512_set1_ps(1.0), e))
}

/// `1 / sqrt(x)`: correctly rounded sqrt, then a correctly rounded division.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn rsqrt16(x: __m512) -> __m512 {
    _mm512_div_ps(_mm512_set1_ps(1.0), _mm512_sqrt_ps(x))
}

/// `d[i] = op(a[i])`; `d` may equal `a`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn unary(op: UnOp, d: *mut f32, a: *const f32, n: usize) {
    match op {
        UnOp::Exp => map1!(d, a, n, |x| exp16(x)),
        UnOp::Silu => map1!(d, a, n, |x| silu16(x)),
        UnOp::Rsqrt => map1!(d, a, n, |x| rsqrt16(x)),
    }
}

/// `d[i] = silu(g[i]) * u[i]`; `d` may equal `g` or `u`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn swiglu(d: *mut f32, g: *const f32, u: *const f32, n: usize) {
    map2!(d, g, u, n, |x, y| _mm512_mul_ps(silu16(x), y));
}

/// Sum of the 16 lanes in the fixed tree of `x86_common.rs`:
/// `s8[i] = v[i] + v[i+8]`, `s4[i] = s8[i] + s8[i+4]`, `s2[i] = s4[i] + s4[i+2]`, `s2[0] + s2[1]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn hsum(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let s8 = _mm256_add_ps(lo, hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// Max of the 16 lanes (same tree as `hsum`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn hmax(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let s8 = _mm256_max_ps(lo, hi);
    let s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_max_ss(s2, _mm_movehdup_ps(s2)))
}

/// Vector sum (`SQ = false`) or sum of squares (`SQ = true`) of `n` floats at `a`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn sum_vec<const SQ: bool>(a: *const f32, n: usize) -> __m512 {
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    while i + L <= n {
        let x = _mm512_loadu_ps(a.add(i));
        acc = if SQ {
            _mm512_fmadd_ps(x, x, acc)
        } else {
            _mm512_add_ps(acc, x)
        };
        i += L;
    }
    if i < n {
        let x = _mm512_maskz_loadu_ps(tail_mask(n - i), a.add(i));
        acc = if SQ {
            _mm512_fmadd_ps(x, x, acc)
        } else {
            _mm512_add_ps(acc, x)
        };
    }
    acc
}

/// Lane-wise max of `n` floats at `a` (lanes never loaded stay -inf).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn max_vec(a: *const f32, n: usize) -> __m512 {
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut acc = ninf;
    let mut i = 0;
    while i + L <= n {
        acc = _mm512_max_ps(_mm512_loadu_ps(a.add(i)), acc);
        i += L;
    }
    if i < n {
        acc = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tail_mask(n - i), a.add(i)), acc);
    }
    acc
}

/// `d[r] = sum of row r` of the `rows x cols` matrix `a` (lengths checked by the caller).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn row_sum(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (r, d) in d.iter_mut().enumerate().take(rows) {
        *d = hsum(sum_vec::<false>(a.as_ptr().add(r * cols), cols));
    }
}

/// `d[r] = sum of squares of row r`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn row_sumsq(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (r, d) in d.iter_mut().enumerate().take(rows) {
        *d = hsum(sum_vec::<true>(a.as_ptr().add(r * cols), cols));
    }
}

/// `d[r] = max of row r`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn row_max(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (r, d) in d.iter_mut().enumerate().take(rows) {
        *d = hmax(max_vec(a.as_ptr().add(r * cols), cols));
    }
}

/// Per row: `out = (x * s) * w` with `s = 1 / sqrt(sumsq / dim + eps)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn rmsnorm(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    rows: usize,
    dim: usize,
    eps: f32,
) {
    for r in 0..rows {
        let xr = x.as_ptr().add(r * dim);
        let s = _mm512_set1_ps(rms_inv_scale(hsum(sum_vec::<true>(xr, dim)), dim, eps));
        map2!(
            out.as_mut_ptr().add(r * dim),
            xr,
            w.as_ptr(),
            dim,
            |xv, wv| _mm512_mul_ps(_mm512_mul_ps(xv, s), wv)
        );
    }
}

/// In place, per row: `x = exp(x - max) * (1 / sum)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn softmax_rows(x: &mut [f32], rows: usize, cols: usize) {
    for r in 0..rows {
        let p = x.as_mut_ptr().add(r * cols);
        let mv = _mm512_set1_ps(hmax(max_vec(p, cols)));
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i + L <= cols {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), mv));
            _mm512_storeu_ps(p.add(i), e);
            acc = _mm512_add_ps(acc, e);
            i += L;
        }
        if i < cols {
            let m = tail_mask(cols - i);
            let e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), mv));
            _mm512_mask_storeu_ps(p.add(i), m, e);
            acc = _mm512_mask_add_ps(acc, m, acc, e);
        }
        let inv = _mm512_set1_ps(1.0 / hsum(acc));
        map1!(p, p, cols, |v| _mm512_mul_ps(v, inv));
    }
}

/// Rope, interleaved pairs `(2i, 2i + 1)`, for pairs `[pair0, pair0 + cos.len())` of each head.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn rope_interleaved(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pair0: usize,
    cos: &[f32],
    sin: &[f32],
) {
    let np = cos.len().min(sin.len());
    // Lane 2j and 2j+1 both take table entry j.
    let dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    // Sign bit on even lanes: they take -sin.
    let neg_even = _mm512_setr_epi32(
        i32::MIN,
        0,
        i32::MIN,
        0,
        i32::MIN,
        0,
        i32::MIN,
        0,
        i32::MIN,
        0,
        i32::MIN,
        0,
        i32::MIN,
        0,
        i32::MIN,
        0,
    );
    for h in 0..n_heads {
        let base = x.as_mut_ptr().add(h * head_dim + 2 * pair0);
        let mut j = 0;
        while j < np {
            let r = (np - j).min(L / 2);
            let (pm, xm) = (tail_mask(r), tail_mask(2 * r));
            let c = _mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(pm, cos.as_ptr().add(j)));
            let s = _mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(pm, sin.as_ptr().add(j)));
            let s = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(s), neg_even));
            let xv = _mm512_maskz_loadu_ps(xm, base.add(2 * j));
            let swapped = _mm512_permute_ps::<0b10_11_00_01>(xv);
            // even: fma(x0, c, x1 * -s) ; odd: fma(x1, c, x0 * s)  (= scalar::rope_rotate)
            let y = _mm512_fmadd_ps(xv, c, _mm512_mul_ps(swapped, s));
            _mm512_mask_storeu_ps(base.add(2 * j), xm, y);
            j += L / 2;
        }
    }
}

/// Rope, half-split pairs `(i, i + head_dim / 2)`, for pairs `[pair0, pair0 + cos.len())`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn rope_halfsplit(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pair0: usize,
    cos: &[f32],
    sin: &[f32],
) {
    let np = cos.len().min(sin.len());
    let half = head_dim / 2;
    for h in 0..n_heads {
        let lo_p = x.as_mut_ptr().add(h * head_dim + pair0);
        let hi_p = lo_p.add(half);
        let mut j = 0;
        while j < np {
            let m = tail_mask((np - j).min(L));
            let c = _mm512_maskz_loadu_ps(m, cos.as_ptr().add(j));
            let s = _mm512_maskz_loadu_ps(m, sin.as_ptr().add(j));
            let lo = _mm512_maskz_loadu_ps(m, lo_p.add(j));
            let hi = _mm512_maskz_loadu_ps(m, hi_p.add(j));
            let lo2 = _mm512_fmsub_ps(lo, c, _mm512_mul_ps(hi, s));
            let hi2 = _mm512_fmadd_ps(hi, c, _mm512_mul_ps(lo, s));
            _mm512_mask_storeu_ps(lo_p.add(j), m, lo2);
            _mm512_mask_storeu_ps(hi_p.add(j), m, hi2);
            j += L;
        }
    }
}

/// Loading 16 weights as f32 (exact conversion for every dtype).
trait WLoad: Copy {
    /// 16 consecutive weights.
    unsafe fn load(p: *const Self) -> __m512;
    /// The low lanes of `m`; other lanes are 0 and their memory is not touched.
    unsafe fn load_mask(p: *const Self, m: __mmask16) -> __m512;
}

impl WLoad for f32 {
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
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
            _mm256_loadu_si256(p as *const __m256i),
        )))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn load_mask(p: *const bf16, m: __mmask16) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
            _mm256_maskz_loadu_epi16(m, p as *const i16),
        )))
    }
}

pub static PF_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// GEMV step with software prefetch of each weight row `pf` elements ahead.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn gemv8<W: WLoad>(a: *const f32, b: *const W, c: *mut f32, k: usize, pf: usize) {
    const NR: usize = NR_GEMV;
    let mut acc = [_mm512_setzero_ps(); NR];
    let mut p = 0;
    while p + L <= k {
        for j in 0..NR {
            _mm_prefetch::<_MM_HINT_T0>(b.add(j * k + p + pf) as *const i8);
        }
        let av = _mm512_loadu_ps(a.add(p));
        for j in 0..NR {
            acc[j] = _mm512_fmadd_ps(av, W::load(b.add(j * k + p)), acc[j]);
        }
        p += L;
    }
    if p < k {
        let m = tail_mask(k - p);
        let av = _mm512_maskz_loadu_ps(m, a.add(p));
        for j in 0..NR {
            acc[j] = _mm512_fmadd_ps(av, W::load_mask(b.add(j * k + p), m), acc[j]);
        }
    }
    for j in 0..NR {
        *c.add(j) += hsum(acc[j]);
    }
}

/// One register tile: `C[i, j] += dot(A row i, B row j)` for `i < MR`, `j < NR`, with `A`
/// rows `k` apart from `a`, `B` rows `k` apart from `b`, `C` rows `ldc` apart from `c`.
/// One accumulator per output (the order contract of `x86_common.rs`); each `B` vector
/// loaded is used by `MR` rows of `A`, each `A` vector by `NR` rows of `B`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn tile<W: WLoad, const MR: usize, const NR: usize>(
    a: *const f32,
    b: *const W,
    c: *mut f32,
    k: usize,
    ldc: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let mut p = 0;
    while p + L <= k {
        let mut bv = [_mm512_setzero_ps(); NR];
        for j in 0..NR {
            bv[j] = W::load(b.add(j * k + p));
        }
        for i in 0..MR {
            let av = _mm512_loadu_ps(a.add(i * k + p));
            for j in 0..NR {
                acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
            }
        }
        p += L;
    }
    if p < k {
        let m = tail_mask(k - p);
        let mut bv = [_mm512_setzero_ps(); NR];
        for j in 0..NR {
            bv[j] = W::load_mask(b.add(j * k + p), m);
        }
        for i in 0..MR {
            let av = _mm512_maskz_loadu_ps(m, a.add(i * k + p));
            for j in 0..NR {
                acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
            }
        }
    }
    for i in 0..MR {
        for j in 0..NR {
            *c.add(i * ldc + j) += hsum(acc[i][j]);
        }
    }
}

/// Register tile of the prefill path: 4 rows of `A` x 6 rows of `B` = 24 accumulators
/// (+ 6 B vectors + 1 A vector of the 32 zmm registers).
const MR: usize = 4;
const NR: usize = 6;
/// Rows of `B` per GEMV step (m = 1): 8 independent FMA chains, 8 streams.
const NR_GEMV: usize = 8;
/// Bytes of `A` kept hot in L2 (1 MiB on Zen 4) while every panel of `B` streams past.
const A_BLOCK_BYTES: usize = 384 * 1024;

/// `MR x nr` (or smaller) tile at `(i, j)`, `mr <= MR`, `nr <= NR`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn tile_edge<W: WLoad>(
    mr: usize,
    nr: usize,
    a: *const f32,
    b: *const W,
    c: *mut f32,
    k: usize,
    ldc: usize,
) {
    if nr == NR {
        match mr {
            4 => tile::<W, 4, NR>(a, b, c, k, ldc),
            3 => tile::<W, 3, NR>(a, b, c, k, ldc),
            2 => tile::<W, 2, NR>(a, b, c, k, ldc),
            _ => tile::<W, 1, NR>(a, b, c, k, ldc),
        }
        return;
    }
    for j in 0..nr {
        let (b, c) = (b.add(j * k), c.add(j));
        match mr {
            4 => tile::<W, 4, 1>(a, b, c, k, ldc),
            3 => tile::<W, 3, 1>(a, b, c, k, ldc),
            2 => tile::<W, 2, 1>(a, b, c, k, ldc),
            _ => tile::<W, 1, 1>(a, b, c, k, ldc),
        }
    }
}

/// `C (m x n, row stride n) += A (m x k) * B^T`, `B` the `n x k` rows at `b`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn gemm<W: WLoad>(c: *mut f32, a: *const f32, b: *const W, m: usize, n: usize, k: usize) {
    if m == 1 {
        // Decode: stream B once, 8 rows at a time.
        let mut j = 0;
        let pfb = PF_BYTES.load(std::sync::atomic::Ordering::Relaxed);
        let pf = pfb / std::mem::size_of::<W>();
        while j + NR_GEMV <= n {
            if pfb > 0 {
                gemv8::<W>(a, b.add(j * k), c.add(j), k, pf);
            } else {
                tile::<W, 1, NR_GEMV>(a, b.add(j * k), c.add(j), k, n);
            }
            j += NR_GEMV;
        }
        while j < n {
            tile::<W, 1, 1>(a, b.add(j * k), c.add(j), k, n);
            j += 1;
        }
        return;
    }
    // Prefill: a block of A rows stays in L2 while B streams past in panels of NR rows;
    // each panel stays in L1/L2 while every MR-row tile of the block uses it.
    let mc = (A_BLOCK_BYTES / (k * 4)).max(MR) / MR * MR;
    let mut i0 = 0;
    while i0 < m {
        let i1 = (i0 + mc).min(m);
        let mut j = 0;
        while j < n {
            let nr = NR.min(n - j);
            let mut i = i0;
            while i < i1 {
                let mr = MR.min(i1 - i);
                tile_edge::<W>(mr, nr, a.add(i * k), b.add(j * k), c.add(i * n + j), k, n);
                i += mr;
            }
            j += nr;
        }
        i0 = i1;
    }
}

/// `dot(a, b)`: the 1 x 1 tile's order, without the add to `C`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let k = a.len().min(b.len());
    let mut out = 0.0f32;
    tile::<f32, 1, 1>(a.as_ptr(), b.as_ptr(), &mut out, k, 1);
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
    }
}
