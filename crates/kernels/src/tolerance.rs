//! Named, derived tolerances for comparing kernels (and anything built on them) with
//! their references. Reusable by other crates: a layer test compares its fast path with
//! its f64 reference through these bounds instead of a blanket `1e-2`.
//!
//! Conventions: `u = 2^-24` is the unit roundoff of f32 (half an ulp at 1.0, `f32::EPSILON
//! / 2`). The classic bound for any summation order of `n` terms (Higham, "Accuracy and
//! Stability of Numerical Algorithms", ch. 3) is `|computed - exact| <= gamma(n) * sum |terms|`
//! with `gamma(n) = n u / (1 - n u)`. The kernels' references are f64 results rounded
//! once to f32, so a comparison with a reference adds at most one more `u` relative to
//! the reference's magnitude; the helpers below include that.
//!
//! Elementwise transcendental kernels are bounded in ulps ([`ulp_diff`]) against the f64
//! reference. Those bounds come from the error analysis in `x86_common.rs` and were
//! checked exhaustively (every f32 input in range, both SIMD levels) with
//! `examples/exp_sweep.rs`; the tests recheck them on random and special inputs.

/// Unit roundoff of f32: `2^-24`.
pub const U: f64 = f32::EPSILON as f64 / 2.0;

/// Max ulp distance of the SIMD `exp` from the correctly rounded result (the f64
/// reference). Range reduction + degree-5 Cephes polynomial + exact scaling by 2^n;
/// the polynomial alone is within ~1 ulp on `[-ln2/2, ln2/2]`. Subnormal results count
/// ulps of the subnormal spacing and stay inside the same bound.
///
/// Measured: 1 ulp at most over every f32 in [-104, 89], at both SIMD levels
/// (`examples/exp_sweep.rs`); the bound keeps one ulp of margin.
pub const EXP_MAX_ULP: u32 = 2;

/// Max ulp distance of the SIMD `silu` from the f64 reference when the result is a
/// normal number: exp (2 ulp, damped by `e/(1+e)`) plus three roundings (`1 + e`,
/// `a * e`, the division). See [`silu_bound`] for the subnormal-intermediate floor.
///
/// Measured: 3 ulp at most over every f32 in [-87, 120] (normal results).
pub const SILU_MAX_ULP: u32 = 4;

/// Max ulp distance of the SIMD `rsqrt` (correctly rounded sqrt, then a correctly
/// rounded division) from the f64 reference: two roundings of `u` each.
///
/// Measured: 1 ulp at most over every positive finite f32.
pub const RSQRT_MAX_ULP: u32 = 2;

/// `gamma(n) = n u / (1 - n u)`, the relative error bound of an `n`-term sum (or dot
/// product) in f32 in any order. Infinite once `n u >= 1` (no bound).
pub fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U;
    if nu >= 1.0 {
        f64::INFINITY
    } else {
        nu / (1.0 - nu)
    }
}

/// Distance between two f32 values in units in the last place: the number of
/// representable f32 values between them, counting across zero (`+0` and `-0` are 0
/// apart). Both NaN -> 0; exactly one NaN -> `u32::MAX`.
pub fn ulp_diff(a: f32, b: f32) -> u32 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0
        } else {
            u32::MAX
        };
    }
    // Map the sign-magnitude bit pattern onto a monotone integer line.
    fn key(x: f32) -> i64 {
        let bits = x.to_bits() as i32 as i64;
        if bits < 0 {
            -(bits & 0x7fff_ffff)
        } else {
            bits
        }
    }
    (key(a) - key(b)).unsigned_abs().min(u32::MAX as u64) as u32
}

/// Bound on `|computed - reference|` for a length-`n` dot product or sum computed in f32
/// in any order (plus the rounding of the f64 reference and of one extra add, e.g. to an
/// existing `C` value), where `abs_sum = sum |a_i * b_i|` (+ `|c|` if accumulated into `c`).
pub fn dot_bound(n: usize, abs_sum: f64) -> f64 {
    gamma(n + 2) * abs_sum
}

/// Unit roundoff of bf16 (8 significant bits, round to nearest even): `2^-8`.
pub const U_BF16: f64 = 1.0 / 256.0;

/// Bound on `|computed - exact|` for one output of the bf16-products `matmul_bt`
/// ([`crate::Kernels::with_bf16_products`]) against the exact f64 dot product of the
/// unrounded f32 activations and the bf16 weights: rounding each activation to bf16
/// moves each product by at most `U_BF16` relative; the bf16 x bf16 products are exact in
/// f32 and the f32 accumulation adds [`dot_bound`] (of the slightly larger rounded sum).
/// `abs_sum = sum |a_i * b_i|` (+ `|c|`), `abs_b = sum |b_i|`: AVX-512 BF16 flushes
/// subnormal activations and subnormal partial sums to zero, an absolute error of at
/// most `2^-126` per activation (times `|b_i|`) and per step.
pub fn bf16_products_bound(n: usize, abs_sum: f64, abs_b: f64) -> f64 {
    let tiny = f64::from(f32::MIN_POSITIVE);
    U_BF16 * abs_sum + gamma(n + 2) * (1.0 + U_BF16) * abs_sum + tiny * (n as f64 + 2.0 + abs_b)
}

