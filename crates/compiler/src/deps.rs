//! Dependencies between the ops of one region (a block or a loop body), derived from op
//! properties only: operand roles (read / write / read-write), memory effect (`Mem`),
//! coordination kind and pipe — never from op names.
//!
//! Latencies are in words: `1` means "a later word" (a value written at the end of a
//! word is read in the next), `0` means "the same word or later" (a reader may share a
//! word with the op that overwrites its register, because every slot reads registers as
//! they were before the word). `dist` is the iteration distance in loops.
//!
//! Edges:
//! - data (RAW): writer -> reader, latency 1 (carried values: distance 1);
//! - in place: every other reader of a value -> the op that overwrites it, latency 0;
//! - memory: ops whose pages may alias and one of which writes (or allocates / frees;
//!   a prefetch conflicts only with allocation and freeing), in program order,
//!   latency 1; in loops also to later iterations (distance 1). An op that reads a
//!   window operand (`Window::Reads`, DTMM) reads the window's page itself, when it runs:
//!   it is a page read of the page its window was opened on
//!   ([`CoordInfo::page_accesses`]), so it comes after earlier writes to that page and
//!   before later ones, whatever the SWINDOW's own position;
//! - coordination: C-pipe ops keep their order (latency 1, and the last of an iteration
//!   before the first of the next); a send or collective comes no earlier than the page
//!   accesses before it (latency 0: the C slot acts after the D and S slots of its word);
//!   page accesses after a receive or collective come in a later word (latency 1);
//! - explicit ordering edges: latency 1;
//! - an inserted prefetch before its gather: latency 1 in blocks, one initiation
//!   interval in pipelined loops when the dependencies allow (so the page is fetched
//!   an iteration ahead), else 1. Prefetches follow receives but need not precede
//!   sends (they publish nothing).

use crate::coords::{CoordInfo, Sym};
use crate::error::{CompileError, Result};
use crate::graph::{LoopId, NodeId, Place, SentronGraph, ValueDef};
use vtpu_isa::ops::Coord as Coordination;
use vtpu_isa::{Mem, Pipe};

/// Latency of an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lat {
    Fixed(u32),
    /// A prefetch ahead of its gather: 1 in a block, max(1, II) in a pipelined loop.
    Prefetch,
}

