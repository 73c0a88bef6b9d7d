//! Typed errors for phext space. Every message is written for a person: what went wrong,
//! where (coordinate, file, dimension) and what was expected.

use std::path::PathBuf;

use thiserror::Error;

use crate::coord::{Coord, DIM_NAMES, MAX_PART_LIMIT};
use crate::dtype::DType;
use crate::page::PageKind;

/// Name of dimension `dim` (0-based), or "?" when out of range (only reachable from a bug).
pub(crate) fn dim_name(dim: usize) -> &'static str {
    DIM_NAMES.get(dim).copied().unwrap_or("?")
}

/// Errors from building, parsing or moving a [`Coord`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoordError {
    /// Text that is not a canonical `a.b.c/d.e.f/g.h.i` coordinate. `text` is the input,
    /// shortened to 64 characters when longer.
    #[error("coordinate {text:?}: {problem}")]
    Parse { text: String, problem: ParseProblem },
    /// A part (0-based `dim`) outside `1..=limit`.
    #[error("part {} ({}) is {value}, must be 1..={limit}", .dim + 1, dim_name(*.dim))]
    PartOutOfRange { dim: usize, value: i128, limit: u32 },
    /// A dimension index that is not 0..=8.
    #[error("dimension index {dim} is out of range, must be 0..=8 (library..scroll)")]
    BadDim { dim: usize },
    /// A part limit outside `1..=MAX_PART_LIMIT`.
    #[error("part limit {limit} is out of range, must be 1..={MAX_PART_LIMIT}")]
    BadLimit { limit: u32 },
    /// A `CoordKey` whose bits do not decode to a coordinate.
    #[error("coordinate key {key:#x} is not a packed coordinate: {problem}")]
    BadKey { key: u128, problem: &'static str },
}

/// What is wrong with a coordinate's text (see [`CoordError::Parse`]). Dimensions are
/// 0-based in the fields and printed 1-based with their names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseProblem {
    #[error(
        "empty text, expected library.shelf.series/collection.volume.book/chapter.section.scroll"
    )]
    Empty,
    #[error("has {found} groups separated by '/', expected 3")]
    GroupCount { found: usize },
    #[error("group {group} has {found} parts, expected 3")]
    PartCount { group: usize, found: usize },
    #[error("part {} ({}) is empty", .dim + 1, dim_name(*.dim))]
    EmptyPart { dim: usize },
    #[error("part {} ({}) has {found:?} at byte {byte_offset}, expected only decimal digits", .dim + 1, dim_name(*.dim))]
    NotDigit {
        dim: usize,
        byte_offset: usize,
        found: char,
    },
    #[error("part {} ({}) {text:?} has a leading zero (only canonical form is accepted)", .dim + 1, dim_name(*.dim))]
    LeadingZero { dim: usize, text: String },
    #[error("part {} ({}) has {digits} digits, too large for any limit (at most {MAX_PART_LIMIT})", .dim + 1, dim_name(*.dim))]
    TooLarge { dim: usize, digits: usize },
    #[error("part {} ({}) is {value}, must be 1..={limit}", .dim + 1, dim_name(*.dim))]
    OutOfRange { dim: usize, value: u64, limit: u32 },
    #[error("part limit {limit} is out of range, must be 1..={MAX_PART_LIMIT}")]
    BadLimit { limit: u32 },
}

/// Errors from sizing a run of elements of a [`DType`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DTypeError {
    #[error("{elems} elements of {dtype} is not a whole number of blocks of {block} elements")]
    NotBlockMultiple {
        dtype: DType,
        elems: usize,
        block: usize,
    },
    #[error("{elems} elements of {dtype} overflow the address space")]
    Overflow { dtype: DType, elems: usize },
}

/// Errors from accessing a page's bytes or elements.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PageError {
    #[error("page {coord} is read-only")]
    ReadOnly { coord: Coord },
    #[error("page {coord}: elements {offset}..{offset}+{len} are out of bounds, the page has {page_elems} elements")]
    OutOfBounds {
        coord: Coord,
        offset: usize,
        len: usize,
        page_elems: usize,
    },
    #[error("page {coord} holds {got}, expected {expected}")]
    DType {
        coord: Coord,
        expected: DType,
        got: DType,
    },
}

