//! Sentron architectural state: scalar, coordinate and tile registers.
//!
//! A tile register is a descriptor: shape, dtype and either sentron-local f32 scratch
//! (`Owned`) or a zero-copy view of a read-only page (`View`). Scratch buffers are
//! reused across writes, so a steady-state loop allocates nothing.

use std::sync::Arc;
use vtpu_isa::{NUM_COORD_REGS, NUM_SCALAR_REGS, NUM_TILE_REGS};
use vtpu_phext::{Coord, DType, Page};

/// Where a tile's elements live.
#[derive(Clone, Debug, Default)]
pub enum TileData {
    /// Never written.
    #[default]
    Empty,
    /// Sentron-local f32 scratch, row-major, `rows * cols` elements.
    Owned(Vec<f32>),
    /// Zero-copy view of a read-only page, starting `byte_off` bytes into it.
    View { page: Arc<Page>, byte_off: usize },
    /// A live window onto f32 or f16 elements (the tile's dtype) of a writable page
    /// (SWINDOW), starting `byte_off` bytes into it: nothing is copied; the ops that
    /// accept windows (the second operand of DTMM and DTMMN) read the page under its
    /// lock when they run, so they see its contents at that time. Every other op refuses
    /// a window.
    Window { page: Arc<Page>, byte_off: usize },
    /// A collective's f32 result, shared read-only by every member that received it
    /// (CREDUCE in the fast executor: an all-gather of a prefill's activations is
    /// megabytes, which each member would otherwise copy into a buffer of its own).
    Shared(Arc<crate::fabric::CollTile>),
}

/// A tile register: `rows x cols` elements of `dtype`.
#[derive(Clone, Debug)]
pub struct Tile {
    pub rows: u32,
    pub cols: u32,
    pub dtype: DType,
    pub data: TileData,
}

impl Default for Tile {
    fn default() -> Self {
        Tile {
            rows: 0,
            cols: 0,
            dtype: DType::F32,
            data: TileData::Empty,
        }
    }
}

