//! Per-opcode host time of the fast executor, for profiling a program (`vtpu
//! profile-layer`). Off by default: when off, the executor's loop does not look at it
//! (one branch per run, not per word); when on, every slot is timed with the monotonic
//! clock (about 20-40 ns per reading, which is why it is not left on).
//!
//! Everything here is a host figure. Bytes are the bytes an op touched: for D-pipe ops
//! the tile operands it read (in their dtype) plus the tile it wrote; for S-pipe ops the
//! page bytes gathered or scattered; for C-pipe ops the message payload sent. Flops are
//! the virtual counter's flops (FMA = 2).
//!
//! A sentron's profile also keeps the same totals per word index (pc) and slot, and the
//! spans (start, length) of the slots of the first run it profiled (at most
//! [`MAX_SPANS`]): `vtpu profile` maps pcs to layers with a table derived from the
//! program (crates/profile `attribution.rs`), so the executor never needs to know what a
//! layer is. Both cost one indexed add and one capped push per slot, on the profiled
//! path only.

use serde::Serialize;
use std::sync::OnceLock;
use std::time::Instant;
use vtpu_isa::{Opcode, OPS};

/// Most slot spans one sentron keeps (24 bytes each: 1.5 MB): a whole decode step of a
/// 0.5B model is about 10 000 slots.
pub const MAX_SPANS: usize = 1 << 16;

/// The instant span times are measured from (the first time anything asks for it), so
/// spans of different sentrons share one clock.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// One slot's execution in the traced run (host time, ns since [`epoch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SlotSpan {
    pub pc: u32,
    /// 0 = D, 1 = S, 2 = C.
    pub slot: u8,
    pub start_ns: u64,
    pub ns: u64,
}

/// What one sentron's profiled runs measured, per word and slot.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SentronProfile {
    pub id: u32,
    /// Runs merged into this.
    pub runs: u64,
    /// Host nanoseconds from first word to halt, summed over runs.
    pub run_ns: u64,
    pub words: u64,
    /// Indexed by pc, then slot (D, S, C).
    pub slots: Vec<[OpStat; 3]>,
    /// Slot spans of the first run merged into this (at most [`MAX_SPANS`]).
    pub spans: Vec<SlotSpan>,
    /// Slots of that run beyond the cap.
    pub spans_dropped: u64,
    /// Start and end of that run (ns since [`epoch`]).
    pub span_run: Option<(u64, u64)>,
}

impl SentronProfile {
    fn merge(&mut self, o: &SentronProfile) {
        if self.slots.len() < o.slots.len() {
            self.slots.resize(o.slots.len(), [OpStat::default(); 3]);
        }
        for (a, b) in self.slots.iter_mut().zip(&o.slots) {
            for (x, y) in a.iter_mut().zip(b) {
                x.add(y);
            }
        }
        if self.span_run.is_none() {
            self.spans.clone_from(&o.spans);
            self.spans_dropped = o.spans_dropped;
            self.span_run = o.span_run;
        }
        self.runs += o.runs;
        self.run_ns += o.run_ns;
        self.words += o.words;
    }
}

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

impl OpStat {
    fn add(&mut self, o: &OpStat) {
        self.count += o.count;
        self.ns += o.ns;
        self.flops += o.flops;
        self.bytes += o.bytes;
    }
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
    /// Per sentron, per word (empty for a profile made with [`OpProfile::new`]).
    pub sentrons: Vec<SentronProfile>,
}

impl Default for OpProfile {
    fn default() -> Self {
        OpProfile {
            stats: vec![OpStat::default(); OPS.len()],
            run_ns: 0,
            words: 0,
            sentrons: Vec::new(),
        }
    }
}

impl OpProfile {
    pub fn new() -> OpProfile {
        OpProfile::default()
    }

    /// A profile of sentron `id`, whose stream has `words` words, that also keeps
    /// per-word totals and the spans of its first run.
    pub fn for_sentron(id: u32, words: usize) -> OpProfile {
        epoch();
        let mut p = OpProfile::default();
        p.sentrons.push(SentronProfile {
            id,
            slots: vec![[OpStat::default(); 3]; words],
            ..SentronProfile::default()
        });
        p
    }

