//! vtpu-kernels: the D-pipe's dense tile math, as SIMD kernels over f32 slices.
//!
//! Tiles are row-major f32 matrices; weights may be f32, f16, bf16 or block-quantized
//! GGML data read in place from a GGUF file ([`Weights::Quant`], see [`quant`]: Q4_0,
//! Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, multiplied in integers like llama.cpp).
//! Every kernel exists at three levels ([`KernelLevel`]): AVX-512, AVX2 + FMA, and the
//! portable scalar reference (`scalar.rs`), which is also the specification the SIMD
//! levels are tested against with the derived bounds of [`tolerance`]. The level is
//! detected once at run time (never `-C target-cpu=native`); `VTPU_KERNELS=scalar|avx2|avx512`
//! or [`set_level`] force a lower one.
//!
//! Two ways to call: the free functions below use the process-wide level; a [`Kernels`]
//! value is bound to one level (what tests and benchmarks use to compare levels side
//! by side without touching global state).
//!
//! Errors: every entry point checks its slice lengths and shape parameters and returns
//! [`KernelError::ShapeMismatch`] naming the op, the operand, and expected vs got sizes.
//! No panic is reachable from bad lengths.
//!
//! Numerics guarantees worth knowing:
//! - add, sub, mul, max, fma, scale and rope are bit-identical at every level;
//! - at a SIMD level, each `matmul_bt` output element is computed in the same order
//!   whatever `m`, the row range `[n0, n1)` or its position in a tile, so decode (m = 1)
//!   and prefill (m > 1) agree bit for bit, and so does a split across threads; `dot`
//!   equals the 1 x 1 matmul;
//! - everything else is within the bounds of [`tolerance`] of the f64 reference;
//! - quantized matmuls are bit-identical at every level (scalar spec included), for any
//!   `m`, row range or tiling (`quant/dot_ref.rs` defines the exact f32 operations).

pub mod attention;
mod error;
pub mod ggml_math;
mod kernels;
mod level;
mod matmul_nn;
pub mod quant;
pub mod scalar;
pub mod tolerance;

#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx2_gemm;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_bf16;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_gemm;
#[cfg(target_arch = "x86_64")]
mod x86_common;

pub use error::{KernelError, Weights};
pub use kernels::Kernels;
pub use level::{
    bf16_products, detected, has_avx512_bf16, is_supported, level, set_bf16_products, set_level,
    KernelLevel,
};
pub use matmul_nn::{scalar_matmul_nn, scalar_matmul_nn_f16};
pub use quant::{
    dequantize_row, quantize_row, quantize_row_bf16, quantize_row_f16, quantize_row_q4_0,
    quantize_row_q4_1, quantize_row_q5_0, quantize_row_q5_1, quantize_row_q8_0, QuantType,
};

/// Elementwise binary ops sharing one kernel body per level (see [`scalar::binary`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Max,
}

/// Elementwise unary ops sharing one kernel body per level (see [`scalar::unary`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Exp,
    Silu,
    Rsqrt,
}

