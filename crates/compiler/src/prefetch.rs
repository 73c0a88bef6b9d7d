//! Prefetch insertion: an SPREFCH of a page ahead of the first gather that needs it.
//!
//! - In a block: before the first gather of a page not touched earlier; the scheduler
//!   hoists it as early as its coordinate allows.
//! - In a loop whose gathers read a different page every iteration (the coordinate is a
//!   carried value advanced by a constant step): in the body, once per page per
//!   iteration; the modulo scheduler places it at least one initiation interval before
//!   the gather, i.e. the next iteration's page is prefetched while this iteration works.
//!   A prefetch belongs to the iteration that gathers the page, so none is ever issued
//!   for a page no later op touches (the last iteration prefetches nothing extra).
//! - In a loop whose page is the same every iteration: once, in the block before the
//!   loop, if that page was not touched before and the loop does not allocate or free
//!   a page that may be it.
//!
//! "Touched" is tracked by symbolic coordinate; pages already read or written earlier
//! are assumed cached and get no prefetch.
//!
//! Cost model: SPREFCH touches every cache line of a page on the sentron's own core, so
//! it costs about the page's bytes over the core's bandwidth and only pays off when the
//! page is still in cache when the gathers come. Pages above [`MAX_HOIST_BYTES`] are not
//! prefetched before a loop (the loop streams through them long after the prefetch) and
//! pages above [`MAX_AHEAD_BYTES`] not one iteration ahead (two would not fit in L2);
//! pages below [`MIN_PREFETCH_BYTES`] are not worth one. Pages of unknown size (not
//! declared by the program) are prefetched.

use std::collections::HashMap;

use std::collections::HashSet;

use crate::coords::{CoordInfo, Root, Sym};
use vtpu_phext::Coord;

/// Largest page prefetched once before a loop or in a block.
pub const MAX_HOIST_BYTES: u64 = 64 << 10;
/// Smallest page worth a prefetch: below this the gather's own load is as good, and
/// the SPREFCH would only cost an S slot and a translation lookup.
pub const MIN_PREFETCH_BYTES: u64 = 4 << 10;
/// Largest page prefetched one loop iteration ahead.
pub const MAX_AHEAD_BYTES: u64 = 256 << 10;
use crate::graph::{NodeId, Place, Region, SentronGraph, ValueDef};
use vtpu_isa::{Mem, Opcode};

fn coord_use(sg: &SentronGraph, n: NodeId) -> Option<crate::graph::Value> {
    let node = sg.node(n);
    let mut uses = node.uses.iter();
    for kind in node.code().info().operands {
        if kind.reg_file().is_none() || !kind.reads() {
            continue;
        }
        let v = uses.next()?;
        if *kind == vtpu_isa::Operand::CR {
            return Some(*v);
        }
    }
    None
}

/// Size of the page a location names, if it is a declared page at a known coordinate
/// (for a carried coordinate: its first page).
fn page_bytes(
    sg: &SentronGraph,
    ci: &CoordInfo,
    loc: &Sym,
    sizes: &HashMap<Coord, u64>,
) -> Option<u64> {
    let c = match loc.root {
        Root::Const(_) => loc.constant(),
        Root::Val(v) => match sg.value(v).def {
            ValueDef::Phi { lp, index } => ci.sym(sg.lp(lp).phis[index as usize].init).constant(),
            _ => None,
        },
    }?;
    sizes.get(&c).copied()
}