/// Errors from the Phext Page Table (mapping, freeing and placing pages).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpaceError {
    #[error("part limit {limit} is out of range, must be 1..={MAX_PART_LIMIT}")]
    BadLimit { limit: u32 },
    #[error("a page is already mapped at {coord}")]
    AlreadyMapped { coord: Coord },
    #[error("no page is mapped at {coord}")]
    NotMapped { coord: Coord },
    #[error("coordinate {coord} has a part above this space's part limit {limit}")]
    CoordAboveLimit { coord: Coord, limit: u32 },
    #[error("page {coord}: shape {rows}x{cols} has more elements than the address space")]
    ShapeOverflow {
        coord: Coord,
        rows: usize,
        cols: usize,
    },
    #[error("page {coord}: {source}")]
    Size { coord: Coord, source: DTypeError },
    #[error("page {coord}: {dtype} {rows}x{cols} needs {expected} bytes of data, got {got}")]
    DataLength {
        coord: Coord,
        dtype: DType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    #[error("page {coord}: kind {kind} cannot be used here: {why}")]
    BadKind {
        coord: Coord,
        kind: PageKind,
        why: &'static str,
    },
    #[error("page {coord}: could not allocate {bytes} bytes")]
    OutOfMemory { coord: Coord, bytes: usize },
    #[error("page {coord}: bytes {offset}..{offset}+{len} lie outside the {map_len}-byte mapping")]
    MappedRange {
        coord: Coord,
        offset: usize,
        len: usize,
        map_len: usize,
    },
    #[error(
        "page {coord}: mapped address {address:#x} is not 32-byte aligned (mapped pages must be)"
    )]
    MappedMisaligned { coord: Coord, address: usize },
    #[error("placed arena of {pages} pages needs more bytes than the address space")]
    ArenaOverflow { pages: usize },
    #[error("could not allocate a {bytes}-byte placement arena")]
    ArenaOutOfMemory { bytes: usize },
    #[error("page {coord}: arena bytes {offset}..{offset}+{len} are outside the {arena_len}-byte arena, not 64-byte aligned, or overlap another page")]
    BadPlacement {
        coord: Coord,
        offset: usize,
        len: usize,
        arena_len: usize,
    },
}

/// Errors from saving or loading phext space (manifest + sidecar).
#[derive(Debug, Error)]
pub enum PersistError {
    #[error("could not {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("page {coord} has a part above 999; saved files keep every part <= 999 so other phext readers accept them")]
    PartAboveFileLimit { coord: Coord },
    #[error("manifest {}: is {len} bytes, more than the {max}-byte cap", .path.display())]
    ManifestTooLarge { path: PathBuf, len: u64, max: u64 },
    #[error("manifest {}: is not UTF-8 text", .path.display())]
    ManifestNotText { path: PathBuf },
    #[error("manifest {}: is empty (0 bytes), not a saved phext space (a save of an empty space writes a vtpu-empty-space scroll)", .path.display())]
    EmptyManifest { path: PathBuf },
    #[error("manifest {}: holds no page scroll and no vtpu-empty-space marker, so it is not a saved phext space", .path.display())]
    NoPages { path: PathBuf },
    #[error("{what} {}: is {kind}, not a regular file", .path.display())]
    NotRegularFile {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("manifest {}: scroll at {coord}: {source}", .path.display())]
    BadCoordinate {
        path: PathBuf,
        coord: String,
        source: CoordError,
    },
    #[error("manifest {}: scroll at {coord}: {problem}", .path.display())]
    BadScroll {
        path: PathBuf,
        coord: String,
        problem: String,
    },
    #[error("manifest {}: scroll at {coord} names sidecar {name:?}, which is not a plain file name in the manifest's directory", .path.display())]
    BadSidecarName {
        path: PathBuf,
        coord: Coord,
        name: String,
    },
    #[error("manifest {}: scroll at {coord} names sidecar {other:?} but earlier scrolls name {first:?}", .path.display())]
    MixedSidecars {
        path: PathBuf,
        coord: Coord,
        first: String,
        other: String,
    },
    #[error("sidecar {} is missing (named by manifest {})", .path.display(), .manifest.display())]
    MissingSidecar { path: PathBuf, manifest: PathBuf },
    #[error("sidecar {}: {problem}", .path.display())]
    BadSidecarHeader { path: PathBuf, problem: String },
    #[error("sidecar {}: is {actual} bytes but its header says {expected} (truncated or damaged)", .path.display())]
    TruncatedSidecar {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("manifest has {manifest} pages but sidecar {} holds {sidecar}", .path.display())]
    PageCountMismatch {
        path: PathBuf,
        manifest: u64,
        sidecar: u64,
    },
    #[error("sidecar {}: page {coord} at bytes {offset}..{offset}+{length} lies outside the {sidecar_len}-byte file (or inside its header)", .path.display())]
    PageOutOfSidecar {
        path: PathBuf,
        coord: Coord,
        offset: u64,
        length: u64,
        sidecar_len: u64,
    },
    #[error("sidecar {}: page {coord} starts at offset {offset}, which is not 64-byte aligned", .path.display())]
    MisalignedPage {
        path: PathBuf,
        coord: Coord,
        offset: u64,
    },
    #[error("sidecar {}: pages {first} and {second} overlap", .path.display())]
    OverlappingPages {
        path: PathBuf,
        first: Coord,
        second: Coord,
    },
    #[error("sidecar {}: page {coord} checksum mismatch: manifest says xxh3 {expected:016x}, bytes hash to {actual:016x}", .path.display())]
    ChecksumMismatch {
        path: PathBuf,
        coord: Coord,
        expected: u64,
        actual: u64,
    },
    #[error("sidecar {}: could not allocate {bytes} bytes to copy it", .path.display())]
    OutOfMemory { path: PathBuf, bytes: u64 },
    #[error("{0}")]
    Space(#[from] SpaceError),
    #[cfg(test)]
    #[error("injected failure at save step {0:?}")]
    Injected(&'static str),
}