/// `d = a + b` elementwise. See [`Kernels::add`].
pub fn add(d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
    Kernels::current().add(d, a, b)
}
/// `d = a - b` elementwise.
pub fn sub(d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
    Kernels::current().sub(d, a, b)
}
/// `d = a * b` elementwise.
pub fn mul(d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
    Kernels::current().mul(d, a, b)
}
/// `d = max(a, b)` elementwise ([`scalar::max_f32`] semantics).
pub fn max(d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
    Kernels::current().max(d, a, b)
}
/// `d += a` elementwise.
pub fn add_assign(d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
    Kernels::current().add_assign(d, a)
}
/// `d *= a` elementwise.
pub fn mul_assign(d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
    Kernels::current().mul_assign(d, a)
}
/// `d += a * b` elementwise, fused (one rounding).
pub fn fma(d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
    Kernels::current().fma(d, a, b)
}
/// `d = a * s` elementwise.
pub fn scale(d: &mut [f32], a: &[f32], s: f32) -> Result<(), KernelError> {
    Kernels::current().scale(d, a, s)
}
/// `d *= s` elementwise.
pub fn scale_assign(d: &mut [f32], s: f32) -> Result<(), KernelError> {
    Kernels::current().scale_assign(d, s)
}
/// `d = e^a` elementwise (within [`tolerance::EXP_MAX_ULP`] ulps).
pub fn exp(d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
    Kernels::current().exp(d, a)
}
/// `d = a * sigmoid(a)` elementwise (within [`tolerance::silu_bound`]).
pub fn silu(d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
    Kernels::current().silu(d, a)
}
/// `d = 1 / sqrt(a)` elementwise, full precision (within [`tolerance::RSQRT_MAX_ULP`] ulps).
pub fn rsqrt(d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
    Kernels::current().rsqrt(d, a)
}
/// `d = silu(gate) * up` elementwise.
pub fn swiglu(d: &mut [f32], gate: &[f32], up: &[f32]) -> Result<(), KernelError> {
    Kernels::current().swiglu(d, gate, up)
}
/// `d[r] = sum of row r` of the row-major `rows x cols` matrix `a`.
pub fn row_sum(d: &mut [f32], a: &[f32], rows: usize, cols: usize) -> Result<(), KernelError> {
    Kernels::current().row_sum(d, a, rows, cols)
}
/// `d[r] = max of row r` (-inf for an empty row).
pub fn row_max(d: &mut [f32], a: &[f32], rows: usize, cols: usize) -> Result<(), KernelError> {
    Kernels::current().row_max(d, a, rows, cols)
}
/// `d[r] = sum of squares of row r`.
pub fn row_sumsq(d: &mut [f32], a: &[f32], rows: usize, cols: usize) -> Result<(), KernelError> {
    Kernels::current().row_sumsq(d, a, rows, cols)
}
/// `C (m x n) += A (m x k) * B^T`, `B` the `n x k` weights. See [`Kernels::matmul_bt`].
pub fn matmul_bt(
    c: &mut [f32],
    a: &[f32],
    b: Weights<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), KernelError> {
    Kernels::current().matmul_bt(c, a, b, m, n, k)
}
/// `matmul_bt` restricted to weight rows `[n0, n1)`; `c` is `m x (n1 - n0)`.
#[allow(clippy::too_many_arguments)] // the BLAS-like shape list is the clearest form
pub fn matmul_bt_rows(
    c: &mut [f32],
    a: &[f32],
    b: Weights<'_>,
    m: usize,
    n: usize,
    k: usize,
    n0: usize,
    n1: usize,
) -> Result<(), KernelError> {
    Kernels::current().matmul_bt_rows(c, a, b, m, n, k, n0, n1)
}
/// Per row: `out = x * weight / sqrt(mean(x^2) + eps)`.
pub fn rmsnorm(
    out: &mut [f32],
    x: &[f32],
    weight: &[f32],
    rows: usize,
    dim: usize,
    eps: f32,
) -> Result<(), KernelError> {
    Kernels::current().rmsnorm(out, x, weight, rows, dim, eps)
}
/// Interleaved rope (GGUF / llama.cpp): pairs `(2i, 2i + 1)`, `freq = theta^(-2i/head_dim)`.
pub fn rope_interleaved(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pos: usize,
    theta: f32,
) -> Result<(), KernelError> {
    Kernels::current().rope_interleaved(x, n_heads, head_dim, pos, theta)
}
/// Half-split rope (Hugging Face `rotate_half`): pairs `(i, i + head_dim / 2)`.
pub fn rope_halfsplit(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pos: usize,
    theta: f32,
) -> Result<(), KernelError> {
    Kernels::current().rope_halfsplit(x, n_heads, head_dim, pos, theta)
}
/// In place, per row: max-subtracted softmax.
pub fn softmax_rows(x: &mut [f32], rows: usize, cols: usize) -> Result<(), KernelError> {
    Kernels::current().softmax_rows(x, rows, cols)
}
/// Dot product.
pub fn dot(a: &[f32], b: &[f32]) -> Result<f32, KernelError> {
    Kernels::current().dot(a, b)
}
