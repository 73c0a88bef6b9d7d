//! Page placement: the compiler chooses the curve (Z-order, Hilbert or insertion order)
//! that lays out the pages a program allocates so that the pages it touches one after
//! the other are neighbours in memory.
//!
//! The program's page access order is derived statically from the graph: every gather
//! and scatter whose coordinate is a constant, or a carried coordinate that advances by
//! a constant step, in op order, loops expanded. Each layout places the pages (sorted by
//! its curve key, 64-byte aligned, as `PhextSpace::build_placed` does) and is scored on
//! the order of first touches (each page once, when the program first reaches it: a
//! page read again later is in cache or in the translation cache anyway) by the
//! fraction of transitions that continue exactly where the previous page ended
//! (sequential), then by the mean distance of the others. The best score
//! wins; ties prefer Z-order, then Hilbert, then insertion. Whether placement helps the
//! host is measured by the workloads, not assumed.

use std::collections::{HashMap, HashSet};

use crate::coords::{CoordInfo, Root};
use crate::graph::{Graph, Region, SentronGraph, ValueDef};
use vtpu_isa::Mem;
use vtpu_phext::{Coord, Layout, PageInit, MAX_PART_LIMIT};

/// Most page touches the trace follows per sentron.
pub const MAX_TRACE: usize = 1 << 20;

/// How one layout scores on the program's access order.
#[derive(Clone, Debug)]
pub struct LayoutScore {
    pub layout: Layout,
    /// Fraction of transitions between distinct consecutive pages that are sequential.
    pub sequential: f64,
    /// Mean |gap| in bytes of the other transitions.
    pub mean_jump: f64,
}

/// The layout decision and its evidence.
#[derive(Clone, Debug)]
pub struct LayoutChoice {
    pub layout: Layout,
    /// Given by the user rather than chosen.
    pub forced: bool,
    pub scores: Vec<LayoutScore>,
    /// Page touches in the static trace (all sentrons) and distinct pages touched.
    pub touches: usize,
    pub distinct_pages: usize,
    /// Bytes of the distinct pages touched.
    pub touched_bytes: u64,
}

/// Static page-touch order of one sentron (constant or affine coordinates only).
pub fn page_trace(sg: &SentronGraph) -> Vec<Coord> {
    let ci = CoordInfo::analyze(sg);
    let mut out = Vec::new();
    let touch = |n: crate::graph::NodeId, iter: u64, out: &mut Vec<Coord>| {
        let node = sg.node(n);
        if !matches!(node.code().info().mem, Mem::Read | Mem::Write) {
            return;
        }
        let Some(loc) = ci.mem_loc(sg, n) else { return };
        let base = match loc.root {
            Root::Const(c) => Some(c),
            Root::Val(v) => match sg.value(v).def {
                ValueDef::Phi { lp, index } => {
                    let phi = &sg.lp(lp).phis[index as usize];
                    let init = ci.sym(phi.init).constant();
                    let step = phi
                        .next
                        .map(|nx| ci.sym(nx))
                        .filter(|s| s.root == Root::Val(v));
                    match (init, step) {
                        (Some(c), Some(st)) => advance(c, &st.off, iter),
                        _ => None,
                    }
                }
                _ => None,
            },
        };
        let Some(mut c) = base else { return };
        for (d, o) in loc.off.iter().enumerate() {
            match o {
                Some(0) => {}
                Some(k) => match c.offset(d, *k, MAX_PART_LIMIT) {
                    Ok(x) => c = x,
                    Err(_) => return,
                },
                None => return,
            }
        }
        if out.last() != Some(&c) {
            out.push(c);
        }
    };
    for r in &sg.regions {
        match r {
            Region::Block(b) => b.iter().for_each(|&n| touch(n, 0, &mut out)),
            Region::Loop(l) => {
                let info = sg.lp(*l);
                for i in 0..info.trip {
                    for &n in &info.body {
                        touch(n, i, &mut out);
                    }
                    if out.len() >= MAX_TRACE {
                        break;
                    }
                }
            }
        }
        if out.len() >= MAX_TRACE {
            out.truncate(MAX_TRACE);
            break;
        }
    }
    out
}

