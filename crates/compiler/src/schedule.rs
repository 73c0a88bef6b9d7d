//! The list scheduler: packs one region's ops into words, one op per pipe per word,
//! cycle by cycle, highest priority first. Priority is the critical path (longest
//! latency path to the end of the region).
//!
//! Register pressure: constants (ops with no register inputs and no side effects) and
//! inserted prefetches are *deferred*: they become candidates only once some op that
//! needs them has all its other inputs scheduled, so a coordinate is not materialised
//! long before its gather can run. A guard also keeps the number of values live at
//! once within the register file, so that wide graphs stay allocatable.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::deps::{DepGraph, Lat};

/// Register pressure model of a block, per register file [scalar, tile, coord].
#[derive(Clone, Debug, Default)]
pub struct Pressure {
    /// Values of each file the block may hold at once (registers minus those held by
    /// values live across the block).
    pub limit: [usize; 3],
    /// Per op: new values it makes live, per file.
    pub adds: Vec<[u8; 3]>,
    /// Per op: the block-local values it reads (indices into `remaining`).
    pub reads: Vec<Vec<u32>>,
    /// Per block-local value: how many ops of the block read it.
    pub remaining: Vec<u32>,
    /// Per block-local value: its file (0, 1, 2).
    pub file: Vec<u8>,
    /// Per block-local value: is it used after the block (never dies inside)?
    pub escapes: Vec<bool>,
}

fn lat_list(l: Lat) -> u32 {
    match l {
        Lat::Fixed(n) => n,
        Lat::Prefetch => 1,
    }
}

/// Critical-path height of every op (same-iteration edges), prefetches highest.
pub fn heights(g: &DepGraph) -> Vec<i64> {
    let n = g.len();
    let order = topo_order(g);
    let mut h = vec![1i64; n];
    for &i in order.iter().rev() {
        for &e in &g.succ[i] {
            let e = g.edges[e as usize];
            if e.dist == 0 {
                h[i] = h[i].max(i64::from(lat_list(e.lat)) + h[e.to as usize]);
            }
        }
    }
    for (i, p) in g.prefetch.iter().enumerate() {
        if *p {
            h[i] = i64::MAX / 4;
        }
    }
    h
}

/// A topological order of the same-iteration edges (the graph is acyclic: checked when
/// it was built).
pub fn topo_order(g: &DepGraph) -> Vec<usize> {
    let n = g.len();
    let mut indeg = vec![0u32; n];
    for e in g.edges.iter().filter(|e| e.dist == 0) {
        indeg[e.to as usize] += 1;
    }
    let mut stack: Vec<usize> = (0..n).rev().filter(|&i| indeg[i] == 0).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(i) = stack.pop() {
        out.push(i);
        for &e in g.succ[i].iter().rev() {
            let e = g.edges[e as usize];
            if e.dist == 0 {
                indeg[e.to as usize] -= 1;
                if indeg[e.to as usize] == 0 {
                    stack.push(e.to as usize);
                }
            }
        }
    }
    out
}

/// One op per word, in op order: the unpacked program.
pub fn sequential(g: &DepGraph) -> Vec<u32> {
    (0..g.len() as u32).collect()
}

/// In-order packing: every op goes in the first word, no earlier than the previous op's,
/// where its dependencies allow and its pipe's slot is free. Never reorders, so values
/// live no longer (in op order) than in the unpacked program: the fallback when
/// reordering makes registers run out.
pub fn in_order(g: &DepGraph) -> Vec<u32> {
    let n = g.len();
    let mut time = vec![0u32; n];
    let mut used: Vec<[bool; 3]> = Vec::new();
    let mut floor = 0u32;
    for i in 0..n {
        let mut t = floor;
        for &e in &g.pred[i] {
            let e = g.edges[e as usize];
            if e.dist == 0 && (e.from as usize) < i {
                t = t.max(time[e.from as usize] + lat_list(e.lat));
            }
        }
        let p = g.pipe[i] as usize;
        while used.get(t as usize).is_some_and(|u| u[p]) {
            t += 1;
        }
        if used.len() <= t as usize {
            used.resize(t as usize + 1, [false; 3]);
        }
        used[t as usize][p] = true;
        time[i] = t;
        floor = t;
    }
    // A terminator (CHALT) is the last op of its block, so it lands in the last word.
    time
}

struct Live<'a> {
    p: &'a Pressure,
    live: [usize; 3],
    remaining: Vec<u32>,
}

impl Live<'_> {
    fn net(&self, i: usize) -> [i64; 3] {
        let mut net = self.p.adds[i].map(i64::from);
        for &v in &self.p.reads[i] {
            let v = v as usize;
            if self.remaining[v] == 1 && !self.p.escapes[v] {
                net[self.p.file[v] as usize] -= 1;
            }
        }
        net
    }
    fn allowed(&self, i: usize) -> bool {
        let net = self.net(i);
        (0..3).all(|f| net[f] <= 0 || self.live[f] as i64 + net[f] <= self.p.limit[f] as i64)
    }
    fn place(&mut self, i: usize) {
        let net = self.net(i);
        for &v in &self.p.reads[i] {
            let v = v as usize;
            self.remaining[v] = self.remaining[v].saturating_sub(1);
        }
        for (live, n) in self.live.iter_mut().zip(net) {
            *live = (*live as i64 + n).max(0) as usize;
        }
    }
}

