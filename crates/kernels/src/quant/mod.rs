//! Block-quantized GGML weights: formats, (de)quantizers and the quantized `matmul_bt`.
//!
//! A quantized weight matrix is `n` rows of `k` elements, each row `k / block_elems`
//! blocks in the GGML layout (`ggml-common.h`), read in place from the model file
//! ([`crate::Weights::Quant`]). The matmul follows llama.cpp's CPU backend so that our
//! logits track llama.cpp's:
//!
//! 1. each activation row is quantized once per call to the weight's `vec_dot_type`
//!    (Q8_0 for Q4_0 / Q5_0 / Q8_0, Q8_1 for Q4_1 / Q5_1, Q8_K for the k-quants) with the
//!    rounding of ggml's x86 `quantize_row_q8_*` (`quant/act.rs`);
//! 2. per block, exact integer dot products of the quants;
//! 3. the integer sums are scaled and accumulated in f32 in the lane structure of ggml's
//!    AVX2 `ggml_vec_dot_*` (8 f32 lanes, lane `l` holding the products of bytes
//!    `4l..4l+3` of each 32-byte group, one fused multiply-add per block, then the
//!    `hsum_float_8` tree), which is what llama.cpp runs on any x86 CPU with AVX2 or
//!    AVX-512 for a single-row dot product (`quant/dot_ref.rs` spells this out per type).
//!
//! Because steps 1 and 2 are exact integer math and step 3 is one fixed sequence of f32
//! operations, every level (scalar, AVX2, AVX-512 with or without VNNI) produces the
//! same bits, whatever `m`, the row range or the tiling; the tests check bit equality.
//! (llama.cpp itself is not this consistent: its repacked and `llamafile_sgemm` prefill
//! paths sum in other orders. The integer part always agrees; the f32 part agrees with
//! its plain `ggml_vec_dot_*` path. Not checked against a llama.cpp binary here.)

pub(crate) mod act;
pub(crate) mod blocks;
pub(crate) mod dot_ref;
#[cfg(target_arch = "x86_64")]
pub(crate) mod gemm;
pub mod r8;
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd;

use half::{bf16, f16};

use crate::error::check;
use crate::{KernelError, KernelLevel};

/// A block-quantized GGML element type, as the kernels see it (this crate does not
/// depend on `vtpu-phext`; [`QuantType::ggml_type`] is the shared `ggml_type` id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(non_camel_case_types)] // the GGML names, so a grep for `Q4_0` finds both sides
pub enum QuantType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    /// Activation format of the Q4_1 / Q5_1 dot products (d and `s = d * sum(q)`).
    Q8_1,
    Q4K,
    Q5K,
    Q6K,
    /// Activation format of the k-quant dot products (f32 d, i8 quants, i16 sums of 16).
    Q8K,
    /// Q4_0 / Q5_0 / Q8_0 weights repacked in groups of 8 rows ([`r8`]): the same
    /// numbers, laid out for the decode kernels.
    Q4_0R8,
    Q5_0R8,
    Q8_0R8,
}

/// One row of the format table: every property derives from this single list.
struct Props {
    qtype: QuantType,
    name: &'static str,
    ggml_type: u32,
    block_elems: usize,
    block_bytes: usize,
    /// The activation format of the matmul, `None` where the type is not a matmul weight.
    vec_dot: Option<QuantType>,
}

use QuantType::*;

