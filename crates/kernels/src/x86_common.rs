//! What the AVX2 and AVX-512 levels share: the exp algorithm's constants and its error
//! analysis, the accumulation-order contract of the dot products, and small scalar steps.
//!
//! ## exp
//! `e^x = 2^n * e^r` with `n = round(x log2 e)` and `r = x - n ln2` (two-step Cody-Waite
//! with fused multiply-adds, so `r` is within ~1e-10 relative of exact), `|r| <= ln2 / 2`.
//! `e^r ~= 1 + r + r^2 P(r)` with the degree-5 Cephes `expf` minimax polynomial
//! (relative error ~1.2e-7 on that interval before rounding); the `+ r` and `+ 1` are
//! separate roundings, which keeps the total at <= 2 ulps ([`crate::tolerance::EXP_MAX_ULP`],
//! checked on every f32 in [-104, 89] by `examples/exp_sweep.rs`). Scaling by `2^n` is
//! exact until the result is subnormal, and then a single rounding (AVX-512 `vscalefps`;
//! AVX2 multiplies by `2^(n - n/2)` and `2^(n/2)`, the first product exact), so subnormal
//! results stay within the same ulp bound. Inputs are clamped to [`EXP_LO`, `EXP_HI`]
//! first, giving +inf above ~88.72, 0 below ~-103.97; NaN is passed through.
//!
//! ## Dot products (matmul, dot)
//! Each output element has one vector accumulator of `L` lanes (16 or 8): lane `l` sums
//! `a[p] * b[p]` for `p = l (mod L)` in increasing `p`, one fused multiply-add per term
//! (the tail is loaded with zeros in the missing lanes: `acc + 0 * 0 == acc` exactly).
//! The lanes are then added in a fixed tree (`hsum`: halves, then quarters, ...), and the
//! sum is added to `C` once. Nothing in that order depends on `m`, on the tile an output
//! falls in, or on the row range, which is what makes decode, prefill and split
//! computations bit-identical. Error: at most `k / L + log2 L + 1` roundings deep,
//! well inside `gamma(k + 2)` ([`crate::tolerance::dot_bound`]).

/// Inputs above this give +inf (`e^88.8 > f32::MAX`); clamping keeps `n` in range.
pub(crate) const EXP_HI: f32 = 88.8;
/// Inputs below this give 0 (`e^-104 < 2^-150`, half the smallest subnormal).
pub(crate) const EXP_LO: f32 = -104.0;
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for `|n| <= 2^9` (9 significant bits).
pub(crate) const LN2_HI: f32 = f32::from_bits(0x3f31_8000); // 0.693359375 exactly
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes `expf` coefficients, highest degree first: `P(r)` in `e^r = 1 + r + r^2 P(r)`.
pub(crate) const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5, // Cephes writes 5.0000001201e-1, which rounds to 0.5 in f32
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln2_split_is_exact_enough() {
        // n * LN2_HI must be exact for the n range we use (|n| <= 151).
        assert_eq!(
            LN2_HI.to_bits() & 0x3fff,
            0,
            "LN2_HI must have few significant bits"
        );
        let ln2 = (LN2_HI as f64) + (LN2_LO as f64);
        assert!((ln2 - std::f64::consts::LN_2).abs() < 1e-11);
    }
}
