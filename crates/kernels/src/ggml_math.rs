//! Elementwise math in the arithmetic of llama.cpp's CPU backend (ggml-cpu as vendored
//! in llama-cpp-python 0.3.36, built by GCC for AVX-512), where vtpu must agree with it
//! bit for bit to give its tokens (see `attention.rs` for why the last bit matters):
//!
//! - SwiGLU: `ggml_vec_swiglu_f32` computes `silu(g) * u` with `ggml_v_silu` on each full
//!   16-lane vector (`x / (1 + ggml_v_expf(0 - x))`, `ggml_v_expf` being ARM's optimized
//!   `expf` routine: a degree-5 polynomial and `vscalefps`) and with the C library's
//!   `expf` (`x / (1 + expf(-x))`) on the `n % 16` tail.
//!
//! The scalar functions are the specification; the AVX-512 one performs the same IEEE
//! operations lane by lane (a test checks bit equality).

/// `ggml_v_expf` (AVX-512F variant) on one lane.
pub fn v_expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // 0x1.715476p+0
    let n = z - r;
    // fnmadd(a, b, c) = c - a * b, fused.
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),                  // 0x1.7f7d1cp-20
        (-n).mul_add(f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    let u = b * b;
    let p1 = f32::from_bits(0x3c07_2010).mul_add(b, f32::from_bits(0x3d2b_9f17)); // 0x1.0e4020p-7, 0x1.573e2ep-5
    let p2 = f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)); // 0x1.555e66p-3, 0x1.fffdb6p-2
    let p3 = f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0); // 0x1.ffffecp-1
    let j = p1.mul_add(u, p2).mul_add(u, p3);
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    scalef(j, n)
}

/// `vscalefps` for an integral `n` with `|n| <= 192`: `j * 2^n`, rounded once.
fn scalef(j: f32, n: f32) -> f32 {
    // Exact in f64 (24-bit significand times a power of two in range), one rounding.
    (j as f64 * 2f64.powi(n as i32)) as f32
}

/// `ggml_v_silu` on one lane.
pub fn v_silu(x: f32) -> f32 {
    x / (1.0 + v_expf(0.0 - x))
}

/// `ggml_silu_f32` (the scalar tail).
pub fn silu_libm(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `d[i] = silu(g[i]) * u[i]` as `ggml_vec_swiglu_f32` on a row of `d.len()` elements.
pub fn swiglu_scalar(d: &mut [f32], g: &[f32], u: &[f32]) {
    let n = d.len().min(g.len()).min(u.len());
    let np = n & !15;
    for i in 0..n {
        let s = if i < np {
            v_silu(g[i])
        } else {
            silu_libm(g[i])
        };
        d[i] = s * u[i];
    }
}

/// In place: `g[i] = silu(g[i]) * u[i]`.
pub fn swiglu_assign_scalar(g: &mut [f32], u: &[f32]) {
    let n = g.len().min(u.len());
    let np = n & !15;
    for i in 0..n {
        let s = if i < np {
            v_silu(g[i])
        } else {
            silu_libm(g[i])
        };
        g[i] = s * u[i];
    }
}

/// [`swiglu_scalar`] with AVX-512F vectors on the 16-aligned part when available.
/// `g` may alias `d` (in place) through raw pointers.
///
/// # Safety
/// `d`, `g` and `u` must be valid for `n` elements (`g` may equal `d`).
pub unsafe fn swiglu_ptr(d: *mut f32, g: *const f32, u: *const f32, n: usize, simd: bool) {
    let np = n & !15;
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if simd && std::arch::is_x86_feature_detected!("avx512f") {
        avx512::swiglu(d, g, u, np);
        i = np;
    }
    let _ = simd;
    while i < n {
        let x = *g.add(i);
        let s = if i < np { v_silu(x) } else { silu_libm(x) };
        *d.add(i) = s * *u.add(i);
        i += 1;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// `ggml_v_expf` on 16 lanes (also the tiled attention's softmax).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn v_expf(x: __m512) -> __m512 {
        let r = _mm512_set1_ps(f32::from_bits(0x4b40_0000));
        let z = _mm512_fmadd_ps(x, _mm512_set1_ps(f32::from_bits(0x3fb8_aa3b)), r);
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(
            n,
            _mm512_set1_ps(f32::from_bits(0x35bf_be8e)),
            _mm512_fnmadd_ps(n, _mm512_set1_ps(f32::from_bits(0x3f31_7200)), x),
        );
        let d = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(
                    _mm512_set1_ps(f32::from_bits(0x3c07_2010)),
                    b,
                    _mm512_set1_ps(f32::from_bits(0x3d2b_9f17)),
                ),
                u,
                _mm512_fmadd_ps(
                    _mm512_set1_ps(f32::from_bits(0x3e2a_af33)),
                    b,
                    _mm512_set1_ps(f32::from_bits(0x3eff_fedb)),
                ),
            ),
            u,
            _mm512_fmadd_ps(
                _mm512_set1_ps(f32::from_bits(0x3f7f_fff6)),
                b,
                _mm512_set1_ps(1.0),
            ),
        );
        let res = _mm512_scalef_ps(j, n);
        if d == 0 {
            return res;
        }
        let zero = _mm512_setzero_ps();
        let alt = _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, zero),
            _mm512_set1_ps(f32::INFINITY),
            zero,
        );
        _mm512_mask_blend_ps(d, res, alt)
    }

    /// `n` a multiple of 16; pointers valid for `n` (`g` may equal `d`).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn swiglu(d: *mut f32, g: *const f32, u: *const f32, n: usize) {
        let one = _mm512_set1_ps(1.0);
        let mut i = 0;
        while i < n {
            let x = _mm512_loadu_ps(g.add(i));
            let e = v_expf(_mm512_sub_ps(_mm512_setzero_ps(), x));
            let s = _mm512_div_ps(x, _mm512_add_ps(one, e));
            _mm512_storeu_ps(d.add(i), _mm512_mul_ps(s, _mm512_loadu_ps(u.add(i))));
            i += 16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_polynomial_expf_is_close_to_libm_and_simd_matches_the_spec() {
        let mut x = -110.0f32;
        while x < 100.0 {
            let (a, b) = (v_expf(x), x.exp());
            if b.is_finite() && b > 1e-37 {
                // ARM's routine: within 1.46 + 0.5 ulp.
                assert!(((a - b) / b).abs() < 4.0 * f32::EPSILON, "{x}: {a} vs {b}");
            }
            x += 0.0371;
        }
        assert_eq!(v_expf(-200.0), 0.0);
        assert_eq!(v_expf(200.0), f32::INFINITY);
        let n = 16 * 7 + 5;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37)
            .collect();
        let u: Vec<f32> = (0..n)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1)
            .collect();
        let mut a = vec![0f32; n];
        let mut b = vec![0f32; n];
        swiglu_scalar(&mut a, &g, &u);
        // SAFETY: all three hold n elements.
        unsafe { swiglu_ptr(b.as_mut_ptr(), g.as_ptr(), u.as_ptr(), n, true) };
        for i in 0..n {
            assert_eq!(a[i].to_bits(), b[i].to_bits(), "{i}");
            let want = g[i] as f64 / (1.0 + (-(g[i] as f64)).exp()) * u[i] as f64;
            assert!(
                (a[i] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{i}"
            );
        }
        let mut c = g.clone();
        swiglu_assign_scalar(&mut c, &u);
        assert_eq!(c, a);
    }
}