#[rustfmt::skip]
const TABLE: [Props; 13] = [
    Props { qtype: Q4_0, name: "q4_0", ggml_type: 2, block_elems: 32, block_bytes: 18, vec_dot: Some(Q8_0) },
    Props { qtype: Q4_1, name: "q4_1", ggml_type: 3, block_elems: 32, block_bytes: 20, vec_dot: Some(Q8_1) },
    Props { qtype: Q5_0, name: "q5_0", ggml_type: 6, block_elems: 32, block_bytes: 22, vec_dot: Some(Q8_0) },
    Props { qtype: Q5_1, name: "q5_1", ggml_type: 7, block_elems: 32, block_bytes: 24, vec_dot: Some(Q8_1) },
    Props { qtype: Q8_0, name: "q8_0", ggml_type: 8, block_elems: 32, block_bytes: 34, vec_dot: Some(Q8_0) },
    Props { qtype: Q8_1, name: "q8_1", ggml_type: 9, block_elems: 32, block_bytes: 36, vec_dot: None },
    Props { qtype: Q4K, name: "q4_k", ggml_type: 12, block_elems: 256, block_bytes: 144, vec_dot: Some(Q8K) },
    Props { qtype: Q5K, name: "q5_k", ggml_type: 13, block_elems: 256, block_bytes: 176, vec_dot: Some(Q8K) },
    Props { qtype: Q6K, name: "q6_k", ggml_type: 14, block_elems: 256, block_bytes: 210, vec_dot: Some(Q8K) },
    Props { qtype: Q8K, name: "q8_k", ggml_type: 15, block_elems: 256, block_bytes: 292, vec_dot: None },
    // Not ggml types: the ids of `vtpu_phext::DType`'s repacked page dtypes.
    Props { qtype: Q4_0R8, name: "q4_0r8", ggml_type: 230, block_elems: 32, block_bytes: 18, vec_dot: Some(Q8_0) },
    Props { qtype: Q5_0R8, name: "q5_0r8", ggml_type: 231, block_elems: 32, block_bytes: 22, vec_dot: Some(Q8_0) },
    Props { qtype: Q8_0R8, name: "q8_0r8", ggml_type: 232, block_elems: 32, block_bytes: 34, vec_dot: Some(Q8_0) },
];

impl QuantType {
    /// Every type, in table order.
    pub const ALL: [QuantType; 13] = [
        Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4K, Q5K, Q6K, Q8K, Q4_0R8, Q5_0R8, Q8_0R8,
    ];

    fn props(self) -> &'static Props {
        // The discriminant is the table index (checked by a test).
        &TABLE[self as usize]
    }

    /// Lower-case GGML name: `q4_0`, `q6_k`, ...
    pub fn name(self) -> &'static str {
        self.props().name
    }

    /// The `ggml_type` id (as stored in GGUF tensor infos).
    pub fn ggml_type(self) -> u32 {
        self.props().ggml_type
    }

    /// Inverse of [`QuantType::ggml_type`].
    pub fn from_ggml_type(id: u32) -> Option<QuantType> {
        TABLE.iter().find(|p| p.ggml_type == id).map(|p| p.qtype)
    }

    /// Elements per block (32 or 256).
    pub fn block_elems(self) -> usize {
        self.props().block_elems
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.props().block_bytes
    }

    /// The format activations are quantized to for a matmul with weights of this type,
    /// or `None` if this type is not supported as matmul weights (Q8_1, Q8_K).
    pub fn vec_dot_type(self) -> Option<QuantType> {
        self.props().vec_dot
    }

    /// For a repacked (8-row) type, the ggml type of its blocks; `None` otherwise.
    pub fn r8_base(self) -> Option<QuantType> {
        match self {
            Q4_0R8 => Some(Q4_0),
            Q5_0R8 => Some(Q5_0),
            Q8_0R8 => Some(Q8_0),
            _ => None,
        }
    }

    /// The repacked (8-row) type of this ggml type, if it has one.
    pub fn r8(self) -> Option<QuantType> {
        match self {
            Q4_0 => Some(Q4_0R8),
            Q5_0 => Some(Q5_0R8),
            Q8_0 => Some(Q8_0R8),
            _ => None,
        }
    }

    /// Bytes of one row of `k` elements, or `None` when `k` is not a whole number of
    /// blocks (or the size overflows).
    pub fn row_bytes(self, k: usize) -> Option<usize> {
        if !k.is_multiple_of(self.block_elems()) {
            return None;
        }
        (k / self.block_elems()).checked_mul(self.block_bytes())
    }
}

impl std::fmt::Display for QuantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks that `elems` is a whole number of `qtype` blocks and that `bytes` holds exactly
/// that many blocks; returns the number of blocks.
fn check_blocks(
    op: &'static str,
    qtype: QuantType,
    elems: usize,
    bytes: usize,
) -> Result<usize, KernelError> {
    let be = qtype.block_elems();
    if !elems.is_multiple_of(be) {
        return Err(check::err(
            op,
            format!("{elems} elements is not a whole number of {qtype} blocks of {be} elements"),
        ));
    }
    let nb = elems / be;
    let want = check::mul(op, "blocks x block bytes", nb, qtype.block_bytes())?;
    if want != bytes {
        return Err(check::err(
            op,
            format!(
                "{qtype} data: expected {want} bytes ({nb} blocks of {}), got {bytes}",
                qtype.block_bytes()
            ),
        ));
    }
    Ok(nb)
}

