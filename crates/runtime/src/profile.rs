//! Per-opcode host time of the fast executor, for profiling a program (`vtpu
//! profile-layer`). Off by default: when off, the executor's loop does not look at it
//! (one branch per run, not per word); when on, every slot is timed with the monotonic
//! clock (about 20-40 ns per reading, which is why it is not left on).
//!
//! Everything here is a host figure. Bytes are the bytes an op touched: for D-pipe ops
//! the tile operands it read (in their dtype) plus the tile it wrote; for S-pipe ops the
//! page bytes gathered or scattered; for C-pipe ops the message payload sent. Flops are
//! the virtual counter's flops (FMA = 2).

use serde::Serialize;
use vtpu_isa::{Opcode, OPS};

/// Totals for one opcode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct OpStat {
    /// Times executed.
    pub count: u64,
    /// Host nanoseconds inside the op (including any time blocked in the C pipe).
    pub ns: u64,
    pub flops: u64,
    pub bytes: u64,
}

/// Per-opcode totals of one or more runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpProfile {
    /// Indexed by `Opcode as usize`.
    pub stats: Vec<OpStat>,
    /// Host nanoseconds of the profiled runs, from first word to halt, per sentron summed.
    pub run_ns: u64,
    /// Words executed.
    pub words: u64,
}

impl Default for OpProfile {
    fn default() -> Self {
        OpProfile {
            stats: vec![OpStat::default(); OPS.len()],
            run_ns: 0,
            words: 0,
        }
    }
}

impl OpProfile {
    pub fn new() -> OpProfile {
        OpProfile::default()
    }

    /// Record one execution of `code`.
    #[inline]
    pub fn record(&mut self, code: Opcode, ns: u64, flops: u64, bytes: u64) {
        if let Some(s) = self.stats.get_mut(code as usize) {
            s.count += 1;
            s.ns += ns;
            s.flops += flops;
            s.bytes += bytes;
        }
    }

    /// Add another profile (e.g. of another sentron or run).
    pub fn merge(&mut self, other: &OpProfile) {
        for (a, b) in self.stats.iter_mut().zip(&other.stats) {
            a.count += b.count;
            a.ns += b.ns;
            a.flops += b.flops;
            a.bytes += b.bytes;
        }
        self.run_ns += other.run_ns;
        self.words += other.words;
    }

    /// Opcodes that ran, most host time first.
    pub fn rows(&self) -> Vec<(Opcode, OpStat)> {
        let mut rows: Vec<(Opcode, OpStat)> = Opcode::ALL
            .iter()
            .zip(&self.stats)
            .filter(|(_, s)| s.count > 0)
            .map(|(&c, &s)| (c, s))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.ns));
        rows
    }

    /// Host nanoseconds inside ops of one pipe (0 = D, 1 = S, 2 = C).
    pub fn pipe_ns(&self, pipe: vtpu_isa::Pipe) -> u64 {
        Opcode::ALL
            .iter()
            .zip(&self.stats)
            .filter(|(c, _)| c.pipe() == pipe)
            .map(|(_, s)| s.ns)
            .sum()
    }

    /// Host nanoseconds inside any op.
    pub fn op_ns(&self) -> u64 {
        self.stats.iter().map(|s| s.ns).sum()
    }
}
