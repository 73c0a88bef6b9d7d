//! A small builder for straight-line SIW streams: the layer generator emits ops one at a
//! time on register handles, the builder allocates registers and packs the ops into
//! words.
//!
//! This is a stop-gap for the SIW compiler (`crates/compiler`, a dataflow-graph API with
//! list/modulo scheduling and register allocation): the generator only talks to
//! [`StreamBuilder`] through these ops and `release`, so moving it onto the compiler's
//! graph is a change of this one file.
//!
//! Packing is ASAP list placement in program order, from the op table's properties only:
//! an op goes into the first word at or after the earliest word its dependencies allow
//! whose slot for its pipe is free, where
//! - a read waits for the word after the register's last write (reads see the registers
//!   as they were before the word);
//! - a write waits for the word after the last write (one writer per register per word)
//!   and may share a word with the last read (the reader sees the old value);
//! - S-pipe ops that touch pages (gather, scatter, load) stay in program order;
//! - a C-pipe op (collective, message, halt) goes no earlier than every op before it and
//!   every op after it goes to a later word (a barrier orders memory both ways).

use std::collections::VecDeque;
use vtpu_isa::{Mem, Op, Opcode, Pipe, RegFile, Siw, Stream, NUM_COORD_REGS, NUM_SCALAR_REGS};
use vtpu_isa::{Operand, NUM_TILE_REGS};
use vtpu_phext::Coord;

/// The builder ran out of registers of one file (a generator bug or a shape the
/// generator cannot hold live at once).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("program builder: no free {file:?} register left")]
pub struct OutOfRegisters {
    pub file: RegFile,
}

/// Per register: the word of its last write and of its last read.
#[derive(Clone, Default)]
struct RegUse {
    write: [Option<usize>; 32],
    read: [Option<usize>; 32],
}

/// Builds one straight-line stream.
pub struct StreamBuilder {
    sentron: Option<u32>,
    words: Vec<Siw>,
    used: Vec<[bool; 3]>,
    uses: [RegUse; 3],
    /// Word of the last page-touching S op.
    last_mem: Option<usize>,
    /// Every op goes at or after this word (set past each C op).
    floor: usize,
    /// Largest word holding any op.
    last_any: Option<usize>,
    free: [VecDeque<u8>; 3],
}

fn file_index(f: RegFile) -> usize {
    match f {
        RegFile::Scalar => 0,
        RegFile::Tile => 1,
        RegFile::Coord => 2,
    }
}

impl StreamBuilder {
    /// A builder for the stream of `sentron` (None: the SPMD stream).
    pub fn new(sentron: Option<u32>) -> StreamBuilder {
        let free = [
            (0..NUM_SCALAR_REGS as u8).collect(),
            (0..NUM_TILE_REGS as u8).collect(),
            (0..NUM_COORD_REGS as u8).collect(),
        ];
        StreamBuilder {
            sentron,
            words: Vec::new(),
            used: Vec::new(),
            uses: Default::default(),
            last_mem: None,
            floor: 0,
            last_any: None,
            free,
        }
    }

    fn alloc(&mut self, f: RegFile) -> Result<u8, OutOfRegisters> {
        self.free[file_index(f)]
            .pop_front()
            .ok_or(OutOfRegisters { file: f })
    }

