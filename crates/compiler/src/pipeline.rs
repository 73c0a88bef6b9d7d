//! From schedules to a word stream: blocks as scheduled, loops as prologue, kernel and
//! epilogue.
//!
//! A loop with N iterations, S stages and initiation interval II runs as N + S - 1
//! "time blocks" of II words; block b holds, for every body op of stage s, iteration
//! b - s (when 0 <= b - s < N). Blocks 0..S-1 are the prologue, blocks N..N+S-1 the
//! epilogue, the K = N - S + 1 blocks between them are the steady state. Registers of
//! values that live longer than II rotate over U copies (modulo variable expansion), so
//! the kernel is U blocks long and repeats T = K / U times under a CLOOP counter; the
//! K mod U blocks left over follow it unrolled. A non-pipelined loop is the same with
//! S = 1 and II = the length of its list-scheduled (or sequential) body.
//!
//! In the unrolled parts (prologue, epilogue, leftover) an op instance whose results no
//! later instance reads and that has no side effect is dropped: for example the offset
//! update of the last iteration, which the loop needs only to go round again.

use std::collections::HashMap;

use crate::graph::{LoopId, NodeId, SentronGraph};
use vtpu_isa::ops::Coord as Coordination;
use vtpu_isa::Mem;

/// How one loop is scheduled.
#[derive(Clone, Debug)]
pub struct LoopPlan {
    pub lp: LoopId,
    pub trip: u64,
    pub ii: u32,
    /// Per body op (body order): time within an iteration.
    pub time: Vec<u32>,
    pub stages: u32,
    /// Kernel unroll factor U (register rotation).
    pub unroll: u32,
    pub pipelined: bool,
    pub res_mii: u32,
    pub rec_mii: u32,
    /// Prefetch latency mode the schedule was made with (see `Lat::get`).
    pub full_prefetch: bool,
    /// Why the loop is not pipelined, if it is not.
    pub why_not: Option<String>,
}

impl LoopPlan {
    /// Steady-state blocks K.
    pub fn kernel_blocks(&self) -> u64 {
        self.trip + 1 - u64::from(self.stages)
    }
    /// Kernel repetitions T (a CLOOP runs them when T >= 2).
    pub fn kernel_trips(&self) -> u64 {
        self.kernel_blocks() / u64::from(self.unroll.max(1))
    }
    pub fn needs_counter(&self) -> bool {
        self.kernel_trips() >= 2
    }
    pub fn stage(&self, body_pos: usize) -> u32 {
        self.time[body_pos] / self.ii
    }
}

/// What occupies a slot of an emitted word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// An op; `iter` is its iteration for loop ops (the first kernel trip's, inside a
    /// kernel loop), 0 in blocks.
    Node { node: NodeId, iter: u64 },
    /// `DLI counter, count` before a kernel loop.
    Counter { lp: LoopId, count: u64 },
    /// The kernel loop's `CLOOP counter, kernel start`.
    Cloop { lp: LoopId },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EWord {
    pub slots: [Option<Slot>; 3],
}

/// Where a loop's code ended up in the stream.
#[derive(Clone, Debug)]
pub struct LoopSpan {
    pub lp: LoopId,
    /// First word and one past the last word.
    pub start: usize,
    pub end: usize,
    /// The kernel loop's words [start, end), if it loops (T >= 2).
    pub kernel: Option<(usize, usize)>,
}

/// Is an op needed for more than its register results?
pub fn effectful(sg: &SentronGraph, n: NodeId) -> bool {
    let info = sg.node(n).code().info();
    matches!(
        info.mem,
        Mem::Write | Mem::Alloc | Mem::Free | Mem::Prefetch
    ) || info.coord != Coordination::None
}

/// Append a scheduled block (ops at `time`), dropping empty words. `counter`: a loop
/// counter DLI to put in the last free D slot (or a new word).
pub fn emit_block(
    out: &mut Vec<EWord>,
    sg: &SentronGraph,
    nodes: &[NodeId],
    time: &[u32],
    counter: Option<(LoopId, u64)>,
    unpacked: bool,
) {
    let len = time.iter().max().map_or(0, |&t| t as usize + 1);
    let mut words = vec![EWord::default(); len];
    for (i, &n) in nodes.iter().enumerate() {
        let p = sg.node(n).code().pipe() as usize;
        words[time[i] as usize].slots[p] = Some(Slot::Node { node: n, iter: 0 });
    }
    words.retain(|w| w.slots.iter().any(Option::is_some));
    if let Some((lp, count)) = counter {
        let slot = Slot::Counter { lp, count };
        match words
            .iter_mut()
            .rev()
            .find(|w| w.slots[0].is_none())
            .filter(|_| !unpacked)
        {
            Some(w) => w.slots[0] = Some(slot),
            None => words.push(EWord {
                slots: [Some(slot), None, None],
            }),
        }
    }
    out.extend(words);
}

/// Readers of each body value's instances, for dropping dead instances.
struct Uses<'a> {
    sg: &'a SentronGraph,
    plan: &'a LoopPlan,
    pos: &'a [u32],
    readers: &'a [Vec<NodeId>],
    /// Body value -> carried value it becomes next iteration.
    phi_of_next: HashMap<crate::graph::Value, crate::graph::Value>,
    /// Body values read after the loop.
    exported: std::collections::HashSet<crate::graph::Value>,
}

