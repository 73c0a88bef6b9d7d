//! The reference executor: the living specification of the ISA.
//!
//! Deliberately simple: all sentrons run on the calling thread, round robin, one word
//! each per round, so every run is deterministic. Each slot of a word executes against
//! a copy of the registers as they were before the word, and its register writes are
//! merged when the word retires. Page writes of the D and S slots happen before the C
//! slot acts; if the C slot must wait (CRECV with no message, a collective whose group
//! has not all arrived) the word stays in flight with its writes held back, and only
//! the C slot is retried. Tile math uses the scalar reference kernels (f64 inside,
//! rounded once), which are the kernels' own specification.
//!
//! Whenever a sentron starts to wait or halts, the wait-for graph is checked (see
//! `waitgraph.rs`): sentrons that wait for each other in a cycle, or for a halted
//! sentron, are a deadlock, reported with who waits for whom, even while others run.

mod layer_ops;

use crate::budget::{try_zeroed, MemBudget};
use crate::common::{check_range, is_viewable, record_tlb, reg_uses, resolve_group, view_bytes};
use crate::counters::Counters;
use crate::error::{Deadlock, MachineError, Trap, TrapKind, Waiter};
use crate::fabric::{group_text, CollKind, Mailbox, Message};
use crate::state::{Regs, Tile, TileData};
use crate::waitgraph::WaitGraph;
use std::collections::HashMap;
use std::sync::Arc;
use vtpu_isa::{Op, Opcode, Program, RegFile};
use vtpu_kernels::{scalar as ks, BinOp, UnOp};
use vtpu_phext::{Coord, DType, PageKind, PhextSpace, TranslationCache};

type R<T> = Result<T, (TrapKind, Option<Coord>)>;

fn tk<T>(k: TrapKind) -> R<T> {
    Err((k, None))
}

/// A word whose D and S slots ran but whose C slot waits.
struct InFlight {
    after: Regs,
    /// For collectives: the generation this sentron arrived in.
    arrived: Option<u64>,
}

struct RefSentron {
    id: u32,
    regs: Regs,
    pc: usize,
    halted: bool,
    tlb: TranslationCache,
    counters: Counters,
    in_flight: Option<InFlight>,
    retired: u64,
}

#[derive(Default)]
struct RefGroup {
    generation: u64,
    kind: Option<CollKind>,
    arrived: u64,
    contributions: HashMap<u32, Tile>,
    /// Result of each completed generation (None for barriers), or a mismatch, with
    /// the members that have not collected it yet (dropped when the last one has, so a
    /// long loop of collectives keeps only the generations still in flight).
    results: HashMap<u64, (Result<Option<Tile>, String>, u64)>,
}

/// Outcome of running a program on the reference executor.
pub struct RefRun {
    pub counters: Vec<Counters>,
    pub states: Vec<crate::state::SentronState>,
}

