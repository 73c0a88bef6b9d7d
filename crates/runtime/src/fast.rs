//! The fast executor: pre-decoded words, SIMD tile kernels, one OS thread per sentron.
//!
//! Word semantics are those of `vtpu_isa` (reads before the word, writes at its end,
//! C slot last). Rather than buffering every write, each word is classified once at load
//! time from the op table's read/write sets:
//! - `Dsc`: no slot reads what an earlier-executed slot writes: run D, S, C in place;
//! - `Sdc`: S reads a register D writes (and D reads nothing S writes): run S first;
//! - `Buffered`: anything else: every slot runs against a snapshot (rare, slow, exact).
//!
//! Counting costs one increment per word: per-pipe op and NOP counts are derived after
//! the run from per-word execution counts and each word's static op mix.

mod layer_ops;
mod mem;
mod reuse;
pub use reuse::Recycled;

use crate::common::{
    check_range, is_viewable, record_tlb, reg_uses, resolve_group, translate, view_bytes,
};
use crate::counters::Counters;
use crate::error::TrapKind;
use crate::fabric::{CollError, CollKind, CollTile, Message, Transport, WaitSite};
use crate::state::{Regs, Tile, TileData};
use std::sync::Arc;

/// Collective tiles of at least this many elements are moved into the fabric and their
/// result shared by the members ([`TileData::Shared`]) instead of copied in and out:
/// prefill all-gathers move megabytes. Smaller ones (a decode step's rows) keep the
/// copies, which leave each sentron its own buffers.
const SHARE_RESULTS_FROM: usize = 16 * 1024;
use vtpu_isa::{Op, Opcode, Siw};
use vtpu_kernels::{self as k, Kernels};
use vtpu_phext::{Coord, DType, PageKind, PhextSpace, TranslationCache};

// Register indices are masked with these (the files are powers of two) instead of
// bounds-checked: the validator guarantees every index is in range, so the mask never
// changes a value, and the hot path loses a compare and branch per operand.
const SMASK: usize = vtpu_isa::NUM_SCALAR_REGS - 1;
const CMASK: usize = vtpu_isa::NUM_COORD_REGS - 1;
const _: () = assert!(vtpu_isa::NUM_SCALAR_REGS.is_power_of_two());
const _: () = assert!(vtpu_isa::NUM_COORD_REGS.is_power_of_two());

/// How a word's slots are ordered (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Dsc,
    Sdc,
    Buffered,
}

/// A word prepared for execution.
#[derive(Clone, Debug)]
pub struct PreWord {
    pub ops: [Op; 3],
    pub live: [bool; 3],
    pub order: Order,
}

impl PreWord {
    pub fn new(w: &Siw) -> PreWord {
        let [d, s, c] = w.slots;
        let (rd, wd) = reg_uses(&d);
        let (rs, ws) = reg_uses(&s);
        let (rc, _) = reg_uses(&c);
        use crate::common::overlaps;
        let order = if overlaps(&rc, &wd) || overlaps(&rc, &ws) {
            Order::Buffered
        } else if overlaps(&rs, &wd) {
            // S first would also write its page before D reads it through a window
            // (SWINDOW): keep D first, via the exact path, when S writes pages.
            let s_writes_pages = matches!(
                s.code.info().mem,
                vtpu_isa::Mem::Write | vtpu_isa::Mem::Alloc | vtpu_isa::Mem::Free
            );
            if overlaps(&rd, &ws) || s_writes_pages {
                Order::Buffered
            } else {
                Order::Sdc
            }
        } else {
            Order::Dsc
        };
        PreWord {
            ops: w.slots,
            live: [!d.is_nop(), !s.is_nop(), !c.is_nop()],
            order,
        }
    }
}

/// What the C slot did to control flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Next,
    Jump(u32),
    Halt,
}

/// Why a slot did not complete.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    Trap(TrapKind, Option<Coord>),
    /// The machine stopped elsewhere (trap or deadlock already recorded).
    Stopped,
}

/// Boxed so that the `Result`s on the hot path stay one word wide.
pub type Fault = Box<FaultKind>;

impl From<TrapKind> for Box<FaultKind> {
    #[cold]
    fn from(k: TrapKind) -> Fault {
        Box::new(FaultKind::Trap(k, None))
    }
}

#[cold]
fn trap_at(k: TrapKind, coord: Option<Coord>) -> Fault {
    Box::new(FaultKind::Trap(k, coord))
}

#[cold]
fn stopped() -> Fault {
    Box::new(FaultKind::Stopped)
}

fn at(coord: Coord) -> impl FnOnce(TrapKind) -> Fault {
    move |k| trap_at(k, Some(coord))
}

#[cold]
fn kerr(e: k::KernelError) -> Fault {
    trap_at(TrapKind::Shape(e.to_string()), None)
}

