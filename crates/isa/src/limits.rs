//! The crate limits as checks, shared by the assembler, the decoder and the validator
//! so the three agree: a program one of them accepts is never refused by another for a
//! size, count or id (issue 8: `asm` used to write `.vsiw` files the decoder refused).
//! The limits themselves are the `MAX_*` constants of the crate root.

use crate::encode::{PAGE_FIXED_BYTES, SIW_BYTES, STREAM_HEADER_BYTES};
use crate::{PageDecl, PageInitData, MAX_PAGE_ELEMS, MAX_SENTRONS, MAX_TILE_DIM};

/// [`MAX_PAGE_ELEMS`] as a count of items (it fits every supported target).
pub(crate) const MAX_PAGE_ELEMS_USIZE: usize = MAX_PAGE_ELEMS as usize;

/// What is wrong with a page shape, if anything: each dimension `1..=MAX_TILE_DIM`,
/// at most `MAX_PAGE_ELEMS` elements.
pub(crate) fn page_shape_problem(rows: u32, cols: u32) -> Option<String> {
    if !(1..=MAX_TILE_DIM).contains(&rows) || !(1..=MAX_TILE_DIM).contains(&cols) {
        return Some(format!(
            "shape {rows}x{cols}: each dimension must be 1..={MAX_TILE_DIM}"
        ));
    }
    let elems = u64::from(rows) * u64::from(cols);
    (elems > MAX_PAGE_ELEMS).then(|| {
        format!("shape {rows}x{cols} has {elems} elements, more than the limit {MAX_PAGE_ELEMS}")
    })
}

/// A stream may name sentrons `0..MAX_SENTRONS`.
pub(crate) fn sentron_id_ok(id: u32) -> bool {
    (id as usize) < MAX_SENTRONS
}

/// Bytes one page declaration takes in a `.vsiw` file.
pub(crate) fn encoded_page_bytes(p: &PageDecl) -> u64 {
    PAGE_FIXED_BYTES as u64
        + match &p.init {
            PageInitData::Zero => 0,
            PageInitData::F32(v) => 8 + 4 * v.len() as u64,
        }
}

/// Bytes one more word adds to a `.vsiw` file.
pub(crate) const ENCODED_WORD_BYTES: u64 = SIW_BYTES as u64;
/// Bytes one more stream header adds to a `.vsiw` file.
pub(crate) const ENCODED_STREAM_BYTES: u64 = STREAM_HEADER_BYTES as u64;