/// Append loop `plan`'s code; returns its span.
pub fn emit_loop(
    out: &mut Vec<EWord>,
    sg: &SentronGraph,
    plan: &LoopPlan,
    pos: &[u32],
    readers: &[Vec<NodeId>],
) -> LoopSpan {
    let info = sg.lp(plan.lp);
    let body = &info.body;
    let n = plan.trip;
    let s = u64::from(plan.stages);
    let u = u64::from(plan.unroll.max(1));
    let ii = plan.ii as usize;
    let t_trips = plan.kernel_trips();
    let kernel_lo = s - 1;
    let kernel_hi = if t_trips >= 2 {
        kernel_lo + u
    } else {
        kernel_lo
    };
    let uses = Uses {
        sg,
        plan,
        pos,
        readers,
        phi_of_next: info
            .phis
            .iter()
            .filter_map(|p| p.next.map(|x| (x, p.value)))
            .collect(),
        exported: info.outputs.keys().copied().collect(),
    };
    // Which blocks are emitted: prologue + (kernel once) + leftover + epilogue.
    let mut blocks: Vec<u64> = (0..kernel_lo).collect();
    blocks.extend(kernel_lo..kernel_hi);
    let leftover_from = if t_trips >= 2 {
        kernel_lo + u * t_trips
    } else {
        kernel_lo
    };
    blocks.extend(leftover_from..n + s - 1);
    // Liveness of straight-line instances, computed latest first.
    let mut live: HashMap<(u32, u64), bool> = HashMap::new();
    let in_kernel = |b: u64| t_trips >= 2 && b >= kernel_lo && b < kernel_hi;
    let mut order: Vec<(u64, usize)> = Vec::new();
    for &b in &blocks {
        if in_kernel(b) {
            continue;
        }
        for (k, _) in body.iter().enumerate() {
            let st = u64::from(plan.stage(k));
            if b >= st && b - st < n {
                order.push((b * ii as u64 + u64::from(plan.time[k] % plan.ii), k));
            }
        }
    }
    order.sort_unstable_by(|a, b| b.cmp(a));
    for &(abs, k) in &order {
        let b = abs / ii as u64;
        let iter = b - u64::from(plan.stage(k));
        let l = uses.instance_live(k, iter, &live, &in_kernel);
        live.insert((k as u32, iter), l);
    }
    let start = out.len();
    let mut kernel = None;
    for &b in &blocks {
        let straight = !in_kernel(b);
        if b == kernel_lo && t_trips >= 2 {
            kernel = Some((out.len(), 0));
        }
        let mut words = vec![EWord::default(); ii];
        for (k, &node) in body.iter().enumerate() {
            let st = u64::from(plan.stage(k));
            if b < st || b - st >= n {
                continue;
            }
            let iter = b - st;
            if straight && !live.get(&(k as u32, iter)).copied().unwrap_or(true) {
                continue;
            }
            let row = (plan.time[k] % plan.ii) as usize;
            let p = sg.node(node).code().pipe() as usize;
            words[row].slots[p] = Some(Slot::Node { node, iter });
        }
        if straight {
            words.retain(|w| w.slots.iter().any(Option::is_some));
        }
        out.extend(words);
        if t_trips >= 2 && b + 1 == kernel_hi {
            if let (Some((ks, _)), Some(last)) = (kernel, out.last_mut()) {
                last.slots[2] = Some(Slot::Cloop { lp: plan.lp });
                kernel = Some((ks, out.len()));
            }
        }
    }
    LoopSpan {
        lp: plan.lp,
        start,
        end: out.len(),
        kernel,
    }
}

impl Uses<'_> {
    /// Is instance (body op k, iteration i) needed?
    fn instance_live(
        &self,
        k: usize,
        i: u64,
        live: &HashMap<(u32, u64), bool>,
        in_kernel: &dyn Fn(u64) -> bool,
    ) -> bool {
        let body = &self.sg.lp(self.plan.lp).body;
        let node = body[k];
        if effectful(self.sg, node) {
            return true;
        }
        let n = self.plan.trip;
        let reader_live = |y: NodeId, j: u64| -> bool {
            if j >= n || self.sg.node(y).place != crate::graph::Place::Loop(self.plan.lp) {
                return false;
            }
            let ky = self.pos[y.0 as usize] as usize;
            let b = j + u64::from(self.plan.stage(ky));
            in_kernel(b) || live.get(&(ky as u32, j)).copied().unwrap_or(false)
        };
        for &d in &self.sg.node(node).defs {
            if i + 1 == n && self.exported.contains(&d) {
                return true;
            }
            if self.readers[d.0 as usize]
                .iter()
                .any(|&y| reader_live(y, i))
            {
                return true;
            }
            if let Some(&phi) = self.phi_of_next.get(&d) {
                if self.readers[phi.0 as usize]
                    .iter()
                    .any(|&y| reader_live(y, i + 1))
                {
                    return true;
                }
                // The carried value's final value is read after the loop.
                if i + 1 == n && self.exported.contains(&d) {
                    return true;
                }
            }
        }
        false
    }
}