impl Lat {
    /// The latency for initiation interval `ii`; `full_prefetch`: a prefetch runs a
    /// whole II ahead of its gather (else just one word).
    pub fn get(self, ii: u32, full_prefetch: bool) -> i64 {
        match self {
            Lat::Fixed(n) => i64::from(n),
            Lat::Prefetch if full_prefetch => i64::from(ii.max(1)),
            Lat::Prefetch => 1,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Edge {
    pub from: u32,
    pub to: u32,
    pub lat: Lat,
    pub dist: u32,
}

/// The dependency graph of one region, over local op indices 0..n.
#[derive(Clone, Debug)]
pub struct DepGraph {
    /// Local index -> op.
    pub nodes: Vec<NodeId>,
    pub pipe: Vec<Pipe>,
    pub edges: Vec<Edge>,
    /// Per local op: indices into `edges`.
    pub succ: Vec<Vec<u32>>,
    pub pred: Vec<Vec<u32>>,
    /// An op that must be last (CHALT).
    pub terminator: Option<usize>,
    /// Inserted prefetches.
    pub prefetch: Vec<bool>,
    /// Ops without register inputs or side effects (constants: SCLI, DLI, DTZERO...).
    pub constant: Vec<bool>,
}

impl DepGraph {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    fn add(&mut self, from: usize, to: usize, lat: Lat, dist: u32) {
        if from == to && dist == 0 {
            return;
        }
        let e = self.edges.len() as u32;
        self.edges.push(Edge {
            from: from as u32,
            to: to as u32,
            lat,
            dist,
        });
        self.succ[from].push(e);
        self.pred[to].push(e);
    }
}

/// Host cost rule: does this op read its registers "late"? The fast executor runs the
/// C slot after D and S, and an S op that writes pages before D when S reads what D
/// writes; for a word where such a reader's register is overwritten by another slot of
/// the same word it must copy the whole register file (about 100x slower). So values
/// these ops read are kept one word longer (the allocator) and in-place overwrites come
/// a word after them (the scheduler).
pub fn reads_late(code: vtpu_isa::Opcode) -> bool {
    let info = code.info();
    info.pipe == Pipe::C
        || (info.pipe == Pipe::S && matches!(info.mem, Mem::Write | Mem::Alloc | Mem::Free))
}

/// Does `a` (earlier) conflict with `b` (later) through memory, ignoring aliasing?
fn conflicts(a: Mem, b: Mem) -> bool {
    use Mem::*;
    let page_mgmt = |m: Mem| matches!(m, Alloc | Free);
    match (a, b) {
        (None, _) | (_, None) => false,
        (x, y) if page_mgmt(x) || page_mgmt(y) => true,
        (Prefetch, _) | (_, Prefetch) => false,
        (Read, Read) => false,
        _ => true,
    }
}

/// Position of every op inside its own region's op list.
pub fn positions(sg: &SentronGraph) -> Vec<u32> {
    let mut pos = vec![0u32; sg.nodes.len()];
    let mut set = |list: &[NodeId]| {
        for (i, n) in list.iter().enumerate() {
            pos[n.0 as usize] = i as u32;
        }
    };
    for r in &sg.regions {
        match r {
            crate::graph::Region::Block(b) => set(b),
            crate::graph::Region::Loop(l) => set(&sg.lp(*l).body),
        }
    }
    pos
}

/// Build the dependency graph of one region. `readers` is [`SentronGraph::readers`],
/// `pos` is [`positions`].
pub fn build(
    sg: &SentronGraph,
    nodes: &[NodeId],
    place: Place,
    ci: &CoordInfo,
    readers: &[Vec<NodeId>],
    pos: &[u32],
) -> Result<DepGraph> {
    let n = nodes.len();
    let lp: Option<LoopId> = match place {
        Place::Loop(l) => Some(l),
        Place::Block(_) => None,
    };
    let local = |x: NodeId| -> Option<usize> {
        let node = sg.nodes.get(x.0 as usize)?;
        (node.place == place).then_some(pos[x.0 as usize] as usize)
    };
    let mut g = DepGraph {
        nodes: nodes.to_vec(),
        pipe: nodes.iter().map(|&x| sg.node(x).code().pipe()).collect(),
        edges: Vec::new(),
        succ: vec![Vec::new(); n],
        pred: vec![Vec::new(); n],
        terminator: None,
        prefetch: nodes
            .iter()
            .map(|&x| sg.node(x).prefetch_for.is_some())
            .collect(),
        constant: nodes
            .iter()
            .map(|&x| {
                let n = sg.node(x);
                let info = n.code().info();
                n.uses.is_empty() && info.mem == Mem::None && info.coord == Coordination::None
            })
            .collect(),
    };
    let def_local = |v: crate::graph::Value| -> Option<(usize, u32)> {
        match sg.value(v).def {
            ValueDef::Node { node, .. } => local(node).map(|j| (j, 0)),
            ValueDef::Phi { lp: l, index } if Some(l) == lp => {
                let next = sg.lp(l).phis[index as usize].next?;
                match sg.value(next).def {
                    ValueDef::Node { node, .. } => local(node).map(|j| (j, 1)),
                    _ => None,
                }
            }
            _ => None,
        }
    };
    for (j, &x) in nodes.iter().enumerate() {
        let node = sg.node(x);
        for &u in &node.uses {
            if let Some((p, dist)) = def_local(u) {
                g.add(p, j, Lat::Fixed(1), dist);
            }
        }
        // In place: every other reader of the overwritten value comes first (in the same
        // word at the latest; a reader that reads late a word earlier: `reads_late`).
        let war = |y: NodeId| Lat::Fixed(u32::from(reads_late(sg.node(y).code())));
        for t in node.tied.iter().flatten() {
            let v = node.uses[*t as usize];
            for &y in &readers[v.0 as usize] {
                if let Some(yl) = local(y) {
                    g.add(yl, j, war(y), 0);
                }
            }
            if let (Some(l), ValueDef::Phi { index, .. }) = (lp, sg.value(v).def) {
                // Readers of last iteration's value come before this iteration's update.
                if let Some(next) = sg.lp(l).phis[index as usize].next {
                    for &y in &readers[next.0 as usize] {
                        if let Some(yl) = local(y) {
                            g.add(yl, j, war(y), 1);
                        }
                    }
                }
            }
        }
        if let Some(gather) = node.prefetch_for {
            if let Some(gl) = local(gather) {
                g.add(j, gl, Lat::Prefetch, 0);
            }
        }
        if matches!(node.code().info().coord, Coordination::Halt) {
            g.terminator = Some(j);
        }
    }
    for &(a, b) in &sg.order {
        if let (Some(al), Some(bl)) = (local(a), local(b)) {
            g.add(al, bl, Lat::Fixed(1), 0);
        }
    }
    memory_edges(sg, &mut g, ci, lp);
    coordination_edges(sg, &mut g, ci, lp.is_some());
    check_acyclic(sg, &g)?;
    Ok(g)
}

struct MemEntry {
    loc: Sym,
    last_write: Option<usize>,
    last_mgmt: Option<usize>,
    reads: Vec<usize>,
    prefetches: Vec<usize>,
}

fn memory_edges(sg: &SentronGraph, g: &mut DepGraph, ci: &CoordInfo, lp: Option<LoopId>) {
    // An op may appear twice (its own access and a window read); edges from an op to
    // itself are dropped by `add`.
    let mems: Vec<(usize, Mem, Sym)> = g
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(j, &x)| ci.page_accesses(sg, x).map(move |(m, s)| (j, m, s)))
        .collect();
    // Program order, one entry per distinct location.
    let mut entries: Vec<MemEntry> = Vec::new();
    let mut edges = Vec::new();
    for &(j, m, loc) in &mems {
        for e in entries.iter().filter(|e| ci.may_alias(&e.loc, &loc)) {
            let writer = e.last_write.max(e.last_mgmt);
            match m {
                Mem::Read => edges.extend(writer.map(|p| (p, j))),
                Mem::Prefetch => edges.extend(e.last_mgmt.map(|p| (p, j))),
                Mem::Write => {
                    edges.extend(writer.map(|p| (p, j)));
                    edges.extend(e.reads.iter().map(|&r| (r, j)));
                }
                Mem::Alloc | Mem::Free => {
                    edges.extend(writer.map(|p| (p, j)));
                    edges.extend(e.reads.iter().chain(&e.prefetches).map(|&r| (r, j)));
                }
                Mem::None => {}
            }
        }
        let idx = match entries.iter().position(|e| e.loc == loc) {
            Some(i) => i,
            None => {
                entries.push(MemEntry {
                    loc,
                    last_write: None,
                    last_mgmt: None,
                    reads: Vec::new(),
                    prefetches: Vec::new(),
                });
                entries.len() - 1
            }
        };
        let e = &mut entries[idx];
        match m {
            Mem::Read => e.reads.push(j),
            Mem::Prefetch => e.prefetches.push(j),
            Mem::Write => {
                e.last_write = Some(j);
                e.reads.clear();
            }
            Mem::Alloc | Mem::Free => {
                e.last_mgmt = Some(j);
                e.last_write = None;
                e.reads.clear();
                e.prefetches.clear();
            }
            Mem::None => {}
        }
    }
    for (a, b) in edges {
        g.add(a, b, Lat::Fixed(1), 0);
    }
    // Across iterations: any conflicting pair that may touch one page in a later
    // iteration (distance 1 covers every larger distance, conservatively).
    if let Some(l) = lp {
        for &(a, ma, la) in &mems {
            for &(b, mb, lb) in &mems {
                if conflicts(ma, mb) && ci.may_alias_later(l, &la, &lb) {
                    g.add(a, b, Lat::Fixed(1), 1);
                }
            }
        }
    }
}

fn coordination_edges(sg: &SentronGraph, g: &mut DepGraph, ci: &CoordInfo, is_loop: bool) {
    let kind = |j: usize| sg.node(g.nodes[j]).code().info().coord;
    // Window reads count: the page a DTMM reads through a window may be the one a
    // message announces (or releases).
    let is_mem = |j: usize| ci.page_accesses(sg, g.nodes[j]).next().is_some();
    // A prefetch publishes nothing: it need not precede a send, only follow receives
    // (the page it touches may be announced by one).
    let is_prefetch = |j: usize| sg.node(g.nodes[j]).code().info().mem == Mem::Prefetch;
    let releases = |c: Coordination| {
        matches!(
            c,
            Coordination::Send | Coordination::Collective | Coordination::Fence
        )
    };
    let acquires = |c: Coordination| {
        matches!(
            c,
            Coordination::Recv | Coordination::Collective | Coordination::Fence
        )
    };
    let n = g.len();
    let mut edges: Vec<(usize, usize, u32, u32)> = Vec::new();
    let mut last_c: Option<usize> = None;
    let mut first_c: Option<usize> = None;
    let mut mem_since_c: Vec<usize> = Vec::new();
    let mut last_acquire: Option<usize> = None;
    let mut first_release: Option<usize> = None;
    let mut mem_before_acquire: Vec<usize> = Vec::new();
    for j in 0..n {
        let c = kind(j);
        if c != Coordination::None && g.pipe[j] == Pipe::C {
            if let Some(p) = last_c {
                edges.push((p, j, 1, 0));
            }
            first_c.get_or_insert(j);
            last_c = Some(j);
            if releases(c) {
                for &m in &mem_since_c {
                    edges.push((m, j, 0, 0));
                }
                first_release.get_or_insert(j);
            }
            mem_since_c.clear();
            if acquires(c) {
                last_acquire = Some(j);
            }
        } else if is_mem(j) {
            if !is_prefetch(j) {
                mem_since_c.push(j);
            }
            match last_acquire {
                Some(a) => edges.push((a, j, 1, 0)),
                None => mem_before_acquire.push(j),
            }
        }
    }
    if is_loop {
        if let (Some(l), Some(f)) = (last_c, first_c) {
            edges.push((l, f, 1, 1));
        }
        if let Some(r) = first_release {
            for &m in &mem_since_c {
                edges.push((m, r, 0, 1));
            }
        }
        if let Some(a) = last_acquire {
            for &m in &mem_before_acquire {
                edges.push((a, m, 1, 1));
            }
        }
    }
    for (a, b, lat, dist) in edges {
        g.add(a, b, Lat::Fixed(lat), dist);
    }
}

/// Kahn's algorithm over the same-iteration edges; a leftover op is on a cycle.
fn check_acyclic(sg: &SentronGraph, g: &DepGraph) -> Result<()> {
    let n = g.len();
    let mut indeg = vec![0u32; n];
    for e in g.edges.iter().filter(|e| e.dist == 0) {
        indeg[e.to as usize] += 1;
    }
    let mut stack: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = stack.pop() {
        seen += 1;
        for &e in &g.succ[i] {
            let e = g.edges[e as usize];
            if e.dist == 0 {
                indeg[e.to as usize] -= 1;
                if indeg[e.to as usize] == 0 {
                    stack.push(e.to as usize);
                }
            }
        }
    }
    if seen == n {
        return Ok(());
    }
    let on_cycle: Vec<String> = (0..n)
        .filter(|&i| indeg[i] > 0)
        .take(6)
        .map(|i| sg.describe(g.nodes[i]))
        .collect();
    Err(CompileError::Cycle {
        at: sg.name(),
        ops: format!(
            "{} (explicit ordering edges contradict the other dependencies)",
            on_cycle.join(", ")
        ),
    })
}
