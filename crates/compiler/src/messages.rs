//! Message dependencies between sentrons: every send pairs with the receive of the same
//! (sender, receiver) pair in FIFO order, every collective with the same collective of
//! the other members. Because the scheduler keeps each sentron's C-pipe ops in order,
//! packing never changes these pairings; this check catches graphs whose pairings can
//! never complete (a receive nobody sends to, sentrons waiting on each other in a
//! cycle, members entering different collectives) before they are compiled.
//!
//! It plays the C-pipe ops of every explicit sentron stream (loops expanded) on an
//! abstract machine of `max id + 1` sentrons. Programs with an SPMD stream, or with more
//! than [`MAX_EVENTS`] coordination events, are not checked (their sentron count is
//! only known at run time / the check would cost more than it saves).

use std::collections::HashMap;

use crate::error::{CompileError, Result};
use crate::graph::{Graph, NodeId, Region, SentronGraph};
use vtpu_isa::ops::Coord as Coordination;
use vtpu_isa::word::GROUP_ALL;

/// Most coordination events the check plays.
pub const MAX_EVENTS: usize = 4_000_000;

#[derive(Clone, Copy, Debug)]
struct Event {
    kind: Coordination,
    peer: u32,
    group: u64,
    code: vtpu_isa::Opcode,
    node: NodeId,
}

fn events(sg: &SentronGraph, budget: &mut usize) -> Option<Vec<Event>> {
    let ev = |n: NodeId| -> Option<Event> {
        let node = sg.node(n);
        let info = node.code().info();
        if !matches!(
            info.coord,
            Coordination::Send | Coordination::Recv | Coordination::Collective
        ) {
            return None;
        }
        let op = &node.template;
        let peer = match info.coord {
            Coordination::Send => op.args[0] as u32,
            Coordination::Recv => op.args[1] as u32,
            _ => u32::MAX,
        };
        Some(Event {
            kind: info.coord,
            peer,
            group: if info.coord == Coordination::Collective {
                op.imm_group()
            } else {
                0
            },
            code: node.code(),
            node: n,
        })
    };
    let mut out = Vec::new();
    for r in &sg.regions {
        match r {
            Region::Block(b) => out.extend(b.iter().filter_map(|&n| ev(n))),
            Region::Loop(l) => {
                let info = sg.lp(*l);
                let body: Vec<Event> = info.body.iter().filter_map(|&n| ev(n)).collect();
                let total = (body.len() as u64).saturating_mul(info.trip);
                if total > *budget as u64 {
                    return None;
                }
                for _ in 0..info.trip {
                    out.extend_from_slice(&body);
                }
            }
        }
        if out.len() > *budget {
            return None;
        }
    }
    *budget -= out.len();
    Some(out)
}

/// Check that the coordination ops of all sentrons can complete.
pub fn check(g: &Graph) -> Result<()> {
    if g.streams.iter().any(|s| s.sentron.is_none()) || g.streams.is_empty() {
        return Ok(());
    }
    let n = g
        .streams
        .iter()
        .filter_map(|s| s.sentron)
        .max()
        .unwrap_or(0) as usize
        + 1;
    let mut budget = MAX_EVENTS;
    let mut seqs: Vec<Vec<Event>> = vec![Vec::new(); n];
    let mut graphs: Vec<Option<&SentronGraph>> = vec![None; n];
    for s in &g.streams {
        let id = s.sentron.unwrap_or(0) as usize;
        match events(s, &mut budget) {
            Some(e) => seqs[id] = e,
            None => return Ok(()),
        }
        graphs[id] = Some(s);
    }
    let everyone: u64 = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut pc = vec![0usize; n];
    let mut mail: HashMap<(u32, u32), usize> = HashMap::new();
    // Collective rendezvous per member mask: generation, arrived mask, op of the round.
    let mut colls: HashMap<u64, (u64, u64, Option<vtpu_isa::Opcode>)> = HashMap::new();
    let mut waiting: Vec<Option<u64>> = vec![None; n];
    loop {
        let mut progress = false;
        for s in 0..n {
            while let Some(e) = seqs[s].get(pc[s]).copied() {
                match e.kind {
                    Coordination::Send => {
                        *mail.entry((s as u32, e.peer)).or_default() += 1;
                    }
                    Coordination::Recv => {
                        let q = mail.entry((e.peer, s as u32)).or_default();
                        if *q == 0 {
                            break;
                        }
                        *q -= 1;
                    }
                    _ => {
                        let members = if e.group == GROUP_ALL {
                            everyone
                        } else {
                            e.group
                        };
                        let c = colls.entry(members).or_insert((0, 0, None));
                        if waiting[s].is_none() {
                            if let Some(code) = c.2.filter(|&k| k != e.code && c.1 != 0) {
                                return Err(CompileError::Deadlock(format!(
                                    "{} enters {} while other members of its group entered {}",
                                    describe(&graphs, s, e.node),
                                    e.code.name(),
                                    code.name()
                                )));
                            }
                            c.2 = Some(e.code);
                            c.1 |= 1 << s;
                            waiting[s] = Some(c.0);
                            if c.1 & members == members {
                                c.0 += 1;
                                c.1 = 0;
                                c.2 = None;
                            }
                        }
                        if waiting[s].is_some_and(|g| c.0 > g) {
                            waiting[s] = None;
                        } else {
                            break;
                        }
                    }
                }
                pc[s] += 1;
                progress = true;
            }
        }
        if (0..n).all(|s| pc[s] >= seqs[s].len()) {
            return Ok(());
        }
        if !progress {
            let waits: Vec<String> = (0..n)
                .filter(|&s| pc[s] < seqs[s].len())
                .map(|s| {
                    let e = seqs[s][pc[s]];
                    let what = match e.kind {
                        Coordination::Recv => format!("a message from sentron {}", e.peer),
                        _ => "the rest of its group".to_string(),
                    };
                    format!("{} waits for {what}", describe(&graphs, s, e.node))
                })
                .collect();
            return Err(CompileError::Deadlock(waits.join("; ")));
        }
    }
}

fn describe(graphs: &[Option<&SentronGraph>], s: usize, n: NodeId) -> String {
    match graphs.get(s).copied().flatten() {
        Some(g) => format!("{} {}", g.name(), g.describe(n)),
        None => format!("sentron {s}"),
    }
}
