//! Dead ops: ops the program does not need. An op counts only when something needs its
//! effect, so reports of ops per SIW stay honest:
//! - an op without side effects (no page write, allocation or freeing, no coordination
//!   or control flow) whose every written register is overwritten or never read on any
//!   path before it is read ("its result is never read");
//! - an SPREFCH of a page that no later word gathers from or scatters to through the
//!   same coordinate register before that register changes ("prefetch of a page no
//!   later op touches").
//!
//! Register liveness is computed over the stream's control-flow graph (branches and
//! CLOOP included) with the word semantics: all reads of a word happen before its
//! writes. An op whose only readers are themselves dead is dead too (the analysis
//! repeats until nothing changes). The check is static and conservative in the
//! direction of not reporting: a result read on some path is live. Final register
//! contents are not outputs (nothing reads them), pages and messages are.

use std::fmt;

use crate::ops::Coord as Coordination;
use crate::{Mem, Op, Operand, Pipe, Program, RegFile, Stream};

/// Why an op is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadReason {
    /// No path reads what it writes, and it has no other effect.
    UnreadResult,
    /// A prefetch of a page no later op touches.
    UselessPrefetch,
}

/// One dead op, by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadOp {
    pub stream: usize,
    pub sentron: Option<u32>,
    pub word: usize,
    pub pipe: Pipe,
    /// The op in assembly syntax.
    pub op: String,
    pub reason: DeadReason,
}

impl fmt::Display for DeadOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.sentron {
            Some(id) => format!("stream {} (sentron {id})", self.stream),
            None => format!("stream {} (spmd)", self.stream),
        };
        let why = match self.reason {
            DeadReason::UnreadResult => "its result is never read",
            DeadReason::UselessPrefetch => "it prefetches a page no later op touches",
        };
        write!(
            f,
            "{who}, word {}, {} slot: {}: {why}",
            self.word,
            self.pipe.name(),
            self.op
        )
    }
}

/// Bit of a register in a 64-bit set: r0..r31, t0..t15, c0..c15 (None if out of range).
fn bit(file: RegFile, idx: u8) -> Option<u64> {
    let (base, count) = match file {
        RegFile::Scalar => (0, crate::NUM_SCALAR_REGS),
        RegFile::Tile => (32, crate::NUM_TILE_REGS),
        RegFile::Coord => (48, crate::NUM_COORD_REGS),
    };
    ((idx as usize) < count && base + count <= 64).then(|| 1u64 << (base + idx as usize))
}

fn regs(op: &Op, keep: fn(Operand) -> bool) -> u64 {
    op.code
        .small_operands()
        .zip(op.args)
        .filter(|(k, _)| keep(*k))
        .filter_map(|(k, a)| k.reg_file().and_then(|f| bit(f, a)))
        .fold(0, |acc, b| acc | b)
}

/// The coordinate register an op reads as its page operand.
fn page_reg(op: &Op) -> u64 {
    regs(op, |k| k == Operand::CR)
}

fn effectful(op: &Op) -> bool {
    let info = op.code.info();
    matches!(info.mem, Mem::Write | Mem::Alloc | Mem::Free) || info.coord != Coordination::None
}

fn successors(s: &Stream, w: usize) -> [Option<usize>; 2] {
    let c = s.words[w].c();
    let next = (w + 1 < s.words.len()).then_some(w + 1);
    let target = Some(c.imm_label() as usize).filter(|&t| t < s.words.len());
    match c.code.info().coord {
        Coordination::Halt => [None, None],
        Coordination::Branch if c.code == crate::Opcode::CJmp => [target, None],
        Coordination::Branch => [next, target],
        _ => [next, None],
    }
}

/// Backward may-liveness: `gen[w]` read in w, `kill[w]` written in w.
fn liveness(s: &Stream, gen: &[u64], kill: &[u64]) -> Vec<u64> {
    let n = s.words.len();
    let mut live_in = vec![0u64; n];
    let mut live_out = vec![0u64; n];
    let mut changed = true;
    while changed {
        changed = false;
        for w in (0..n).rev() {
            let out = successors(s, w)
                .iter()
                .flatten()
                .fold(0u64, |acc, &t| acc | live_in[t]);
            let inn = gen[w] | (out & !kill[w]);
            if out != live_out[w] || inn != live_in[w] {
                live_out[w] = out;
                live_in[w] = inn;
                changed = true;
            }
        }
    }
    live_out
}

