//! Register rotation for loops (modulo variable expansion): the register classes of a
//! loop body under its schedule, how many kernel copies their lifetimes need, and the
//! circular-arc colouring of the periodic schedule that gives every instance a colour.
//! See `regalloc` for how colours become registers.

use std::collections::HashMap;

use crate::graph::{NodeId, SentronGraph, Value, ValueDef};
use crate::pipeline::LoopPlan;
use vtpu_isa::RegFile;

fn fidx(f: RegFile) -> usize {
    match f {
        RegFile::Scalar => 0,
        RegFile::Tile => 1,
        RegFile::Coord => 2,
    }
}

/// Union-find root.
pub(crate) fn find(p: &mut [u32], mut x: u32) -> u32 {
    while p[x as usize] != x {
        p[x as usize] = p[p[x as usize] as usize];
        x = p[x as usize];
    }
    x
}

#[derive(Clone, Debug)]
pub struct ClassInfo {
    pub file: RegFile,
    /// Arc of instance 0 in iteration-relative boundaries [start, end].
    pub start: i64,
    pub end: i64,
    /// Updated in place across iterations (an accumulator): one register throughout.
    pub carried_tied: bool,
    /// Read after the loop: its colours are not shared.
    pub exported: bool,
}

/// The register classes of one loop body.
#[derive(Clone, Debug, Default)]
pub struct LoopClasses {
    pub of: HashMap<Value, u32>,
    pub classes: Vec<ClassInfo>,
}

/// Classes and lifetimes of loop `plan`'s values under its schedule.
pub fn loop_classes(
    sg: &SentronGraph,
    plan: &LoopPlan,
    pos: &[u32],
    readers: &[Vec<NodeId>],
) -> LoopClasses {
    let info = sg.lp(plan.lp);
    let ii = i64::from(plan.ii);
    let t = |n: NodeId| i64::from(plan.time[pos[n.0 as usize] as usize]);
    let mut vals: Vec<Value> = Vec::new();
    let mut idx: HashMap<Value, u32> = HashMap::new();
    for &n in &info.body {
        for &d in &sg.node(n).defs {
            idx.insert(d, vals.len() as u32);
            vals.push(d);
        }
    }
    let mut parent: Vec<u32> = (0..vals.len() as u32).collect();
    let mut carried = vec![false; vals.len()];
    let next_of = |v: Value| -> Option<Value> {
        match sg.value(v).def {
            ValueDef::Phi { lp, index } if lp == plan.lp => info.phis[index as usize].next,
            _ => None,
        }
    };
    for &n in &info.body {
        let node = sg.node(n);
        for (d, tie) in node.defs.iter().zip(&node.tied) {
            let Some(u) = tie else { continue };
            let src = node.uses[*u as usize];
            let (other, is_carried) = match next_of(src) {
                Some(next) => (next, true),
                None => (src, false),
            };
            if let (Some(&a), Some(&b)) = (idx.get(d), idx.get(&other)) {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                parent[ra as usize] = rb;
                if is_carried {
                    carried[rb as usize] = true;
                }
            }
        }
    }
    let mut out = LoopClasses::default();
    let mut class_of_root: HashMap<u32, u32> = HashMap::new();
    let phi_of_next: HashMap<Value, Value> = info
        .phis
        .iter()
        .filter_map(|p| p.next.map(|x| (x, p.value)))
        .collect();
    for (i, &v) in vals.iter().enumerate() {
        let r = find(&mut parent, i as u32);
        let c = *class_of_root.entry(r).or_insert_with(|| {
            out.classes.push(ClassInfo {
                file: sg.value(v).file,
                start: i64::MAX,
                end: i64::MIN,
                carried_tied: false,
                exported: false,
            });
            out.classes.len() as u32 - 1
        });
        out.of.insert(v, c);
        let ci = &mut out.classes[c as usize];
        if carried[r as usize] {
            ci.carried_tied = true;
        }
        let ValueDef::Node { node, .. } = sg.value(v).def else {
            continue;
        };
        let d = t(node);
        ci.start = ci.start.min(d + 1);
        ci.end = ci.end.max(d + 1);
        for &y in &readers[v.0 as usize] {
            if sg.node(y).place == crate::graph::Place::Loop(plan.lp) {
                ci.end = ci.end.max(t(y) + c_read(sg, y));
            }
        }
        if let Some(&phi) = phi_of_next.get(&v) {
            // Read as the carried value in the next iteration; the initial value of
            // instance -1 must be held from the loop start, so the arc starts by II.
            for &y in &readers[phi.0 as usize] {
                if sg.node(y).place == crate::graph::Place::Loop(plan.lp) {
                    ci.end = ci.end.max(t(y) + ii + c_read(sg, y));
                }
            }
            ci.start = ci.start.min(ii);
        }
        if info.outputs.contains_key(&v) {
            ci.exported = true;
        }
    }
    out
}