/// One sentron of the fast executor.
pub struct FastSentron<'a, T: Transport> {
    pub id: u32,
    pub regs: Regs,
    pub counters: Counters,
    tlb: TranslationCache,
    space: &'a PhextSpace,
    fabric: &'a T,
    words: &'a [PreWord],
    /// Executions of each word.
    exec: Vec<u64>,
    /// A reusable f32 buffer: results are computed into it and swapped into the
    /// destination register, whose old buffer becomes the next spare.
    spare: Vec<f32>,
    word_limit: u64,
    retired: u64,
    /// The D pipe's kernels, bound to one instruction-set level for the whole run.
    kern: Kernels,
    /// The pc of the word being executed, for wait-site reports.
    pc_hint: u32,
    /// Tile buffers kept from earlier runs of a persistent session (`reuse.rs`), so a
    /// token loop allocates nothing: `take_spare` draws on them.
    pool: Vec<Vec<f32>>,
    /// Per-opcode host time accumulator, when profiling (`profile.rs`); off by default.
    profile: Option<Box<crate::profile::OpProfile>>,
}

/// Where a run stopped: the pc and the slot whose op faulted.
#[derive(Clone, Debug)]
pub struct StopAt {
    pub pc: u32,
    pub op: Op,
    pub fault: Fault,
}

impl<'a, T: Transport> FastSentron<'a, T> {
    pub fn new(
        id: u32,
        space: &'a PhextSpace,
        fabric: &'a T,
        words: &'a [PreWord],
        tlb: TranslationCache,
        word_limit: u64,
        kern: Kernels,
    ) -> Self {
        FastSentron {
            id,
            regs: Regs::default(),
            counters: Counters::new(id),
            tlb,
            space,
            fabric,
            words,
            exec: vec![0; words.len()],
            spare: Vec::new(),
            word_limit,
            retired: 0,
            kern,
            pc_hint: 0,
            pool: Vec::new(),
            profile: None,
        }
    }

    /// Run until halt, trap or stop. Counters are final afterwards either way.
    pub fn run(&mut self) -> Result<(), StopAt> {
        let r = if self.profile.is_some() {
            self.run_profiled()
        } else {
            self.run_inner()
        };
        self.finish_counters();
        r
    }

    fn run_inner(&mut self) -> Result<(), StopAt> {
        let words = self.words;
        let mut pc = 0usize;
        let mut back_jumps: u32 = 0;
        loop {
            let Some(w) = words.get(pc) else {
                return Ok(());
            };
            if let Some(n) = self.exec.get_mut(pc) {
                *n += 1;
            }
            self.retired += 1;
            self.pc_hint = pc as u32;
            match self.exec_word(w) {
                Ok(Flow::Next) => pc += 1,
                Ok(Flow::Jump(t)) => {
                    // Backward branches are where endless loops live. The word budget is
                    // checked on every one (a local compare; the reference executor traps
                    // at exactly this branch), whether another sentron stopped the machine
                    // every 1024 (a shared load: prompt enough, rare enough to cost nothing).
                    if t as usize <= pc {
                        if self.retired > self.word_limit {
                            let fault = trap_at(TrapKind::WordLimit(self.word_limit), None);
                            return Err(StopAt {
                                pc: pc as u32,
                                op: w.ops[2],
                                fault,
                            });
                        }
                        back_jumps = back_jumps.wrapping_add(1);
                        if back_jumps.is_multiple_of(1024) && self.fabric.stopped() {
                            return Err(StopAt {
                                pc: pc as u32,
                                op: w.ops[2],
                                fault: stopped(),
                            });
                        }
                    }
                    pc = t as usize;
                }
                Ok(Flow::Halt) => return Ok(()),
                Err((slot, fault)) => {
                    return Err(StopAt {
                        pc: pc as u32,
                        op: w.ops[slot],
                        fault,
                    })
                }
            }
        }
    }

    #[inline(always)]
    fn exec_word(&mut self, w: &PreWord) -> Result<Flow, (usize, Fault)> {
        match w.order {
            Order::Dsc => {
                if w.live[0] {
                    self.exec_d(&w.ops[0]).map_err(|f| (0, f))?;
                }
                if w.live[1] {
                    self.exec_s(&w.ops[1]).map_err(|f| (1, f))?;
                }
            }
            Order::Sdc => {
                if w.live[1] {
                    if let Err(f) = self.exec_s(&w.ops[1]) {
                        // The reference runs D first: if D traps too, report D's trap.
                        // (D reads nothing S writes, so S's failure cannot change it.)
                        if w.live[0] {
                            self.exec_d(&w.ops[0]).map_err(|f| (0, f))?;
                        }
                        return Err((1, f));
                    }
                }
                if w.live[0] {
                    self.exec_d(&w.ops[0]).map_err(|f| (0, f))?;
                }
            }
            Order::Buffered => return self.exec_buffered(w),
        }
        if !w.live[2] {
            return Ok(Flow::Next);
        }
        // Loop control is the commonest C op: keep it out of the general dispatch.
        let c = &w.ops[2];
        match c.code {
            Opcode::CLoop => {
                let r = &mut self.regs.s[c.args[0] as usize & SMASK];
                *r = r.wrapping_sub(1);
                Ok(if *r != 0 {
                    Flow::Jump(c.imm_label())
                } else {
                    Flow::Next
                })
            }
            Opcode::CJmp => Ok(Flow::Jump(c.imm_label())),
            _ => self.exec_c(c).map_err(|f| (2, f)),
        }
    }