/// Insert prefetches; returns how many. `sizes`: bytes of the declared pages.
pub fn insert(sg: &mut SentronGraph, ci: &CoordInfo, sizes: &HashMap<Coord, u64>) -> usize {
    let fits = |sg: &SentronGraph, loc: &Sym, max: u64| {
        page_bytes(sg, ci, loc, sizes).is_none_or(|b| (MIN_PREFETCH_BYTES..=max).contains(&b))
    };
    let mut touched: HashSet<Sym> = HashSet::new();
    let mut count = 0;
    let mut r = 0;
    while r < sg.regions.len() {
        match sg.regions[r].clone() {
            Region::Block(nodes) => {
                for n in nodes {
                    let mem = sg.node(n).code().info().mem;
                    let Some(loc) = ci.mem_loc(sg, n) else {
                        continue;
                    };
                    if mem == Mem::Read
                        && !touched.contains(&loc)
                        && fits(sg, &loc, MAX_HOIST_BYTES)
                    {
                        if let Some(c) = coord_use(sg, n) {
                            let pos = block_pos(sg, r, n);
                            let (p, _) = sg.insert_synthetic(
                                Opcode::SPrefch,
                                vec![c],
                                None,
                                Place::Block(r as u32),
                                pos,
                            );
                            sg.nodes[p.0 as usize].prefetch_for = Some(n);
                            count += 1;
                        }
                    }
                    if mem != Mem::Prefetch {
                        touched.insert(loc);
                    }
                }
            }
            Region::Loop(l) => {
                let body = sg.lp(l).body.clone();
                let page_mgmt: Vec<Sym> = body
                    .iter()
                    .filter(|&&n| matches!(sg.node(n).code().info().mem, Mem::Alloc | Mem::Free))
                    .filter_map(|&n| ci.mem_loc(sg, n))
                    .collect();
                let mut this_iter: HashSet<Sym> = HashSet::new();
                let mut hoist = Vec::new();
                for n in body {
                    let mem = sg.node(n).code().info().mem;
                    let Some(loc) = ci.mem_loc(sg, n) else {
                        continue;
                    };
                    let Some(c) = coord_use(sg, n) else { continue };
                    let varies = matches!(loc.root, Root::Val(v) if matches!(sg.value(v).def, ValueDef::Phi { lp, .. } if lp == l));
                    if mem == Mem::Read && varies {
                        if this_iter.insert(loc)
                            && ci_has_step(ci, sg, &loc, l)
                            && fits(sg, &loc, MAX_AHEAD_BYTES)
                        {
                            let pos = sg.lp(l).body.iter().position(|&x| x == n);
                            let (p, _) = sg.insert_synthetic(
                                Opcode::SPrefch,
                                vec![c],
                                None,
                                Place::Loop(l),
                                pos,
                            );
                            sg.nodes[p.0 as usize].prefetch_for = Some(n);
                            count += 1;
                        }
                        continue;
                    }
                    if mem == Mem::Read
                        && !varies
                        && !touched.contains(&loc)
                        && sg.value(c).scope.is_none()
                        && !page_mgmt.iter().any(|m| ci.may_alias(m, &loc))
                        && fits(sg, &loc, MAX_HOIST_BYTES)
                    {
                        hoist.push((c, n));
                    }
                    if mem != Mem::Prefetch && !varies {
                        touched.insert(loc);
                    }
                }
                if !hoist.is_empty() {
                    let pre = sg.block_before(l) as usize;
                    if pre == r {
                        r += 1; // a block was inserted before this loop
                    }
                    for (c, gather) in hoist {
                        let (p, _) = sg.insert_synthetic(
                            Opcode::SPrefch,
                            vec![c],
                            None,
                            Place::Block(pre as u32),
                            None,
                        );
                        sg.nodes[p.0 as usize].prefetch_for = Some(gather);
                        count += 1;
                    }
                }
            }
        }
        r += 1;
    }
    count
}

fn block_pos(sg: &SentronGraph, r: usize, n: NodeId) -> Option<usize> {
    match &sg.regions[r] {
        Region::Block(b) => b.iter().position(|&x| x == n),
        Region::Loop(_) => None,
    }
}

/// Does the carried coordinate advance by a known, non-zero step?
fn ci_has_step(ci: &CoordInfo, sg: &SentronGraph, loc: &Sym, l: crate::graph::LoopId) -> bool {
    let probe = Sym {
        root: loc.root,
        off: loc.off,
    };
    // A page that moves every iteration cannot alias itself one iteration later.
    !ci.may_alias_later(l, &probe, &probe)
        && matches!(loc.root, Root::Val(v) if crate::coords::is_phi_of(sg, v, l))
}