/// 1 if `y`'s reads hold their registers through its word (see above).
pub(crate) fn c_read(sg: &SentronGraph, y: NodeId) -> i64 {
    i64::from(crate::deps::reads_late(sg.node(y).code()))
}

/// Kernel copies needed so no instance outlives its register (U >= lifetime / II).
pub fn unroll_needed(c: &LoopClasses, ii: u32) -> u32 {
    let ii = i64::from(ii.max(1));
    c.classes
        .iter()
        .filter(|c| !c.carried_tied)
        .map(|c| {
            let len = (c.end - c.start + 1).max(1);
            ((len + ii - 1) / ii) as u32
        })
        .max()
        .unwrap_or(1)
        .max(1)
}

/// Sum of the instance lifetimes (boundaries) of a loop's rotating classes.
pub fn total_lifetime(c: &LoopClasses) -> i64 {
    c.classes
        .iter()
        .filter(|c| !c.carried_tied)
        .map(|c| (c.end - c.start + 1).max(1))
        .sum()
}

/// Colours of one loop: per file the colour count, per (class, k) the colour.
#[derive(Clone, Debug, Default)]
pub struct LoopColors {
    pub count: [usize; 3],
    pub color: HashMap<(u32, u32), u32>,
}

/// Greedy circular-arc colouring of the periodic schedule (period U * II).
pub fn color_loop(c: &LoopClasses, ii: u32, u: u32) -> LoopColors {
    let p = i64::from(u) * i64::from(ii);
    // (class, k, start mod P, len, exclusive)
    let mut arcs: Vec<(u32, u32, i64, i64)> = Vec::new();
    for (ci, cl) in c.classes.iter().enumerate() {
        if cl.carried_tied {
            arcs.push((ci as u32, u32::MAX, 0, p));
            continue;
        }
        let len = (cl.end - cl.start + 1).clamp(1, p);
        for k in 0..u {
            let s = (cl.start + i64::from(k) * i64::from(ii)).rem_euclid(p);
            arcs.push((ci as u32, k, s, len));
        }
    }
    arcs.sort_by_key(|a| (std::cmp::Reverse(a.3 >= p), a.2, a.0, a.1));
    let overlap = |s1: i64, l1: i64, s2: i64, l2: i64| -> bool {
        l1 >= p || l2 >= p || (s2 - s1).rem_euclid(p) < l1 || (s1 - s2).rem_euclid(p) < l2
    };
    let mut out = LoopColors::default();
    // Per file: per colour, its arcs (class, start, len).
    let mut colours: [Vec<Vec<(u32, i64, i64)>>; 3] = Default::default();
    for (cls, k, s, len) in arcs {
        let info = &c.classes[cls as usize];
        let f = fidx(info.file);
        let excl = |a: u32| c.classes[a as usize].exported;
        let col = colours[f].iter().position(|arcs_in| {
            arcs_in.iter().all(|&(a, s2, l2)| {
                let shares = a == cls || (!info.exported && !excl(a));
                shares && !overlap(s, len, s2, l2)
            })
        });
        let col = match col {
            Some(x) => x,
            None => {
                colours[f].push(Vec::new());
                colours[f].len() - 1
            }
        };
        colours[f][col].push((cls, s, len));
        if k == u32::MAX {
            for kk in 0..u {
                out.color.insert((cls, kk), col as u32);
            }
        } else {
            out.color.insert((cls, k), col as u32);
        }
    }
    for (count, c) in out.count.iter_mut().zip(&colours) {
        *count = c.len();
    }
    out
}
