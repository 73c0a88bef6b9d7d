//! The crate's error type and the weight-matrix view.

use half::{bf16, f16};

/// Why a kernel refused its arguments. Kernels never panic on bad lengths; they return this.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// A slice length or a shape parameter does not match what the op needs.
    /// `detail` names the operand and the expected vs actual sizes.
    ShapeMismatch { op: &'static str, detail: String },
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::ShapeMismatch { op, detail } => {
                write!(f, "kernel {op}: shape mismatch: {detail}")
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
}

impl Weights<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::F16(w) => w.len(),
            Weights::BF16(w) => w.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per element (4 or 2).
    pub fn elem_bytes(&self) -> usize {
        match self {
            Weights::F32(_) => 4,
            Weights::F16(_) | Weights::BF16(_) => 2,
        }
    }

    /// The dtype's name: `f32`, `f16`, `bf16`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Weights::F32(_) => "f32",
            Weights::F16(_) => "f16",
            Weights::BF16(_) => "bf16",
        }
    }

    /// Element `i` converted to f32 (exact for every dtype). `None` past the end.
    pub fn get_f32(&self, i: usize) -> Option<f32> {
        match self {
            Weights::F32(w) => w.get(i).copied(),
            Weights::F16(w) => w.get(i).map(|v| v.to_f32()),
            Weights::BF16(w) => w.get(i).map(|v| v.to_f32()),
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