    /// Exact word semantics the slow way: each slot runs on a copy of the registers as
    /// they were before the word; its register writes are merged at the end.
    fn exec_buffered(&mut self, w: &PreWord) -> Result<Flow, (usize, Fault)> {
        let before = self.regs.clone();
        let mut after = self.regs.clone();
        let mut flow = Flow::Next;
        for slot in 0..3 {
            if !w.live[slot] {
                continue;
            }
            self.regs = before.clone();
            let op = &w.ops[slot];
            let r = match slot {
                0 => self.exec_d(op).map(|_| Flow::Next),
                1 => self.exec_s(op).map(|_| Flow::Next),
                _ => self.exec_c(op),
            };
            let f = r.map_err(|f| (slot, f))?;
            if slot == 2 {
                flow = f;
            }
            for (file, i) in reg_uses(op).1 {
                let i = i as usize;
                match file {
                    vtpu_isa::RegFile::Scalar => after.s[i] = self.regs.s[i],
                    vtpu_isa::RegFile::Coord => after.c[i] = self.regs.c[i],
                    vtpu_isa::RegFile::Tile => after.t[i] = std::mem::take(&mut self.regs.t[i]),
                }
            }
        }
        self.regs = after;
        Ok(flow)
    }

    fn finish_counters(&mut self) {
        let c = &mut self.counters;
        c.siws = self.exec.iter().sum();
        c.ops = [0; 3];
        c.nops = [0; 3];
        for (w, &n) in self.words.iter().zip(&self.exec) {
            for p in 0..3 {
                if w.live[p] {
                    c.ops[p] += n;
                } else {
                    c.nops[p] += n;
                }
            }
        }
        record_tlb(&self.tlb, c);
    }

    // ------------------------------------------------------------------ tiles

    /// An f32 tile operand: (data, rows, cols).
    fn f32_tile(&self, i: u8) -> Result<(&[f32], u32, u32), Fault> {
        let t = &self.regs.t[i as usize];
        if t.is_empty() {
            return Err(TrapKind::EmptyTile(i).into());
        }
        match t.f32s() {
            Some(s) => Ok((s, t.rows, t.cols)),
            None if t.is_window() => {
                Err(TrapKind::BadDType(crate::layer_ops::window_use(i)).into())
            }
            None => Err(TrapKind::BadDType(format!(
                "t{i} holds {}; this op needs f32",
                t.dtype.name()
            ))
            .into()),
        }
    }

    /// Put `out` (rows x cols f32) into register `d`, recycling d's old buffer.
    #[inline]
    fn commit_tile(&mut self, d: u8, rows: u32, cols: u32, out: Vec<f32>) {
        let old = self.regs.t[d as usize].take_buffer();
        self.recycle(old);
        self.regs.t[d as usize].set_owned(rows, cols, out);
    }

    /// A buffer of `n` elements for a result: the spare, or a pool buffer large enough,
    /// or (under the memory budget, `mem.rs`) a grown one.
    #[inline]
    fn take_spare(&mut self, n: usize) -> Result<Vec<f32>, Fault> {
        let mut out = std::mem::take(&mut self.spare);
        if out.capacity() < n && !self.pool.is_empty() {
            out = self.swap_from_pool(out, n);
        }
        self.zeroed_checked(&mut out, n)?;
        Ok(out)
    }

    fn binary(
        &mut self,
        op: &Op,
        f: fn(Kernels, &mut [f32], &[f32], &[f32]) -> Result<(), k::KernelError>,
    ) -> Result<(), Fault> {
        let [d, a, b, _] = op.args;
        let (rows, cols, n) = {
            let (_, ra, ca) = self.f32_tile(a)?;
            let (_, rb, cb) = self.f32_tile(b)?;
            if (ra, ca) != (rb, cb) {
                return Err(
                    TrapKind::Shape(format!("t{a} is {ra}x{ca} but t{b} is {rb}x{cb}")).into(),
                );
            }
            (ra, ca, ra as usize * ca as usize)
        };
        let mut out = self.take_spare(n)?;
        let r = {
            let (sa, _, _) = self.f32_tile(a)?;
            let (sb, _, _) = self.f32_tile(b)?;
            f(self.kern, &mut out, sa, sb)
        };
        r.map_err(kerr)?;
        self.counters.flops += n as u64;
        self.commit_tile(d, rows, cols, out);
        Ok(())
    }

