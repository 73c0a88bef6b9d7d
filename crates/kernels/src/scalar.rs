//! Scalar references: the specification of every kernel, and the `Scalar` level.
//!
//! Each function here is the obviously-correct definition the SIMD levels are tested
//! against. Where an op has one exactly-rounded f32 answer (add, sub, mul, max, fma,
//! scale, and the rope rotation as defined below) the reference computes it in f32 and
//! the SIMD levels must match bit for bit. Where it does not (exp, silu, rsqrt, sums, dot
//! products, norms, softmax) the reference computes in f64 and rounds once to f32, so it
//! is within about half an f32 ulp of the exact answer; the SIMD levels are held to the
//! bounds in [`crate::tolerance`].
//!
//! Callers have already checked every length (see `kernels.rs`); the functions here only
//! use iterators and `zip`, so they cannot index out of bounds anyway.

use crate::{BinOp, UnOp};

/// `max` as x86 `maxps` defines it (and as the SIMD levels compute it): `a` if `a > b`,
/// else `b`. So a NaN in either operand yields `b`, and `max(-0.0, +0.0)` is `+0.0` while
/// `max(+0.0, -0.0)` is `-0.0`.
#[inline]
pub fn max_f32(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

#[inline]
fn binop(op: BinOp, a: f32, b: f32) -> f32 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Max => max_f32(a, b),
    }
}

/// `d[i] = a[i] op b[i]`.
pub fn binary(op: BinOp, d: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
        *d = binop(op, a, b);
    }
}

/// `d[i] = d[i] op a[i]`.
pub fn binary_assign(op: BinOp, d: &mut [f32], a: &[f32]) {
    for (d, &a) in d.iter_mut().zip(a) {
        *d = binop(op, *d, a);
    }
}

/// `d[i] += a[i] * b[i]` with one rounding (fused multiply-add).
pub fn fma(d: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
        *d = a.mul_add(b, *d);
    }
}

/// `d[i] = a[i] * s`.
pub fn scale(d: &mut [f32], a: &[f32], s: f32) {
    for (d, &a) in d.iter_mut().zip(a) {
        *d = a * s;
    }
}

/// `d[i] *= s`.
pub fn scale_assign(d: &mut [f32], s: f32) {
    for d in d.iter_mut() {
        *d *= s;
    }
}

/// e^a, computed in f64 and rounded once.
#[inline]
pub fn exp_f32(a: f32) -> f32 {
    (a as f64).exp() as f32
}

/// a * sigmoid(a) = a / (1 + e^-a), computed in f64.
#[inline]
fn silu_f64(a: f32) -> f64 {
    let a = a as f64;
    a / (1.0 + (-a).exp())
}

/// silu(a) = a * sigmoid(a), computed in f64 and rounded once.
#[inline]
pub fn silu_f32(a: f32) -> f32 {
    silu_f64(a) as f32
}

/// 1 / sqrt(a), computed in f64 and rounded once.
#[inline]
pub fn rsqrt_f32(a: f32) -> f32 {
    (1.0 / (a as f64).sqrt()) as f32
}

#[inline]
fn unop(op: UnOp, a: f32) -> f32 {
    match op {
        UnOp::Exp => exp_f32(a),
        UnOp::Silu => silu_f32(a),
        UnOp::Rsqrt => rsqrt_f32(a),
    }
}

/// `d[i] = op(a[i])`.
pub fn unary(op: UnOp, d: &mut [f32], a: &[f32]) {
    for (d, &a) in d.iter_mut().zip(a) {
        *d = unop(op, a);
    }
}

/// `d[i] = op(d[i])`.
pub fn unary_assign(op: UnOp, d: &mut [f32]) {
    for d in d.iter_mut() {
        *d = unop(op, *d);
    }
}

/// `d[i] = silu(gate[i]) * up[i]`, computed in f64 and rounded once.
pub fn swiglu(d: &mut [f32], gate: &[f32], up: &[f32]) {
    // llama.cpp's arithmetic (see `ggml_math`), the one model outputs must agree with.
    crate::ggml_math::swiglu_scalar(d, gate, up)
}

/// `d[i] = silu(d[i]) * up[i]`.
pub fn swiglu_assign(d: &mut [f32], up: &[f32]) {
    crate::ggml_math::swiglu_assign_scalar(d, up)
}

/// Sum of a row in f64.
fn sum_f64(row: &[f32]) -> f64 {
    row.iter().map(|&x| x as f64).sum()
}

/// Sum of squares of a row in f64.
fn sumsq_f64(row: &[f32]) -> f64 {
    row.iter().map(|&x| (x as f64) * (x as f64)).sum()
}

/// Rows of a `rows x cols` matrix, with an empty row per output when `cols == 0`.
fn rows_of(a: &[f32], rows: usize, cols: usize) -> impl Iterator<Item = &[f32]> {
    (0..rows).map(move |r| &a[r * cols..(r + 1) * cols])
}