/// Every dead op of the program, in stream and word order.
pub fn dead_ops(p: &Program) -> Vec<DeadOp> {
    let mut out = Vec::new();
    for (si, s) in p.streams.iter().enumerate() {
        let n = s.words.len();
        let mut dead = vec![[false; 3]; n];
        let mut reasons = vec![[DeadReason::UnreadResult; 3]; n];
        loop {
            let mut gen = vec![0u64; n];
            let mut kill = vec![0u64; n];
            let mut page_gen = vec![0u64; n];
            for (w, word) in s.words.iter().enumerate() {
                for (k, op) in word.slots.iter().enumerate() {
                    if dead[w][k] || op.is_nop() {
                        continue;
                    }
                    gen[w] |= regs(op, Operand::reads);
                    kill[w] |= regs(op, Operand::writes);
                    if matches!(op.code.info().mem, Mem::Read | Mem::Write) {
                        page_gen[w] |= page_reg(op);
                    }
                }
            }
            let live_out = liveness(s, &gen, &kill);
            let page_out = liveness(s, &page_gen, &kill);
            let mut changed = false;
            for (w, word) in s.words.iter().enumerate() {
                for (k, op) in word.slots.iter().enumerate() {
                    if dead[w][k] || op.is_nop() || effectful(op) {
                        continue;
                    }
                    let reason = if op.code.info().mem == Mem::Prefetch {
                        let c = page_reg(op);
                        (c & page_out[w] == 0 || c & kill[w] != 0)
                            .then_some(DeadReason::UselessPrefetch)
                    } else {
                        let wr = regs(op, Operand::writes);
                        (wr != 0 && wr & live_out[w] == 0).then_some(DeadReason::UnreadResult)
                    };
                    if let Some(r) = reason {
                        dead[w][k] = true;
                        reasons[w][k] = r;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for (w, word) in s.words.iter().enumerate() {
            for (k, op) in word.slots.iter().enumerate() {
                if dead[w][k] {
                    out.push(DeadOp {
                        stream: si,
                        sentron: s.sentron,
                        word: w,
                        pipe: Pipe::ALL[k],
                        op: crate::disasm::format_op(op),
                        reason: reasons[w][k],
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(src: &str) -> Program {
        crate::assemble(src).unwrap()
    }

    #[test]
    fn unread_results_and_chains_are_dead() {
        let p = prog(
            ".page 1.1.1/1.1.1/1.1.1 f32 1x1\n\
             DLI r0, 1\n\
             DADDI r1, r0, 2\n\
             DLI r2, 0 | SCLI c0, 1.1.1/1.1.1/1.1.1\n\
             DTSPLAT t0, r2, 1x1\n\
             SSCATTR t0, c0, r2\n",
        );
        let d = dead_ops(&p);
        let words: Vec<usize> = d.iter().map(|x| x.word).collect();
        assert_eq!(
            words,
            [0, 1],
            "DADDI's result is unread, so DLI r0 only feeds a dead op: {d:?}"
        );
    }

    #[test]
    fn loop_carried_values_are_live() {
        let p = prog(
            ".page 1.1.1/1.1.1/1.1.1 f32 1x1\n\
             DLI r0, 10\n\
             DLI r1, 0\n\
             l: DADDI r1, r1, 1 | CLOOP r0, l\n\
             DTSPLAT t0, r1, 1x1 | SCLI c0, 1.1.1/1.1.1/1.1.1\n\
             DLI r2, 0\n\
             SSCATTR t0, c0, r2\n",
        );
        assert!(dead_ops(&p).is_empty(), "{:?}", dead_ops(&p));
    }

    #[test]
    fn prefetch_needs_a_later_touch_through_the_same_register() {
        let p = prog(
            ".page 1.1.1/1.1.1/1.1.1 f32 1x1\n\
             SCLI c0, 1.1.1/1.1.1/1.1.1\n\
             SPREFCH c0\n\
             SGATHER t0, c0\n\
             SPREFCH c0\n\
             DLI r0, 0\n\
             SSCATTR t0, c0, r0\n\
             SPREFCH c0\n",
        );
        let d = dead_ops(&p);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].word, d[0].reason), (6, DeadReason::UselessPrefetch));
    }

    #[test]
    fn a_prefetch_whose_register_changes_is_useless() {
        let p = prog(
            ".page 1.1.1/1.1.1/1.1.1 f32 1x1\n\
             .page 1.1.1/1.1.1/1.1.2 f32 1x1\n\
             SCLI c0, 1.1.1/1.1.1/1.1.1\n\
             SPREFCH c0\n\
             SCLI c0, 1.1.1/1.1.1/1.1.2\n\
             SGATHER t0, c0\n\
             DLI r0, 0\n\
             SSCATTR t0, c0, r0\n",
        );
        let d = dead_ops(&p);
        let got: Vec<(usize, DeadReason)> = d.iter().map(|x| (x.word, x.reason)).collect();
        // The first SCLI only fed the useless prefetch.
        assert_eq!(
            got,
            [
                (0, DeadReason::UnreadResult),
                (1, DeadReason::UselessPrefetch)
            ]
        );
    }
}