/// `dst = dequantize(src)`: `dst.len()` elements from `src`, which must hold exactly
/// `dst.len() / block_elems` blocks of `qtype` (used for embedding lookups and tests).
/// Follows ggml's `dequantize_row_*` formulas with f32 arithmetic in the order written
/// there (products and sums rounded separately, no fused multiply-add).
pub fn dequantize_row(qtype: QuantType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    if qtype.r8_base().is_some() {
        return Err(KernelError::Unsupported {
            op: "dequantize_row",
            detail: format!(
                "a {qtype} row is spread over its group of 8 rows: use dequantize_row_of"
            ),
        });
    }
    check_blocks("dequantize_row", qtype, dst.len(), src.len())?;
    blocks::dequantize(qtype, src, dst);
    Ok(())
}

/// Row `row` of the `k`-column matrix `data` of `qtype` (either layout: a repacked
/// type's row is gathered from its group first), dequantized into `dst` (`k` long).
pub fn dequantize_row_of(
    qtype: QuantType,
    data: &[u8],
    row: usize,
    dst: &mut [f32],
) -> Result<(), KernelError> {
    const OP: &str = "dequantize_row_of";
    let k = dst.len();
    let rb = qtype.row_bytes(k).ok_or_else(|| {
        check::err(
            OP,
            format!("{k} elements is not a whole number of {qtype} blocks"),
        )
    })?;
    let Some(base) = qtype.r8_base() else {
        let src = row
            .checked_mul(rb)
            .and_then(|o| data.get(o..o.checked_add(rb)?))
            .ok_or_else(|| {
                check::err(
                    OP,
                    format!("row {row} is outside the {} bytes of data", data.len()),
                )
            })?;
        return dequantize_row(qtype, src, dst);
    };
    let mut one = vec![0u8; rb];
    r8::r8_row(base, data, row, k, &mut one)?;
    dequantize_row(base, &one, dst)
}

/// Quantizes `src` into `dst` (exactly `src.len() / block_elems` blocks of `qtype`) with
/// ggml's reference quantizer `quantize_row_*_ref` (what `llama-quantize` writes for
/// these types without an importance matrix). Supported: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
/// Q8_1, Q8_K; the k-quant weight quantizers (a search over scales) are not implemented.
pub fn quantize_row(qtype: QuantType, src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    const OP: &str = "quantize_row";
    if matches!(qtype, Q4K | Q5K | Q6K) {
        return Err(KernelError::Unsupported {
            op: OP,
            detail: format!("no quantizer for {qtype} (only dequantization and matmul)"),
        });
    }
    if qtype.r8_base().is_some() {
        return Err(KernelError::Unsupported {
            op: OP,
            detail: format!("{qtype} is a layout of whole matrices: quantize rows to the ggml type and repack (quant::r8)"),
        });
    }
    check_blocks(OP, qtype, src.len(), dst.len())?;
    blocks::quantize(qtype, src, dst);
    Ok(())
}

/// [`quantize_row`] to Q8_0.
pub fn quantize_row_q8_0(src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    quantize_row(Q8_0, src, dst)
}

/// [`quantize_row`] to Q4_0.
pub fn quantize_row_q4_0(src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    quantize_row(Q4_0, src, dst)
}

/// [`quantize_row`] to Q4_1.
pub fn quantize_row_q4_1(src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    quantize_row(Q4_1, src, dst)
}

/// [`quantize_row`] to Q5_0.
pub fn quantize_row_q5_0(src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    quantize_row(Q5_0, src, dst)
}

/// [`quantize_row`] to Q5_1.
pub fn quantize_row_q5_1(src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    quantize_row(Q5_1, src, dst)
}

/// f32 -> f16, round to nearest even (ggml's `GGML_FP32_TO_FP16`; overflow gives inf).
pub fn quantize_row_f16(src: &[f32], dst: &mut [f16]) -> Result<(), KernelError> {
    check::len("quantize_row_f16", "dst", src.len(), dst.len())?;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(s);
    }
    Ok(())
}