/// Run `program` (already validated, pages already loaded into `space`) on `n`
/// sentrons.
pub fn run_reference(
    program: &Program,
    space: &PhextSpace,
    n: usize,
    tlb_geometry: (usize, usize),
    word_limit: u64,
    budget: &MemBudget,
    keep_states: bool,
) -> Result<RefRun, MachineError> {
    let mut ss: Vec<RefSentron> = (0..n as u32)
        .map(|id| RefSentron {
            id,
            regs: Regs::default(),
            pc: 0,
            halted: program.stream_for(id).is_none(),
            tlb: TranslationCache::new(tlb_geometry.0, tlb_geometry.1),
            counters: Counters::new(id),
            in_flight: None,
            retired: 0,
        })
        .collect();
    let streams: Vec<&[vtpu_isa::Siw]> = (0..n as u32)
        .map(|id| program.stream_for(id).map(|s| &s.words[..]).unwrap_or(&[]))
        .collect();
    let mut m = Shared {
        mail: vec![Mailbox::default(); n * n],
        groups: HashMap::new(),
        n,
        space,
        budget,
    };
    // What each sentron's tiles are charged for (see `charged_tile_bytes`).
    let mut held = vec![0u64; n];
    loop {
        let mut progress = false;
        let mut waits_changed = false;
        for i in 0..n {
            if ss[i].halted {
                continue;
            }
            let s = &mut ss[i];
            let words = streams[i];
            let Some(word) = words.get(s.pc) else {
                s.halted = true;
                progress = true;
                waits_changed = true;
                continue;
            };
            let pc = s.pc;
            let was_waiting = s.in_flight.is_some();
            match step(s, word, &mut m, word_limit) {
                Ok(Some(next)) => {
                    progress = true;
                    let now = charged_tile_bytes(&s.regs);
                    if let Err(o) = m.budget.settle(held[i], now) {
                        // Name the slot that wrote a tile (the one that grew).
                        let slot = (0..3)
                            .find(|&k| {
                                reg_uses(&word.slots[k])
                                    .1
                                    .iter()
                                    .any(|(f, _)| *f == RegFile::Tile)
                            })
                            .unwrap_or(0);
                        return Err(MachineError::Trap(Box::new(Trap {
                            sentron: s.id,
                            pc: pc as u32,
                            op: vtpu_isa::disasm::format_op(&word.slots[slot]),
                            coord: None,
                            kind: o.into(),
                        })));
                    }
                    held[i] = now;
                    match next {
                        None => {
                            s.halted = true;
                            waits_changed = true;
                        }
                        Some(t) => s.pc = t,
                    }
                }
                Ok(None) => waits_changed |= !was_waiting,
                Err((slot, kind, coord)) => {
                    return Err(MachineError::Trap(Box::new(Trap {
                        sentron: s.id,
                        pc: pc as u32,
                        op: vtpu_isa::disasm::format_op(&word.slots[slot]),
                        coord,
                        kind,
                    })))
                }
            }
        }
        if ss.iter().all(|s| s.halted) {
            break;
        }
        // A new wait or a halt may close a cycle among some sentrons while others keep
        // running; a round without progress means every live one is blocked (the
        // wait-for check finds that too, this is the backstop).
        if waits_changed || !progress {
            let g = wait_graph(&ss, &streams, &m);
            let stuck = g.stuck();
            if stuck != 0 || !progress {
                return Err(MachineError::Deadlock(deadlock_report(
                    &ss, &streams, &m, &g, stuck,
                )));
            }
        }
    }
    let mut counters = Vec::new();
    let mut states = Vec::new();
    for s in &mut ss {
        record_tlb(&s.tlb, &mut s.counters);
        counters.push(s.counters.clone());
        // Within the budget: the registers were charged four times (see
        // `charged_tile_bytes`), and the word copies are gone now.
        states.push(if keep_states {
            s.regs.snapshot()
        } else {
            Regs::default().snapshot()
        });
    }
    Ok(RefRun { counters, states })
}

struct Shared<'a> {
    mail: Vec<Mailbox>,
    groups: HashMap<u64, RefGroup>,
    n: usize,
    space: &'a PhextSpace,
    budget: &'a MemBudget,
}

/// Whom sentron `s` waits for right now, if its C slot waits and nothing has come that
/// would let it retire on its next try (a message in its mailbox, its collective
/// generation completed): the state is read afresh, so a sentron whose wait was
/// satisfied later in the same round is not counted as blocked.
fn waits_for(s: &RefSentron, words: &[vtpu_isa::Siw], m: &Shared) -> Option<u64> {
    let fl = s.in_flight.as_ref()?;
    let op = words.get(s.pc)?.c();
    match op.code {
        Opcode::CRecvR | Opcode::CRecvT => {
            let from = op.args[1] as usize;
            let empty = m
                .mail
                .get(s.id as usize * m.n + from)
                .is_none_or(|b| b.is_empty());
            empty.then(|| 1u64.checked_shl(from as u32).unwrap_or(0))
        }
        Opcode::CBar | Opcode::CReduce | Opcode::CCast => {
            let members = resolve_group(op.imm_group(), m.n, s.id).ok()?;
            let gen = fl.arrived?;
            let g = m.groups.get(&members)?;
            if g.results.contains_key(&gen) {
                return None;
            }
            Some(members & !g.arrived & !(1u64 << s.id))
        }
        _ => None,
    }
}

fn wait_graph(ss: &[RefSentron], streams: &[&[vtpu_isa::Siw]], m: &Shared) -> WaitGraph {
    let mut g = WaitGraph::new(ss.len());
    for (i, s) in ss.iter().enumerate() {
        if s.halted {
            g.set_finished(i);
        } else {
            match waits_for(s, streams[i], m) {
                Some(on) => g.set_blocked(i, on),
                None => g.set_running(i),
            }
        }
    }
    g
}

