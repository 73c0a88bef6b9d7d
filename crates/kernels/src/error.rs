//! The crate's error type and the weight-matrix view.

use half::{bf16, f16};

use crate::quant::QuantType;

/// Why a kernel refused its arguments. Kernels never panic on bad lengths; they return this.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// A slice length or a shape parameter does not match what the op needs.
    /// `detail` names the operand and the expected vs actual sizes.
    ShapeMismatch { op: &'static str, detail: String },
    /// The arguments are well-formed but the op does not support them (e.g. a Q8_K
    /// matrix as matmul weights, or a quantizer that is not implemented).
    Unsupported { op: &'static str, detail: String },
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::ShapeMismatch { op, detail } => {
                write!(f, "kernel {op}: shape mismatch: {detail}")
            }
            KernelError::Unsupported { op, detail } => {
                write!(f, "kernel {op}: unsupported: {detail}")
            }
        }
    }
}

impl std::error::Error for KernelError {}

/// A row-major `n x k` weight matrix (`out_features x in_features`, as GGUF and Hugging
/// Face store linear layers), borrowed in its storage dtype. f16 and bf16 are converted to
/// f32 exactly inside the kernels, so a matmul sees exactly the stored values.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    /// Block-quantized GGML weights, e.g. borrowed straight from a memory-mapped GGUF
    /// file: `n` rows, each `k / qtype.block_elems()` blocks of `qtype.block_bytes()`
    /// bytes (the GGML layout, `ne0 = k` being the row). A matmul quantizes the
    /// activations and multiplies in integers as llama.cpp does (see `quant/mod.rs`), so
    /// it does not see exactly the dequantized values.
    Quant {
        qtype: QuantType,
        data: &'a [u8],
    },
}

impl Weights<'_> {
    /// Number of elements (for `Quant`, whole blocks in `data` times elements per block).
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::F16(w) => w.len(),
            Weights::BF16(w) => w.len(),
            Weights::Quant { qtype, data } => {
                data.len() / qtype.block_bytes() * qtype.block_elems()
            }
        }
    }

    /// Bytes of storage: what a matmul reads from memory.
    pub fn byte_len(&self) -> usize {
        match self {
            Weights::F32(w) => std::mem::size_of_val(*w),
            Weights::F16(w) => std::mem::size_of_val(*w),
            Weights::BF16(w) => std::mem::size_of_val(*w),
            Weights::Quant { data, .. } => data.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per element (4 or 2). For `Quant`, which has no whole number of bytes per
    /// element, the block bytes over the block elements rounded up (1 for Q4_0, 2 for
    /// Q8_0); use [`Weights::byte_len`] for sizes.
    pub fn elem_bytes(&self) -> usize {
        match self {
            Weights::F32(_) => 4,
            Weights::F16(_) | Weights::BF16(_) => 2,
            Weights::Quant { qtype, .. } => qtype.block_bytes().div_ceil(qtype.block_elems()),
        }
    }

    /// The dtype's name: `f32`, `f16`, `bf16`, `q4_0`, `q6_k`, ...
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Weights::F32(_) => "f32",
            Weights::F16(_) => "f16",
            Weights::BF16(_) => "bf16",
            Weights::Quant { qtype, .. } => qtype.name(),
        }
    }

    /// Element `i` converted to f32 (exact for the float dtypes; for `Quant`, the
    /// dequantized value, see [`crate::dequantize_row`]). `None` past the end, and for a
    /// repacked (8-row) type, whose rows are spread over their group. Decodes a
    /// whole block per call for `Quant`: for tests and spot checks, not for loops.
    pub fn get_f32(&self, i: usize) -> Option<f32> {
        match self {
            Weights::F32(w) => w.get(i).copied(),
            Weights::F16(w) => w.get(i).map(|v| v.to_f32()),
            Weights::BF16(w) => w.get(i).map(|v| v.to_f32()),
            Weights::Quant { qtype, data } => {
                let (be, bb) = (qtype.block_elems(), qtype.block_bytes());
                let blk = data.get(i / be * bb..(i / be + 1) * bb)?;
                let mut out = [0f32; 256];
                crate::quant::dequantize_row(*qtype, blk, &mut out[..be]).ok()?;
                out.get(i % be).copied()
            }
        }
    }
}

/// Shape-checking helpers shared by the public entry points.
pub(crate) mod check {
    use super::KernelError;

    pub(crate) fn err(op: &'static str, detail: String) -> KernelError {
        KernelError::ShapeMismatch { op, detail }
    }

    /// `what` must hold exactly `expected` elements.
    pub(crate) fn len(
        op: &'static str,
        what: &str,
        expected: usize,
        got: usize,
    ) -> Result<(), KernelError> {
        if expected == got {
            Ok(())
        } else {
            Err(err(
                op,
                format!("{what}: expected {expected} elements, got {got}"),
            ))
        }
    }

    /// `a * b`, or an error naming the shape if it overflows `usize`.
    pub(crate) fn mul(
        op: &'static str,
        what: &str,
        a: usize,
        b: usize,
    ) -> Result<usize, KernelError> {
        a.checked_mul(b)
            .ok_or_else(|| err(op, format!("{what}: {a} x {b} overflows usize")))
    }
}