/// f32 -> bf16, round to nearest even, NaN kept quiet with its sign (ggml's
/// `ggml_compute_fp32_to_bf16`).
pub fn quantize_row_bf16(src: &[f32], dst: &mut [bf16]) -> Result<(), KernelError> {
    check::len("quantize_row_bf16", "dst", src.len(), dst.len())?;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = bf16::from_f32(s);
    }
    Ok(())
}

/// Which implementation of the quantized matmul runs. Normally derived from the
/// [`KernelLevel`]; tests and benchmarks name one explicitly to compare them on one CPU
/// (AVX-512 without VNNI cannot otherwise be exercised on a VNNI machine).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantImpl {
    /// The scalar specification (`quant/dot_ref.rs`).
    Scalar,
    /// AVX2: `vpmaddubsw` + `vpmaddwd`.
    Avx2,
    /// AVX-512 level without VNNI (F + BW + VL): the AVX2 instruction sequence (the
    /// 256-bit forms are the same instructions; see `simd.rs` for why not 512-bit).
    Avx512Bw,
    /// AVX-512 VNNI: `vpdpbusd` / `vpdpwssd`.
    Avx512Vnni,
}

impl QuantImpl {
    /// Every implementation, least capable first.
    pub const ALL: [QuantImpl; 4] = [
        QuantImpl::Scalar,
        QuantImpl::Avx2,
        QuantImpl::Avx512Bw,
        QuantImpl::Avx512Vnni,
    ];

    /// Whether this CPU can run it.
    pub fn is_supported(self) -> bool {
        match self {
            QuantImpl::Scalar => true,
            QuantImpl::Avx2 => crate::is_supported(KernelLevel::Avx2),
            QuantImpl::Avx512Bw => crate::is_supported(KernelLevel::Avx512),
            QuantImpl::Avx512Vnni => crate::is_supported(KernelLevel::Avx512) && has_vnni(),
        }
    }

    /// Every implementation this CPU can run.
    pub fn supported() -> Vec<QuantImpl> {
        QuantImpl::ALL
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }

    /// The implementation a [`KernelLevel`] uses on this CPU.
    pub fn for_level(level: KernelLevel) -> QuantImpl {
        match crate::level::clamp(level) {
            KernelLevel::Scalar => QuantImpl::Scalar,
            KernelLevel::Avx2 => QuantImpl::Avx2,
            KernelLevel::Avx512 if has_vnni() => QuantImpl::Avx512Vnni,
            KernelLevel::Avx512 => QuantImpl::Avx512Bw,
        }
    }
}