/// The sentrons in `stuck` (all blocked ones if it is empty: a round without progress)
/// with who each waits for.
fn deadlock_report(
    ss: &[RefSentron],
    streams: &[&[vtpu_isa::Siw]],
    m: &Shared,
    g: &WaitGraph,
    stuck: u64,
) -> Deadlock {
    let status = |j: usize| -> String {
        let Some(t) = ss.get(j) else {
            return "not in this machine".into();
        };
        if t.halted {
            "halted".into()
        } else {
            let op = streams[j]
                .get(t.pc)
                .map(|w| vtpu_isa::disasm::format_op(w.c()))
                .unwrap_or_default();
            format!("blocked at pc {} in {}", t.pc, op)
        }
    };
    let reported = |s: &RefSentron| !s.halted && (stuck == 0 || stuck & (1u64 << s.id) != 0);
    let waiters = ss
        .iter()
        .filter(|s| reported(s))
        .filter_map(|s| {
            let op = &streams[s.id as usize].get(s.pc)?.slots[2];
            let waits_for = match op.code {
                Opcode::CRecvR | Opcode::CRecvT => {
                    let f = op.args[1] as usize;
                    format!("a message from sentron {f} ({})", status(f))
                }
                _ => {
                    let members = resolve_group(op.imm_group(), m.n, s.id).unwrap_or(0);
                    let arrived = m.groups.get(&members).map(|g| g.arrived).unwrap_or(0);
                    let missing: Vec<String> = (0..m.n)
                        .filter(|&j| members & (1 << j) != 0 && arrived & (1 << j) == 0)
                        .map(|j| format!("sentron {j} ({})", status(j)))
                        .collect();
                    format!(
                        "group {}: still missing {}",
                        group_text(members),
                        missing.join(", ")
                    )
                }
            };
            Some(Waiter {
                sentron: s.id,
                pc: s.pc as u32,
                op: vtpu_isa::disasm::format_op(op),
                waits_for,
            })
        })
        .collect();
    let still_running = ss
        .iter()
        .filter(|s| !s.halted && !reported(s))
        .map(|s| s.id)
        .collect();
    Deadlock {
        waiters,
        witness: g.witness(stuck).map(|w| w.text()).unwrap_or_default(),
        still_running,
    }
}

/// Try to retire one word. `Ok(Some(next))`: retired, `next` = new pc or None (halt);
/// `Ok(None)`: the C slot waits.
#[allow(clippy::type_complexity)]
fn step(
    s: &mut RefSentron,
    word: &vtpu_isa::Siw,
    m: &mut Shared,
    word_limit: u64,
) -> Result<Option<Option<usize>>, (usize, TrapKind, Option<Coord>)> {
    let mut fl = match s.in_flight.take() {
        Some(f) => f,
        None => {
            let before = s.regs.clone();
            let mut after = s.regs.clone();
            for slot in 0..2 {
                let op = &word.slots[slot];
                if op.is_nop() {
                    continue;
                }
                let mut r = before.clone();
                let res = if slot == 0 {
                    exec_d(&mut r, op, s.id, m.n).map(|f| s.counters.flops += f)
                } else {
                    exec_s(&mut r, op, s, m)
                };
                res.map_err(|(k, c)| (slot, k, c))?;
                merge_writes(&mut after, &mut r, op);
            }
            InFlight {
                after,
                arrived: None,
            }
        }
    };
    let before = s.regs.clone();
    let op = &word.slots[2];
    let flow = match exec_c(&before, &mut fl, op, s, m) {
        Ok(Some(f)) => f,
        Ok(None) => {
            s.in_flight = Some(fl);
            return Ok(None);
        }
        Err((k, c)) => return Err((2, k, c)),
    };
    s.regs = fl.after;
    s.counters.siws += 1;
    for (p, op) in word.slots.iter().enumerate() {
        if op.is_nop() {
            s.counters.nops[p] += 1;
        } else {
            s.counters.ops[p] += 1;
        }
    }
    s.retired += 1;
    let next = match flow {
        CFlow::Next => Some(s.pc + 1),
        CFlow::Halt => None,
        CFlow::Jump(t) => {
            if t <= s.pc && s.retired > word_limit {
                return Err((2, TrapKind::WordLimit(word_limit), None));
            }
            Some(t)
        }
    };
    Ok(Some(next))
}

fn merge_writes(after: &mut Regs, r: &mut Regs, op: &Op) {
    for (file, i) in reg_uses(op).1 {
        let i = i as usize;
        match file {
            RegFile::Scalar => after.s[i] = r.s[i],
            RegFile::Coord => after.c[i] = r.c[i],
            RegFile::Tile => after.t[i] = std::mem::take(&mut r.t[i]),
        }
    }
}

