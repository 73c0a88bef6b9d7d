//! Lifetime-shortening post-pass for loop schedules: an op moves later within the window
//! its dependencies and the reservation table allow, when that shortens the life of the
//! values it writes more than it lengthens the values it is the last reader of (weighed
//! by how scarce their registers are). The classic case is an induction update (`off += step`): the
//! scheduler places it as early as possible, which makes the next offset live beside the
//! current one and forces a second register (and a kernel unrolled twice); placed after
//! the last use of the current offset it needs one.

use crate::deps::DepGraph;
use crate::graph::{LoopId, NodeId, Place, SentronGraph, ValueDef};
use crate::pipeline::effectful;

/// Sink ops of a loop body schedule `time` (initiation interval `ii`, C slot of the
/// last row kept for the loop branch).
pub fn sink(
    sg: &SentronGraph,
    lp: LoopId,
    dg: &DepGraph,
    time: &mut [u32],
    ii: u32,
    pf: bool,
    readers: &[Vec<NodeId>],
) {
    let n = dg.len();
    if n == 0 || ii == 0 {
        return;
    }
    let max_t = time.iter().copied().max().unwrap_or(0);
    let mut mrt = vec![[false; 3]; ii as usize];
    mrt[ii as usize - 1][2] = true;
    for i in 0..n {
        mrt[(time[i] % ii) as usize][dg.pipe[i] as usize] = true;
    }
    let local = |y: NodeId| -> Option<usize> { dg.nodes.iter().position(|&x| x == y) };
    let in_body = |y: NodeId| sg.node(y).place == Place::Loop(lp);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(time[i]));
    for x in order {
        let node = sg.node(dg.nodes[x]);
        if node.defs.is_empty()
            || node.tied.iter().any(Option::is_some)
            || dg.prefetch[x]
            || effectful(sg, dg.nodes[x])
        {
            continue;
        }
        let mut late = i64::from(max_t);
        for &e in &dg.succ[x] {
            let e = dg.edges[e as usize];
            let ts = i64::from(time[e.to as usize]);
            late = late.min(ts + i64::from(ii) * i64::from(e.dist) - e.lat.get(ii, pf));
        }
        // Moving later shortens what the op writes; it lengthens the inputs it is the
        // last reader of. Registers are weighed by scarcity (tiles and coordinates: 16,
        // scalars: 32): the move may lengthen inputs only if it saves more than it costs.
        let weight = |f: vtpu_isa::RegFile| if f == vtpu_isa::RegFile::Scalar { 1 } else { 2 };
        let saved: i32 = node.defs.iter().map(|d| weight(sg.value(*d).file)).sum();
        let mut cost = 0;
        let mut keep_inputs = i64::MAX;
        for &u in &node.uses {
            let loop_value = sg.value(u).scope == Some(lp)
                || matches!(sg.value(u).def, ValueDef::Phi { lp: l, .. } if l == lp);
            if !loop_value {
                continue;
            }
            let other = readers[u.0 as usize]
                .iter()
                .filter(|&&y| y != dg.nodes[x] && in_body(y))
                .filter_map(|&y| local(y).map(|l| i64::from(time[l])))
                .max()
                .unwrap_or(-1);
            if other < late {
                cost += weight(sg.value(u).file);
                keep_inputs = keep_inputs.min(other.max(i64::from(time[x])));
            }
        }
        if cost >= saved {
            late = late.min(keep_inputs);
        }
        let cur = i64::from(time[x]);
        let p = dg.pipe[x] as usize;
        let row = |t: i64| (t.rem_euclid(i64::from(ii))) as usize;
        if let Some(t) = (cur + 1..=late).rev().find(|&t| !mrt[row(t)][p]) {
            mrt[row(cur)][p] = false;
            mrt[row(t)][p] = true;
            time[x] = t as u32;
        }
    }
}

/// Every edge of `dg` holds under `time` (a moved op must not break one).
fn valid(dg: &DepGraph, time: &[u32], ii: u32, pf: bool) -> bool {
    dg.edges.iter().all(|e| {
        let (a, b) = (
            i64::from(time[e.from as usize]),
            i64::from(time[e.to as usize]),
        );
        b + i64::from(ii) * i64::from(e.dist) >= a + e.lat.get(ii, pf)
    })
}

/// Most schedules `improve` evaluates.
pub const MAX_EVALS: usize = 1500;

/// Local search after sinking: when register rotation still needs a kernel unrolled U > 1
/// times, try moving an op of a longest-lived class to a later row, first moving the op
/// that occupies that row elsewhere; keep a move pair when U drops (or stays while the
/// total lifetime shrinks). `unroll` evaluates a schedule: (U, total lifetime).
pub fn improve(
    dg: &DepGraph,
    time: &mut Vec<u32>,
    ii: u32,
    pf: bool,
    unroll: &dyn Fn(&[u32]) -> (u32, i64),
) {
    let n = dg.len();
    let (mut best_u, mut best_len) = unroll(time);
    if best_u <= 1 || n == 0 || ii == 0 {
        return;
    }
    let max_t = time.iter().copied().max().unwrap_or(0);
    let row = |t: u32| (t % ii) as usize;
    let reserved = |p: usize, r: usize| p == 2 && r == ii as usize - 1;
    // Which op holds each (row, pipe) slot.
    let mut occ: Vec<[Option<usize>; 3]> = vec![[None; 3]; ii as usize];
    for (i, &t) in time.iter().enumerate() {
        occ[row(t)][dg.pipe[i] as usize] = Some(i);
    }
    // Each candidate schedule costs O(ops) to evaluate; bound the search so big bodies
    // compile quickly.
    let mut budget: usize = MAX_EVALS;
    for _round in 0..4 {
        let mut improved = false;
        for x in 0..n {
            if dg.prefetch[x] || dg.terminator == Some(x) {
                continue;
            }
            let px = dg.pipe[x] as usize;
            for tx in 0..=max_t {
                if tx == time[x] || reserved(px, row(tx)) {
                    continue;
                }
                let occupant = occ[row(tx)][px].filter(|&y| y != x);
                let mut moves: Vec<(usize, u32)> = Vec::new();
                match occupant {
                    None => moves.push((usize::MAX, 0)),
                    Some(y) => {
                        let py = dg.pipe[y] as usize;
                        for ty in 0..=max_t {
                            let r = row(ty);
                            let free = r == row(time[x]) || occ[r][py].is_none();
                            if ty != time[y] && r != row(tx) && free && !reserved(py, r) {
                                moves.push((y, ty));
                            }
                        }
                    }
                }
                for (y, ty) in moves {
                    if budget == 0 {
                        return;
                    }
                    budget -= 1;
                    let mut t = time.clone();
                    t[x] = tx;
                    if y != usize::MAX {
                        t[y] = ty;
                    }
                    if !valid(dg, &t, ii, pf) {
                        continue;
                    }
                    let (u, len) = unroll(&t);
                    if u < best_u || (u == best_u && len < best_len) {
                        best_u = u;
                        best_len = len;
                        occ[row(time[x])][px] = None;
                        if y != usize::MAX {
                            occ[row(time[y])][dg.pipe[y] as usize] = None;
                            occ[row(ty)][dg.pipe[y] as usize] = Some(y);
                        }
                        occ[row(tx)][px] = Some(x);
                        *time = t;
                        improved = true;
                        break;
                    }
                }
                if best_u <= 1 {
                    return;
                }
            }
        }
        if !improved {
            break;
        }
    }
}