    fn unary(
        &mut self,
        op: &Op,
        f: impl FnOnce(Kernels, &mut [f32], &[f32]) -> Result<(), k::KernelError>,
        flops_per_elem: u64,
    ) -> Result<(), Fault> {
        let [d, a, _, _] = op.args;
        let (rows, cols, n) = {
            let (_, r, c) = self.f32_tile(a)?;
            (r, c, r as usize * c as usize)
        };
        let mut out = self.take_spare(n)?;
        let r = {
            let (sa, _, _) = self.f32_tile(a)?;
            f(self.kern, &mut out, sa)
        };
        r.map_err(kerr)?;
        self.counters.flops += flops_per_elem * n as u64;
        self.commit_tile(d, rows, cols, out);
        Ok(())
    }

    fn row_reduce(
        &mut self,
        op: &Op,
        f: fn(Kernels, &mut [f32], &[f32], usize, usize) -> Result<(), k::KernelError>,
        flops_per_elem: u64,
    ) -> Result<(), Fault> {
        let [d, a, _, _] = op.args;
        let (rows, cols) = {
            let (_, r, c) = self.f32_tile(a)?;
            (r, c)
        };
        let mut out = self.take_spare(rows as usize)?;
        let r = {
            let (sa, _, _) = self.f32_tile(a)?;
            f(self.kern, &mut out, sa, rows as usize, cols as usize)
        };
        r.map_err(kerr)?;
        self.counters.flops += flops_per_elem * rows as u64 * cols as u64;
        self.commit_tile(d, rows, 1, out);
        Ok(())
    }

    /// The accumulator `td` as an owned copy in the spare buffer (shape checked).
    fn accumulator(&mut self, d: u8, rows: u32, cols: u32) -> Result<Vec<f32>, Fault> {
        let mut out = std::mem::take(&mut self.spare);
        let (sd, rd, cd) = self.f32_tile(d)?;
        if (rd, cd) != (rows, cols) {
            return Err(TrapKind::Shape(format!(
                "accumulator t{d} is {rd}x{cd}, expected {rows}x{cols}"
            ))
            .into());
        }
        out.clear();
        out.extend_from_slice(sd);
        Ok(out)
    }

    // ------------------------------------------------------------------ D pipe

    /// The D slot: cheap scalar ops inline (a loop's bookkeeping), everything else in
    /// the general function, so the common case pays no large prologue.
    #[inline(always)]
    fn exec_d(&mut self, op: &Op) -> Result<(), Fault> {
        let [d, a, b, _] = op.args;
        let s = &mut self.regs.s;
        let (ra, rb) = (s[a as usize & SMASK], s[b as usize & SMASK]);
        let sd = d as usize & SMASK;
        match op.code {
            Opcode::DLi => s[sd] = op.imm_i64(),
            Opcode::DAdd => s[sd] = ra.wrapping_add(rb),
            Opcode::DSub => s[sd] = ra.wrapping_sub(rb),
            Opcode::DMul => s[sd] = ra.wrapping_mul(rb),
            Opcode::DAddi => s[sd] = ra.wrapping_add(op.imm_i64()),
            Opcode::DMuli => s[sd] = ra.wrapping_mul(op.imm_i64()),
            _ => return self.exec_d_general(op),
        }
        Ok(())
    }

    /// The S slot: coordinate arithmetic inline, page traffic in the general function.
    #[inline(always)]
    fn exec_s(&mut self, op: &Op) -> Result<(), Fault> {
        let [d, a, b, c] = op.args;
        let delta = match op.code {
            Opcode::SIndex => self.regs.s[c as usize & SMASK],
            Opcode::SIndexi => op.imm_i64(),
            _ => return self.exec_s_general(op),
        };
        // Coordinate registers only ever hold coordinates within the space's limit
        // (SCLI immediates are validated against it, SINDEX checks), so only the moved
        // part needs checking here; the general path builds the detailed error.
        match self.regs.c[a as usize & CMASK].step(b as usize, delta, self.space.part_limit()) {
            Some(coord) => {
                self.regs.c[d as usize & CMASK] = coord;
                Ok(())
            }
            None => self.exec_s_general(op),
        }
    }