/// Whether the CPU has AVX-512 VNNI (detected once).
fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *VNNI.get_or_init(|| is_x86_feature_detected!("avx512vnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Checks that `data` can be `n x k` matmul weights of `qtype`: a weight type, `k` a
/// whole number of blocks, `data` exactly `n` rows of them.
fn check_weights(
    op: &'static str,
    qtype: QuantType,
    data: &[u8],
    n: usize,
    k: usize,
) -> Result<(), KernelError> {
    if qtype.vec_dot_type().is_none() {
        return Err(KernelError::Unsupported {
            op,
            detail: format!("{qtype} is an activation format, not supported as matmul weights"),
        });
    }
    let be = qtype.block_elems();
    if !k.is_multiple_of(be) {
        return Err(check::err(
            op,
            format!("k = {k} is not a whole number of {qtype} blocks of {be} elements"),
        ));
    }
    if qtype.r8_base().is_some() && !n.is_multiple_of(r8::R8_ROWS) {
        return Err(check::err(
            op,
            format!(
                "{qtype} weights have {n} rows, not whole groups of {}",
                r8::R8_ROWS
            ),
        ));
    }
    let rows = check::mul(op, "b (n x k)", n, k)?;
    check_blocks(op, qtype, rows, data.len()).map(|_| ())
}

/// `C (m x (n1 - n0)) += A (m x k) * W[n0..n1]^T` for `n x k` quantized weights `data`,
/// run by `imp`, after checking every shape (`dims = [m, n, k, n0, n1]`). The entry
/// point of [`crate::Kernels::matmul_bt`] for [`crate::Weights::Quant`].
pub(crate) fn matmul_checked(
    imp: QuantImpl,
    op: &'static str,
    c: &mut [f32],
    a: &[f32],
    qtype: QuantType,
    data: &[u8],
    dims: [usize; 5],
) -> Result<(), KernelError> {
    let [m, n, k, n0, n1] = dims;
    if n0 > n1 || n1 > n {
        return Err(check::err(
            op,
            format!("row range [{n0}, {n1}) is not inside [0, {n})"),
        ));
    }
    if qtype.r8_base().is_some()
        && !(n0.is_multiple_of(r8::R8_ROWS) && n1.is_multiple_of(r8::R8_ROWS))
    {
        return Err(check::err(
            op,
            format!(
                "row range [{n0}, {n1}) of {qtype} weights splits a group of {} rows",
                r8::R8_ROWS
            ),
        ));
    }
    check::len(op, "a (m x k)", check::mul(op, "a (m x k)", m, k)?, a.len())?;
    check_weights(op, qtype, data, n, k)?;
    check::len(
        op,
        "c (m x (n1 - n0))",
        check::mul(op, "c", m, n1 - n0)?,
        c.len(),
    )?;
    if !imp.is_supported() {
        return Err(KernelError::Unsupported {
            op,
            detail: format!("{imp:?} is not supported by this CPU"),
        });
    }
    if k == 0 || m == 0 || n0 == n1 {
        return Ok(()); // nothing to add: C is left bit-for-bit unchanged
    }
    matmul_rows(imp, c, a, qtype, data, m, k, n0, n1);
    Ok(())
}

/// [`crate::Kernels::matmul_bt_rows`] for quantized weights with an explicit
/// implementation (tests and benchmarks compare implementations on one CPU).
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn matmul_bt_rows_with(
    imp: QuantImpl,
    c: &mut [f32],
    a: &[f32],
    qtype: QuantType,
    data: &[u8],
    m: usize,
    n: usize,
    k: usize,
    n0: usize,
    n1: usize,
) -> Result<(), KernelError> {
    matmul_checked(imp, "matmul_bt_rows", c, a, qtype, data, [m, n, k, n0, n1])
}

/// The quantized matmul over weight rows `[n0, n1)`; every shape was checked
/// ([`check_weights`] and the `a` / `c` lengths), `m`, `k` and `n1 - n0` are non-zero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_rows(
    imp: QuantImpl,
    c: &mut [f32],
    a: &[f32],
    qtype: QuantType,
    data: &[u8],
    m: usize,
    k: usize,
    n0: usize,
    n1: usize,
) {
    let Some(row_bytes) = qtype.row_bytes(k) else {
        return; // unreachable after check_weights; doing nothing beats a panic
    };
    let w = &data[n0 * row_bytes..n1 * row_bytes];
    if let Some(base) = qtype.r8_base() {
        matmul_r8(imp, c, a, base, w, m, k, n1 - n0);
        return;
    }
    act::with_scratch(|buf| {
        let Some(act_type) = qtype.vec_dot_type() else {
            return;
        };
        act::quantize_rows(imp, act_type, a, m, k, buf);
        match imp {
            #[cfg(target_arch = "x86_64")]
            QuantImpl::Avx2 | QuantImpl::Avx512Bw | QuantImpl::Avx512Vnni => {
                // SAFETY: `imp` is one this CPU supports (`matmul_checked` checked it, and
                // `scalar::matmul_bt_rows` only passes `Scalar`); the shapes of `c`, `w` and
                // the quantized activations were checked by `matmul_checked`.
                unsafe {
                    gemm::matmul(
                        imp,
                        c,
                        &buf.view(act_type, m, k),
                        qtype,
                        w,
                        m,
                        k,
                        n1 - n0,
                        false,
                    )
                }
            }
            _ => dot_ref::matmul(c, &buf.view(act_type, m, k), qtype, w, m, k, n1 - n0),
        }
    });
}

thread_local! {
    /// Per thread: weight groups of a repacked matrix back in the ggml layout, and the
    /// matching output block (grown, never shrunk), for [`matmul_r8`]'s fallback.
    static R8_SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// [`matmul_rows`] for weights repacked in groups of 8 rows (`w`: `nw` rows, whole
/// groups, of the 8-row layout of `base`). Decode (m = 1) at the VNNI level reads the
/// layout with its own kernel ([`r8::gemv_r8_vnni`]); the other x86 cases run the
/// ordinary kernels, which rebuild each block as they pack or read it
/// (`gemm::block_at`). The scalar specification copies a chunk of groups back to the
/// ggml layout, runs on it into a block of outputs that starts at -0.0 (the identity
/// of f32 addition, so the block holds exactly the sums) and adds that block into `c`.
/// Every path does the same operations per output as on the ggml layout: the same
/// bits.
#[allow(clippy::too_many_arguments)]
fn matmul_r8(
    imp: QuantImpl,
    c: &mut [f32],
    a: &[f32],
    base: QuantType,
    w: &[u8],
    m: usize,
    k: usize,
    nw: usize,
) {
    let Some(row_bytes) = base.row_bytes(k) else {
        return;
    };
    act::with_scratch(|buf| {
        let Some(act_type) = base.vec_dot_type() else {
            return;
        };
        act::quantize_rows(imp, act_type, a, m, k, buf);
        let view = buf.view(act_type, m, k);
        #[cfg(target_arch = "x86_64")]
        if m == 1 && imp == QuantImpl::Avx512Vnni {
            // SAFETY: `imp` is supported (checked by `matmul_checked`), so the CPU has
            // AVX-512 F/BW/VL/VNNI; `w` is `nw` rows (whole groups), `c` is `nw` long,
            // the activation row is quantized to `base`'s vec_dot type.
            unsafe { r8::gemv_r8_vnni(base, c, &view, w, k, nw) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if imp != QuantImpl::Scalar {
            // SAFETY: as in `matmul_rows`; `w` is `nw` rows of `base` in the 8-row layout
            // (whole groups, checked by `matmul_checked`), which `r8 = true` selects.
            unsafe { gemm::matmul(imp, c, &view, base, w, m, k, nw, true) };
            return;
        }
        // Chunks of whole groups of about 256 KiB: they stay in L2 while the kernels run.
        let group_bytes = r8::R8_ROWS * row_bytes;
        let groups = ((256 << 10) / group_bytes.max(1)).max(1);
        let chunk_rows = groups * r8::R8_ROWS;
        R8_SCRATCH.with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return; // only reentrancy could cause this; the kernels do not reenter
            };
            let (wbuf, cbuf) = &mut *s;
            let mut j0 = 0;
            while j0 < nw {
                let rows = chunk_rows.min(nw - j0);
                wbuf.resize(rows * row_bytes, 0);
                cbuf.clear();
                cbuf.resize(m * rows, -0.0);
                let src = &w[j0 * row_bytes..(j0 + rows) * row_bytes];
                if r8::unrepack_r8(base, src, rows, k, wbuf).is_err() {
                    return; // unreachable: shapes were checked by `matmul_checked`
                }
                dot_ref::matmul(cbuf, &view, base, wbuf, m, k, rows);
                for i in 0..m {
                    let out = &mut c[i * nw + j0..i * nw + j0 + rows];
                    for (o, v) in out.iter_mut().zip(&cbuf[i * rows..(i + 1) * rows]) {
                        *o += *v;
                    }
                }
                j0 += rows;
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_discriminant_and_ids_are_unique() {
        for (i, q) in QuantType::ALL.iter().enumerate() {
            assert_eq!(TABLE[i].qtype, *q);
            assert_eq!(*q as usize, i);
            assert_eq!(QuantType::from_ggml_type(q.ggml_type()), Some(*q));
        }
        let mut ids: Vec<u32> = QuantType::ALL.iter().map(|q| q.ggml_type()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), QuantType::ALL.len());
        assert_eq!(QuantType::from_ggml_type(0), None); // f32 is not quantized
    }

    #[test]
    fn row_bytes_checks_blocks() {
        assert_eq!(Q4_0.row_bytes(64), Some(36));
        assert_eq!(Q6K.row_bytes(512), Some(420));
        assert_eq!(Q4_0.row_bytes(48), None);
        // 292 bytes per 256 elements: more bytes than elements, so this overflows.
        assert_eq!(Q8K.row_bytes(usize::MAX / 256 * 256), None);
    }
}