    /// Place one op (see the module doc for the rules).
    pub fn push(&mut self, op: Op) {
        let info = op.code.info();
        let mut earliest = self.floor;
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        for (kind, &reg) in op.code.small_operands().zip(&op.args) {
            if let Some(f) = kind.reg_file() {
                let u = &self.uses[file_index(f)];
                let r = reg as usize % 32;
                if kind.reads() {
                    reads.push((file_index(f), r));
                    if let Some(w) = u.write[r] {
                        earliest = earliest.max(w + 1);
                    }
                }
                if kind.writes() {
                    writes.push((file_index(f), r));
                    if let Some(w) = u.write[r] {
                        earliest = earliest.max(w + 1);
                    }
                    if let Some(w) = u.read[r] {
                        earliest = earliest.max(w);
                    }
                }
            }
        }
        let pipe = info.pipe;
        // Page ops stay in program order; so does an op that reads a page through a
        // window operand (DTMM / DTMMN on a SWINDOW tile), a read the table declares.
        let touches_pages =
            (pipe == Pipe::S && info.mem != Mem::None) || info.window.reads_windows();
        if touches_pages {
            if let Some(w) = self.last_mem {
                earliest = earliest.max(w + 1);
            }
        }
        let is_c = pipe == Pipe::C && !op.is_nop();
        if is_c {
            if let Some(w) = self.last_any {
                earliest = earliest.max(w);
            }
        }
        let p = pipe as usize;
        let mut w = earliest;
        while self.used.get(w).is_some_and(|u| u[p]) {
            w += 1;
        }
        while self.words.len() <= w {
            self.words.push(Siw::NOP);
            self.used.push([false; 3]);
        }
        self.words[w].slots[p] = op;
        self.used[w][p] = true;
        for (f, r) in reads {
            let slot = &mut self.uses[f].read[r];
            *slot = Some(slot.map_or(w, |x| x.max(w)));
        }
        for (f, r) in writes {
            self.uses[f].write[r] = Some(w);
        }
        if touches_pages {
            self.last_mem = Some(w);
        }
        self.last_any = Some(self.last_any.map_or(w, |x| x.max(w)));
        if is_c {
            self.floor = w + 1;
        }
    }

    /// The finished stream.
    pub fn finish(self) -> Stream {
        Stream {
            sentron: self.sentron,
            words: self.words,
        }
    }

    // ------------------------------------------------------------ generic ops

    fn alloc_reg(&mut self, f: RegFile) -> Result<Reg, EmitError> {
        self.alloc(f)
            .map(|index| Reg { file: f, index })
            .map_err(EmitError::from)
    }
}

/// A register holding a value (the builder's value handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg {
    pub file: RegFile,
    pub index: u8,
}

/// An operand of [`Emit::op`]: a value, or an immediate of the op's big/small kinds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum A<V> {
    V(V),
    I64(i64),
    F32(f32),
    Coord(Coord),
    Reduce(u8),
    Group(u64),
}