    #[inline(never)]
    fn exec_d_general(&mut self, op: &Op) -> Result<(), Fault> {
        let [d, a, b, _] = op.args;
        let s = &mut self.regs.s;
        let (ra, rb) = (s[a as usize & SMASK], s[b as usize & SMASK]);
        let sd = d as usize & SMASK;
        match op.code {
            Opcode::DNop => {}
            Opcode::DLi => s[sd] = op.imm_i64(),
            Opcode::DAdd => s[sd] = ra.wrapping_add(rb),
            Opcode::DSub => s[sd] = ra.wrapping_sub(rb),
            Opcode::DMul => s[sd] = ra.wrapping_mul(rb),
            Opcode::DDiv | Opcode::DRem => {
                if rb == 0 {
                    return Err(TrapKind::DivByZero.into());
                }
                let v = if op.code == Opcode::DDiv {
                    ra.checked_div(rb)
                } else {
                    ra.checked_rem(rb)
                };
                s[d as usize] = v.ok_or(TrapKind::DivOverflow)?;
            }
            Opcode::DAddi => s[sd] = ra.wrapping_add(op.imm_i64()),
            Opcode::DMuli => s[sd] = ra.wrapping_mul(op.imm_i64()),
            Opcode::DSid => s[sd] = self.id as i64,
            Opcode::DNsen => s[sd] = self.fabric.sentrons() as i64,
            Opcode::DTZero => {
                let (rows, cols) = op.imm_shape();
                let mut out = self.take_spare(rows as usize * cols as usize)?;
                out.fill(0.0);
                self.commit_tile(d, rows, cols, out);
            }
            Opcode::DTSplat => {
                let (rows, cols) = op.imm_shape();
                let v = ra as f32;
                let mut out = self.take_spare(rows as usize * cols as usize)?;
                out.fill(v);
                self.commit_tile(d, rows, cols, out);
            }
            Opcode::DMov => {
                let src = &self.regs.t[a as usize];
                if src.is_empty() {
                    return Err(TrapKind::EmptyTile(a).into());
                }
                match &src.data {
                    // A view of a read-only page never changes: share it (and a
                    // collective's shared result).
                    TileData::View { .. } | TileData::Window { .. } | TileData::Shared(_) => {
                        self.regs.t[d as usize] = src.clone()
                    }
                    _ => {
                        let mut out = std::mem::take(&mut self.spare);
                        let (sa, rows, cols) = self.f32_tile(a)?;
                        out.clear();
                        out.extend_from_slice(sa);
                        self.commit_tile(d, rows, cols, out);
                    }
                }
            }
            Opcode::DTAdd => self.binary(op, Kernels::add)?,
            Opcode::DTSub => self.binary(op, Kernels::sub)?,
            Opcode::DTMul => self.binary(op, Kernels::mul)?,
            Opcode::DTMax => self.binary(op, Kernels::max)?,
            Opcode::DTFma => {
                let (ra_, ca_) = {
                    let (_, r1, c1) = self.f32_tile(a)?;
                    let (_, r2, c2) = self.f32_tile(b)?;
                    if (r1, c1) != (r2, c2) {
                        return Err(TrapKind::Shape(format!(
                            "t{a} is {r1}x{c1} but t{b} is {r2}x{c2}"
                        ))
                        .into());
                    }
                    (r1, c1)
                };
                let mut out = self.accumulator(d, ra_, ca_)?;
                let r = {
                    let (sa, _, _) = self.f32_tile(a)?;
                    let (sb, _, _) = self.f32_tile(b)?;
                    self.kern.fma(&mut out, sa, sb)
                };
                r.map_err(kerr)?;
                self.counters.flops += 2 * out.len() as u64;
                self.commit_tile(d, ra_, ca_, out);
            }
            Opcode::DTScale => {
                let sc = op.imm_f32();
                self.unary(op, |kk, o, x| kk.scale(o, x, sc), 1)?
            }
            Opcode::DTRSum => self.row_reduce(op, Kernels::row_sum, 1)?,
            Opcode::DTRMax => self.row_reduce(op, Kernels::row_max, 1)?,
            Opcode::DTRSsq => self.row_reduce(op, Kernels::row_sumsq, 2)?,
            Opcode::DTExp => self.unary(op, Kernels::exp, 1)?,
            Opcode::DTSilu => self.unary(op, Kernels::silu, 1)?,
            Opcode::DTRsqrt => self.unary(op, Kernels::rsqrt, 1)?,
            Opcode::DTMatmul => self.matmul(d, a, b)?,
            Opcode::DTMm
            | Opcode::DTMmN
            | Opcode::DTRmsNorm
            | Opcode::DTRope
            | Opcode::DTRopeH
            | Opcode::DTSoftmax
            | Opcode::DTSwiglu
            | Opcode::DTAddR
            | Opcode::DTReshape
            | Opcode::DTEmbed
            | Opcode::DTAttn
            | Opcode::DTPlace => self.exec_d_layer(op)?,
            _ => unreachable!("validated: {:?} is not a D-pipe op", op.code),
        }
        Ok(())
    }

    fn matmul(&mut self, d: u8, a: u8, b: u8) -> Result<(), Fault> {
        let (m, kk) = {
            let (_, r, c) = self.f32_tile(a)?;
            (r, c)
        };
        let tb = &self.regs.t[b as usize];
        if tb.is_empty() {
            return Err(TrapKind::EmptyTile(b).into());
        }
        let (n, kb) = (tb.rows, tb.cols);
        if kb != kk {
            return Err(TrapKind::Shape(format!(
                "DTMATMUL: t{a} is {m}x{kk} but t{b} is {n}x{kb} (needs {kk} columns)"
            ))
            .into());
        }
        let mut out = self.accumulator(d, m, n)?;
        let r = {
            let (sa, _, _) = self.f32_tile(a)?;
            let w = match self.regs.t[b as usize]
                .slice()
                .and_then(crate::common::kernel_weights)
            {
                Some(w) => w,
                None => {
                    return Err(TrapKind::BadDType(format!(
                        "DTMATMUL: t{b} holds {}, supported: f32, f16, bf16",
                        self.regs.t[b as usize].dtype.name()
                    ))
                    .into())
                }
            };
            self.kern
                .matmul_bt(&mut out, sa, w, m as usize, n as usize, kk as usize)
        };
        r.map_err(kerr)?;
        self.counters.flops += 2 * m as u64 * n as u64 * kk as u64;
        self.commit_tile(d, m, n, out);
        Ok(())
    }