/// `d[r] = sum_c a[r, c]` (f64 accumulation; an empty row sums to 0).
pub fn row_sum(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (d, row) in d.iter_mut().zip(rows_of(a, rows, cols)) {
        *d = sum_f64(row) as f32;
    }
}

/// `d[r] = sum_c a[r, c]^2` (f64 accumulation).
pub fn row_sumsq(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (d, row) in d.iter_mut().zip(rows_of(a, rows, cols)) {
        *d = sumsq_f64(row) as f32;
    }
}

/// `d[r] = max_c a[r, c]` folded with [`max_f32`] from `-inf` (an empty row gives -inf).
pub fn row_max(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (d, row) in d.iter_mut().zip(rows_of(a, rows, cols)) {
        *d = row.iter().fold(f32::NEG_INFINITY, |m, &x| max_f32(x, m));
    }
}

/// Dot product in f64, rounded once.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_f64(a, b.iter().map(|&x| x as f64)) as f32
}

fn dot_f64(a: &[f32], b: impl Iterator<Item = f64>) -> f64 {
    a.iter().zip(b).map(|(&x, y)| x as f64 * y).sum()
}

/// `C[i, j] += sum_p A[i, p] * B[j, p]` for output columns `j` in `[n0, n1)` (stored at
/// column `j - n0` of the `m x (n1 - n0)` matrix `c`), with `b` an `n x k` row-major
/// matrix of any weight dtype. The dot product and the add to `C` are done in f64 and
/// rounded once. `k == 0` leaves `C` unchanged. Quantized weights instead follow their
/// own specification (activations quantized, integer block dots, `quant/dot_ref.rs`);
/// quantized `b` that is not `n1` whole rows leaves `C` unchanged.
#[allow(clippy::too_many_arguments)] // the BLAS-like shape list is the clearest form
pub fn matmul_bt_rows(
    c: &mut [f32],
    a: &[f32],
    b: crate::Weights<'_>,
    m: usize,
    k: usize,
    n0: usize,
    n1: usize,
) {
    if k == 0 {
        return;
    }
    if let crate::Weights::Quant { qtype, data } = b {
        // The quantized spec: activations quantized, integer block dots (`quant/dot_ref.rs`).
        // A malformed `data` (not `n1` whole rows) leaves C unchanged instead of panicking.
        if data.len() >= qtype.row_bytes(k).unwrap_or(usize::MAX).saturating_mul(n1) {
            let imp = crate::quant::QuantImpl::Scalar;
            crate::quant::matmul_rows(imp, c, a, qtype, data, m, k, n0, n1);
        }
        return;
    }
    let w = n1 - n0;
    for i in 0..m {
        let a_row = &a[i * k..(i + 1) * k];
        for j in n0..n1 {
            let row = j * k..(j + 1) * k;
            let d = match b {
                crate::Weights::F32(b) => dot_f64(a_row, b[row].iter().map(|&x| x as f64)),
                crate::Weights::F16(b) => dot_f64(a_row, b[row].iter().map(|x| x.to_f64())),
                crate::Weights::BF16(b) => dot_f64(a_row, b[row].iter().map(|x| x.to_f64())),
                crate::Weights::Quant { .. } => 0.0, // handled above
            };
            let cij = &mut c[i * w + (j - n0)];
            *cij = (*cij as f64 + d) as f32;
        }
    }
}

/// Per row: `out = x * weight / sqrt(mean(x^2) + eps)`, all in f64, rounded once.
pub fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], rows: usize, dim: usize, eps: f32) {
    // llama.cpp's `ggml_compute_forward_rms_norm_f32` (+ the fused or separate MUL):
    // squares rounded to f32 and summed in f64 in order, the mean rounded to f32,
    // `scale = 1 / sqrtf(mean + eps)`, `y = x * scale * w` left to right. Models must
    // agree with llama.cpp in the last bit (see `attention.rs`), so this is the spec.
    for (r, row) in rows_of(x, rows, dim).enumerate() {
        let mut sum = 0f64;
        for &v in row {
            sum += (v * v) as f64;
        }
        let mean = (sum / dim as f64) as f32;
        let scale = 1.0f32 / (mean + eps).sqrt();
        let o = &mut out[r * dim..(r + 1) * dim];
        for ((o, &x), &w) in o.iter_mut().zip(row).zip(weight) {
            *o = x * scale * w;
        }
    }
}