/// `n` zeros, or a trap when the allocator refuses (never an abort).
pub(super) fn zeros(n: usize) -> R<Vec<f32>> {
    let mut v = Vec::new();
    try_zeroed(&mut v, n).map_err(|bytes| (TrapKind::AllocFailed { bytes }, None))?;
    Ok(v)
}

/// Tile bytes a sentron holds, as charged to the memory budget: its registers times
/// four, because a word in flight holds up to four copies of them (the registers, the
/// pre-word copy, the post-word copy and one slot's working copy). The reference is a
/// specification, not a way to save memory.
fn charged_tile_bytes(r: &Regs) -> u64 {
    let elems: usize =
        r.t.iter()
            .map(|t| match &t.data {
                TileData::Owned(v) => v.len(),
                _ => 0,
            })
            .sum();
    4 * 4 * elems as u64
}

fn f32_of(r: &Regs, i: u8) -> R<(&[f32], u32, u32)> {
    let t = &r.t[i as usize];
    if t.is_empty() {
        return tk(TrapKind::EmptyTile(i));
    }
    match t.f32s() {
        Some(s) => Ok((s, t.rows, t.cols)),
        None if t.is_window() => tk(TrapKind::BadDType(crate::layer_ops::window_use(i))),
        None => tk(TrapKind::BadDType(format!(
            "t{i} holds {}; this op needs f32",
            t.dtype.name()
        ))),
    }
}

fn same_shape(r: &Regs, a: u8, b: u8) -> R<(u32, u32)> {
    let (_, ra, ca) = f32_of(r, a)?;
    let (_, rb, cb) = f32_of(r, b)?;
    if (ra, ca) != (rb, cb) {
        return tk(TrapKind::Shape(format!(
            "t{a} is {ra}x{ca} but t{b} is {rb}x{cb}"
        )));
    }
    Ok((ra, ca))
}

