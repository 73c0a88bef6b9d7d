//! Modulo scheduling (software pipelining) of a counted loop's body: every iteration
//! follows the same schedule, a new iteration starts every II words, and iteration i's
//! op at time t runs in word t + i*II. An op's stage is t / II; with S stages, S
//! iterations are in flight in the steady state (the kernel), which is what fills the
//! slots: the gather of iteration i+1 shares a word with the multiply of iteration i.
//!
//! Method (iterative modulo scheduling, simplified): II starts at the larger of the
//! resource bound (ops per pipe; the C slot of the last kernel word is kept for CLOOP)
//! and the recurrence bound (the longest dependency cycle through carried values,
//! latency / distance), found by testing for positive cycles; ops are then placed in
//! order of their earliest start, each in the first free (pipe, t mod II) slot of the
//! window its scheduled neighbours allow. If an op finds no slot, II grows.

use crate::deps::DepGraph;
use crate::schedule::heights;

/// A modulo schedule of one loop body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModSched {
    /// Initiation interval: words between the starts of consecutive iterations.
    pub ii: u32,
    /// Per body op: its time within an iteration (stage = time / ii).
    pub time: Vec<u32>,
    /// Number of stages.
    pub stages: u32,
    /// Resource and recurrence lower bounds of II.
    pub res_mii: u32,
    pub rec_mii: u32,
    /// Prefetches run a whole II ahead of their gathers (else one word).
    pub full_prefetch: bool,
}

/// Largest body the modulo scheduler attempts (bigger loops are list-scheduled).
pub const MAX_MODULO_BODY: usize = 1024;

/// A soft bound on a value's lifetime: `producer` runs at most `gap` words before
/// `consumer` (the same iteration). Keeps tiles from piling up in registers.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub consumer: u32,
    pub producer: u32,
    pub gap: u32,
}

/// All constraints as (from, to, latency, distance): the dependency edges plus the
/// lifetime limits as negative-latency edges from consumer to producer.
fn constraints(g: &DepGraph, ii: u32, pf: bool, limits: &[Limit]) -> Vec<(usize, usize, i64, u32)> {
    let mut c: Vec<(usize, usize, i64, u32)> = g
        .edges
        .iter()
        .map(|e| (e.from as usize, e.to as usize, e.lat.get(ii, pf), e.dist))
        .collect();
    c.extend(limits.iter().map(|l| {
        (
            l.consumer as usize,
            l.producer as usize,
            -i64::from(l.gap),
            0,
        )
    }));
    c
}

/// Longest-path earliest starts for a given II; None if a dependency cycle needs a
/// larger II.
fn estarts(g: &DepGraph, ii: u32, pf: bool, limits: &[Limit]) -> Option<Vec<i64>> {
    let n = g.len();
    let cons = constraints(g, ii, pf, limits);
    let mut d = vec![0i64; n];
    for pass in 0..=n {
        let mut changed = false;
        for &(from, to, lat, dist) in &cons {
            let cand = d[from] + lat - i64::from(ii) * i64::from(dist);
            if cand > d[to] {
                d[to] = cand;
                changed = true;
            }
        }
        if !changed {
            return Some(d);
        }
        if pass == n {
            return None;
        }
    }
    None
}

/// The resource bound: ops per pipe (+1 C slot for the loop branch).
pub fn res_mii(g: &DepGraph, reserve_c: bool) -> u32 {
    let mut count = [0u32; 3];
    for p in &g.pipe {
        count[*p as usize] += 1;
    }
    count[2] += u32::from(reserve_c);
    count.into_iter().max().unwrap_or(1).max(1)
}