/// Bound for a sum of squares of length `n` (one rounding more than [`dot_bound`] when
/// the squares are not fused). `sumsq` is the exact (f64) sum of squares.
pub fn sumsq_bound(n: usize, sumsq: f64) -> f64 {
    gamma(n + 3) * sumsq
}

/// Bound for one element of `rmsnorm` over rows of length `dim`, given the f64
/// reference output `r`: the f32 sum of squares is off by `gamma(dim)` relative, which
/// the inverse square root halves; then the scale's rounding to f32 and the two f32
/// products add `u` each, plus the reference's rounding (and one spare `u`).
pub fn rmsnorm_bound(dim: usize, r: f32) -> f64 {
    (0.5 * gamma(dim + 1) + 5.0 * U) * r.abs() as f64
}

/// Bound for `silu(a)` against the f64 reference `r`: [`SILU_MAX_ULP`] ulps of `r`, plus
/// an absolute floor for inputs below about -87 where `e^a` is subnormal, has lost
/// relative precision, and is then multiplied by `|a|`: `4 (|a| + 1) 2^-149`.
pub fn silu_bound(a: f32, r: f32) -> f64 {
    ulp_of(r) * SILU_MAX_ULP as f64 + 4.0 * (a.abs() as f64 + 1.0) * f64::from(f32::from_bits(1))
}

/// Bound for `swiglu(g, u) = silu(g) * u` against the f64 reference `r`: the silu bound
/// scaled by `|u|` plus one more rounding.
pub fn swiglu_bound(g: f32, up: f32, r: f32) -> f64 {
    silu_bound(g, scalar_silu(g)) * up.abs() as f64 + ulp_of(r)
}

fn scalar_silu(a: f32) -> f32 {
    crate::scalar::silu_f32(a)
}

/// Size of one ulp at `x` (the spacing of f32 values around `|x|`); the smallest
/// subnormal for zero and subnormals, infinity for infinities and NaN.
pub fn ulp_of(x: f32) -> f64 {
    let x = x.abs();
    if !x.is_finite() {
        return f64::INFINITY;
    }
    let next = f32::from_bits(x.to_bits() + 1);
    if next.is_infinite() {
        // x == f32::MAX: the spacing below infinity.
        return (x - f32::from_bits(x.to_bits() - 1)) as f64;
    }
    (next - x) as f64
}

/// Bound for one softmax output against the f64 reference `r`, in a row of length
/// `cols` whose maximum is `max`, for the input `xi`. Element `i` is `e_i / S` where
/// `e_i = exp(x_i - max)`: `x_i - max` rounds (relative error of `e_i` up to
/// `u |x_i - max|`), `exp` adds [`EXP_MAX_ULP`] ulps (`< 2 EXP_MAX_ULP u` relative), the sum
/// `S` carries `gamma(cols)` plus the weighted input errors (`sum_j e_j u |x_j - max| <=
/// cols u / e` since `t e^-t <= 1/e`, and `S >= 1`), and the scaling by `1/S` rounds twice.
pub fn softmax_bound(cols: usize, max: f32, xi: f32, r: f32) -> f64 {
    let exp_rel = 2.0 * EXP_MAX_ULP as f64 * U;
    // A masked (-inf) input gives exactly 0 at every level: no error term.
    let d = if xi == max || !xi.is_finite() {
        0.0
    } else {
        (xi as f64 - max as f64).abs()
    };
    let rel = U * d + 2.0 * exp_rel + gamma(cols) + cols as f64 * U / std::f64::consts::E + 3.0 * U;
    rel * r.abs() as f64 + f64::from(f32::from_bits(1))
}

/// Checks `|got - want| <= bound` (and that NaN-ness agrees); returns a description of
/// the failure otherwise. For use in tests of this and other crates.
pub fn check_close(what: &str, got: f32, want: f32, bound: f64) -> Result<(), String> {
    if got.is_nan() && want.is_nan() {
        return Ok(());
    }
    if got == want {
        return Ok(()); // also covers equal infinities
    }
    let err = (got as f64 - want as f64).abs();
    if err <= bound {
        Ok(())
    } else {
        Err(format!(
            "{what}: got {got:e}, want {want:e}, |err| = {err:e} > bound {bound:e} ({} ulp apart)",
            ulp_diff(got, want)
        ))
    }
}

/// Checks that `got` is within `max_ulp` ulps of `want` (NaN matches NaN).
pub fn check_ulps(what: &str, got: f32, want: f32, max_ulp: u32) -> Result<(), String> {
    let d = ulp_diff(got, want);
    if d <= max_ulp {
        Ok(())
    } else {
        Err(format!(
            "{what}: got {got:e} ({:#010x}), want {want:e} ({:#010x}): {d} ulp > {max_ulp}",
            got.to_bits(),
            want.to_bits()
        ))
    }
}
