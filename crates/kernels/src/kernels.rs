//! [`Kernels`]: the checked entry points, bound to one [`KernelLevel`].
//!
//! Every method checks its shapes first (returning [`KernelError::ShapeMismatch`], never
//! panicking), then dispatches to the scalar reference or to a SIMD module. The SIMD
//! entry points are `unsafe` for two reasons that this file discharges once: they are
//! compiled with `#[target_feature]` (sound only on a CPU that has those features, which
//! a `Kernels` value guarantees: it can only be built for a supported level), and they
//! take raw pointers or trust lengths that the checks here have just established.

use crate::error::check;
use crate::{level, quant, scalar, BinOp, KernelError, KernelLevel, UnOp, Weights};

#[cfg(target_arch = "x86_64")]
use crate::{x86_avx2 as avx2, x86_avx512 as avx512};

/// Calls `$f` in the SIMD module of `$level`, or the scalar expression `$scalar`.
macro_rules! dispatch {
    ($level:expr, $scalar:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $level {
            // SAFETY: a `Kernels` only holds a level the CPU supports (see `Kernels::new`),
            // so the target features of these functions are present; every pointer and
            // length argument was checked against the slice lengths just above the call.
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx512 => unsafe { avx512::$f($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx2 => unsafe { avx2::$f($($arg),*) },
            _ => $scalar,
        }
    };
}

/// The kernels at one instruction-set level. Cheap to copy; build one per thread or
/// per executor, or use the crate's free functions, which use the process-wide level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    level: KernelLevel,
    /// bf16 weights multiply bf16-rounded activations (see [`Kernels::with_bf16_products`]).
    bf16_products: bool,
}

impl Kernels {
    /// Kernels at `level`, or `None` if this CPU does not support it. The bf16-products
    /// choice is the process-wide default ([`crate::bf16_products`]).
    pub fn new(level: KernelLevel) -> Option<Kernels> {
        level::is_supported(level).then_some(Kernels {
            level,
            bf16_products: level::bf16_products(),
        })
    }

    /// Kernels at the process-wide level ([`crate::level`]) and bf16-products default.
    pub fn current() -> Kernels {
        Kernels {
            level: level::level(),
            bf16_products: level::bf16_products(),
        }
    }

    /// The level these kernels run at.
    pub fn level(&self) -> KernelLevel {
        self.level
    }

    /// These kernels with bf16 products for bf16 weights switched on or off.
    ///
    /// On (where it runs, see [`Kernels::bf16_products_active`]), `matmul_bt` with
    /// [`Weights::BF16`] rounds each activation to bf16 (nearest even) and multiplies
    /// with AVX-512 BF16 `vdpbf16ps` (exact bf16 x bf16 products, f32 accumulation): what
    /// PyTorch's bf16 `linear` and llama.cpp's bf16 dot product compute, about twice the
    /// f32 FMA rate. The activation rounding costs accuracy (relative `2^-8` per product,
    /// bound: [`crate::tolerance::bf16_products_bound`]); decode and prefill still agree
    /// bit for bit. Off (the default), bf16 weights are widened exactly and multiply the
    /// f32 activations. Other weight dtypes are not affected.
    pub fn with_bf16_products(self, on: bool) -> Kernels {
        Kernels {
            bf16_products: on,
            ..self
        }
    }

    /// Whether bf16 products were asked for (see [`Kernels::with_bf16_products`]).
    pub fn bf16_products(&self) -> bool {
        self.bf16_products
    }

    /// Whether bf16 weights actually take the bf16-products kernel: asked for, at the
    /// AVX-512 level, on a CPU with AVX-512 BF16. Elsewhere the request falls back to
    /// the exact f32-activation products (more accurate, inside the same bound).
    pub fn bf16_products_active(&self) -> bool {
        self.bf16_products && self.level == KernelLevel::Avx512 && level::has_avx512_bf16()
    }

    fn binary(
        self,
        op: BinOp,
        name: &'static str,
        d: &mut [f32],
        a: &[f32],
        b: &[f32],
    ) -> Result<(), KernelError> {
        check::len(name, "a", d.len(), a.len())?;
        check::len(name, "b", d.len(), b.len())?;
        let n = d.len();
        dispatch!(
            self.level,
            scalar::binary(op, d, a, b),
            binary(op, d.as_mut_ptr(), a.as_ptr(), b.as_ptr(), n)
        );
        Ok(())
    }

    fn binary_assign(
        self,
        op: BinOp,
        name: &'static str,
        d: &mut [f32],
        a: &[f32],
    ) -> Result<(), KernelError> {
        check::len(name, "a", d.len(), a.len())?;
        let n = d.len();
        let dp = d.as_mut_ptr();
        dispatch!(
            self.level,
            scalar::binary_assign(op, d, a),
            binary(op, dp, dp, a.as_ptr(), n)
        );
        Ok(())
    }

    fn unary(
        self,
        op: UnOp,
        name: &'static str,
        d: &mut [f32],
        a: &[f32],
    ) -> Result<(), KernelError> {
        check::len(name, "a", d.len(), a.len())?;
        let n = d.len();
        dispatch!(
            self.level,
            scalar::unary(op, d, a),
            unary(op, d.as_mut_ptr(), a.as_ptr(), n)
        );
        Ok(())
    }

    fn unary_assign(self, op: UnOp, d: &mut [f32]) -> Result<(), KernelError> {
        let n = d.len();
        let dp = d.as_mut_ptr();
        dispatch!(
            self.level,
            scalar::unary_assign(op, d),
            unary(op, dp, dp, n)
        );
        Ok(())
    }

    /// `d = a + b` elementwise (exact: bit-identical at every level).
    pub fn add(self, d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
        self.binary(BinOp::Add, "add", d, a, b)
    }
    /// `d = a - b` elementwise (exact).
    pub fn sub(self, d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
        self.binary(BinOp::Sub, "sub", d, a, b)
    }
    /// `d = a * b` elementwise (exact).
    pub fn mul(self, d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
        self.binary(BinOp::Mul, "mul", d, a, b)
    }
    /// `d = max(a, b)` elementwise with x86 `maxps` semantics ([`scalar::max_f32`]).
    pub fn max(self, d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
        self.binary(BinOp::Max, "max", d, a, b)
    }
    /// `d += a` elementwise (exact).
    pub fn add_assign(self, d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
        self.binary_assign(BinOp::Add, "add_assign", d, a)
    }
    /// `d -= a` elementwise (exact).
    pub fn sub_assign(self, d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
        self.binary_assign(BinOp::Sub, "sub_assign", d, a)
    }
    /// `d *= a` elementwise (exact).
    pub fn mul_assign(self, d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
        self.binary_assign(BinOp::Mul, "mul_assign", d, a)
    }
    /// `d = max(d, a)` elementwise ([`scalar::max_f32`] semantics).
    pub fn max_assign(self, d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
        self.binary_assign(BinOp::Max, "max_assign", d, a)
    }

    /// `d += a * b` elementwise with one rounding (fused; bit-identical at every level).
    pub fn fma(self, d: &mut [f32], a: &[f32], b: &[f32]) -> Result<(), KernelError> {
        check::len("fma", "a", d.len(), a.len())?;
        check::len("fma", "b", d.len(), b.len())?;
        let n = d.len();
        dispatch!(
            self.level,
            scalar::fma(d, a, b),
            fma(d.as_mut_ptr(), a.as_ptr(), b.as_ptr(), n)
        );
        Ok(())
    }

    /// `d = a * s` elementwise (exact).
    pub fn scale(self, d: &mut [f32], a: &[f32], s: f32) -> Result<(), KernelError> {
        check::len("scale", "a", d.len(), a.len())?;
        let n = d.len();
        dispatch!(
            self.level,
            scalar::scale(d, a, s),
            scale(d.as_mut_ptr(), a.as_ptr(), s, n)
        );
        Ok(())
    }

    /// `d *= s` elementwise (exact).
    pub fn scale_assign(self, d: &mut [f32], s: f32) -> Result<(), KernelError> {
        let n = d.len();
        let dp = d.as_mut_ptr();
        dispatch!(self.level, scalar::scale_assign(d, s), scale(dp, dp, s, n));
        Ok(())
    }

    /// `d = e^a` elementwise, within [`crate::tolerance::EXP_MAX_ULP`] ulps of the
    /// correctly rounded result (subnormal results, +inf on overflow, 0 below ~-103.97).
    pub fn exp(self, d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
        self.unary(UnOp::Exp, "exp", d, a)
    }
    /// `d = e^d` elementwise.
    pub fn exp_assign(self, d: &mut [f32]) -> Result<(), KernelError> {
        self.unary_assign(UnOp::Exp, d)
    }
    /// `d = a * sigmoid(a)` elementwise, within [`crate::tolerance::silu_bound`].
    pub fn silu(self, d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
        self.unary(UnOp::Silu, "silu", d, a)
    }
    /// `d = silu(d)` elementwise.
    pub fn silu_assign(self, d: &mut [f32]) -> Result<(), KernelError> {
        self.unary_assign(UnOp::Silu, d)
    }
    /// `d = 1 / sqrt(a)` elementwise, full precision (within
    /// [`crate::tolerance::RSQRT_MAX_ULP`] ulps; not the 14-bit hardware estimate).
    pub fn rsqrt(self, d: &mut [f32], a: &[f32]) -> Result<(), KernelError> {
        self.unary(UnOp::Rsqrt, "rsqrt", d, a)
    }
    /// `d = 1 / sqrt(d)` elementwise.
    pub fn rsqrt_assign(self, d: &mut [f32]) -> Result<(), KernelError> {
        self.unary_assign(UnOp::Rsqrt, d)
    }

    /// `d = silu(gate) * up` elementwise (the SwiGLU FFN activation).
    pub fn swiglu(self, d: &mut [f32], gate: &[f32], up: &[f32]) -> Result<(), KernelError> {
        check::len("swiglu", "gate", d.len(), gate.len())?;
        check::len("swiglu", "up", d.len(), up.len())?;
        let n = d.len();
        // llama.cpp's arithmetic at every level (`ggml_math`), AVX-512 when present.
        // SAFETY: the three slices were just checked to hold n elements.
        unsafe {
            crate::ggml_math::swiglu_ptr(
                d.as_mut_ptr(),
                gate.as_ptr(),
                up.as_ptr(),
                n,
                self.level == KernelLevel::Avx512,
            )
        };
        Ok(())
    }

    /// `gate = silu(gate) * up` elementwise, in place.
    pub fn swiglu_assign(self, gate: &mut [f32], up: &[f32]) -> Result<(), KernelError> {
        check::len("swiglu_assign", "up", gate.len(), up.len())?;
        let n = gate.len();
        let gp = gate.as_mut_ptr();
        // SAFETY: both slices hold n elements; the kernel reads each gate element before
        // it writes it.
        unsafe {
            crate::ggml_math::swiglu_ptr(gp, gp, up.as_ptr(), n, self.level == KernelLevel::Avx512)
        };
        Ok(())
    }

    fn check_rows(
        op: &'static str,
        d: &[f32],
        a: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<(), KernelError> {
        let total = check::mul(op, "a (rows x cols)", rows, cols)?;
        check::len(op, "a (rows x cols)", total, a.len())?;
        check::len(op, "d (rows)", rows, d.len())
    }

    /// `d[r] = sum of row r` of the row-major `rows x cols` matrix `a`.
    pub fn row_sum(
        self,
        d: &mut [f32],
        a: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<(), KernelError> {
        Self::check_rows("row_sum", d, a, rows, cols)?;
        dispatch!(
            self.level,
            scalar::row_sum(d, a, rows, cols),
            row_sum(d, a, rows, cols)
        );
        Ok(())
    }
    /// `d[r] = max of row r` (-inf for an empty row).
    pub fn row_max(
        self,
        d: &mut [f32],
        a: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<(), KernelError> {
        Self::check_rows("row_max", d, a, rows, cols)?;
        dispatch!(
            self.level,
            scalar::row_max(d, a, rows, cols),
            row_max(d, a, rows, cols)
        );
        Ok(())
    }
    /// `d[r] = sum of squares of row r`.
    pub fn row_sumsq(
        self,
        d: &mut [f32],
        a: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<(), KernelError> {
        Self::check_rows("row_sumsq", d, a, rows, cols)?;
        dispatch!(
            self.level,
            scalar::row_sumsq(d, a, rows, cols),
            row_sumsq(d, a, rows, cols)
        );
        Ok(())
    }

    /// Dot product. At a SIMD level this is bit-identical to a 1 x 1 x k `matmul_bt`
    /// into a zero `C` (same accumulation order).
    pub fn dot(self, a: &[f32], b: &[f32]) -> Result<f32, KernelError> {
        check::len("dot", "b", a.len(), b.len())?;
        Ok(dispatch!(self.level, scalar::dot(a, b), dot(a, b)))
    }

    /// `C (m x n) += A (m x k) * B^T`, `B` being `n x k` row-major weights.
    pub fn matmul_bt(
        self,
        c: &mut [f32],
        a: &[f32],
        b: Weights<'_>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<(), KernelError> {
        self.matmul_rows("matmul_bt", c, a, b, m, n, k, 0, n)
    }

    /// Like [`Kernels::matmul_bt`] but only for output columns `[n0, n1)`, i.e. weight rows
    /// `[n0, n1)`: `c` is `m x (n1 - n0)`. Each output element is computed exactly as
    /// `matmul_bt` computes it (same order, same rounding), whatever `m`, `n0`, `n1`, so
    /// splitting the work across threads by weight rows does not change any result bit.
    #[allow(clippy::too_many_arguments)] // the BLAS-like shape list is the clearest form
    pub fn matmul_bt_rows(
        self,
        c: &mut [f32],
        a: &[f32],
        b: Weights<'_>,
        m: usize,
        n: usize,
        k: usize,
        n0: usize,
        n1: usize,
    ) -> Result<(), KernelError> {
        self.matmul_rows("matmul_bt_rows", c, a, b, m, n, k, n0, n1)
    }

    #[allow(clippy::too_many_arguments)]
    fn matmul_rows(
        self,
        op: &'static str,
        c: &mut [f32],
        a: &[f32],
        b: Weights<'_>,
        m: usize,
        n: usize,
        k: usize,
        n0: usize,
        n1: usize,
    ) -> Result<(), KernelError> {
        if let Weights::Quant { qtype, data } = b {
            let imp = quant::QuantImpl::for_level(self.level);
            return quant::matmul_checked(imp, op, c, a, qtype, data, [m, n, k, n0, n1]);
        }
        if n0 > n1 || n1 > n {
            return Err(check::err(
                op,
                format!("row range [{n0}, {n1}) is not inside [0, {n})"),
            ));
        }
        check::len(op, "a (m x k)", check::mul(op, "a (m x k)", m, k)?, a.len())?;
        check::len(op, "b (n x k)", check::mul(op, "b (n x k)", n, k)?, b.len())?;
        check::len(
            op,
            "c (m x (n1 - n0))",
            check::mul(op, "c", m, n1 - n0)?,
            c.len(),
        )?;
        if k == 0 || m == 0 || n0 == n1 {
            return Ok(()); // nothing to add: C is left bit-for-bit unchanged
        }
        #[cfg(target_arch = "x86_64")]
        if let Weights::BF16(w) = b {
            if self.bf16_products_active() {
                // SAFETY: `bf16_products_active` checked the AVX-512 level and AVX-512
                // BF16 on this CPU; the lengths were checked just above.
                unsafe { crate::x86_avx512_bf16::matmul_bt_rows(c, a, w, m, k, n0, n1) };
                return Ok(());
            }
        }
        dispatch!(
            self.level,
            scalar::matmul_bt_rows(c, a, b, m, k, n0, n1),
            matmul_bt_rows(c, a, b, m, k, n0, n1)
        );
        Ok(())
    }

    /// Per row of the `rows x dim` matrix `x`: `out = x * weight / sqrt(mean(x^2) + eps)`
    /// (scale first, then weight, as llama.cpp). An all-zero row with `eps == 0` gives NaN.
    pub fn rmsnorm(
        self,
        out: &mut [f32],
        x: &[f32],
        weight: &[f32],
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<(), KernelError> {
        let total = check::mul("rmsnorm", "x (rows x dim)", rows, dim)?;
        check::len("rmsnorm", "x (rows x dim)", total, x.len())?;
        check::len("rmsnorm", "out (rows x dim)", total, out.len())?;
        check::len("rmsnorm", "weight (dim)", dim, weight.len())?;
        // One implementation at every level: llama.cpp's order (a sequential f64 sum),
        // which SIMD cannot reorder without changing the bits; four rows at a time, so
        // that four of those latency-bound sums run side by side (same bits).
        scalar::rmsnorm_rows4(out, x, weight, rows, dim, eps);
        Ok(())
    }

    fn check_rope(
        op: &'static str,
        x: &[f32],
        n_heads: usize,
        head_dim: usize,
    ) -> Result<(), KernelError> {
        if !head_dim.is_multiple_of(2) {
            return Err(check::err(
                op,
                format!("head_dim must be even, got {head_dim}"),
            ));
        }
        let total = check::mul(op, "x (n_heads x head_dim)", n_heads, head_dim)?;
        check::len(op, "x (n_heads x head_dim)", total, x.len())
    }

    /// Interleaved rope on the `n_heads x head_dim` vector `x` of one token at `pos`:
    /// pairs `(2i, 2i + 1)` rotated by `pos * theta^(-2i / head_dim)` (GGUF / llama.cpp
    /// "normal" mode). Angles in f64 ([`scalar::rope_table`]); bit-identical across levels.
    pub fn rope_interleaved(
        self,
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        pos: usize,
        theta: f32,
    ) -> Result<(), KernelError> {
        Self::check_rope("rope_interleaved", x, n_heads, head_dim)?;
        self.rope_chunked(false, x, n_heads, head_dim, pos, theta);
        Ok(())
    }

    /// Half-split rope (Hugging Face `rotate_half`, GGUF "neox"): pairs `(i, i + head_dim / 2)`.
    pub fn rope_halfsplit(
        self,
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        pos: usize,
        theta: f32,
    ) -> Result<(), KernelError> {
        Self::check_rope("rope_halfsplit", x, n_heads, head_dim)?;
        self.rope_chunked(true, x, n_heads, head_dim, pos, theta);
        Ok(())
    }

    /// Computes the angle table a chunk of pairs at a time (on the stack, any head_dim),
    /// applying each chunk to every head.
    fn rope_chunked(
        self,
        halfsplit: bool,
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        pos: usize,
        theta: f32,
    ) {
        const CHUNK: usize = 64;
        let pairs = head_dim / 2;
        let (mut cos, mut sin) = ([0f32; CHUNK], [0f32; CHUNK]);
        let mut p0 = 0;
        while p0 < pairs {
            let len = CHUNK.min(pairs - p0);
            scalar::rope_table(&mut cos[..len], &mut sin[..len], head_dim, p0, pos, theta);
            self.rope_apply(
                halfsplit,
                x,
                n_heads,
                head_dim,
                p0,
                &cos[..len],
                &sin[..len],
            );
            p0 += len;
        }
    }

    /// Fills `cos` and `sin` (each `head_dim / 2` long) with the rope table of position
    /// `pos`, for reuse across layers with [`Kernels::rope_interleaved_with`] /
    /// [`Kernels::rope_halfsplit_with`] (same bits as computing it on each call).
    pub fn rope_table(
        self,
        cos: &mut [f32],
        sin: &mut [f32],
        head_dim: usize,
        pos: usize,
        theta: f32,
    ) -> Result<(), KernelError> {
        if !head_dim.is_multiple_of(2) {
            return Err(check::err(
                "rope_table",
                format!("head_dim must be even, got {head_dim}"),
            ));
        }
        check::len("rope_table", "cos (head_dim / 2)", head_dim / 2, cos.len())?;
        check::len("rope_table", "sin (head_dim / 2)", head_dim / 2, sin.len())?;
        scalar::rope_table(cos, sin, head_dim, 0, pos, theta);
        Ok(())
    }

    /// Interleaved rope with a precomputed table from [`Kernels::rope_table`].
    pub fn rope_interleaved_with(
        self,
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        cos: &[f32],
        sin: &[f32],
    ) -> Result<(), KernelError> {
        Self::check_rope("rope_interleaved_with", x, n_heads, head_dim)?;
        check::len(
            "rope_interleaved_with",
            "cos (head_dim / 2)",
            head_dim / 2,
            cos.len(),
        )?;
        check::len(
            "rope_interleaved_with",
            "sin (head_dim / 2)",
            head_dim / 2,
            sin.len(),
        )?;
        self.rope_apply(false, x, n_heads, head_dim, 0, cos, sin);
        Ok(())
    }

    /// Half-split rope with a precomputed table from [`Kernels::rope_table`].
    pub fn rope_halfsplit_with(
        self,
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        cos: &[f32],
        sin: &[f32],
    ) -> Result<(), KernelError> {
        Self::check_rope("rope_halfsplit_with", x, n_heads, head_dim)?;
        check::len(
            "rope_halfsplit_with",
            "cos (head_dim / 2)",
            head_dim / 2,
            cos.len(),
        )?;
        check::len(
            "rope_halfsplit_with",
            "sin (head_dim / 2)",
            head_dim / 2,
            sin.len(),
        )?;
        self.rope_apply(true, x, n_heads, head_dim, 0, cos, sin);
        Ok(())
    }

    /// Applies table entries for pairs `[p0, p0 + cos.len())`; shapes already checked
    /// (`x.len() == n_heads * head_dim`, `p0 + cos.len() <= head_dim / 2`, `cos.len() == sin.len()`).
    #[allow(clippy::too_many_arguments)]
    fn rope_apply(
        self,
        halfsplit: bool,
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        p0: usize,
        cos: &[f32],
        sin: &[f32],
    ) {
        // One implementation at every level: llama.cpp's contraction of the rotation
        // (`scalar::rope_rotate`), a few FMAs per pair, not worth a SIMD copy. At the
        // SIMD levels it is compiled with FMA enabled: without it each `mul_add` is a
        // call to libm's `fmaf` (~5 ns; a 128-token prefill spent ~0.5 ms per layer
        // there). Both round once, so the bits are the same.
        match self.level {
            // SAFETY: both SIMD levels include AVX2 and FMA (see `level.rs`), which a
            // `Kernels` value guarantees this CPU has.
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx512 | KernelLevel::Avx2 => unsafe {
                rope_fma(halfsplit, x, n_heads, head_dim, p0, cos, sin)
            },
            _ => rope_portable(halfsplit, x, n_heads, head_dim, p0, cos, sin),
        }
    }

    /// In place, per row of the `rows x cols` matrix: `x = exp(x - max) / sum`. Entries of
    /// -inf (masked) become 0; a row whose max is +-inf or NaN becomes NaN.
    pub fn softmax_rows(self, x: &mut [f32], rows: usize, cols: usize) -> Result<(), KernelError> {
        let total = check::mul("softmax_rows", "x (rows x cols)", rows, cols)?;
        check::len("softmax_rows", "x (rows x cols)", total, x.len())?;
        dispatch!(
            self.level,
            scalar::softmax_rows(x, rows, cols),
            softmax_rows(x, rows, cols)
        );
        Ok(())
    }
}

/// [`Kernels::rope_apply`]'s rotation, as written in `scalar.rs`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rope_portable(
    halfsplit: bool,
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    p0: usize,
    cos: &[f32],
    sin: &[f32],
) {
    if halfsplit {
        scalar::rope_halfsplit(x, n_heads, head_dim, p0, cos, sin)
    } else {
        scalar::rope_interleaved(x, n_heads, head_dim, p0, cos, sin)
    }
}

/// [`rope_portable`] compiled with FMA (and AVX2) enabled: the same operations, with the
/// fused multiply-adds done by the CPU instead of libm.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn rope_fma(
    halfsplit: bool,
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    p0: usize,
    cos: &[f32],
    sin: &[f32],
) {
    rope_portable(halfsplit, x, n_heads, head_dim, p0, cos, sin)
}