/// Smallest II without a positive dependency cycle, searched in [lo, hi].
fn rec_mii(g: &DepGraph, lo: u32, hi: u32, pf: bool, limits: &[Limit]) -> Option<u32> {
    if estarts(g, lo, pf, limits).is_some() {
        return Some(lo);
    }
    estarts(g, hi, pf, limits)?;
    let (mut bad, mut good) = (lo, hi);
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        if estarts(g, mid, pf, limits).is_some() {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

/// Modulo-schedule `g`, trying II from the lower bound (at least `min_ii`) up to `max_ii`. `reserve_c`
/// keeps the C slot of the last word of each II for the loop branch.
pub fn modulo_schedule(
    g: &DepGraph,
    reserve_c: bool,
    min_ii: u32,
    max_ii: u32,
    limits: &[Limit],
) -> Option<ModSched> {
    // Prefetches a whole II ahead if the dependencies allow, else one word ahead; with
    // the lifetime limits if possible.
    if !limits.is_empty() {
        if let Some(m) = schedule_with(g, reserve_c, min_ii, max_ii, true, limits) {
            return Some(m);
        }
    }
    schedule_with(g, reserve_c, min_ii, max_ii, true, &[])
        .or_else(|| schedule_with(g, reserve_c, min_ii, max_ii, false, &[]))
}

fn schedule_with(
    g: &DepGraph,
    reserve_c: bool,
    min_ii: u32,
    max_ii: u32,
    pf: bool,
    limits: &[Limit],
) -> Option<ModSched> {
    let n = g.len();
    if n == 0 || n > MAX_MODULO_BODY {
        return None;
    }
    let res = res_mii(g, reserve_c);
    if res > max_ii {
        return None;
    }
    let rec = rec_mii(g, res, max_ii, pf, limits)?;
    let h = heights(g);
    for ii in rec.max(min_ii)..=max_ii {
        let found = try_ii(g, ii, reserve_c, &h, pf, limits, true)
            .or_else(|| try_ii(g, ii, reserve_c, &h, pf, limits, false));
        if let Some(time) = found {
            let stages = time.iter().max().copied().unwrap_or(0) / ii + 1;
            return Some(ModSched {
                ii,
                time,
                stages,
                res_mii: res,
                rec_mii: rec_mii(g, 1, rec, pf, &[]).unwrap_or(rec),
                full_prefetch: pf,
            });
        }
    }
    None
}

/// One attempt at II. `alap`: place ops consumers first, each as late as its placed
/// consumers allow (short lifetimes); else producers first, each as early as possible.
fn try_ii(
    g: &DepGraph,
    ii: u32,
    reserve_c: bool,
    h: &[i64],
    pf: bool,
    limits: &[Limit],
    alap: bool,
) -> Option<Vec<u32>> {
    let n = g.len();
    let est = estarts(g, ii, pf, limits)?;
    let cons = constraints(g, ii, pf, limits);
    let mut pred: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, c) in cons.iter().enumerate() {
        succ[c.0].push(k);
        pred[c.1].push(k);
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Latest starts under the critical-path horizon.
    let horizon = est.iter().copied().max().unwrap_or(0);
    let mut lst = vec![horizon; n];
    if alap {
        for _ in 0..=n {
            let mut changed = false;
            for &(from, to, lat, dist) in &cons {
                let cand = lst[to] - lat + i64::from(ii) * i64::from(dist);
                if cand < lst[from] {
                    lst[from] = cand;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if (0..n).any(|i| lst[i] < est[i]) {
            return None;
        }
        order.sort_by_key(|&i| (std::cmp::Reverse(lst[i]), h[i], std::cmp::Reverse(i)));
    } else {
        order.sort_by_key(|&i| (est[i], std::cmp::Reverse(h[i]), i));
    }
    let mut mrt = vec![[false; 3]; ii as usize];
    if reserve_c {
        mrt[ii as usize - 1][2] = true;
    }
    let mut time: Vec<Option<i64>> = vec![None; n];
    let iil = i64::from(ii);
    for &i in &order {
        let mut early = est[i];
        let mut late = i64::MAX;
        for &k in &pred[i] {
            let (from, _, lat, dist) = cons[k];
            if let Some(tp) = time[from] {
                early = early.max(tp + lat - iil * i64::from(dist));
            }
        }
        for &k in &succ[i] {
            let (_, to, lat, dist) = cons[k];
            if to == i {
                continue;
            }
            if let Some(ts) = time[to] {
                late = late.min(ts - lat + iil * i64::from(dist));
            }
        }
        let pipe = g.pipe[i] as usize;
        let free = |t: &i64| *t >= 0 && !mrt[(*t % iil) as usize][pipe];
        let slot = if alap {
            let hi = late.min(lst[i]);
            let lo = early.max(hi - iil + 1);
            (lo..=hi).rev().find(free)?
        } else {
            let last = late.min(early + iil - 1);
            (early..=last).find(free)?
        };
        mrt[(slot % iil) as usize][pipe] = true;
        time[i] = Some(slot);
    }
    let min = time.iter().flatten().copied().min().unwrap_or(0);
    // Shift by whole IIs only, so that (t mod II) rows keep their reserved C slot.
    let shift = if min < 0 {
        ((-min) + iil - 1) / iil * iil
    } else {
        -(min / iil) * iil
    };
    let out: Vec<u32> = time
        .iter()
        .map(|t| (t.unwrap_or(0) + shift) as u32)
        .collect();
    // Self-check every edge (a bug here would be a miscompile).
    for e in &g.edges {
        let (a, b) = (
            i64::from(out[e.from as usize]),
            i64::from(out[e.to as usize]),
        );
        if b + iil * i64::from(e.dist) < a + e.lat.get(ii, pf) {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deps::{Edge, Lat};
    use crate::graph::NodeId;
    use vtpu_isa::Pipe;

    /// A body: S (gather) -> D -> D -> C (send), plus a carried D -> D recurrence.
    fn chain() -> DepGraph {
        let pipes = [Pipe::S, Pipe::D, Pipe::D, Pipe::C, Pipe::D];
        let n = pipes.len();
        let mut g = DepGraph {
            nodes: (0..n as u32).map(NodeId).collect(),
            pipe: pipes.to_vec(),
            edges: Vec::new(),
            succ: vec![Vec::new(); n],
            pred: vec![Vec::new(); n],
            terminator: None,
            prefetch: vec![false; n],
            constant: vec![false; n],
        };
        for (a, b, dist) in [(0, 1, 0), (1, 2, 0), (2, 3, 0), (4, 0, 1), (4, 4, 1)] {
            let e = g.edges.len() as u32;
            g.edges.push(Edge {
                from: a,
                to: b,
                lat: Lat::Fixed(1),
                dist,
            });
            g.succ[a as usize].push(e);
            g.pred[b as usize].push(e);
        }
        g
    }

    #[test]
    fn reaches_the_resource_bound_and_respects_every_edge() {
        let g = chain();
        // D has 3 ops: II 3 although one iteration is 4 words long.
        let m = modulo_schedule(&g, true, 0, 10, &[]).expect("schedules");
        assert_eq!((m.ii, m.res_mii), (3, 3));
        assert!(m.stages >= 2);
        for e in &g.edges {
            let (a, b) = (
                i64::from(m.time[e.from as usize]),
                i64::from(m.time[e.to as usize]),
            );
            assert!(b + 3 * i64::from(e.dist) > a);
        }
        let mut rows = std::collections::HashSet::new();
        for (i, t) in m.time.iter().enumerate() {
            assert!(rows.insert((t % 3, g.pipe[i] as u8)), "two ops in one slot");
        }
        assert!(
            !rows.contains(&(2, Pipe::C as u8))
                || m.time
                    .iter()
                    .zip(&g.pipe)
                    .all(|(t, p)| *p != Pipe::C || t % 3 != 2)
        );
    }

    #[test]
    fn recurrences_bound_the_interval() {
        let mut g = chain();
        // A carried dependency of latency 5 over one iteration: II >= 5.
        let e = g.edges.len() as u32;
        g.edges.push(Edge {
            from: 3,
            to: 0,
            lat: Lat::Fixed(5),
            dist: 1,
        });
        g.succ[3].push(e);
        g.pred[0].push(e);
        let m = modulo_schedule(&g, true, 0, 20, &[]).expect("schedules");
        assert!(
            m.ii >= 8,
            "gather->...->send is 3 words, +5 back: II {}",
            m.ii
        );
        assert!(m.rec_mii >= 8);
    }
}
