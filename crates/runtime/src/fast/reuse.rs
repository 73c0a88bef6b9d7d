//! A fast sentron that runs again and again (a persistent session, `session.rs`): reset
//! between runs without giving back its tile buffers or its translation cache, and an
//! optional profiled loop that times every slot (`profile.rs`).

use super::{trap_at, FastSentron, Flow, Order, PreWord, StopAt};
use crate::error::TrapKind;
use crate::fabric::Transport;
use crate::profile::OpProfile;
use crate::state::TileSlice;
use std::time::Instant;
use vtpu_isa::{Op, Operand, Pipe};
use vtpu_phext::TranslationCache;

/// Most tile buffers a sentron keeps for reuse beyond its registers and spare.
pub const POOL_CAP: usize = 32;

/// What a sentron keeps from one run to the next.
#[derive(Default)]
pub struct Recycled {
    pub tlb: Option<TranslationCache>,
    pub pool: Vec<Vec<f32>>,
}

impl<T: Transport> FastSentron<'_, T> {
    /// A buffer a register gave up: it becomes the spare (the next result is computed
    /// into it), and the previous spare goes to the pool, which keeps at most
    /// [`POOL_CAP`] buffers (so a loop receiving fresh message buffers cannot grow it).
    pub(super) fn recycle(&mut self, buf: Vec<f32>) {
        if buf.capacity() == 0 {
            return;
        }
        let prev = std::mem::replace(&mut self.spare, buf);
        if prev.capacity() > 0 && self.pool.len() < POOL_CAP {
            self.pool.push(prev);
        }
    }

    /// A buffer of capacity >= n from the pool in place of `out` (which goes back to it).
    pub(super) fn swap_from_pool(&mut self, out: Vec<f32>, n: usize) -> Vec<f32> {
        match self.pool.iter().position(|b| b.capacity() >= n) {
            Some(i) => {
                let big = self.pool.swap_remove(i);
                if out.capacity() > 0 {
                    self.pool.push(out);
                }
                big
            }
            None => out,
        }
    }

    /// Back to the state of a fresh sentron (registers at their initial values, counters
    /// zero), keeping the tile buffers for reuse and the translation cache's entries
    /// (its counts restart).
    pub fn reset(&mut self) {
        let old = std::mem::take(&mut self.regs);
        for mut t in old.t {
            let b = t.take_buffer();
            if b.capacity() > 0 && self.pool.len() < POOL_CAP {
                self.pool.push(b);
            }
        }
        let spare = std::mem::take(&mut self.spare);
        if spare.capacity() > 0 && self.pool.len() < POOL_CAP {
            self.pool.push(spare);
        }
        self.counters = crate::counters::Counters::new(self.id);
        self.exec.iter_mut().for_each(|n| *n = 0);
        self.retired = 0;
        self.pc_hint = 0;
        self.tlb.reset_counters();
    }

    /// Hand over the translation cache and buffers, for a sentron built on the next run.
    pub fn into_recycled(mut self) -> Recycled {
        self.reset();
        Recycled {
            tlb: Some(self.tlb),
            pool: self.pool,
        }
    }

    /// Take back what an earlier sentron of the same id kept.
    pub fn restore(&mut self, r: Recycled) {
        if let Some(tlb) = r.tlb {
            self.tlb = tlb;
            self.tlb.reset_counters();
        }
        self.pool = r.pool;
    }

    /// Turn per-opcode profiling on (a fresh accumulator) or off.
    pub fn set_profile(&mut self, on: bool) {
        let (id, words) = (self.id, self.words.len());
        self.profile = on.then(|| Box::new(OpProfile::for_sentron(id, words)));
    }

    /// The profile gathered so far (None when profiling is off).
    pub fn take_profile(&mut self) -> Option<OpProfile> {
        self.profile.take().map(|b| *b)
    }

    /// Bytes of the tile operands `op` reads (each in its dtype).
    fn tile_read_bytes(&self, op: &Op) -> u64 {
        if op.code == vtpu_isa::Opcode::DTEmbed {
            // The ids and the n rows they pick, not the whole table.
            let [_, a, b, _] = op.args;
            let (ids, table) = (&self.regs.t[a as usize], &self.regs.t[b as usize]);
            let row = match table.slice() {
                Some(TileSlice::Quant { dtype, .. }) => {
                    dtype.bytes_for(table.cols as usize).unwrap_or(0)
                }
                Some(TileSlice::F16(_)) | Some(TileSlice::BF16(_)) => 2 * table.cols as usize,
                _ => 4 * table.cols as usize,
            };
            return (ids.elems() * (4 + row)) as u64;
        }
        if matches!(
            op.code,
            vtpu_isa::Opcode::DTRope | vtpu_isa::Opcode::DTRopeH
        ) {
            // x and the table rows of its positions (one f32 row per row of x), not the
            // whole table.
            let [_, a, b, _] = op.args;
            let (x, table) = (&self.regs.t[a as usize], &self.regs.t[b as usize]);
            return (4 * (x.elems() + x.rows as usize * table.cols as usize)) as u64;
        }
        op.code
            .small_operands()
            .zip(op.args)
            .filter(|(k, _)| matches!(k, Operand::TR | Operand::TRW))
            .map(|(_, i)| {
                let t = &self.regs.t[i as usize];
                let w = match t.slice() {
                    Some(TileSlice::F16(_)) | Some(TileSlice::BF16(_)) => 2,
                    Some(TileSlice::F32(_)) => 4,
                    Some(TileSlice::Quant { bytes, .. }) => return bytes.len() as u64,
                    None if t.is_window() => t.dtype.bytes_for(1).unwrap_or(4),
                    None => 0,
                };
                (t.elems() * w) as u64
            })
            .sum()
    }

    /// Bytes of the tile `op` writes (f32), after it ran.
    fn tile_write_bytes(&self, op: &Op) -> u64 {
        op.code
            .small_operands()
            .zip(op.args)
            .filter(|(k, _)| matches!(k, Operand::TW | Operand::TRW))
            .map(|(_, i)| 4 * self.regs.t[i as usize].elems() as u64)
            .sum()
    }

    /// Bytes an S or C op really moved in host memory: copies (gathers of writable
    /// pages, scatters) and message payloads. A gather of a read-only page, or a window,
    /// is a view: it counts in the virtual `bytes_gathered` but moves nothing here (the
    /// D op that reads the view counts those bytes), so a layer's weights are not
    /// counted twice in its GB/s.
    fn moved_bytes(&self) -> u64 {
        let c = &self.counters;
        c.bytes_copied + c.msg_bytes
    }

    /// One slot, timed and recorded.
    fn timed_slot(&mut self, slot: usize, op: &Op) -> Result<Flow, super::Fault> {
        let (flops0, moved0) = (self.counters.flops, self.moved_bytes());
        let read = if slot == 0 {
            self.tile_read_bytes(op)
        } else {
            0
        };
        let t0 = Instant::now();
        let r = match slot {
            0 => self.exec_d(op).map(|_| Flow::Next),
            1 => self.exec_s(op).map(|_| Flow::Next),
            _ => self.exec_c(op),
        };
        let ns = t0.elapsed().as_nanos() as u64;
        let bytes = if slot == 0 {
            read + self.tile_write_bytes(op)
        } else {
            self.moved_bytes() - moved0
        };
        let flops = self.counters.flops - flops0;
        if let Some(p) = self.profile.as_mut() {
            p.record_slot(self.pc_hint, slot, op.code, t0, ns, flops, bytes);
        }
        r
    }

    fn exec_word_timed(&mut self, w: &PreWord) -> Result<Flow, (usize, super::Fault)> {
        if w.order == Order::Buffered {
            // Rare: time the whole word and book it on its first live op.
            let t0 = Instant::now();
            let r = self.exec_buffered(w);
            let ns = t0.elapsed().as_nanos() as u64;
            if let (Some(p), Some(i)) = (self.profile.as_mut(), w.live.iter().position(|&l| l)) {
                p.record_slot(self.pc_hint, i, w.ops[i].code, t0, ns, 0, 0);
            }
            return r;
        }
        let order: [usize; 2] = if w.order == Order::Sdc {
            [1, 0]
        } else {
            [0, 1]
        };
        for slot in order {
            if w.live[slot] {
                if let Err(f) = self.timed_slot(slot, &w.ops[slot]) {
                    // As in `exec_word`: when S of an Sdc word traps, D's trap (if any)
                    // is the one the reference reports.
                    if slot == 1 && w.order == Order::Sdc && w.live[0] {
                        self.exec_d(&w.ops[0]).map_err(|f| (0, f))?;
                    }
                    return Err((slot, f));
                }
            }
        }
        if !w.live[Pipe::C as usize] {
            return Ok(Flow::Next);
        }
        self.timed_slot(2, &w.ops[2]).map_err(|f| (2, f))
    }

    /// `run_inner` with every slot timed (same control flow and checks).
    pub(super) fn run_profiled(&mut self) -> Result<(), StopAt> {
        let start = Instant::now();
        let words = self.words;
        let mut pc = 0usize;
        let r = loop {
            let Some(w) = words.get(pc) else { break Ok(()) };
            if let Some(n) = self.exec.get_mut(pc) {
                *n += 1;
            }
            self.retired += 1;
            self.pc_hint = pc as u32;
            match self.exec_word_timed(w) {
                Ok(Flow::Next) => pc += 1,
                Ok(Flow::Jump(t)) => {
                    if t as usize <= pc {
                        if self.retired > self.word_limit {
                            let fault = trap_at(TrapKind::WordLimit(self.word_limit), None);
                            break Err(StopAt {
                                pc: pc as u32,
                                op: w.ops[2],
                                fault,
                            });
                        }
                        if self.fabric.stopped() {
                            break Err(StopAt {
                                pc: pc as u32,
                                op: w.ops[2],
                                fault: super::stopped(),
                            });
                        }
                    }
                    pc = t as usize;
                }
                Ok(Flow::Halt) => break Ok(()),
                Err((slot, fault)) => {
                    break Err(StopAt {
                        pc: pc as u32,
                        op: w.ops[slot],
                        fault,
                    })
                }
            }
        };
        if let Some(p) = self.profile.as_mut() {
            p.finish_run(start, self.retired);
        }
        r
    }
}
