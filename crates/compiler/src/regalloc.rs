//! Register allocation over the final word stream, with double buffering of loop values.
//!
//! Positions are *boundaries*: boundary b sits between word b-1 and word b. A value
//! written by word d is held from boundary d+1; a read in word u needs it at boundary u.
//! Two values conflict if their boundary ranges intersect, which encodes the VLIW rule
//! exactly: a register may be rewritten in the very word of its last read. One
//! exception, for the host: a value last read by a C-pipe op or by a page-writing S op
//! is held one boundary longer, because the fast executor would have to copy the whole
//! register file for a word in which such a reader shares its register with a writer
//! (see `deps::reads_late`).
//!
//! - Top-level values (and the ops that update them in place) are **units** with one
//!   range each; a unit read inside a loop kernel is held through the whole kernel.
//! - Loop values are **classes** (a value plus the in-place ops that update it). In the
//!   steady state iteration i's instance of class c lives from its definition to its
//!   last read, possibly several IIs later: that is what double (or U-fold) buffering
//!   is for. The kernel is unrolled U times and instance i uses colour (c, i mod U);
//!   colours are assigned by greedy circular-arc colouring over the periodic schedule
//!   (period U * II), so prologue and epilogue, which are truncations of that periodic
//!   schedule, are consistent with it. Each colour becomes one register for the loop's
//!   whole span. A carried value's initial value is placed in the colour of instance
//!   -1; a value read after the loop keeps a colour of its own.
//! - Linear scan over the stream assigns registers to units and loop colour groups in
//!   order of their start; running out is an `unsatisfiable register pressure` error
//!   naming the place.

use std::collections::HashMap;

use crate::error::{file_name, CompileError, Result};
use crate::graph::{LoopId, SentronGraph, Value, ValueDef};
use crate::pipeline::{EWord, LoopPlan, LoopSpan, Slot};
use crate::rotation::{c_read, find};
pub use crate::rotation::{
    color_loop, loop_classes, total_lifetime, unroll_needed, ClassInfo, LoopClasses, LoopColors,
};
use vtpu_isa::{Op, Opcode, RegFile, Siw};

/// Most kernel copies register rotation may ask for.
pub const MAX_UNROLL: u32 = 16;

fn fidx(f: RegFile) -> usize {
    match f {
        RegFile::Scalar => 0,
        RegFile::Tile => 1,
        RegFile::Coord => 2,
    }
}
const FILES: [RegFile; 3] = [RegFile::Scalar, RegFile::Tile, RegFile::Coord];

/// Per loop: its plan, classes and colours.
pub struct LoopAlloc<'a> {
    pub plan: &'a LoopPlan,
    pub classes: &'a LoopClasses,
    pub colors: &'a LoopColors,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Unit {
    Ext(u32),
    Loop { lp: u32, class: u32, k: u32 },
}

/// Where allocation ran out of registers: a word, and the loop whose values it was
/// placing (None: a value of straight-line code).
#[derive(Clone, Copy, Debug)]
pub struct FailSite {
    pub word: usize,
    pub lp: Option<LoopId>,
}

struct ExtTable {
    parent: Vec<u32>,
    ext: Vec<ExtUnit>,
    of_root: HashMap<u32, u32>,
}

impl ExtTable {
    fn unit(&mut self, sg: &SentronGraph, v: Value) -> u32 {
        let r = find(&mut self.parent, v.0);
        let ext = &mut self.ext;
        *self.of_root.entry(r).or_insert_with(|| {
            ext.push(ExtUnit {
                file: sg.value(v).file,
                start: i64::MAX,
                end: i64::MIN,
                forced: None,
            });
            ext.len() as u32 - 1
        })
    }
}

