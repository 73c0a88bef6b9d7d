//! Region-level register pressure: what the block scheduler's guard and the loop
//! planner need to know about values live across regions.

use std::collections::HashMap;

use crate::deps::DepGraph;
use crate::graph::{NodeId, Place, Region, SentronGraph, ValueDef};
use crate::schedule::Pressure;
use vtpu_isa::RegFile;

/// Region-level liveness for the block scheduler's register-pressure guard.
pub(crate) struct PressureInfo {
    region_of: Vec<u32>,
    /// Per value: region of its last use.
    last_region: Vec<u32>,
    /// Per region: values of each file live into it from earlier regions.
    pub(crate) reserved: Vec<[usize; 3]>,
}

fn fidx(f: RegFile) -> usize {
    match f {
        RegFile::Scalar => 0,
        RegFile::Tile => 1,
        RegFile::Coord => 2,
    }
}

impl PressureInfo {
    pub(crate) fn new(sg: &SentronGraph) -> PressureInfo {
        let mut loop_region = vec![0u32; sg.loops.len()];
        for (r, reg) in sg.regions.iter().enumerate() {
            if let Region::Loop(l) = reg {
                loop_region[l.0 as usize] = r as u32;
            }
        }
        let region_of: Vec<u32> = sg
            .nodes
            .iter()
            .map(|n| match n.place {
                Place::Block(r) => r,
                Place::Loop(l) => loop_region[l.0 as usize],
            })
            .collect();
        let nv = sg.values.len();
        let mut def_region = vec![0u32; nv];
        for (i, v) in sg.values.iter().enumerate() {
            def_region[i] = match v.def {
                ValueDef::Node { node, .. } => region_of[node.0 as usize],
                ValueDef::Phi { lp, .. } | ValueDef::Output { lp, .. } => {
                    loop_region[lp.0 as usize]
                }
            };
        }
        let mut last_region = def_region.clone();
        for (i, n) in sg.nodes.iter().enumerate() {
            for u in &n.uses {
                let lr = &mut last_region[u.0 as usize];
                *lr = (*lr).max(region_of[i]);
            }
        }
        for (l, info) in sg.loops.iter().enumerate() {
            for p in &info.phis {
                let lr = &mut last_region[p.init.0 as usize];
                *lr = (*lr).max(loop_region[l]);
            }
        }
        let nr = sg.regions.len();
        let mut diff = vec![[0i64; 3]; nr + 2];
        for (i, v) in sg.values.iter().enumerate() {
            if v.scope.is_some() {
                continue;
            }
            let (d, u) = (def_region[i] as usize, last_region[i] as usize);
            if u > d {
                diff[d + 1][fidx(v.file)] += 1;
                diff[u + 1][fidx(v.file)] -= 1;
            }
        }
        let mut reserved = vec![[0usize; 3]; nr];
        let mut acc = [0i64; 3];
        for (r, res) in reserved.iter_mut().enumerate() {
            for f in 0..3 {
                acc[f] += diff[r][f];
                res[f] = acc[f].max(0) as usize;
            }
        }
        PressureInfo {
            region_of,
            last_region,
            reserved,
        }
    }

    pub(crate) fn block(
        &self,
        sg: &SentronGraph,
        r: usize,
        dg: &DepGraph,
        readers: &[Vec<NodeId>],
    ) -> Pressure {
        let sizes = [
            vtpu_isa::NUM_SCALAR_REGS,
            vtpu_isa::NUM_TILE_REGS,
            vtpu_isa::NUM_COORD_REGS,
        ];
        let mut p = Pressure::default();
        for ((lim, size), held) in p.limit.iter_mut().zip(sizes).zip(self.reserved[r]) {
            *lim = size.saturating_sub(held).max(2);
        }
        let mut local: HashMap<crate::graph::Value, u32> = HashMap::new();
        for &n in &dg.nodes {
            let mut adds = [0u8; 3];
            for &d in &sg.node(n).defs {
                let escapes = self.last_region[d.0 as usize] as usize > r;
                let local_readers = readers[d.0 as usize]
                    .iter()
                    .filter(|y| self.region_of[y.0 as usize] as usize == r)
                    .count() as u32;
                if local_readers == 0 && !escapes {
                    continue;
                }
                let f = fidx(sg.value(d).file);
                adds[f] = adds[f].saturating_add(1);
                local.insert(d, p.remaining.len() as u32);
                p.remaining.push(local_readers);
                p.file.push(f as u8);
                p.escapes.push(escapes);
            }
            p.adds.push(adds);
        }
        for &n in &dg.nodes {
            let mut reads: Vec<u32> = sg
                .node(n)
                .uses
                .iter()
                .filter_map(|u| local.get(u).copied())
                .collect();
            reads.sort_unstable();
            reads.dedup();
            p.reads.push(reads);
        }
        p
    }
}
