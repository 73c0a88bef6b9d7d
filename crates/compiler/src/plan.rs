//! Loop planning: the candidate schedules of one loop body (modulo-scheduled,
//! prefetch-ahead, plain list-scheduled, in order), each checked before use.

use crate::deps::{self, DepGraph};
use crate::error::{CompileError, Result};
use crate::graph::{LoopId, NodeId, SentronGraph};
use crate::modulo::{self, ModSched};
use crate::pipeline::LoopPlan;
use crate::regalloc;
use crate::schedule;
use vtpu_isa::{Pipe, RegFile};

/// Shorten register lifetimes of a loop plan (sinking, then a bounded local search).
pub(crate) fn improve_lifetimes(
    sg: &SentronGraph,
    dg: &DepGraph,
    plan: &mut LoopPlan,
    pos: &[u32],
    readers: &[Vec<NodeId>],
) {
    crate::sink::sink(
        sg,
        plan.lp,
        dg,
        &mut plan.time,
        plan.ii,
        plan.full_prefetch,
        readers,
    );
    let probe = plan.clone();
    let eval = |t: &[u32]| {
        let mut p = probe.clone();
        p.time = t.to_vec();
        let cl = regalloc::loop_classes(sg, &p, pos, readers);
        (
            regalloc::unroll_needed(&cl, p.ii),
            regalloc::total_lifetime(&cl),
        )
    };
    crate::sink::improve(dg, &mut plan.time, plan.ii, plan.full_prefetch, &eval);
}

/// A loop schedule must respect every dependency and use each (pipe, row) slot once,
/// leaving the loop branch's C slot free when the kernel loops; a failure here is a
/// compiler bug, reported instead of miscompiling.
pub(crate) fn check_plan(sg: &SentronGraph, dg: &DepGraph, plan: &LoopPlan) -> Result<()> {
    let ii = plan.ii.max(1);
    for e in &dg.edges {
        let (a, b) = (
            i64::from(plan.time[e.from as usize]),
            i64::from(plan.time[e.to as usize]),
        );
        if b + i64::from(ii) * i64::from(e.dist) < a + e.lat.get(ii, plan.full_prefetch) {
            return Err(CompileError::Internal(format!(
                "{}: loop schedule breaks a dependency from {} to {}",
                sg.name(),
                sg.describe(dg.nodes[e.from as usize]),
                sg.describe(dg.nodes[e.to as usize])
            )));
        }
    }
    let mut used = vec![[false; 3]; ii as usize];
    if plan.needs_counter() {
        used[ii as usize - 1][2] = true;
    }
    for (i, &t) in plan.time.iter().enumerate() {
        let slot = &mut used[(t % ii) as usize][dg.pipe[i] as usize];
        if *slot {
            return Err(CompileError::Internal(format!(
                "{}: two ops in one slot of the loop schedule ({})",
                sg.name(),
                sg.describe(dg.nodes[i])
            )));
        }
        *slot = true;
    }
    Ok(())
}

/// Words a tile may wait between the op that makes it and the op that reads it, in a
/// pipelined loop (tiles are the scarcest registers).
pub const TILE_GAP: u32 = 8;

/// Lifetime limits for every tile passed from one op to another in the loop body.
fn tile_limits(sg: &SentronGraph, dg: &DepGraph) -> Vec<modulo::Limit> {
    dg.edges
        .iter()
        .filter(|e| e.dist == 0 && e.lat == deps::Lat::Fixed(1))
        .filter(|e| {
            let (p, c) = (
                sg.node(dg.nodes[e.from as usize]),
                sg.node(dg.nodes[e.to as usize]),
            );
            p.defs
                .iter()
                .any(|d| sg.value(*d).file == RegFile::Tile && c.uses.contains(d))
        })
        .map(|e| modulo::Limit {
            consumer: e.to,
            producer: e.from,
            gap: TILE_GAP,
        })
        .collect()
}

/// Schedule one loop body: modulo if allowed and shorter, else list (or sequential).
/// How a loop may be planned.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PlanMode {
    pub packed: bool,
    /// Try a modulo schedule.
    pub pipeline: bool,
    /// Keep a modulo schedule even when the plain loop is shorter (testing).
    pub always: bool,
    /// Schedule the body in op order (register pressure fallback).
    pub in_order: bool,
    /// Smallest II to try.
    pub first_ii: u32,
}

