//! The vTPU instruction set: sentron instruction words (SIWs), written once as data.
//!
//! An SIW has exactly three slots, one per pipe: D (dense tile math), S (pages in phext
//! space) and C (coordination and control flow). The op table in [`ops`] is the single
//! source of truth; the binary encoding ([`encode`]), the text assembly ([`asm`],
//! [`disasm`]) and the validator ([`validate`]) are derived from it.
//!
//! Word semantics (the executors implement exactly this):
//! - every slot reads its register operands as they were before the word;
//! - register writes commit at the end of the word; two slots writing the same
//!   register in one word is a validation error;
//! - the D and S slots act first; the C slot acts last, so a message, barrier or
//!   reduction in a word sees that word's page writes (an S-slot store in the same word
//!   as a CBAR is visible to the whole group after the barrier);
//! - falling off the end of a stream halts the sentron, like CHALT.

pub mod asm;
pub mod dead;
pub mod disasm;
pub mod encode;
mod limits;
pub mod ops;
mod syntax;
pub mod validate;
pub mod word;

pub use asm::{assemble, assemble_file, AsmError};
pub use disasm::disassemble;
pub use encode::{decode_program, decode_word, encode_program, encode_word, DecodeError};
pub use ops::{Class, Mem, OpInfo, Opcode, Operand, RegFile, Window, OPS};
pub use validate::{validate, ValidateOptions, ValidationError};
pub use word::{Op, PageDecl, PageInitData, Program, Siw, Stream};

/// Scalar (i64) registers per sentron: r0..r31.
pub const NUM_SCALAR_REGS: usize = 32;
/// Tile registers per sentron: t0..t15.
pub const NUM_TILE_REGS: usize = 16;
/// Coordinate registers per sentron: c0..c15.
pub const NUM_COORD_REGS: usize = 16;
/// Sentron ids and groups are bit masks over at most this many sentrons.
pub const MAX_SENTRONS: usize = 64;
/// Largest tile or page dimension (rows or cols) an immediate shape may name.
pub const MAX_TILE_DIM: u32 = 1 << 24;
/// Largest number of elements in a tile an immediate shape creates or gathers (64 Mi
/// elements, 256 MiB of f32): tiles are sentron scratch.
pub const MAX_TILE_ELEMS: u64 = 1 << 26;
/// Largest number of elements of a page a program declares or allocates (1 Gi elements).
pub const MAX_PAGE_ELEMS: u64 = 1 << 30;
/// Largest number of words in one stream.
pub const MAX_STREAM_WORDS: usize = 1 << 24;
/// Largest number of streams in one program: one per sentron plus the SPMD stream.
pub const MAX_STREAMS: usize = MAX_SENTRONS + 1;
/// Largest number of page declarations in one program.
pub const MAX_PAGES: usize = 1 << 20;
/// Largest program file: a `.vsiw` container (what the decoder accepts, what the
/// assembler may produce) and a `.vasm` source the command line reads. 256 MiB holds
/// 3.7 M words; readers stop at this many bytes instead of reading whatever a path
/// yields (`/dev/zero`).
pub const MAX_PROGRAM_BYTES: u64 = 256 << 20;

/// The three pipes, in slot order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pipe {
    D = 0,
    S = 1,
    C = 2,
}

impl Pipe {
    pub const ALL: [Pipe; 3] = [Pipe::D, Pipe::S, Pipe::C];
    pub fn name(self) -> &'static str {
        match self {
            Pipe::D => "D",
            Pipe::S => "S",
            Pipe::C => "C",
        }
    }
}