/// A borrowed weight-like operand: f32 data, raw half-precision elements, or the raw
/// blocks of a block-quantized matrix (whole blocks per row: the view's columns and its
/// element offset are multiples of the dtype's block size).
pub enum TileSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    BF16(&'a [half::bf16]),
    Quant { dtype: DType, bytes: &'a [u8] },
}

impl Tile {
    #[inline]
    pub fn elems(&self) -> usize {
        self.rows as usize * self.cols as usize
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        matches!(self.data, TileData::Empty)
    }
    /// A new owned f32 tile.
    pub fn from_f32(rows: u32, cols: u32, data: Vec<f32>) -> Tile {
        debug_assert_eq!(data.len(), rows as usize * cols as usize);
        Tile {
            rows,
            cols,
            dtype: DType::F32,
            data: TileData::Owned(data),
        }
    }
    /// Is this a live window onto a writable page?
    #[inline]
    pub fn is_window(&self) -> bool {
        matches!(self.data, TileData::Window { .. })
    }
    /// Run `f` on a window's elements (`TileSlice::F32` or `TileSlice::F16`, as the
    /// tile's dtype says), under the page's read lock; `None` if this is not a window,
    /// its dtype is neither, or its range does not fit the page.
    pub fn with_window<R>(&self, f: impl FnOnce(TileSlice<'_>) -> R) -> Option<R> {
        let TileData::Window { page, byte_off } = &self.data else {
            return None;
        };
        let width = match self.dtype {
            DType::F32 => 4,
            DType::F16 => 2,
            _ => return None,
        };
        let end = byte_off.checked_add(self.elems().checked_mul(width)?)?;
        let dtype = self.dtype;
        page.read(|bytes| {
            let raw = bytes.get(*byte_off..end)?;
            let slice = match dtype {
                DType::F16 => TileSlice::F16(bytemuck::try_cast_slice(raw).ok()?),
                _ => TileSlice::F32(bytemuck::try_cast_slice(raw).ok()?),
            };
            Some(f(slice))
        })
    }
    /// The elements, typed; `None` if empty, a window, misaligned or of a dtype tiles
    /// cannot hold.
    pub fn slice(&self) -> Option<TileSlice<'_>> {
        match &self.data {
            TileData::Empty | TileData::Window { .. } => None,
            TileData::Owned(v) => Some(TileSlice::F32(&v[..])),
            TileData::Shared(c) => Some(TileSlice::F32(&c.data[..])),
            TileData::View { page, byte_off } => {
                let bytes = page.view()?;
                let n = self.elems();
                if self.dtype.is_quantized() {
                    // Rows of whole blocks (checked when the view was made).
                    let len = self.dtype.bytes_for(n).ok()?;
                    let end = byte_off.checked_add(len)?;
                    let raw = bytes.get(*byte_off..end)?;
                    return Some(TileSlice::Quant {
                        dtype: self.dtype,
                        bytes: raw,
                    });
                }
                let width = match self.dtype {
                    DType::F32 => 4,
                    DType::F16 | DType::BF16 => 2,
                    _ => return None,
                };
                let end = byte_off.checked_add(n.checked_mul(width)?)?;
                let raw = bytes.get(*byte_off..end)?;
                match self.dtype {
                    DType::F32 => bytemuck::try_cast_slice(raw).ok().map(TileSlice::F32),
                    DType::F16 => bytemuck::try_cast_slice(raw).ok().map(TileSlice::F16),
                    DType::BF16 => bytemuck::try_cast_slice(raw).ok().map(TileSlice::BF16),
                    _ => None,
                }
            }
        }
    }
    /// The elements as f32, if this tile holds f32.
    #[inline]
    pub fn f32s(&self) -> Option<&[f32]> {
        match &self.data {
            TileData::Owned(v) => Some(&v[..]),
            TileData::Shared(c) => Some(&c.data[..]),
            _ => match self.slice()? {
                TileSlice::F32(s) => Some(s),
                _ => None,
            },
        }
    }
    /// Take this register's scratch buffer for reuse (empty if it had none).
    #[inline]
    pub fn take_buffer(&mut self) -> Vec<f32> {
        match std::mem::take(&mut self.data) {
            TileData::Owned(v) => v,
            _ => Vec::new(),
        }
    }
    /// Make this register an owned f32 tile of the given shape over `buf`.
    #[inline]
    pub fn set_owned(&mut self, rows: u32, cols: u32, buf: Vec<f32>) {
        self.rows = rows;
        self.cols = cols;
        self.dtype = DType::F32;
        self.data = TileData::Owned(buf);
    }
}

/// The origin coordinate 1.1.1/1.1.1/1.1.1, the initial value of coordinate registers.
pub fn origin() -> Coord {
    Coord::ORIGIN
}

/// One sentron's registers.
#[derive(Clone, Debug)]
pub struct Regs {
    /// r0..r31.
    pub s: [i64; NUM_SCALAR_REGS],
    /// c0..c15.
    pub c: [Coord; NUM_COORD_REGS],
    /// t0..t15.
    pub t: [Tile; NUM_TILE_REGS],
}

impl Default for Regs {
    fn default() -> Self {
        Regs {
            s: [0; NUM_SCALAR_REGS],
            c: [origin(); NUM_COORD_REGS],
            t: std::array::from_fn(|_| Tile::default()),
        }
    }
}

/// A tile's contents after a run, for comparing executors and for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct TileValue {
    pub rows: u32,
    pub cols: u32,
    pub dtype: DType,
    /// Elements widened to f32 (empty for an empty register).
    pub data: Vec<f32>,
}

/// A sentron's final architectural state.
#[derive(Clone, Debug, PartialEq)]
pub struct SentronState {
    pub scalars: Vec<i64>,
    pub coords: Vec<Coord>,
    pub tiles: Vec<TileValue>,
}

impl Regs {
    pub fn snapshot(&self) -> SentronState {
        SentronState {
            scalars: self.s.to_vec(),
            coords: self.c.to_vec(),
            tiles: self
                .t
                .iter()
                .map(|t| TileValue {
                    rows: t.rows,
                    cols: t.cols,
                    dtype: t.dtype,
                    data: match t.slice() {
                        None if t.is_window() => t
                            .with_window(|w| match w {
                                TileSlice::F32(s) => s.to_vec(),
                                TileSlice::F16(s) => s.iter().map(|x| x.to_f32()).collect(),
                                _ => Vec::new(),
                            })
                            .unwrap_or_default(),
                        None => Vec::new(),
                        Some(TileSlice::F32(s)) => s.to_vec(),
                        Some(TileSlice::F16(s)) => s.iter().map(|x| x.to_f32()).collect(),
                        Some(TileSlice::BF16(s)) => s.iter().map(|x| x.to_f32()).collect(),
                        Some(TileSlice::Quant { dtype, bytes }) => {
                            let cols = t.cols as usize;
                            let rb = dtype.bytes_for(cols).unwrap_or(0);
                            let mut v = vec![0.0; t.elems()];
                            if rb > 0 {
                                for (i, row) in v.chunks_exact_mut(cols).enumerate() {
                                    // A dump; an undecodable row stays zero.
                                    let _ = crate::common::dequantize_row_of(dtype, bytes, i, row);
                                }
                            }
                            v
                        }
                    },
                })
                .collect(),
        }
    }
}
