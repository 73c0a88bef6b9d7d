//! Pieces both executors share that are plumbing, not semantics: register-use sets
//! derived from the op table, page translation with counting, group resolution and
//! flop accounting.

use crate::counters::Counters;
use crate::error::TrapKind;
use std::sync::Arc;
use vtpu_isa::{Op, Operand, RegFile};
use vtpu_phext::{Coord, Page, PhextSpace, TranslationCache};

/// Registers an op reads and writes, as (file, index) pairs, from its table row.
pub fn reg_uses(op: &Op) -> (Vec<(RegFile, u8)>, Vec<(RegFile, u8)>) {
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for (kind, &idx) in op.code.small_operands().zip(op.args.iter()) {
        if let Some(file) = kind.reg_file() {
            if kind.reads() {
                reads.push((file, idx));
            }
            if kind.writes() {
                writes.push((file, idx));
            }
        }
    }
    (reads, writes)
}

/// True if any register in `a` also appears in `b`.
pub fn overlaps(a: &[(RegFile, u8)], b: &[(RegFile, u8)]) -> bool {
    a.iter().any(|x| b.contains(x))
}

/// Does an op have an operand of this kind? (Used for sanity in executors.)
pub fn has_operand(op: &Op, kind: Operand) -> bool {
    op.code.info().operands.contains(&kind)
}

/// Translate a coordinate through the sentron's translation cache. The cache counts
/// the lookup as a hit or a miss (a page fault is a miss); executors copy its counts
/// into their `Counters` when they stop.
#[inline]
pub fn translate<'c>(
    tlb: &'c mut TranslationCache,
    space: &PhextSpace,
    coord: Coord,
) -> Result<&'c Arc<Page>, TrapKind> {
    tlb.lookup_ref(space, coord.key())
        .ok_or(TrapKind::PageFault(coord))
}

/// Copy the translation cache's counts into a sentron's counters.
pub fn record_tlb(tlb: &TranslationCache, counters: &mut Counters) {
    counters.ppt_hits = tlb.hits();
    counters.ppt_misses = tlb.misses();
    counters.ppt_lookups = tlb.hits() + tlb.misses();
}

/// Resolve a group immediate (`all` = every sentron) to a member mask, checking that
/// it names only existing sentrons and contains `me`.
pub fn resolve_group(mask: u64, n: usize, me: u32) -> Result<u64, TrapKind> {
    let everyone = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let m = if mask == vtpu_isa::word::GROUP_ALL {
        everyone
    } else {
        mask
    };
    if m & !everyone != 0 {
        let bad = (m & !everyone).trailing_zeros();
        return Err(TrapKind::NoSuchSentron(bad));
    }
    if m & (1 << me) == 0 {
        return Err(TrapKind::NotInGroup(crate::fabric::group_text(m)));
    }
    Ok(m)
}

/// Check a page-relative element range [offset, offset + n) against a page.
#[inline]
pub fn check_range(offset: i64, n: usize, page_elems: usize) -> Result<usize, TrapKind> {
    let end = offset.checked_add(n as i64);
    match end {
        Some(end) if offset >= 0 && end as u64 <= page_elems as u64 => Ok(offset as usize),
        _ => Err(TrapKind::OutOfBounds {
            offset,
            end: end.unwrap_or(i64::MAX),
            page_elems,
        }),
    }
}

/// Element width in bytes of the plain dtypes a tile can view.
pub fn view_width(dtype: vtpu_phext::DType) -> Option<usize> {
    use vtpu_phext::DType;
    match dtype {
        DType::F32 => Some(4),
        DType::F16 | DType::BF16 => Some(2),
        _ => None,
    }
}

/// Can a read-only page of `dtype` be viewed (zero-copy) by a tile? f32, f16, bf16 and
/// the block-quantized types (whose views must cover whole blocks per row).
pub fn is_viewable(dtype: vtpu_phext::DType) -> bool {
    view_width(dtype).is_some() || dtype.is_quantized()
}