pub(crate) fn plan_loop(sg: &SentronGraph, lp: LoopId, dg: &DepGraph, mode: PlanMode) -> LoopPlan {
    let PlanMode {
        packed,
        pipeline: allow_pipe,
        always,
        in_order,
        first_ii,
    } = mode;
    let trip = sg.lp(lp).trip;
    let n = dg.len() as u32;
    let base = |time: Vec<u32>, ii: u32, why: Option<String>| LoopPlan {
        lp,
        trip,
        ii,
        time,
        stages: 1,
        unroll: 1,
        pipelined: false,
        res_mii: modulo::res_mii(dg, true),
        rec_mii: 0,
        full_prefetch: false,
        why_not: why,
    };
    if !packed {
        return base(schedule::sequential(dg), n + 1, Some("unpacked".into()));
    }
    let time = if in_order {
        schedule::in_order(dg)
    } else {
        schedule::list_schedule(dg, None)
    };
    let len = time.iter().max().map_or(0, |&t| t + 1);
    let c_last = (0..dg.len()).any(|i| dg.pipe[i] == Pipe::C && time[i] + 1 == len);
    let ii_list = len + u32::from(c_last);
    if in_order {
        return base(
            time,
            ii_list,
            Some("pipelining disabled for this loop (registers)".into()),
        );
    }
    if !allow_pipe {
        return base(time, ii_list, None);
    }
    let max_ii = if always {
        ii_list.saturating_mul(2)
    } else {
        ii_list
    };
    if first_ii > max_ii {
        return base(
            time,
            ii_list,
            Some("registers ran out at every II up to the plain body's".into()),
        );
    }
    let limits = tile_limits(sg, dg);
    let ms: Option<ModSched> = modulo::modulo_schedule(dg, true, first_ii, max_ii, &limits);
    match ms {
        Some(ms) if u64::from(ms.stages) <= trip => {
            let piped = (trip + u64::from(ms.stages) - 1) * u64::from(ms.ii);
            let plain = trip * u64::from(ii_list);
            // A body with prefetches is worth pipelining at the same steady-state rate:
            // only then does a prefetch run an iteration ahead of its gather.
            let prefetching = ms.full_prefetch
                && ms.stages > 1
                && dg.prefetch.iter().any(|&p| p)
                && ms.ii <= ii_list;
            if piped <= plain || always || prefetching {
                LoopPlan {
                    lp,
                    trip,
                    ii: ms.ii,
                    time: ms.time,
                    stages: ms.stages,
                    unroll: 1,
                    pipelined: ms.stages > 1 || ms.ii < ii_list,
                    res_mii: ms.res_mii,
                    rec_mii: ms.rec_mii,
                    full_prefetch: ms.full_prefetch,
                    why_not: None,
                }
            } else {
                base(
                    time,
                    ii_list,
                    Some("the pipelined loop would be longer".into()),
                )
            }
        }
        Some(ms) => base(
            time,
            ii_list,
            Some(format!(
                "{} iteration(s), fewer than the {} stages",
                trip, ms.stages
            )),
        ),
        None => base(
            time,
            ii_list,
            Some("no modulo schedule shorter than the plain body".into()),
        ),
    }
}

/// The plain body schedule as a two-stage pipeline in which only the prefetches (and
/// the address computations feeding them) run one iteration ahead: same words per
/// iteration, each page fetched a whole iteration before its gathers. None if the loop
/// has no prefetch, too few iterations, or a dependency would break.
pub(crate) fn prefetch_ahead(dg: &DepGraph, plan: &LoopPlan) -> Option<LoopPlan> {
    if !dg.prefetch.iter().any(|&p| p) || plan.trip < 2 || plan.stages != 1 {
        return None;
    }
    let n = dg.len();
    // Prefetches and everything they depend on (in this iteration or, through carried
    // values, the one before) stay in stage 0.
    let mut early = vec![false; n];
    let mut stack: Vec<usize> = (0..n).filter(|&i| dg.prefetch[i]).collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut early[i], true) {
            continue;
        }
        for &e in &dg.pred[i] {
            stack.push(dg.edges[e as usize].from as usize);
        }
    }
    if (0..n).all(|i| early[i]) {
        return None;
    }
    let ii = plan.ii;
    let time: Vec<u32> = (0..n)
        .map(|i| plan.time[i] + if early[i] { 0 } else { ii })
        .collect();
    let ok = dg.edges.iter().all(|e| {
        let (a, b) = (
            i64::from(time[e.from as usize]),
            i64::from(time[e.to as usize]),
        );
        b + i64::from(ii) * i64::from(e.dist) >= a + e.lat.get(ii, true)
    });
    ok.then(|| LoopPlan {
        time,
        stages: 2,
        pipelined: true,
        full_prefetch: true,
        why_not: Some("two stages: prefetches one iteration ahead of the plain body".into()),
        ..plan.clone()
    })
}