/// The allocation unit of value `v` as read or written by an op of iteration `iter`.
fn unit_of(
    sg: &SentronGraph,
    loops: &HashMap<LoopId, LoopAlloc<'_>>,
    v: Value,
    iter: u64,
    tab: &mut ExtTable,
) -> Result<Unit> {
    match sg.value(v).def {
        ValueDef::Phi { lp, index } => {
            let la = loops
                .get(&lp)
                .ok_or_else(|| internal("phi of an unplanned loop"))?;
            let phi = &sg.lp(lp).phis[index as usize];
            if iter == 0 {
                return Ok(Unit::Ext(tab.unit(sg, phi.init)));
            }
            let next = phi
                .next
                .ok_or_else(|| internal("carried value without next"))?;
            let class = *la
                .classes
                .of
                .get(&next)
                .ok_or_else(|| internal("no class"))?;
            let k = ((iter - 1) % u64::from(la.plan.unroll.max(1))) as u32;
            Ok(Unit::Loop { lp: lp.0, class, k })
        }
        _ => match sg.value(v).scope {
            Some(lp) => {
                let la = loops
                    .get(&lp)
                    .ok_or_else(|| internal("value of an unplanned loop"))?;
                let class = *la.classes.of.get(&v).ok_or_else(|| internal("no class"))?;
                let k = (iter % u64::from(la.plan.unroll.max(1))) as u32;
                Ok(Unit::Loop { lp: lp.0, class, k })
            }
            None => Ok(Unit::Ext(tab.unit(sg, v))),
        },
    }
}

struct ExtUnit {
    file: RegFile,
    start: i64,
    end: i64,
    /// Output of a loop: (loop, class, k) whose colour it must keep.
    forced: Option<(u32, u32, u32)>,
}