/// Execute a D op on `r`; returns the flops it did (an FMA counts 2).
fn exec_d(r: &mut Regs, op: &Op, id: u32, n: usize) -> R<u64> {
    let [d, a, b, _] = op.args;
    let (sa, sb) = (r.s[a as usize], r.s[b as usize]);
    let imm = op.imm_i64();
    let tile = match op.code {
        Opcode::DLi => return set_s(r, d, imm),
        Opcode::DAdd => return set_s(r, d, sa.wrapping_add(sb)),
        Opcode::DSub => return set_s(r, d, sa.wrapping_sub(sb)),
        Opcode::DMul => return set_s(r, d, sa.wrapping_mul(sb)),
        Opcode::DDiv | Opcode::DRem => {
            if sb == 0 {
                return tk(TrapKind::DivByZero);
            }
            let v = if op.code == Opcode::DDiv {
                sa.checked_div(sb)
            } else {
                sa.checked_rem(sb)
            };
            return match v {
                Some(v) => set_s(r, d, v),
                None => tk(TrapKind::DivOverflow),
            };
        }
        Opcode::DAddi => return set_s(r, d, sa.wrapping_add(imm)),
        Opcode::DMuli => return set_s(r, d, sa.wrapping_mul(imm)),
        Opcode::DSid => return set_s(r, d, id as i64),
        Opcode::DNsen => return set_s(r, d, n as i64),
        Opcode::DTZero => {
            let (rows, cols) = op.imm_shape();
            Tile::from_f32(rows, cols, zeros(rows as usize * cols as usize)?)
        }
        Opcode::DTSplat => {
            let (rows, cols) = op.imm_shape();
            let mut v = zeros(rows as usize * cols as usize)?;
            v.fill(sa as f32);
            Tile::from_f32(rows, cols, v)
        }
        Opcode::DMov => {
            let t = &r.t[a as usize];
            if t.is_empty() {
                return tk(TrapKind::EmptyTile(a));
            }
            t.clone()
        }
        Opcode::DTAdd | Opcode::DTSub | Opcode::DTMul | Opcode::DTMax => {
            let (rows, cols) = same_shape(r, a, b)?;
            let bop = match op.code {
                Opcode::DTAdd => BinOp::Add,
                Opcode::DTSub => BinOp::Sub,
                Opcode::DTMul => BinOp::Mul,
                _ => BinOp::Max,
            };
            let mut out = zeros(rows as usize * cols as usize)?;
            ks::binary(bop, &mut out, f32_of(r, a)?.0, f32_of(r, b)?.0);
            Tile::from_f32(rows, cols, out)
        }
        Opcode::DTFma => {
            let (rows, cols) = same_shape(r, a, b)?;
            let (acc, rd, cd) = f32_of(r, d)?;
            if (rd, cd) != (rows, cols) {
                return tk(TrapKind::Shape(format!(
                    "accumulator t{d} is {rd}x{cd}, expected {rows}x{cols}"
                )));
            }
            let mut out = acc.to_vec();
            ks::fma(&mut out, f32_of(r, a)?.0, f32_of(r, b)?.0);
            Tile::from_f32(rows, cols, out)
        }
        Opcode::DTScale => {
            let (x, rows, cols) = f32_of(r, a)?;
            let mut out = zeros(x.len())?;
            ks::scale(&mut out, x, op.imm_f32());
            Tile::from_f32(rows, cols, out)
        }
        Opcode::DTExp | Opcode::DTSilu | Opcode::DTRsqrt => {
            let (x, rows, cols) = f32_of(r, a)?;
            let uop = match op.code {
                Opcode::DTExp => UnOp::Exp,
                Opcode::DTSilu => UnOp::Silu,
                _ => UnOp::Rsqrt,
            };
            let mut out = zeros(x.len())?;
            ks::unary(uop, &mut out, x);
            Tile::from_f32(rows, cols, out)
        }
        Opcode::DTRSum | Opcode::DTRMax | Opcode::DTRSsq => {
            let (x, rows, cols) = f32_of(r, a)?;
            let mut out = zeros(rows as usize)?;
            let f = match op.code {
                Opcode::DTRSum => ks::row_sum,
                Opcode::DTRMax => ks::row_max,
                _ => ks::row_sumsq,
            };
            f(&mut out, x, rows as usize, cols as usize);
            Tile::from_f32(rows, 1, out)
        }
        Opcode::DTMatmul => {
            let (x, m_, k_) = f32_of(r, a)?;
            let tb = &r.t[b as usize];
            if tb.is_empty() {
                return tk(TrapKind::EmptyTile(b));
            }
            if tb.cols != k_ {
                return tk(TrapKind::Shape(format!(
                    "DTMATMUL: t{a} is {m_}x{k_} but t{b} is {}x{} (needs {k_} columns)",
                    tb.rows, tb.cols
                )));
            }
            let n_ = tb.rows;
            let (acc, rd, cd) = f32_of(r, d)?;
            if (rd, cd) != (m_, n_) {
                return tk(TrapKind::Shape(format!(
                    "accumulator t{d} is {rd}x{cd}, expected {m_}x{n_}"
                )));
            }
            let mut out = acc.to_vec();
            let w = match tb.slice().and_then(crate::common::kernel_weights) {
                Some(w) => w,
                None => {
                    return tk(TrapKind::BadDType(format!(
                        "DTMATMUL: t{b} holds {}, supported: f32, f16, bf16",
                        tb.dtype.name()
                    )))
                }
            };
            ks::matmul_bt_rows(&mut out, x, w, m_ as usize, k_ as usize, 0, n_ as usize);
            Tile::from_f32(m_, n_, out)
        }
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
        | Opcode::DTPlace => return layer_ops::exec_d(r, op),
        _ => return Ok(0),
    };
    let elems = tile.elems() as u64;
    let flops = match op.code {
        Opcode::DTZero | Opcode::DTSplat | Opcode::DMov => 0,
        Opcode::DTFma => 2 * elems,
        Opcode::DTRSum | Opcode::DTRMax => elems * r.t[a as usize].cols as u64,
        Opcode::DTRSsq => 2 * elems * r.t[a as usize].cols as u64,
        Opcode::DTMatmul => 2 * elems * r.t[a as usize].cols as u64,
        _ => elems,
    };
    r.t[d as usize] = tile;
    Ok(flops)
}

fn set_s(r: &mut Regs, d: u8, v: i64) -> R<u64> {
    r.s[d as usize] = v;
    Ok(0)
}

