//! vtpu-phext: phext space for the vtpu.
//!
//! Memory of the virtual TPU is *phext space*: pages at 9-part phext coordinates
//! (`library.shelf.series/collection.volume.book/chapter.section.scroll`), served by the
//! PPT (Phext Page Table, [`PhextSpace`]) through a per-sentron [`TranslationCache`].
//!
//! - [`coord`]: [`Coord`] (strict parsing, packed [`CoordKey`] for the hot path).
//! - [`dtype`]: [`DType`], including GGML block-quantized types.
//! - [`page`]: [`Page`], 64-byte-aligned bytes with a dtype and shape; sound concurrent
//!   access from sentron threads.
//! - [`curve`]: [`Layout`] and the Z-order / Hilbert keys used to place pages.
//! - [`space`]: [`PhextSpace`], allocation, freeing, lookup, curve placement.
//! - [`cache`]: [`TranslationCache`]; "PPT hit rate" is its hit rate.
//! - persistence: [`PhextSpace::save`] / [`PhextSpace::load`], a `.phext` manifest that
//!   libphext reads plus an mmap-able sidecar.

mod buf;
pub mod cache;
pub mod coord;
pub mod curve;
pub mod dtype;
pub mod error;
mod format;
pub mod page;
mod persist;
pub mod space;

pub use buf::PAGE_ALIGN;
pub use cache::TranslationCache;
pub use coord::{Coord, CoordKey, DEFAULT_PART_LIMIT, DIM_NAMES, MAX_PART_LIMIT};
pub use curve::{hilbert_key, zorder_key, Layout};
pub use dtype::DType;
pub use error::{CoordError, DTypeError, PageError, ParseProblem, PersistError, SpaceError};
pub use page::{Page, PageKind, MAPPED_ALIGN};
pub use persist::{LoadMode, SaveStats, MAX_MANIFEST_BYTES};
pub use space::{FillArena, PageInit, PageSpec, PhextSpace};