/// List-schedule a region: word index of every op. The terminator (if any) lands in the
/// last word.
pub fn list_schedule(g: &DepGraph, pressure: Option<&Pressure>) -> Vec<u32> {
    let n = g.len();
    if n == 0 {
        return Vec::new();
    }
    let prio = heights(g);
    let mut indeg = vec![0u32; n];
    for e in g.edges.iter().filter(|e| e.dist == 0) {
        indeg[e.to as usize] += 1;
    }
    let mut earliest = vec![0u32; n];
    let mut time = vec![u32::MAX; n];
    let mut heaps: [BinaryHeap<(i64, Reverse<u32>)>; 3] = Default::default();
    let mut pending: BinaryHeap<Reverse<(u32, u32)>> = BinaryHeap::new();
    let term = g.terminator;
    // Deferred ops and the count of not-yet-scheduled non-deferred preds of every op.
    let deferred: Vec<bool> = (0..n)
        .map(|i| Some(i) != term && (g.prefetch[i] || (g.constant[i] && indeg[i] == 0)))
        .collect();
    let mut waiting_nd = vec![0u32; n];
    let mut has_succ = vec![false; n];
    for e in g.edges.iter().filter(|e| e.dist == 0) {
        if !deferred[e.from as usize] {
            waiting_nd[e.to as usize] += 1;
        }
        has_succ[e.from as usize] = true;
    }
    let mut released: Vec<bool> = deferred.iter().map(|d| !d).collect();
    let mut stack: Vec<usize> = Vec::new();
    let release_preds = |c: usize,
                         released: &mut Vec<bool>,
                         stack: &mut Vec<usize>,
                         pending: &mut BinaryHeap<Reverse<(u32, u32)>>,
                         indeg: &[u32],
                         earliest: &[u32]| {
        stack.push(c);
        while let Some(x) = stack.pop() {
            for &e in &g.pred[x] {
                let e = g.edges[e as usize];
                let p = e.from as usize;
                if e.dist == 0 && deferred[p] && !released[p] {
                    released[p] = true;
                    if indeg[p] == 0 {
                        pending.push(Reverse((earliest[p], p as u32)));
                    }
                    stack.push(p);
                }
            }
        }
    };
    for i in 0..n {
        if deferred[i] && !has_succ[i] && !released[i] {
            released[i] = true;
            if indeg[i] == 0 {
                pending.push(Reverse((0, i as u32)));
            }
            release_preds(
                i,
                &mut released,
                &mut stack,
                &mut pending,
                &indeg,
                &earliest,
            );
        }
    }
    for i in 0..n {
        if indeg[i] == 0 && Some(i) != term && !deferred[i] {
            pending.push(Reverse((0, i as u32)));
        }
        if !deferred[i] && waiting_nd[i] == 0 {
            release_preds(
                i,
                &mut released,
                &mut stack,
                &mut pending,
                &indeg,
                &earliest,
            );
        }
    }
    let mut live = pressure.map(|p| Live {
        p,
        live: [0; 3],
        remaining: p.remaining.clone(),
    });
    let total = n - usize::from(term.is_some());
    let mut placed = 0usize;
    let mut t: u32 = 0;
    let mut max_t = 0u32;
    let mut last_c_t: Option<u32> = None;
    let mut force = false;
    while placed < total {
        while let Some(&Reverse((e, i))) = pending.peek() {
            if e > t {
                break;
            }
            pending.pop();
            heaps[g.pipe[i as usize] as usize].push((prio[i as usize], Reverse(i)));
        }
        let mut used = [false; 3];
        let mut any = false;
        let mut blocked = false;
        loop {
            let mut progress = false;
            for p in 0..3 {
                if used[p] {
                    continue;
                }
                let mut skipped = Vec::new();
                let mut pick = None;
                while let Some(c) = heaps[p].pop() {
                    let i = c.1 .0 as usize;
                    if force || live.as_ref().is_none_or(|l| l.allowed(i)) {
                        pick = Some(i);
                        force = false;
                        break;
                    }
                    blocked = true;
                    skipped.push(c);
                }
                heaps[p].extend(skipped);
                let Some(i) = pick else { continue };
                used[p] = true;
                progress = true;
                any = true;
                placed += 1;
                time[i] = t;
                max_t = max_t.max(t);
                if p == 2 {
                    last_c_t = Some(t);
                }
                if let Some(l) = live.as_mut() {
                    l.place(i);
                }
                for &e in &g.succ[i] {
                    let e = g.edges[e as usize];
                    if e.dist != 0 {
                        continue;
                    }
                    let s = e.to as usize;
                    earliest[s] = earliest[s].max(t + lat_list(e.lat));
                    indeg[s] -= 1;
                    if !deferred[i] {
                        waiting_nd[s] -= 1;
                        if waiting_nd[s] == 0 && !deferred[s] {
                            release_preds(
                                s,
                                &mut released,
                                &mut stack,
                                &mut pending,
                                &indeg,
                                &earliest,
                            );
                        }
                    }
                    if indeg[s] == 0 && Some(s) != term && released[s] {
                        if earliest[s] <= t {
                            heaps[g.pipe[s] as usize].push((prio[s], Reverse(s as u32)));
                        } else {
                            pending.push(Reverse((earliest[s], s as u32)));
                        }
                    }
                }
            }
            if !progress {
                break;
            }
        }
        if !any && blocked && pending.is_empty() {
            // Every ready op would exceed the pressure limit and nothing is in flight:
            // place the best one anyway in this word (the allocator reports a real
            // overflow with context).
            force = true;
            continue;
        }
        t += 1;
        if heaps.iter().all(|h| h.is_empty()) {
            match pending.peek() {
                Some(&Reverse((e, _))) => t = t.max(e),
                // Nothing ready and nothing pending: only a dependency cycle does that
                // (callers check first); fall back to op order rather than spin.
                None if !any => return in_order(g),
                None => {}
            }
        }
    }
    if let Some(ti) = term {
        let mut tt = earliest[ti].max(max_t);
        if placed > 0 && last_c_t == Some(tt) {
            tt += 1;
        }
        time[ti] = tt;
    }
    time
}