/// The tile a gather of `rows x cols` elements from element `off` of `page` yields: a
/// zero-copy view of a read-only page (f32/f16/bf16), else an f32 copy. Shared by
/// SGATHER, SGATHERS and SGATHERV; the range was checked by the caller.
fn gather_tile(
    s: &mut RefSentron,
    page: &Arc<vtpu_phext::Page>,
    coord: Coord,
    off: usize,
    rows: u32,
    cols: u32,
) -> R<Tile> {
    let n = rows as usize * cols as usize;
    let dtype = page.dtype();
    match is_viewable(dtype) {
        true if page.is_read_only() => {
            let (byte_off, len) = view_bytes(dtype, off, rows, cols, page.shape()[1])
                .map_err(|k| (k, Some(coord)))?;
            s.counters.bytes_gathered += len as u64;
            Ok(Tile {
                rows,
                cols,
                dtype,
                data: TileData::View {
                    page: page.clone(),
                    byte_off,
                },
            })
        }
        _ if dtype == DType::F32 => {
            s.counters.bytes_gathered += 4 * n as u64;
            let mut v = zeros(n)?;
            page.read_f32(off, &mut v)
                .map_err(|e| (TrapKind::Shape(e.to_string()), Some(coord)))?;
            s.counters.bytes_copied += 4 * n as u64;
            Ok(Tile::from_f32(rows, cols, v))
        }
        _ => Err((
            TrapKind::BadDType(format!(
                "gather of a writable {} page (tiles copy f32 only)",
                dtype.name()
            )),
            Some(coord),
        )),
    }
}

fn page_of(s: &mut RefSentron, space: &PhextSpace, coord: Coord) -> R<Arc<vtpu_phext::Page>> {
    s.tlb
        .lookup(space, coord.key())
        .ok_or((TrapKind::PageFault(coord), Some(coord)))
}

fn exec_s(r: &mut Regs, op: &Op, s: &mut RefSentron, m: &Shared) -> R<()> {
    let [d, a, b, c] = op.args;
    let space = m.space;
    match op.code {
        Opcode::SCli => {
            r.c[d as usize] = Coord::from_key(op.imm_coord())
                .map_err(|e| (TrapKind::CoordRange(e.to_string()), None))?;
        }
        Opcode::SIndex | Opcode::SIndexi => {
            let delta = if op.code == Opcode::SIndex {
                r.s[c as usize]
            } else {
                op.imm_i64()
            };
            let base = r.c[a as usize];
            r.c[d as usize] = base
                .offset(b as usize, delta, space.part_limit())
                .map_err(|e| (TrapKind::CoordRange(e.to_string()), Some(base)))?;
        }
        Opcode::SGather | Opcode::SGathers => {
            let coord = r.c[a as usize];
            let page = page_of(s, space, coord)?;
            let (rows, cols, off) = if op.code == Opcode::SGather {
                let [pr, pc] = page.shape();
                (pr as u32, pc as u32, 0)
            } else {
                let (rows, cols) = op.imm_shape();
                let n = rows as usize * cols as usize;
                let off =
                    check_range(r.s[b as usize], n, page.elems()).map_err(|k| (k, Some(coord)))?;
                (rows, cols, off)
            };
            r.t[d as usize] = gather_tile(s, &page, coord, off, rows, cols)?;
        }
        Opcode::SScatter => {
            let coord = r.c[a as usize];
            let t = &r.t[d as usize];
            if t.is_empty() {
                return tk(TrapKind::EmptyTile(d));
            }
            let Some(data) = t.f32s() else {
                return tk(TrapKind::BadDType(format!(
                    "scatter of a {} tile (f32 only)",
                    t.dtype.name()
                )));
            };
            let page = page_of(s, space, coord)?;
            // Into an f32 page, or an f16 page rounding each value to nearest even.
            let bytes = crate::layer_ops::scatter(&page, r.s[b as usize], data)
                .map_err(|k| (k, Some(coord)))?;
            s.counters.bytes_scattered += bytes;
            s.counters.bytes_copied += bytes;
        }
        Opcode::SPrefch => {
            let coord = r.c[d as usize];
            page_of(s, space, coord)?;
        }
        Opcode::SAlloc => {
            let coord = r.c[d as usize];
            let dtype = DType::from_code(a)
                .ok_or((TrapKind::BadDType(format!("unknown dtype code {a}")), None))?;
            let kind = if b == 0 {
                PageKind::Owned
            } else {
                PageKind::Scratch
            };
            let (rows, cols) = op.imm_shape();
            // Charged to the memory budget before the page exists (budget.rs).
            let bytes = crate::budget::page_bytes(dtype, rows, cols);
            m.budget
                .charge(bytes)
                .map_err(|o| (o.into(), Some(coord)))?;
            if let Err(e) = space.alloc(coord, dtype, [rows as usize, cols as usize], kind) {
                m.budget.release(bytes);
                return Err((crate::common::alloc_trap(e, coord), Some(coord)));
            }
        }
        Opcode::SFree => {
            let coord = r.c[d as usize];
            let bytes = space.get(coord).map_or(0, |p| p.len_bytes() as u64);
            space
                .free(coord)
                .map_err(|_| (TrapKind::PageFault(coord), Some(coord)))?;
            m.budget.release(bytes);
        }
        Opcode::SGatherV | Opcode::SLoad | Opcode::SWindow => layer_ops::exec_s(r, op, s, space)?,
        _ => {}
    }
    Ok(())
}