/// Why an op could not be emitted (a generator bug or an exhausted register file).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error(transparent)]
    Registers(#[from] OutOfRegisters),
    #[error("{op}: {what}")]
    Operands { op: &'static str, what: String },
    #[error("compiler: {0}")]
    Compiler(String),
}

/// Where the layer generator puts its ops: SSA style, each op returns the value it
/// writes. Implemented by [`StreamBuilder`] (registers and packing here) and by the SIW
/// compiler's graph (`crate::layer_program::GraphEmit`).
pub trait Emit {
    type V: Copy;
    /// Append `code`; `args` are its operands in table order without the write-only
    /// registers (read-write registers included). Returns the value it writes, if any.
    fn op(&mut self, code: Opcode, args: &[A<Self::V>]) -> Result<Option<Self::V>, EmitError>;
    /// `v` is dead from here on (a no-op where registers are allocated later).
    fn release(&mut self, v: Self::V);
    /// End the stream.
    fn halt(&mut self) -> Result<(), EmitError>;
}

impl Emit for StreamBuilder {
    type V = Reg;

    fn op(&mut self, code: Opcode, args: &[A<Reg>]) -> Result<Option<Reg>, EmitError> {
        let info = code.info();
        let bad = |what: String| EmitError::Operands {
            op: info.name,
            what,
        };
        let mut small = [0u8; 4];
        let mut ns = 0;
        let mut imm = 0u128;
        let mut out = None;
        let mut it = args.iter();
        for &kind in info.operands {
            let mut put = |v: u8, small: &mut [u8; 4]| -> Result<(), EmitError> {
                *small
                    .get_mut(ns)
                    .ok_or_else(|| bad("too many small operands".into()))? = v;
                ns += 1;
                Ok(())
            };
            if let Some(file) = kind.reg_file() {
                if kind.writes() && !kind.reads() {
                    let r = self.alloc_reg(file)?;
                    put(r.index, &mut small)?;
                    out = Some(r);
                    continue;
                }
                match it.next() {
                    Some(A::V(r)) if r.file == file => {
                        put(r.index, &mut small)?;
                        if kind.writes() {
                            out = Some(*r);
                        }
                    }
                    other => return Err(bad(format!("expected a {file:?} value, got {other:?}"))),
                }
                continue;
            }
            let a = it
                .next()
                .ok_or_else(|| bad(format!("missing {kind:?} operand")))?;
            match (kind, a) {
                (Operand::I64, A::I64(v)) => imm = Op::encode_i64(*v),
                (Operand::F32, A::F32(v)) => imm = Op::encode_f32(*v),
                (Operand::CoordImm, A::Coord(c)) => imm = Op::encode_coord(*c),
                (Operand::Group, A::Group(g)) => imm = Op::encode_group(*g),
                (Operand::Reduce, A::Reduce(r)) => put(*r, &mut small)?,
                (k, a) => return Err(bad(format!("operand {k:?} cannot take {a:?}"))),
            }
        }
        if it.next().is_some() {
            return Err(bad("too many operands".into()));
        }
        self.push(Op::new(code, small, imm));
        Ok(out)
    }

    fn release(&mut self, v: Reg) {
        self.free[file_index(v.file)].push_back(v.index);
    }

    fn halt(&mut self) -> Result<(), EmitError> {
        self.push(Op::new(Opcode::CHalt, [0; 4], 0));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_independent_ops_and_respects_dependencies() {
        let mut b = StreamBuilder::new(None);
        let o = Coord::ORIGIN;
        let c0 = b.op(Opcode::SCli, &[A::Coord(o)]).unwrap().unwrap(); // w0 S
        let t0 = b.op(Opcode::SGather, &[A::V(c0)]).unwrap().unwrap(); // w1 S (reads c0)
        let t1 = b.op(Opcode::DTMm, &[A::V(t0), A::V(t0)]).unwrap().unwrap(); // w2 D
        b.release(c0);
        b.release(t0);
        let c1 = b.op(Opcode::SCli, &[A::Coord(o)]).unwrap().unwrap(); // new reg: w0? S busy.. -> w2
        let t2 = b.op(Opcode::SGather, &[A::V(c1)]).unwrap().unwrap(); // reads c1 (w2) -> w3
        let t3 = b.op(Opcode::DTAdd, &[A::V(t1), A::V(t2)]).unwrap().unwrap(); // -> w4
        let t3b = b
            .op(
                Opcode::CReduce,
                &[A::V(t3), A::Reduce(0), A::Group(u64::MAX)],
            )
            .unwrap();
        assert_eq!(t3b, Some(t3), "read-write operands keep their register");
        b.op(Opcode::DLi, &[A::I64(3)]).unwrap(); // after the C op -> w6
        assert!(b.op(Opcode::DTAdd, &[A::V(t3)]).is_err());
        assert!(b.op(Opcode::DTAdd, &[A::V(c1), A::V(t3)]).is_err());
        let s = b.finish();
        let codes: Vec<[Opcode; 3]> = s
            .words
            .iter()
            .map(|w| [w.d().code, w.s().code, w.c().code])
            .collect();
        use Opcode::*;
        assert_eq!(
            codes,
            vec![
                [DNop, SCli, CNop],
                [DNop, SGather, CNop],
                [DTMm, SCli, CNop],
                [DNop, SGather, CNop],
                [DTAdd, SNop, CNop],
                [DNop, SNop, CReduce],
                [DLi, SNop, CNop],
            ]
        );
    }
}
