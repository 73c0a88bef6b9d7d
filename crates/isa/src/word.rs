//! Ops, words, streams and programs: the in-memory form every tool shares.

use crate::{Opcode, Pipe};
use vtpu_phext::{Coord, CoordKey, DType, PageKind};

/// One slot of an SIW: an opcode, up to four small operands and one 128-bit immediate.
/// What each `args[i]` and `imm` mean is given by the op's row in the table
/// (`Opcode::info().operands`); unused fields are zero (the canonical form, which the
/// decoder enforces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    pub code: Opcode,
    pub args: [u8; 4],
    pub imm: u128,
}

/// `Group` immediate meaning "every sentron of the machine".
pub const GROUP_ALL: u64 = u64::MAX;
/// `Reduce` operand values.
pub const REDUCE_SUM: u8 = 0;
pub const REDUCE_MAX: u8 = 1;
/// The members' tiles side by side (same rows; columns in sentron order): an all-gather.
pub const REDUCE_CAT: u8 = 2;
/// Assembly names of the `Reduce` operand values, indexed by value.
pub const REDUCE_NAMES: [&str; 3] = ["sum", "max", "cat"];

/// Binary codes of page kinds: the `Kind` operand of SALLOC (owned or scratch only) and
/// the kind byte of a page declaration in a `.vsiw` file.
pub const KIND_OWNED: u8 = 0;
pub const KIND_SCRATCH: u8 = 1;
/// Only in decoded page declarations; a program cannot create a mapped page (the
/// validator rejects it), mapped pages come from model files.
pub const KIND_MAPPED: u8 = 2;

/// The binary code of a page kind.
pub fn kind_code(kind: PageKind) -> u8 {
    match kind {
        PageKind::Owned => KIND_OWNED,
        PageKind::Scratch => KIND_SCRATCH,
        PageKind::Mapped => KIND_MAPPED,
    }
}

/// Inverse of [`kind_code`].
pub fn kind_from_code(code: u8) -> Option<PageKind> {
    match code {
        KIND_OWNED => Some(PageKind::Owned),
        KIND_SCRATCH => Some(PageKind::Scratch),
        KIND_MAPPED => Some(PageKind::Mapped),
        _ => None,
    }
}

impl Op {
    pub const fn new(code: Opcode, args: [u8; 4], imm: u128) -> Op {
        Op { code, args, imm }
    }
    pub const fn nop(pipe: Pipe) -> Op {
        Op::new(Opcode::nop(pipe), [0; 4], 0)
    }
    #[inline]
    pub fn is_nop(&self) -> bool {
        self.code.is_nop()
    }
    /// The immediate as a signed 64-bit integer (I64 operands).
    #[inline]
    pub fn imm_i64(&self) -> i64 {
        self.imm as u64 as i64
    }
    /// The immediate as f32 (F32 operands).
    #[inline]
    pub fn imm_f32(&self) -> f32 {
        f32::from_bits(self.imm as u32)
    }
    /// The immediate as a shape `(rows, cols)` (Shape operands).
    #[inline]
    pub fn imm_shape(&self) -> (u32, u32) {
        (self.imm as u32, (self.imm >> 32) as u32)
    }
    /// The immediate as a packed coordinate (CoordImm operands).
    #[inline]
    pub fn imm_coord(&self) -> CoordKey {
        CoordKey(self.imm)
    }
    /// The immediate as a group mask (Group operands).
    #[inline]
    pub fn imm_group(&self) -> u64 {
        self.imm as u64
    }
    /// The immediate as a branch target word index (Label operands).
    #[inline]
    pub fn imm_label(&self) -> u32 {
        self.imm as u32
    }
    pub fn encode_i64(v: i64) -> u128 {
        v as u64 as u128
    }
    pub fn encode_f32(v: f32) -> u128 {
        v.to_bits() as u128
    }
    pub fn encode_shape(rows: u32, cols: u32) -> u128 {
        rows as u128 | ((cols as u128) << 32)
    }
    pub fn encode_coord(c: Coord) -> u128 {
        c.key().0
    }
    pub fn encode_group(mask: u64) -> u128 {
        mask as u128
    }
    pub fn encode_label(target: u32) -> u128 {
        target as u128
    }
}

/// A sentron instruction word: exactly one op per pipe, in D, S, C order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Siw {
    pub slots: [Op; 3],
}

impl Siw {
    /// A word of three NOPs.
    pub const NOP: Siw = Siw {
        slots: [Op::nop(Pipe::D), Op::nop(Pipe::S), Op::nop(Pipe::C)],
    };
    #[inline]
    pub fn slot(&self, pipe: Pipe) -> &Op {
        &self.slots[pipe as usize]
    }
    #[inline]
    pub fn d(&self) -> &Op {
        &self.slots[0]
    }
    #[inline]
    pub fn s(&self) -> &Op {
        &self.slots[1]
    }
    #[inline]
    pub fn c(&self) -> &Op {
        &self.slots[2]
    }
    /// Build a word from ops in any order; each lands in its own pipe's slot.
    /// Returns `None` if two ops name the same pipe.
    pub fn from_ops(ops: &[Op]) -> Option<Siw> {
        let mut w = Siw::NOP;
        let mut used = [false; 3];
        for op in ops {
            let p = op.code.pipe() as usize;
            if used[p] {
                return None;
            }
            used[p] = true;
            w.slots[p] = *op;
        }
        Some(w)
    }
    /// Number of non-NOP slots (0..=3).
    pub fn op_count(&self) -> usize {
        self.slots.iter().filter(|o| !o.is_nop()).count()
    }
}

/// The initial contents of a declared page.
#[derive(Clone, Debug)]
pub enum PageInitData {
    /// All zero bytes.
    Zero,
    /// f32 values in row-major order (the page's dtype must be f32; length = rows*cols).
    F32(Vec<f32>),
}

impl PartialEq for PageInitData {
    // Bitwise, so that NaN payloads round-trip through encode/decode exactly.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PageInitData::Zero, PageInitData::Zero) => true,
            (PageInitData::F32(a), PageInitData::F32(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => false,
        }
    }
}

/// A page the program declares: created in phext space before the sentrons start.
#[derive(Clone, Debug, PartialEq)]
pub struct PageDecl {
    pub coord: Coord,
    pub dtype: DType,
    /// [rows, cols].
    pub shape: [u32; 2],
    /// Owned (persisted) or Scratch (not persisted).
    pub kind: PageKind,
    /// Read-only pages can be gathered zero-copy and trap on scatter.
    pub read_only: bool,
    pub init: PageInitData,
}

/// The word stream of one sentron, or of every sentron (SPMD) when `sentron` is None.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub sentron: Option<u32>,
    pub words: Vec<Siw>,
}

/// A whole program: declared pages plus one or more streams.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Program {
    pub pages: Vec<PageDecl>,
    pub streams: Vec<Stream>,
}

impl Program {
    /// The stream sentron `id` runs: its own, else the SPMD one.
    pub fn stream_for(&self, id: u32) -> Option<&Stream> {
        self.streams
            .iter()
            .find(|s| s.sentron == Some(id))
            .or_else(|| self.streams.iter().find(|s| s.sentron.is_none()))
    }
    /// Smallest number of sentrons that runs every explicit stream.
    pub fn min_sentrons(&self) -> usize {
        self.streams
            .iter()
            .filter_map(|s| s.sentron)
            .map(|id| id as usize + 1)
            .max()
            .unwrap_or(1)
    }
    pub fn total_words(&self) -> usize {
        self.streams.iter().map(|s| s.words.len()).sum()
    }
}