enum CFlow {
    Next,
    Jump(usize),
    Halt,
}

/// `Ok(None)`: must wait.
fn exec_c(
    before: &Regs,
    fl: &mut InFlight,
    op: &Op,
    s: &mut RefSentron,
    m: &mut Shared,
) -> R<Option<CFlow>> {
    let [a, b, _, _] = op.args;
    // Not every argument is a scalar register (CSEND @N, CRECV rd, @N, CCAST t, @N name
    // sentrons up to 63): read them as registers only where the op says so.
    let reg = |i: u8| before.s.get(i as usize).copied().unwrap_or(0);
    let (ra, rb) = (reg(a), reg(b));
    let jump = CFlow::Jump(op.imm_label() as usize);
    let flow = match op.code {
        Opcode::CNop | Opcode::CFence => CFlow::Next,
        Opcode::CJmp => jump,
        Opcode::CBeq => {
            if ra == rb {
                jump
            } else {
                CFlow::Next
            }
        }
        Opcode::CBne => {
            if ra != rb {
                jump
            } else {
                CFlow::Next
            }
        }
        Opcode::CBlt => {
            if ra < rb {
                jump
            } else {
                CFlow::Next
            }
        }
        Opcode::CBge => {
            if ra >= rb {
                jump
            } else {
                CFlow::Next
            }
        }
        Opcode::CLoop => {
            let v = ra.wrapping_sub(1);
            fl.after.s[a as usize] = v;
            if v != 0 {
                jump
            } else {
                CFlow::Next
            }
        }
        Opcode::CHalt => CFlow::Halt,
        Opcode::CSendR | Opcode::CSendT => {
            if a as usize >= m.n {
                return tk(TrapKind::NoSuchSentron(a as u32));
            }
            let msg = if op.code == Opcode::CSendR {
                Message::Scalar(rb)
            } else {
                let (x, rows, cols) = f32_of(before, b)?;
                Message::Tile {
                    rows,
                    cols,
                    data: crate::budget::try_copy(x)
                        .map_err(|bytes| (TrapKind::AllocFailed { bytes }, None))?,
                }
            };
            s.counters.msgs_sent += 1;
            s.counters.msg_bytes += msg.bytes();
            // Charged while it waits, as the fabric does.
            m.budget
                .charge(msg.bytes())
                .map_err(|o| (TrapKind::from(o), None))?;
            let to = a as u32;
            m.mail[a as usize * m.n + s.id as usize]
                .push(msg)
                .map_err(|pending| {
                    (
                        TrapKind::MailboxFull {
                            to,
                            pending,
                            max: crate::fabric::MAX_MAILBOX_BYTES,
                        },
                        None,
                    )
                })?;
            CFlow::Next
        }
        Opcode::CRecvR | Opcode::CRecvT => {
            if b as usize >= m.n {
                return tk(TrapKind::NoSuchSentron(b as u32));
            }
            let Some(msg) = m.mail[s.id as usize * m.n + b as usize].pop() else {
                return Ok(None);
            };
            m.budget.release(msg.bytes());
            match (op.code, msg) {
                (Opcode::CRecvR, Message::Scalar(v)) => fl.after.s[a as usize] = v,
                (Opcode::CRecvT, Message::Tile { rows, cols, data }) => {
                    fl.after.t[a as usize] = Tile::from_f32(rows, cols, data)
                }
                (code, got) => {
                    return tk(TrapKind::MessageKind {
                        from: b as u32,
                        expected: if code == Opcode::CRecvR {
                            "scalar"
                        } else {
                            "tile"
                        },
                        got: got.kind_name(),
                    })
                }
            }
            CFlow::Next
        }
        Opcode::CBar | Opcode::CReduce | Opcode::CCast => {
            let members = resolve_group(op.imm_group(), m.n, s.id).map_err(|k| (k, None))?;
            let kind = match op.code {
                Opcode::CBar => CollKind::Barrier,
                Opcode::CReduce => CollKind::Reduce(b),
                _ => {
                    if b as usize >= m.n || members & (1u64 << b) == 0 {
                        return tk(TrapKind::NotInGroup(format!(
                            "root sentron {b} is not in the group"
                        )));
                    }
                    CollKind::Cast(b as u32)
                }
            };
            let g = m.groups.entry(members).or_default();
            if fl.arrived.is_none() {
                // The operand is checked before the group is looked at (as the fast
                // executor does): an empty or non-f32 tile traps as such.
                let contributes = match kind {
                    CollKind::Barrier => false,
                    CollKind::Reduce(_) => true,
                    CollKind::Cast(root) => root == s.id,
                };
                let contribution = if contributes {
                    let (x, rows, cols) = f32_of(before, a)?;
                    Some(Tile::from_f32(rows, cols, x.to_vec()))
                } else {
                    None
                };
                if g.arrived != 0 && g.kind != Some(kind) {
                    return tk(TrapKind::CollectiveMismatch {
                        group: group_text(members),
                        detail: "members entered different collectives".into(),
                    });
                }
                g.kind = Some(kind);
                if let Some(t) = contribution {
                    g.contributions.insert(s.id, t);
                }
                g.arrived |= 1 << s.id;
                fl.arrived = Some(g.generation);
                if g.arrived == members {
                    let result = reduce_ref(kind, &g.contributions);
                    g.results.insert(g.generation, (result, members));
                    g.generation += 1;
                    g.arrived = 0;
                    g.contributions.clear();
                }
            }
            let my_gen = fl.arrived.unwrap_or(0);
            let Some((result, pending)) = g.results.get_mut(&my_gen) else {
                return Ok(None);
            };
            *pending &= !(1u64 << s.id);
            let result = if *pending == 0 {
                g.results
                    .remove(&my_gen)
                    .map(|(r, _)| r)
                    .unwrap_or(Ok(None))
            } else {
                result.clone()
            };
            match result {
                Err(e) => {
                    return tk(TrapKind::CollectiveMismatch {
                        group: group_text(members),
                        detail: e,
                    })
                }
                Ok(Some(t)) => fl.after.t[a as usize] = t,
                Ok(None) => {}
            }
            CFlow::Next
        }
        _ => CFlow::Next,
    };
    Ok(Some(flow))
}