    // ------------------------------------------------------------------ S pipe

    #[inline(never)]
    fn exec_s_general(&mut self, op: &Op) -> Result<(), Fault> {
        let [d, a, b, c] = op.args;
        match op.code {
            Opcode::SNop => {}
            Opcode::SCli => {
                self.regs.c[d as usize] = Coord::from_key(op.imm_coord())
                    .map_err(|e| TrapKind::CoordRange(e.to_string()))?;
            }
            Opcode::SIndex | Opcode::SIndexi => {
                let delta = if op.code == Opcode::SIndex {
                    self.regs.s[c as usize & SMASK]
                } else {
                    op.imm_i64()
                };
                let base = self.regs.c[a as usize & CMASK];
                let limit = self.space.part_limit();
                // Coordinate registers only ever hold coordinates within the space's
                // limit (SCLI immediates are validated against it, SINDEX checks), so
                // only the moved part needs checking.
                match base.step(b as usize, delta, limit) {
                    Some(c) => self.regs.c[d as usize & CMASK] = c,
                    None => {
                        let detail = match base.offset(b as usize, delta, limit) {
                            Err(e) => e.to_string(),
                            Ok(c) => format!("{c} is outside the limit {limit}"),
                        };
                        return Err(trap_at(TrapKind::CoordRange(detail), Some(base)));
                    }
                }
            }
            Opcode::SGather => {
                let coord = self.regs.c[a as usize];
                let page = translate(&mut self.tlb, self.space, coord).map_err(at(coord))?;
                let [rows, cols] = page.shape();
                let (rows, cols) = (rows as u32, cols as u32);
                self.counters.bytes_gathered += page.len_bytes() as u64;
                if page.is_read_only() && is_viewable(page.dtype()) {
                    let dtype = page.dtype();
                    view_bytes(dtype, 0, rows, cols, cols as usize).map_err(at(coord))?;
                    let page = Arc::clone(page);
                    let t = &mut self.regs.t[d as usize];
                    let old = t.take_buffer();
                    self.recycle(old);
                    self.regs.t[d as usize] = Tile {
                        rows,
                        cols,
                        dtype,
                        data: TileData::View { page, byte_off: 0 },
                    };
                } else {
                    if page.dtype() != DType::F32 {
                        return Err(trap_at(
                            TrapKind::BadDType(format!(
                                "gather of a writable {} page (tiles copy f32 only)",
                                page.dtype().name()
                            )),
                            Some(coord),
                        ));
                    }
                    let n = page.elems();
                    // Owned handle: the budget check below needs `self` (the
                    // translation cache lends `page`).
                    let page = Arc::clone(page);
                    let mut out = std::mem::take(&mut self.spare);
                    self.zeroed_checked(&mut out, n)?;
                    page.read_f32(0, &mut out)
                        .map_err(|e| trap_at(TrapKind::Shape(e.to_string()), Some(coord)))?;
                    self.counters.bytes_copied += 4 * n as u64;
                    self.commit_tile(d, rows, cols, out);
                }
            }
            Opcode::SGathers => {
                let coord = self.regs.c[a as usize];
                let offset = self.regs.s[b as usize];
                let (rows, cols) = op.imm_shape();
                let n = rows as usize * cols as usize;
                let page = translate(&mut self.tlb, self.space, coord).map_err(at(coord))?;
                let off = check_range(offset, n, page.elems()).map_err(at(coord))?;
                let dtype = page.dtype();
                if page.is_read_only() && is_viewable(dtype) {
                    let (byte_off, len) =
                        view_bytes(dtype, off, rows, cols, page.shape()[1]).map_err(at(coord))?;
                    self.counters.bytes_gathered += len as u64;
                    let page = Arc::clone(page);
                    let t = &mut self.regs.t[d as usize];
                    let old = t.take_buffer();
                    self.recycle(old);
                    self.regs.t[d as usize] = Tile {
                        rows,
                        cols,
                        dtype,
                        data: TileData::View { page, byte_off },
                    };
                } else {
                    if dtype != DType::F32 {
                        return Err(trap_at(
                            TrapKind::BadDType(format!(
                                "gather of a writable {} page (tiles copy f32 only)",
                                dtype.name()
                            )),
                            Some(coord),
                        ));
                    }
                    let page = Arc::clone(page);
                    let mut out = std::mem::take(&mut self.spare);
                    self.zeroed_checked(&mut out, n)?;
                    page.read_f32(off, &mut out)
                        .map_err(|e| trap_at(TrapKind::Shape(e.to_string()), Some(coord)))?;
                    self.counters.bytes_gathered += 4 * n as u64;
                    self.counters.bytes_copied += 4 * n as u64;
                    self.commit_tile(d, rows, cols, out);
                }
            }
            Opcode::SScatter => {
                let coord = self.regs.c[a as usize];
                let offset = self.regs.s[b as usize];
                let t = &self.regs.t[d as usize];
                if t.is_empty() {
                    return Err(TrapKind::EmptyTile(d).into());
                }
                let Some(data) = t.f32s() else {
                    return Err(TrapKind::BadDType(format!(
                        "scatter of a {} tile (f32 only)",
                        t.dtype.name()
                    ))
                    .into());
                };
                let page = translate(&mut self.tlb, self.space, coord).map_err(at(coord))?;
                // f32 pages, or f16 pages (rounded to nearest even): layer_ops::scatter.
                let bytes = crate::layer_ops::scatter(page, offset, data).map_err(at(coord))?;
                self.counters.bytes_scattered += bytes;
                self.counters.bytes_copied += bytes;
            }
            Opcode::SPrefch => {
                let coord = self.regs.c[d as usize];
                let page = translate(&mut self.tlb, self.space, coord).map_err(at(coord))?;
                page.prefetch();
            }
            Opcode::SAlloc => {
                let coord = self.regs.c[d as usize];
                let dtype = DType::from_code(a)
                    .ok_or_else(|| TrapKind::BadDType(format!("unknown dtype code {a}")))?;
                let kind = if b == 0 {
                    PageKind::Owned
                } else {
                    PageKind::Scratch
                };
                let (rows, cols) = op.imm_shape();
                // Charged to the memory budget before the page exists (budget.rs).
                let bytes = crate::budget::page_bytes(dtype, rows, cols);
                self.fabric
                    .charge_pages(bytes)
                    .map_err(|o| trap_at(o.into(), Some(coord)))?;
                if let Err(e) = self
                    .space
                    .alloc(coord, dtype, [rows as usize, cols as usize], kind)
                {
                    self.fabric.release_pages(bytes);
                    return Err(trap_at(crate::common::alloc_trap(e, coord), Some(coord)));
                }
            }
            Opcode::SFree => {
                let coord = self.regs.c[d as usize];
                let bytes = self.space.get(coord).map_or(0, |p| p.len_bytes() as u64);
                self.space
                    .free(coord)
                    .map_err(|_| trap_at(TrapKind::PageFault(coord), Some(coord)))?;
                self.fabric.release_pages(bytes);
            }
            Opcode::SGatherV | Opcode::SLoad | Opcode::SWindow => self.exec_s_layer(op)?,
            _ => unreachable!("validated: {:?} is not an S-pipe op", op.code),
        }
        Ok(())
    }