/// Assign registers and produce the words.
pub fn allocate(
    sg: &SentronGraph,
    words: &[EWord],
    spans: &[LoopSpan],
    loops: &HashMap<LoopId, LoopAlloc<'_>>,
    fail_at: &mut Option<FailSite>,
) -> Result<Vec<Siw>> {
    let nv = sg.values.len();
    // Union in-place chains of top-level values.
    let mut parent: Vec<u32> = (0..nv as u32).collect();
    for n in &sg.nodes {
        for (d, t) in n.defs.iter().zip(&n.tied) {
            if let Some(u) = t {
                let src = n.uses[*u as usize];
                if sg.value(src).scope.is_none() && sg.value(*d).scope.is_none() {
                    let (a, b) = (find(&mut parent, d.0), find(&mut parent, src.0));
                    parent[a as usize] = b;
                }
            }
        }
    }
    let span_of: HashMap<LoopId, &LoopSpan> = spans.iter().map(|s| (s.lp, s)).collect();
    let mut tab = ExtTable {
        parent,
        ext: Vec::new(),
        of_root: HashMap::new(),
    };
    // Pass 1: ranges of top-level units.
    let mut counter_range: HashMap<u32, (i64, i64)> = HashMap::new();
    // The kernel loop (if any) each word belongs to: its end.
    let mut kernel_end: Vec<Option<usize>> = vec![None; words.len()];
    for sp in spans {
        if let Some((ks, ke)) = sp.kernel {
            for slot in kernel_end.iter_mut().take(ke).skip(ks) {
                *slot = Some(ke);
            }
        }
    }
    for (w, word) in words.iter().enumerate() {
        let wi = w as i64;
        for slot in word.slots.iter().flatten() {
            match *slot {
                Slot::Node { node, iter } => {
                    let n = sg.node(node);
                    for &u in &n.uses {
                        if let Unit::Ext(e) = unit_of(sg, loops, u, iter, &mut tab)? {
                            let mut end = wi + c_read(sg, node);
                            if let Some(ke) = kernel_end[w] {
                                end = end.max(ke as i64 - 1);
                            }
                            let x = &mut tab.ext[e as usize];
                            x.end = x.end.max(end);
                        }
                    }
                    for &d in &n.defs {
                        if let Unit::Ext(e) = unit_of(sg, loops, d, iter, &mut tab)? {
                            let x = &mut tab.ext[e as usize];
                            x.start = x.start.min(wi + 1);
                            x.end = x.end.max(wi + 1);
                        }
                    }
                }
                Slot::Counter { lp, .. } => {
                    counter_range.insert(lp.0, (wi + 1, wi + 1));
                }
                Slot::Cloop { lp } => {
                    if let Some(r) = counter_range.get_mut(&lp.0) {
                        r.1 = r.1.max(wi);
                    }
                }
            }
        }
    }
    // Loop outputs and carried initial values.
    let readers = sg.readers();
    // Per loop: (unit of an initial value, colour it must become).
    let mut init_map: HashMap<u32, Vec<(u32, u32)>> = HashMap::new();
    let mut order: Vec<&LoopId> = loops.keys().collect();
    order.sort();
    for lp in &order {
        let (la, Some(span)) = (&loops[*lp], span_of.get(*lp)) else {
            continue;
        };
        let n = la.plan.trip;
        let u = u64::from(la.plan.unroll.max(1));
        for (&body_v, &out_v) in &sg.lp(**lp).outputs {
            let e = tab.unit(sg, out_v);
            let class = *la
                .classes
                .of
                .get(&body_v)
                .ok_or_else(|| internal("output class"))?;
            let x = &mut tab.ext[e as usize];
            x.forced = Some((lp.0, class, ((n - 1) % u) as u32));
            x.start = x.start.min(span.end as i64);
            x.end = x.end.max(span.end as i64);
        }
    }
    for lp in &order {
        let (la, Some(span)) = (&loops[*lp], span_of.get(*lp)) else {
            continue;
        };
        for p in &sg.lp(**lp).phis {
            let e = tab.unit(sg, p.init);
            let x = &mut tab.ext[e as usize];
            // Held until the loop starts, where the loop's colour takes it over (its
            // only reader is the carried value: `normalize` copies shared ones).
            x.end = (span.start as i64).max(x.start);
            let Some(next) = p.next else { continue };
            let Some(&class) = la.classes.of.get(&next) else {
                continue;
            };
            let k = la.plan.unroll.max(1) - 1;
            if readers[p.value.0 as usize].is_empty() {
                continue;
            }
            if let Some(&col) = la.colors.color.get(&(class, k)) {
                init_map.entry(lp.0).or_default().push((e, col));
            }
        }
    }
    // Pass 2: linear scan.
    let ext = std::mem::take(&mut tab.ext);
    let nregs = [
        vtpu_isa::NUM_SCALAR_REGS,
        vtpu_isa::NUM_TILE_REGS,
        vtpu_isa::NUM_COORD_REGS,
    ];
    let mut busy: [Vec<i64>; 3] = [vec![-1; nregs[0]], vec![-1; nregs[1]], vec![-1; nregs[2]]];
    #[derive(Clone, Copy)]
    enum Ev {
        Ext(u32),
        Group(LoopId),
        Counter(u32),
    }
    let mut events: Vec<(i64, u8, Ev)> = Vec::new();
    for (i, x) in ext.iter().enumerate() {
        if x.start != i64::MAX {
            events.push((
                x.start,
                if x.forced.is_some() { 2 } else { 0 },
                Ev::Ext(i as u32),
            ));
        }
    }
    for s in spans {
        events.push((s.start as i64 + 1, 1, Ev::Group(s.lp)));
    }
    for (&l, &(s, _)) in &counter_range {
        events.push((s, 0, Ev::Counter(l)));
    }
    events.sort_by_key(|e| (e.0, e.1));
    let mut ext_reg: Vec<Option<u8>> = vec![None; ext.len()];
    let mut holders: [Vec<String>; 3] = [
        vec![String::new(); nregs[0]],
        vec![String::new(); nregs[1]],
        vec![String::new(); nregs[2]],
    ];
    let root_of_unit: HashMap<u32, u32> = tab.of_root.iter().map(|(&r, &u)| (u, r)).collect();
    let describe_unit = |u: u32| -> String {
        let v = Value(root_of_unit.get(&u).copied().unwrap_or(0));
        match sg.value(v).def {
            ValueDef::Node { node, .. } => format!("{v} of {}", sg.describe(node)),
            ValueDef::Output { lp, .. } => format!("{v}, output of loop {}", lp.0),
            ValueDef::Phi { lp, .. } => format!("{v}, carried by loop {}", lp.0),
        }
    };
    let mut group_regs: HashMap<u32, [Vec<u8>; 3]> = HashMap::new();
    let mut counter_reg: HashMap<u32, u8> = HashMap::new();
    let pick = |busy: &[i64], start: i64, taken: &[u8]| -> Option<u8> {
        (0..busy.len())
            .find(|&r| busy[r] < start && !taken.contains(&(r as u8)))
            .map(|r| r as u8)
    };
    let where_ = |w: i64| format!("{}, word {w}", sg.name());
    for (start, _, ev) in events {
        match ev {
            Ev::Ext(i) => {
                let x = &ext[i as usize];
                let f = fidx(x.file);
                let r = match x.forced {
                    Some((lp, class, k)) => {
                        let la = &loops[&LoopId(lp)];
                        let col = la
                            .colors
                            .color
                            .get(&(class, k))
                            .ok_or_else(|| internal("output colour"))?;
                        let regs = group_regs
                            .get(&lp)
                            .ok_or_else(|| internal("group before output"))?;
                        regs[f][*col as usize]
                    }
                    None => match pick(&busy[f], start, &[]) {
                        Some(r) => r,
                        None => {
                            *fail_at = Some(FailSite {
                                word: (start - 1).max(0) as usize,
                                lp: None,
                            });
                            return Err(pressure(
                                &where_(start - 1),
                                x.file,
                                &busy[f],
                                start,
                                1,
                                &holders[f],
                            ));
                        }
                    },
                };
                busy[f][r as usize] = busy[f][r as usize].max(x.end);
                holders[f][r as usize] = describe_unit(i);
                ext_reg[i as usize] = Some(r);
            }
            Ev::Counter(l) => {
                let (s, e) = counter_range[&l];
                let Some(r) = pick(&busy[0], s, &[]) else {
                    *fail_at = Some(FailSite {
                        word: (s - 1).max(0) as usize,
                        lp: None,
                    });
                    return Err(pressure(
                        &where_(s - 1),
                        RegFile::Scalar,
                        &busy[0],
                        s,
                        1,
                        &holders[0],
                    ));
                };
                busy[0][r as usize] = e;
                holders[0][r as usize] = format!("the counter of loop {l}");
                counter_reg.insert(l, r);
            }
            Ev::Group(lp) => {
                let la = &loops[&lp];
                let span = span_of[&lp];
                let end = (span.end as i64 - 1).max(start);
                let mut regs: [Vec<u8>; 3] = Default::default();
                for (regs_f, &count) in regs.iter_mut().zip(&la.colors.count) {
                    *regs_f = vec![u8::MAX; count];
                }
                // Initial values of carried values keep their registers.
                for &(e, col) in init_map.get(&lp.0).map(|v| &v[..]).unwrap_or(&[]) {
                    let Some(r) = ext_reg[e as usize] else {
                        continue;
                    };
                    let f = fidx(ext[e as usize].file);
                    if regs[f][col as usize] == u8::MAX
                        && !regs[f].contains(&r)
                        && busy[f][r as usize] < start
                    {
                        regs[f][col as usize] = r;
                    } else if regs[f][col as usize] != r {
                        return Err(internal(&format!(
                            "carried initial value cannot keep its register (loop {}, colour {col}, reg {r}, busy until {}, group start {start}, colours {:?})",
                            lp.0, busy[f][r as usize], regs[f]
                        )));
                    }
                }
                for f in 0..3 {
                    for c in 0..regs[f].len() {
                        if regs[f][c] != u8::MAX {
                            continue;
                        }
                        let taken = regs[f].clone();
                        let Some(r) = pick(&busy[f], start, &taken) else {
                            let plan = la.plan;
                            let at = format!(
                                "{}, loop of {} iterations ({}, II {}, {} stage(s), unroll {})",
                                sg.name(),
                                plan.trip,
                                if plan.pipelined {
                                    "pipelined"
                                } else {
                                    "not pipelined"
                                },
                                plan.ii,
                                plan.stages,
                                plan.unroll
                            );
                            *fail_at = Some(FailSite {
                                word: span.start,
                                lp: Some(lp),
                            });
                            return Err(pressure(
                                &at,
                                FILES[f],
                                &busy[f],
                                start,
                                regs[f].len(),
                                &holders[f],
                            ));
                        };
                        regs[f][c] = r;
                    }
                    for &r in &regs[f] {
                        busy[f][r as usize] = busy[f][r as usize].max(end);
                        holders[f][r as usize] = format!("loop {} values", lp.0);
                    }
                }
                group_regs.insert(lp.0, regs);
            }
        }
    }
    // Pass 3: words with registers.
    let mut out = Vec::with_capacity(words.len());
    for word in words {
        let mut siw = Siw::NOP;
        for (p, slot) in word.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            siw.slots[p] = match *slot {
                Slot::Counter { lp, count } => {
                    let r = counter_reg
                        .get(&lp.0)
                        .copied()
                        .ok_or_else(|| internal("counter register"))?;
                    Op::new(Opcode::DLi, [r, 0, 0, 0], Op::encode_i64(count as i64))
                }
                Slot::Cloop { lp } => {
                    let r = counter_reg
                        .get(&lp.0)
                        .copied()
                        .ok_or_else(|| internal("counter register"))?;
                    let start = span_of
                        .get(&lp)
                        .and_then(|s| s.kernel)
                        .map(|k| k.0)
                        .ok_or_else(|| internal("kernel start"))?;
                    Op::new(Opcode::CLoop, [r, 0, 0, 0], Op::encode_label(start as u32))
                }
                Slot::Node { node, iter } => {
                    let n = sg.node(node);
                    let mut op = n.template;
                    let mut uses = n.uses.iter();
                    let mut defs = n.defs.iter();
                    let mut small = 0usize;
                    for kind in op.code.info().operands {
                        if kind.is_big() {
                            continue;
                        }
                        let i = small;
                        small += 1;
                        if kind.reg_file().is_none() {
                            continue;
                        }
                        let v = if kind.reads() {
                            uses.next()
                        } else {
                            defs.next()
                        };
                        let v = *v.ok_or_else(|| internal("operand count"))?;
                        let unit = unit_of(sg, loops, v, iter, &mut tab)?;
                        let file = sg.value(v).file;
                        op.args[i] = reg_of(unit, &ext_reg, &group_regs, loops, file)?;
                        if kind.reads() && kind.writes() {
                            let d = *defs.next().ok_or_else(|| internal("operand count"))?;
                            let du = unit_of(sg, loops, d, iter, &mut tab)?;
                            if reg_of(du, &ext_reg, &group_regs, loops, file)? != op.args[i] {
                                return Err(internal(&format!(
                                    "in-place operand of {} split over two registers",
                                    sg.describe(node)
                                )));
                            }
                        }
                    }
                    op
                }
            };
        }
        out.push(siw);
    }
    Ok(out)
}