fn advance(c: Coord, step: &[Option<i64>; 9], iter: u64) -> Option<Coord> {
    let mut c = c;
    for (d, s) in step.iter().enumerate() {
        let s = (*s)?;
        if s != 0 {
            c = c
                .offset(d, s.checked_mul(iter as i64)?, MAX_PART_LIMIT)
                .ok()?;
        }
    }
    Some(c)
}

/// Choose the layout for the pages of `g` (the declared pages, or `data` when the
/// workload builds its big pages directly) from the static access order.
pub fn choose(g: &Graph, data: &[PageInit], forced: Option<Layout>) -> LayoutChoice {
    let pages: Vec<(Coord, u64)> = if data.is_empty() {
        g.pages
            .iter()
            .map(|p| {
                let n = p.shape[0] as usize * p.shape[1] as usize;
                (p.coord, p.dtype.bytes_for(n).unwrap_or(0) as u64)
            })
            .collect()
    } else {
        data.iter()
            .map(|p| {
                (
                    p.coord,
                    p.dtype.bytes_for(p.shape[0] * p.shape[1]).unwrap_or(0) as u64,
                )
            })
            .collect()
    };
    let traces: Vec<Vec<Coord>> = g.streams.iter().map(page_trace).collect();
    let touches = traces.iter().map(Vec::len).sum();
    let traces: Vec<Vec<Coord>> = traces
        .into_iter()
        .map(|t| {
            let mut seen = HashSet::new();
            t.into_iter().filter(|c| seen.insert(*c)).collect()
        })
        .collect();
    let size: HashMap<Coord, u64> = pages.iter().copied().collect();
    let mut distinct: HashSet<Coord> = HashSet::new();
    for t in &traces {
        distinct.extend(t.iter().copied());
    }
    let scores: Vec<LayoutScore> = Layout::ALL
        .iter()
        .map(|&l| score(l, &pages, &traces))
        .collect();
    let best = scores
        .iter()
        .max_by(|a, b| {
            a.sequential
                .total_cmp(&b.sequential)
                .then(b.mean_jump.total_cmp(&a.mean_jump))
                .then(pref(b.layout).cmp(&pref(a.layout)))
        })
        .map(|s| s.layout)
        .unwrap_or(Layout::ZOrder);
    LayoutChoice {
        layout: forced.unwrap_or(best),
        forced: forced.is_some(),
        scores,
        touches,
        distinct_pages: distinct.len(),
        touched_bytes: distinct
            .iter()
            .map(|c| size.get(c).copied().unwrap_or(0))
            .sum(),
    }
}

fn pref(l: Layout) -> u8 {
    match l {
        Layout::ZOrder => 0,
        Layout::Hilbert => 1,
        Layout::Insertion => 2,
    }
}

/// Place `pages` like `build_placed` and score the transitions of `traces`.
pub fn score(layout: Layout, pages: &[(Coord, u64)], traces: &[Vec<Coord>]) -> LayoutScore {
    let mut order: Vec<usize> = (0..pages.len()).collect();
    if layout != Layout::Insertion {
        order.sort_by_cached_key(|&i| layout.order_key(&pages[i].0));
    }
    let mut at: HashMap<Coord, (u64, u64)> = HashMap::new();
    let mut end = 0u64;
    for &i in &order {
        at.insert(pages[i].0, (end, pages[i].1));
        end = (end + pages[i].1).div_ceil(64) * 64;
    }
    let (mut seq, mut other, mut jump) = (0u64, 0u64, 0f64);
    for t in traces {
        for w in t.windows(2) {
            let (Some(&(a, sa)), Some(&(b, _))) = (at.get(&w[0]), at.get(&w[1])) else {
                continue;
            };
            let next = (a + sa).div_ceil(64) * 64;
            if b == next {
                seq += 1;
            } else {
                other += 1;
                jump += (b as f64 - next as f64).abs();
            }
        }
    }
    let total = seq + other;
    LayoutScore {
        layout,
        sequential: if total == 0 {
            0.0
        } else {
            seq as f64 / total as f64
        },
        mean_jump: if other == 0 { 0.0 } else { jump / other as f64 },
    }
}