    // ------------------------------------------------------------------ C pipe

    fn site(&self, op: &Op, pc_hint: u32) -> WaitSite {
        WaitSite {
            pc: pc_hint,
            op: *op,
        }
    }

    fn exec_c(&mut self, op: &Op) -> Result<Flow, Fault> {
        let [a, b, _, _] = op.args;
        let s = &self.regs.s;
        let n = self.fabric.sentrons();
        let target = || Flow::Jump(op.imm_label());
        let flow = match op.code {
            Opcode::CNop => Flow::Next,
            Opcode::CJmp => target(),
            Opcode::CBeq => {
                if s[a as usize] == s[b as usize] {
                    target()
                } else {
                    Flow::Next
                }
            }
            Opcode::CBne => {
                if s[a as usize] != s[b as usize] {
                    target()
                } else {
                    Flow::Next
                }
            }
            Opcode::CBlt => {
                if s[a as usize] < s[b as usize] {
                    target()
                } else {
                    Flow::Next
                }
            }
            Opcode::CBge => {
                if s[a as usize] >= s[b as usize] {
                    target()
                } else {
                    Flow::Next
                }
            }
            Opcode::CLoop => {
                let r = &mut self.regs.s[a as usize];
                *r = r.wrapping_sub(1);
                if *r != 0 {
                    target()
                } else {
                    Flow::Next
                }
            }
            Opcode::CHalt => Flow::Halt,
            Opcode::CFence => {
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                Flow::Next
            }
            Opcode::CSendR | Opcode::CSendT => {
                let to = a as u32;
                if to as usize >= n {
                    return Err(TrapKind::NoSuchSentron(to).into());
                }
                let msg = if op.code == Opcode::CSendR {
                    Message::Scalar(s[b as usize])
                } else {
                    let (data, rows, cols) = self.f32_tile(b)?;
                    Message::Tile {
                        rows,
                        cols,
                        data: crate::budget::try_copy(data)
                            .map_err(|bytes| TrapKind::AllocFailed { bytes })?,
                    }
                };
                self.counters.msgs_sent += 1;
                self.counters.msg_bytes += msg.bytes();
                self.fabric.send(self.id, to, msg).map_err(|e| match e {
                    crate::fabric::SendError::MailboxFull(pending) => TrapKind::MailboxFull {
                        to,
                        pending,
                        max: crate::fabric::MAX_MAILBOX_BYTES,
                    },
                    crate::fabric::SendError::OverBudget(o) => o.into(),
                })?;
                Flow::Next
            }
            Opcode::CRecvR | Opcode::CRecvT => {
                let from = b as u32;
                if from as usize >= n {
                    return Err(TrapKind::NoSuchSentron(from).into());
                }
                let site = self.site(op, self.current_pc());
                let t0 = std::time::Instant::now();
                let msg = self
                    .fabric
                    .recv(self.id, from, &site)
                    .map_err(|_| stopped())?;
                self.counters.host_blocked_ns += t0.elapsed().as_nanos() as u64;
                match (op.code, msg) {
                    (Opcode::CRecvR, Message::Scalar(v)) => self.regs.s[a as usize] = v,
                    (Opcode::CRecvT, Message::Tile { rows, cols, data }) => {
                        let old = self.regs.t[a as usize].take_buffer();
                        self.recycle(old);
                        self.regs.t[a as usize].set_owned(rows, cols, data);
                        self.settle_received()?;
                    }
                    (code, m) => {
                        return Err(TrapKind::MessageKind {
                            from,
                            expected: if code == Opcode::CRecvR {
                                "scalar"
                            } else {
                                "tile"
                            },
                            got: m.kind_name(),
                        }
                        .into())
                    }
                }
                Flow::Next
            }
            Opcode::CBar | Opcode::CReduce | Opcode::CCast => {
                let members = resolve_group(op.imm_group(), n, self.id)?;
                let (kind, contribution) = match op.code {
                    Opcode::CBar => (CollKind::Barrier, None),
                    // td is read and written: a large one's buffer becomes the
                    // contribution instead of a copy of it.
                    Opcode::CReduce => (CollKind::Reduce(b), Some(self.take_coll_tile(a)?)),
                    _ => {
                        let root = b as u32;
                        if members & (1u64 << root.min(63)) == 0 || root as usize >= n {
                            return Err(TrapKind::NotInGroup(format!(
                                "root sentron {root} is not in the group"
                            ))
                            .into());
                        }
                        let c = if root == self.id {
                            Some(self.coll_tile(a)?)
                        } else {
                            None
                        };
                        (CollKind::Cast(root), c)
                    }
                };
                let site = self.site(op, self.current_pc());
                let t0 = std::time::Instant::now();
                let r = self
                    .fabric
                    .collective(self.id, members, kind, contribution, &site);
                self.counters.host_blocked_ns += t0.elapsed().as_nanos() as u64;
                match r {
                    Ok(Some(tile)) if tile.data.len() < SHARE_RESULTS_FROM => {
                        let mut out = std::mem::take(&mut self.spare);
                        self.reserve_checked(&mut out, tile.data.len())?;
                        out.clear();
                        out.extend_from_slice(&tile.data);
                        self.commit_tile(a, tile.rows, tile.cols, out);
                    }
                    Ok(Some(tile)) => {
                        // Shared, not copied: every member reads the same result.
                        let old = self.regs.t[a as usize].take_buffer();
                        self.recycle(old);
                        self.regs.t[a as usize] = Tile {
                            rows: tile.rows,
                            cols: tile.cols,
                            dtype: DType::F32,
                            data: TileData::Shared(tile),
                        };
                    }
                    Ok(None) => {}
                    Err(CollError::Stopped) => return Err(stopped()),
                    Err(CollError::Mismatch(detail)) => {
                        return Err(TrapKind::CollectiveMismatch {
                            group: crate::fabric::group_text(members),
                            detail,
                        }
                        .into())
                    }
                }
                Flow::Next
            }
            _ => unreachable!("validated: {:?} is not a C-pipe op", op.code),
        };
        Ok(flow)
    }