fn reduce_ref(kind: CollKind, contributions: &HashMap<u32, Tile>) -> Result<Option<Tile>, String> {
    match kind {
        CollKind::Barrier => Ok(None),
        CollKind::Cast(root) => contributions
            .get(&root)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("root sentron {root} contributed no tile")),
        CollKind::Reduce(vtpu_isa::word::REDUCE_CAT) => {
            let mut ids: Vec<&u32> = contributions.keys().collect();
            ids.sort();
            let parts: Vec<(usize, u32, u32, &[f32])> = ids
                .into_iter()
                .map(|&id| {
                    let t = &contributions[&id];
                    (id as usize, t.rows, t.cols, t.f32s().unwrap_or(&[]))
                })
                .collect();
            Ok(crate::fabric::concat_cols(&parts)?
                .map(|(rows, cols, data)| Tile::from_f32(rows, cols, data)))
        }
        CollKind::Reduce(op) => {
            let mut ids: Vec<&u32> = contributions.keys().collect();
            ids.sort();
            let mut acc: Option<(u32, u32, Vec<f32>)> = None;
            for id in ids {
                let t = &contributions[id];
                let x = t.f32s().unwrap_or(&[]);
                match &mut acc {
                    None => acc = Some((t.rows, t.cols, x.to_vec())),
                    Some((r, c, v)) => {
                        if (*r, *c) != (t.rows, t.cols) {
                            return Err(format!(
                                "sentron {id} contributed a {}x{} tile, others {r}x{c}",
                                t.rows, t.cols
                            ));
                        }
                        for (p, q) in v.iter_mut().zip(x) {
                            *p = if op == vtpu_isa::word::REDUCE_SUM {
                                *p + *q
                            } else {
                                p.max(*q)
                            };
                        }
                    }
                }
            }
            Ok(acc.map(|(r, c, v)| Tile::from_f32(r, c, v)))
        }
    }
}