/// [`rmsnorm`] four rows at a time: each row's sum of squares is the same sequential
/// f64 chain (so the same bits), but four chains run side by side instead of one after
/// the other waiting on the adder's latency.
pub fn rmsnorm_rows4(
    out: &mut [f32],
    x: &[f32],
    weight: &[f32],
    rows: usize,
    dim: usize,
    eps: f32,
) {
    let quads = rows / 4;
    for q in 0..quads {
        let r0 = 4 * q;
        let rs: [&[f32]; 4] = std::array::from_fn(|i| &x[(r0 + i) * dim..(r0 + i + 1) * dim]);
        let mut sum = [0f64; 4];
        #[allow(clippy::needless_range_loop)] // column-major walk over four rows
        for c in 0..dim {
            for i in 0..4 {
                let v = rs[i][c];
                sum[i] += (v * v) as f64;
            }
        }
        for i in 0..4 {
            let mean = (sum[i] / dim as f64) as f32;
            let scale = 1.0f32 / (mean + eps).sqrt();
            let o = &mut out[(r0 + i) * dim..(r0 + i + 1) * dim];
            for ((o, &x), &w) in o.iter_mut().zip(rs[i]).zip(weight) {
                *o = x * scale * w;
            }
        }
    }
    let done = quads * 4;
    rmsnorm(
        &mut out[done * dim..],
        &x[done * dim..],
        weight,
        rows - done,
        dim,
        eps,
    );
}

/// Rope angle table for pairs `[pair0, pair0 + cos.len())`: `cos[j]`, `sin[j]` of the
/// angle of pair `i = pair0 + j` at position `pos`, as llama.cpp's `ggml_rope_cache_init`
/// computes it: `theta_scale = powf(theta, -2.0f / head_dim)`, the angle of pair 0 is
/// `(float) pos` and each next pair's is the previous one times `theta_scale` (in f32),
/// then `cosf` / `sinf`. Every level uses this table, so the rotations below are
/// bit-identical across levels; at position 4096 the f32 angle is ~1e-4 rad from the
/// exact one, which is what llama.cpp (and so its tokens) sees.
pub fn rope_table(
    cos: &mut [f32],
    sin: &mut [f32],
    head_dim: usize,
    pair0: usize,
    pos: usize,
    theta: f32,
) {
    let scale = theta.powf(-2.0f32 / head_dim as f32);
    let mut angle = pos as f32;
    for _ in 0..pair0 {
        angle *= scale;
    }
    for (c, s) in cos.iter_mut().zip(sin.iter_mut()) {
        *c = angle.cos();
        *s = angle.sin();
        angle *= scale;
    }
}

/// The rope rotation of one pair `(x0, x1)` by an angle with cosine `c` and sine `s`,
/// as llama.cpp's `rotate_pairs` computes it once GCC has contracted it (checked against
/// llama.cpp's own rotated queries): `x0' = fma(x0, c, -(x1 * s))`,
/// `x1' = fma(x0, s, x1 * c)`. Every level uses this function.
#[inline]
pub fn rope_rotate(x0: f32, x1: f32, c: f32, s: f32) -> (f32, f32) {
    (x0.mul_add(c, -(x1 * s)), x0.mul_add(s, x1 * c))
}

/// Interleaved rope (GGUF / llama.cpp "normal" mode): in every head, pair
/// `(2i, 2i + 1)` for `i` in `[pair0, pair0 + cos.len())` is rotated by table entry
/// `i - pair0`.
#[inline] // into the FMA-enabled caller of `Kernels::rope_apply`
pub fn rope_interleaved(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pair0: usize,
    cos: &[f32],
    sin: &[f32],
) {
    for h in 0..n_heads {
        let head = &mut x[h * head_dim..(h + 1) * head_dim];
        for (j, (&c, &s)) in cos.iter().zip(sin).enumerate() {
            let i = 2 * (pair0 + j);
            let (y0, y1) = rope_rotate(head[i], head[i + 1], c, s);
            head[i] = y0;
            head[i + 1] = y1;
        }
    }
}

/// Half-split rope (Hugging Face `rotate_half`, GGUF "neox" mode): in every head, pair
/// `(i, i + head_dim / 2)` for `i` in `[pair0, pair0 + cos.len())`.
#[inline] // into the FMA-enabled caller of `Kernels::rope_apply`
pub fn rope_halfsplit(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    pair0: usize,
    cos: &[f32],
    sin: &[f32],
) {
    let half = head_dim / 2;
    for h in 0..n_heads {
        let head = &mut x[h * head_dim..(h + 1) * head_dim];
        for (j, (&c, &s)) in cos.iter().zip(sin).enumerate() {
            let i = pair0 + j;
            let (y0, y1) = rope_rotate(head[i], head[i + half], c, s);
            head[i] = y0;
            head[i + half] = y1;
        }
    }
}

/// In place, per row: `x = exp(x - max) / sum(exp(x - max))`, in f64, rounded once.
/// A row whose maximum is infinite or NaN becomes NaN (as in PyTorch).
pub fn softmax_rows(x: &mut [f32], rows: usize, cols: usize) {
    for r in 0..rows {
        let row = &mut x[r * cols..(r + 1) * cols];
        let m = row.iter().fold(f32::NEG_INFINITY, |m, &v| max_f32(v, m)) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        for v in row.iter_mut() {
            *v = ((*v as f64 - m).exp() / sum) as f32;
        }
    }
}