    /// [`Self::coll_tile`] that moves a large owned f32 register's buffer out instead of
    /// copying it (the register is about to receive the collective's result).
    fn take_coll_tile(&mut self, i: u8) -> Result<CollTile, Fault> {
        let t = &mut self.regs.t[i as usize];
        if matches!(t.data, TileData::Owned(_))
            && t.dtype == DType::F32
            && t.elems() >= SHARE_RESULTS_FROM
        {
            // An owned tile holds rows x cols elements (the fabric checks it again).
            let (rows, cols) = (t.rows, t.cols);
            let data = t.take_buffer();
            return Ok(CollTile { rows, cols, data });
        }
        self.coll_tile(i)
    }

    fn coll_tile(&self, i: u8) -> Result<CollTile, Fault> {
        let (data, rows, cols) = self.f32_tile(i)?;
        let mut buf = self.fabric.contribution_buffer();
        buf.clear();
        buf.try_reserve_exact(data.len())
            .map_err(|_| TrapKind::AllocFailed {
                bytes: (data.len() as u64).saturating_mul(4),
            })?;
        buf.extend_from_slice(data);
        Ok(CollTile {
            rows,
            cols,
            data: buf,
        })
    }

    /// The pc of the word being executed (for wait reports): the last word counted.
    fn current_pc(&self) -> u32 {
        self.pc_hint
    }
}