fn reg_of(
    unit: Unit,
    ext_reg: &[Option<u8>],
    group_regs: &HashMap<u32, [Vec<u8>; 3]>,
    loops: &HashMap<LoopId, LoopAlloc<'_>>,
    file: RegFile,
) -> Result<u8> {
    match unit {
        Unit::Ext(e) => ext_reg
            .get(e as usize)
            .copied()
            .flatten()
            .ok_or_else(|| internal("unallocated value")),
        Unit::Loop { lp, class, k } => {
            let col = loops
                .get(&LoopId(lp))
                .and_then(|la| la.colors.color.get(&(class, k)))
                .ok_or_else(|| internal("loop colour"))?;
            group_regs
                .get(&lp)
                .and_then(|r| r[fidx(file)].get(*col as usize))
                .copied()
                .ok_or_else(|| internal("loop register"))
        }
    }
}

fn internal(what: &str) -> CompileError {
    CompileError::Internal(format!("register allocation: {what}"))
}

fn pressure(
    at: &str,
    file: RegFile,
    busy: &[i64],
    start: i64,
    wanted: usize,
    holders: &[String],
) -> CompileError {
    let held = busy.iter().filter(|&&b| b >= start).count();
    let who: Vec<&str> = busy
        .iter()
        .zip(holders)
        .filter(|(&b, _)| b >= start)
        .map(|(_, h)| h.as_str())
        .take(8)
        .collect();
    CompileError::RegisterPressure {
        at: format!("{at} (held by: {})", who.join(", ")),
        file: file_name(file),
        needed: held + wanted,
        available: busy.len(),
    }
}