    /// Record one execution of the op in `slot` of word `pc`, which started at `t0`
    /// and took `ns`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn record_slot(
        &mut self,
        pc: u32,
        slot: usize,
        code: Opcode,
        t0: Instant,
        ns: u64,
        flops: u64,
        bytes: u64,
    ) {
        self.record(code, ns, flops, bytes);
        let Some(s) = self.sentrons.first_mut() else {
            return;
        };
        if let Some(st) = s.slots.get_mut(pc as usize).and_then(|w| w.get_mut(slot)) {
            st.add(&OpStat {
                count: 1,
                ns,
                flops,
                bytes,
            });
        }
        if s.span_run.is_none() {
            if s.spans.len() < MAX_SPANS {
                s.spans.push(SlotSpan {
                    pc,
                    slot: slot as u8,
                    start_ns: since_epoch(t0),
                    ns,
                });
            } else {
                s.spans_dropped += 1;
            }
        }
    }

    /// The end of one profiled run that started at `start` and executed `words` words.
    pub fn finish_run(&mut self, start: Instant, words: u64) {
        let ns = start.elapsed().as_nanos() as u64;
        self.run_ns += ns;
        self.words += words;
        if let Some(s) = self.sentrons.first_mut() {
            s.runs += 1;
            s.run_ns += ns;
            s.words += words;
            if s.span_run.is_none() {
                let t0 = since_epoch(start);
                s.span_run = Some((t0, t0 + ns));
            }
        }
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
            a.add(b);
        }
        self.run_ns += other.run_ns;
        self.words += other.words;
        for o in &other.sentrons {
            match self.sentrons.iter_mut().find(|s| s.id == o.id) {
                Some(s) => s.merge(o),
                None => self.sentrons.push(o.clone()),
            }
        }
        self.sentrons.sort_by_key(|s| s.id);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one_run(id: u32, pc: u32, ns: u64) -> OpProfile {
        let mut p = OpProfile::for_sentron(id, 4);
        let t0 = Instant::now();
        p.record_slot(pc, 0, Opcode::DTMm, t0, ns, 10, 100);
        p.record_slot(pc, 2, Opcode::CReduce, t0, 2 * ns, 0, 8);
        p.finish_run(t0, 3);
        p
    }

    #[test]
    fn per_word_totals_add_up_by_sentron_and_spans_keep_the_first_run() {
        // Two sentrons of run 1, then the same two of run 2, as Session::run and the
        // model runner merge them.
        let mut run1 = one_run(1, 2, 5);
        run1.merge(&one_run(0, 1, 7));
        let mut run2 = one_run(0, 1, 11);
        run2.merge(&one_run(1, 2, 13));
        let mut acc = run1.clone();
        acc.merge(&run2);
        assert_eq!(
            acc.sentrons.iter().map(|s| s.id).collect::<Vec<_>>(),
            [0, 1]
        );
        let s0 = &acc.sentrons[0];
        assert_eq!(s0.runs, 2);
        assert_eq!(s0.slots[1][0].ns, 7 + 11);
        assert_eq!(s0.slots[1][2].ns, 14 + 22);
        assert_eq!(s0.slots[1][0].count, 2);
        assert_eq!(s0.slots[1][0].flops, 20);
        assert_eq!(s0.slots[0][0], OpStat::default());
        // Spans: the first run's only.
        assert_eq!(s0.spans.len(), 2);
        assert_eq!(s0.spans[0].ns, 7);
        assert_eq!(acc.sentrons[1].spans[1].ns, 10);
        // Opcode totals agree with the per-word ones.
        let dtmm = acc.stats[Opcode::DTMm as usize];
        assert_eq!(dtmm.ns, 5 + 7 + 11 + 13);
        let per_word: u64 = acc
            .sentrons
            .iter()
            .flat_map(|s| s.slots.iter())
            .map(|w| w[0].ns)
            .sum();
        assert_eq!(per_word, dtmm.ns);
        assert_eq!(acc.words, 12);
    }

    #[test]
    fn spans_stop_at_the_cap_and_count_what_they_dropped() {
        let mut p = OpProfile::for_sentron(0, 1);
        let t0 = Instant::now();
        for _ in 0..MAX_SPANS + 5 {
            p.record_slot(0, 1, Opcode::SGather, t0, 1, 0, 0);
        }
        let s = &p.sentrons[0];
        assert_eq!(s.spans.len(), MAX_SPANS);
        assert_eq!(s.spans_dropped, 5);
        assert_eq!(s.slots[0][1].count, MAX_SPANS as u64 + 5);
        // A pc past the stream (cannot happen; must not panic) only counts per opcode.
        p.record_slot(9, 0, Opcode::DTMm, t0, 1, 0, 0);
        assert_eq!(p.stats[Opcode::DTMm as usize].count, 1);
    }
}