/// The byte offset and length of a `rows x cols` view starting at element `off` of a
/// `dtype` page (the element range was checked against the page). Quantized views must
/// start on a block and have rows of whole blocks: anything else is a trap naming the
/// block size, never a view that splits a block.
///
/// A page repacked in groups of 8 rows (`DType::is_repacked`) can only be viewed in
/// whole groups of its own rows: `cols` equal to the page's `page_cols`, starting on a
/// group and covering whole groups.
pub fn view_bytes(
    dtype: vtpu_phext::DType,
    off: usize,
    rows: u32,
    cols: u32,
    page_cols: usize,
) -> Result<(usize, usize), TrapKind> {
    let n = rows as usize * cols as usize;
    if let Some(w) = view_width(dtype) {
        return Ok((off * w, n * w));
    }
    if dtype.is_repacked() {
        const G: usize = 8;
        let whole = cols as usize == page_cols
            && page_cols > 0
            && off.is_multiple_of(G * page_cols)
            && (rows as usize).is_multiple_of(G);
        if !whole {
            return Err(TrapKind::Shape(format!(
                "a view of {rows}x{cols} {} elements from element {off}: pages repacked in groups of {G} rows are viewed in whole groups of their {page_cols}-element rows",
                dtype.name()
            )));
        }
    }
    let block = dtype.block_elems();
    if off % block != 0 || cols as usize % block != 0 {
        return Err(TrapKind::Shape(format!(
            "a view of {rows}x{cols} {} elements from element {off}: quantized views start on a block and have rows of whole blocks ({block} elements)",
            dtype.name()
        )));
    }
    let start = dtype
        .bytes_for(off)
        .map_err(|e| TrapKind::Shape(e.to_string()))?;
    let len = dtype
        .bytes_for(n)
        .map_err(|e| TrapKind::Shape(e.to_string()))?;
    Ok((start, len))
}

/// The trap for a failed SALLOC: a page already at the coordinate (perhaps created a
/// moment ago by another sentron) is `AlreadyMapped`; anything else is an allocation
/// failure with the space's own message.
pub fn alloc_trap(e: vtpu_phext::SpaceError, coord: Coord) -> TrapKind {
    match e {
        vtpu_phext::SpaceError::AlreadyMapped { .. } => TrapKind::AlreadyMapped(coord),
        e => TrapKind::Alloc(e.to_string()),
    }
}

/// One row of a block-quantized matrix as f32 (`src` holds whole blocks of `dtype`).
/// Dequantization is exact for the format (one scale times one quant per element, in
/// f32) and the same at every kernel level.
pub fn dequantize_row(
    dtype: vtpu_phext::DType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<(), TrapKind> {
    dequantize_row_of(dtype, src, 0, dst)
}

/// Row `row` of a block-quantized matrix (`data`: whole rows of `dst.len()` elements,
/// in either layout: a repacked page's rows are gathered from their group) as f32.
pub fn dequantize_row_of(
    dtype: vtpu_phext::DType,
    data: &[u8],
    row: usize,
    dst: &mut [f32],
) -> Result<(), TrapKind> {
    let q = quant_type(dtype).ok_or_else(|| {
        TrapKind::BadDType(format!("{} rows cannot be dequantized", dtype.name()))
    })?;
    vtpu_kernels::quant::dequantize_row_of(q, data, row, dst)
        .map_err(|e| TrapKind::Shape(e.to_string()))
}

/// The kernels' name for a block-quantized page dtype (`None` for plain types and for
/// quantized types the kernels do not read). Page dtypes carry the ggml type id.
pub fn quant_type(dtype: vtpu_phext::DType) -> Option<vtpu_kernels::QuantType> {
    if !dtype.is_quantized() {
        return None;
    }
    vtpu_kernels::QuantType::from_ggml_type(dtype.code() as u32)
}

/// The kernels' view of a weight-like tile operand, or `None` for a dtype the matmul
/// kernels do not read.
pub fn kernel_weights<'a>(slice: crate::state::TileSlice<'a>) -> Option<vtpu_kernels::Weights<'a>> {
    use crate::state::TileSlice;
    use vtpu_kernels::Weights;
    match slice {
        TileSlice::F32(x) => Some(Weights::F32(x)),
        TileSlice::F16(x) => Some(Weights::F16(x)),
        TileSlice::BF16(x) => Some(Weights::BF16(x)),
        TileSlice::Quant { dtype, bytes } => Some(Weights::Quant {
            qtype: quant_type(dtype)?,
            data: bytes,
        }),
    }
}

/// Do the matmul and dequantization kernels read pages of the block-quantized `dtype`?
pub fn kernels_read_quant(dtype: vtpu_phext::DType) -> bool {
    quant_type(dtype).is_some()
}
