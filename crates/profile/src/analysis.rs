//! The report math: per-word profiles + the program's region map + the probed ceilings
//! -> figures per layer, per op kind and per sentron, the roofline bound of each, and a
//! ranked list of bottlenecks with the time each would save at its ceiling.
//!
//! Conventions (all host figures, summed over sentrons unless said otherwise):
//! - `ns` is time inside the ops of a row, summed over sentrons; `share` divides it by
//!   the phase's total sentron time (each sentron's first word to halt, summed).
//! - Bytes are the bytes an op touched (`vtpu_runtime::profile`): D ops their tile
//!   operands in their dtype plus the tile written, S ops the page bytes gathered or
//!   scattered (a zero-copy view counts its size), C ops the message payload. Flops
//!   count FMA = 2.
//! - The ceiling of one sentron is the probed ceiling of N threads divided by N (N =
//!   sentrons), since all sentrons run at once. An op's *ideal* time is
//!   max(bytes / bandwidth, flops / peak), with the int8 dot-product peak for DTMM on a
//!   quantized model and the f32 FMA peak otherwise; `ceiling_frac` = ideal / actual
//!   (above 1 when the data came from caches: the probe's bandwidth is DRAM streaming).
//!   S-pipe ops, DTEMBED and DTROPE are outside the roofline ([`roofline_applies`]).
//! - Time in CRECV / CREDUCE / CBAR / CCAST is *sync* (waiting for other sentrons, plus
//!   the small reduction itself); the rest of a sentron's time outside ops is dispatch
//!   (the executor's loop) and the profiler's own clock readings, split by an estimate
//!   of the clock's cost measured in the same process.

use crate::attribution::{is_sync, Region, StreamMap};
use serde::Serialize;
use std::collections::BTreeMap;
use vtpu_isa::{Opcode, Pipe, Program};
use vtpu_runtime::{Counters, OpProfile, OpStat};

/// An op below this fraction of its roofline ceiling is called overhead-bound: neither
/// bandwidth nor arithmetic explains its time (per-op fixed costs, latency, misses).
pub const OVERHEAD_FRAC: f64 = 0.10;

/// A row is sync-bound when more than this share of its time is spent waiting.
pub const SYNC_SHARE: f64 = 0.5;

/// The ceilings used: the probe's row for the number of sentrons.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Ceilings {
    pub threads: usize,
    pub read_gbs: f64,
    pub f32_gflops: f64,
    pub int8_gops: f64,
}

impl Ceilings {
    /// Per-sentron bandwidth in bytes per ns (= GB/s) and peaks in flops per ns.
    fn per_sentron(&self) -> (f64, f64, f64) {
        let n = self.threads.max(1) as f64;
        (self.read_gbs / n, self.f32_gflops / n, self.int8_gops / n)
    }
}

/// What limits a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Bound {
    Memory,
    Compute,
    /// Far below both roofs (see [`OVERHEAD_FRAC`]), or no bytes and no flops at all.
    Overhead,
    /// Mostly waiting for other sentrons ([`SYNC_SHARE`]).
    Sync,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Memory => "memory",
            Bound::Compute => "compute",
            Bound::Overhead => "overhead",
            Bound::Sync => "sync",
        }
    }
}

/// The roofline position of `flops` and `bytes` on one sentron: ideal ns and whether
/// the memory side is the larger.
pub fn ideal_ns(
    flops: u64,
    bytes: u64,
    code: Opcode,
    ceil: &Ceilings,
    quantized: bool,
) -> (f64, bool) {
    let (bw, f32p, i8p) = ceil.per_sentron();
    let peak = if quantized && code == Opcode::DTMm {
        i8p
    } else {
        f32p
    };
    let mem = if bw > 0.0 { bytes as f64 / bw } else { 0.0 };
    let cmp = if peak > 0.0 { flops as f64 / peak } else { 0.0 };
    (mem.max(cmp), mem >= cmp)
}

/// Does the roofline describe `code`'s time? Not for S-pipe ops: their bytes count
/// whole zero-copy views they never read (page-table work, not data movement); not for
/// DTEMBED / DTROPE, whose counted bytes include the whole table view of which they
/// read a few rows. Their time still counts; they get no ceiling fraction.
pub fn roofline_applies(code: Opcode) -> bool {
    code.pipe() == Pipe::D && !matches!(code, Opcode::DTEmbed | Opcode::DTRope)
}

/// Classify a row from its totals (see the module doc and [`Bound`]).
pub fn classify(ns: u64, sync_ns: u64, ideal_mem: f64, ideal_cmp: f64) -> (Bound, Option<f64>) {
    if ns == 0 {
        return (Bound::Overhead, None);
    }
    if sync_ns as f64 > SYNC_SHARE * ns as f64 {
        return (Bound::Sync, None);
    }
    let work = (ns - sync_ns.min(ns)) as f64;
    let ideal = ideal_mem + ideal_cmp;
    if ideal <= 0.0 {
        // Outside the roofline (no bytes or flops it describes): no fraction to show.
        return (Bound::Overhead, None);
    }
    let frac = if work > 0.0 { Some(ideal / work) } else { None };
    if ideal <= 0.0 || frac.is_some_and(|f| f < OVERHEAD_FRAC) {
        return (Bound::Overhead, frac);
    }
    let b = if ideal_mem >= ideal_cmp {
        Bound::Memory
    } else {
        Bound::Compute
    };
    (b, frac)
}

/// Running totals of one row.
#[derive(Clone, Copy, Debug, Default)]
struct Acc {
    count: u64,
    ns: u64,
    sync_ns: u64,
    bytes: u64,
    flops: u64,
    /// Ideal ns of the slots whose memory side is larger / whose compute side is.
    ideal_mem: f64,
    ideal_cmp: f64,
}

impl Acc {
    fn add(&mut self, st: &OpStat, code: Opcode, ceil: &Ceilings, quantized: bool) {
        self.count += st.count;
        self.ns += st.ns;
        self.bytes += st.bytes;
        self.flops += st.flops;
        if is_sync(code) {
            self.sync_ns += st.ns;
            return;
        }
        if !roofline_applies(code) {
            return;
        }
        let (ideal, mem) = ideal_ns(st.flops, st.bytes, code, ceil, quantized);
        if mem {
            self.ideal_mem += ideal;
        } else {
            self.ideal_cmp += ideal;
        }
    }
}

/// Figures of one row (a layer, an op kind, a region).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    pub name: String,
    pub count: u64,
    /// Host ns inside the row's ops, summed over sentrons.
    pub ns: u64,
    /// Of that, waiting in CRECV / CREDUCE / CBAR / CCAST.
    pub sync_ns: u64,
    pub share: f64,
    pub us_per_token: f64,
    pub bytes: u64,
    pub flops: u64,
    /// Aggregate rates while the row's ops run (all sentrons at once).
    pub gbs: f64,
    pub gflops: f64,
    /// Ideal (roofline) ns / actual ns of the row's work (sync excluded).
    pub ceiling_frac: Option<f64>,
    pub bound: Bound,
    /// ns the row would save at its ceiling (sync time counts whole).
    pub gain_ns: u64,
}

fn figures(name: String, a: &Acc, total_ns: u64, tokens: u64, sentrons: usize) -> Figures {
    let (bound, frac) = classify(a.ns, a.sync_ns, a.ideal_mem, a.ideal_cmp);
    // Aggregate rate: the row's ns are summed over sentrons that ran side by side.
    let wall = a.ns as f64 / sentrons.max(1) as f64;
    let rate = |x: u64| if wall > 0.0 { x as f64 / wall } else { 0.0 };
    let work = a.ns - a.sync_ns.min(a.ns);
    let ideal = (a.ideal_mem + a.ideal_cmp).min(work as f64);
    Figures {
        name,
        count: a.count,
        ns: a.ns,
        sync_ns: a.sync_ns,
        share: a.ns as f64 / total_ns.max(1) as f64,
        us_per_token: a.ns as f64 / 1e3 / tokens.max(1) as f64,
        bytes: a.bytes,
        flops: a.flops,
        gbs: rate(a.bytes),
        gflops: rate(a.flops),
        ceiling_frac: frac,
        bound,
        gain_ns: a.sync_ns + (work as f64 - ideal).max(0.0) as u64,
    }
}

/// Where one sentron's time went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SentronRow {
    pub id: u32,
    /// First word to halt, summed over runs.
    pub run_ns: u64,
    /// Inside D and S ops, and C ops that do not wait.
    pub busy_ns: u64,
    /// Inside CRECV / CREDUCE / CBAR / CCAST.
    pub sync_ns: u64,
    /// Outside ops: the executor's loop (estimated) ...
    pub dispatch_ns: u64,
    /// ... and the profiler's clock readings (estimated).
    pub timer_ns: u64,
    /// Virtual counters.
    pub siws: u64,
    pub ops_per_siw: f64,
    /// D, S, C: ops / SIWs.
    pub pipe_util: [f64; 3],
    pub ppt_hit_rate: Option<f64>,
    /// Host: time blocked in the C pipe as the executor counts it.
    pub host_blocked_ns: u64,
}

/// The phase's host time split.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Split {
    pub d_ns: u64,
    pub s_ns: u64,
    pub c_sync_ns: u64,
    pub c_other_ns: u64,
    pub dispatch_ns: u64,
    pub timer_ns: u64,
    pub total_ns: u64,
}

/// Virtual counters of the phase (all sentrons).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Virtual {
    pub siws_per_token_per_sentron: f64,
    pub ops_per_siw: f64,
    pub pipe_util: [f64; 3],
    pub ppt_hit_rate: Option<f64>,
    pub flops: u64,
    pub bytes_gathered: u64,
}

/// One ranked bottleneck.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bottleneck {
    pub what: String,
    pub bound: Bound,
    pub detail: String,
    /// Of the phase's sentron time.
    pub share: f64,
    /// Share of the phase's time saved if this ran at its ceiling (sync: not at all).
    pub gain_share: f64,
    /// Tokens per second of the unprofiled run if that time were saved.
    pub tok_s_if_fixed: Option<f64>,
}

/// One span of the per-sentron timeline (the first profiled run of the phase).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Span {
    pub sentron: u32,
    /// ns from the run's start (the earliest sentron's first word).
    pub start_ns: u64,
    pub ns: u64,
    pub op: &'static str,
    pub region: Region,
    pub sync: bool,
}

/// Everything about one phase (prefill or decode).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub tokens: u64,
    pub calls: u64,
    /// Host wall time of the machine runs with profiling on / off.
    pub wall_ns: u64,
    pub unprofiled_wall_ns: Option<u64>,
    pub tok_s: Option<f64>,
    pub tok_s_profiled: f64,
    pub split: Split,
    pub layers: Vec<Figures>,
    pub regions: Vec<Figures>,
    pub ops: Vec<Figures>,
    /// ns per layer (rows of `layers`) and op kind: the stacked chart.
    pub layer_ops: BTreeMap<String, BTreeMap<String, u64>>,
    pub sentrons: Vec<SentronRow>,
    pub virtual_counters: Virtual,
    pub bottlenecks: Vec<Bottleneck>,
    /// The traced run's spans (not in the JSON: see `--trace`).
    #[serde(skip)]
    pub timeline: Vec<Span>,
    /// Length of the traced run.
    pub timeline_ns: u64,
    pub notes: Vec<String>,
}

/// What [`analyze_phase`] reads.
pub struct PhaseInput<'a> {
    pub name: &'a str,
    pub tokens: u64,
    pub calls: u64,
    pub profile: &'a OpProfile,
    pub counters: &'a [Counters],
    pub wall_ns: u64,
    pub unprofiled_wall_ns: Option<u64>,
}

/// The model side of the analysis.
pub struct ModelSide<'a> {
    pub program: &'a Program,
    pub maps: &'a [StreamMap],
    /// True when the projection weights are block-quantized (DTMM runs int8 dots).
    pub quantized: bool,
    pub ceilings: Ceilings,
    /// Cost of one clock reading (ns), for the profiler-overhead estimate.
    pub clock_ns: f64,
}

fn op_at(program: &Program, id: u32, pc: usize, slot: usize) -> Option<Opcode> {
    program
        .stream_for(id)
        .and_then(|s| s.words.get(pc))
        .map(|w| w.slots[slot].code)
}

/// Analyze one phase.
pub fn analyze_phase(m: &ModelSide<'_>, p: &PhaseInput<'_>) -> PhaseReport {
    let n = p.counters.len().max(p.profile.sentrons.len()).max(1);
    let total_ns: u64 = p.profile.sentrons.iter().map(|s| s.run_ns).sum();
    let mut by_region: BTreeMap<Region, Acc> = BTreeMap::new();
    let mut by_layer: BTreeMap<Region, Acc> = BTreeMap::new();
    let mut by_op: BTreeMap<Opcode, Acc> = BTreeMap::new();
    let mut layer_ops: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut split = Split {
        total_ns,
        ..Split::default()
    };
    let mut sentrons = Vec::new();
    let mut notes = Vec::new();
    for sp in &p.profile.sentrons {
        let map = m.maps.get(sp.id as usize);
        if map.is_some_and(|m| !m.straight_line) {
            notes.push(format!(
                "sentron {}: the program loops; a loop's region is that of its first pass",
                sp.id
            ));
        }
        let (mut busy, mut sync, mut slots) = (0u64, 0u64, 0u64);
        for (pc, word) in sp.slots.iter().enumerate() {
            for (slot, st) in word.iter().enumerate() {
                if st.count == 0 {
                    continue;
                }
                let Some(code) = op_at(m.program, sp.id, pc, slot) else {
                    continue;
                };
                let region = map.map_or(Region::Setup, |mp| mp.region(pc, slot));
                let layer_key = match region {
                    Region::Layer { layer, .. } => Region::Layer {
                        layer,
                        phase: crate::attribution::Phase::Attn,
                    },
                    r => r,
                };
                for acc in [
                    by_region.entry(region).or_default(),
                    by_layer.entry(layer_key).or_default(),
                    by_op.entry(code).or_default(),
                ] {
                    acc.add(st, code, &m.ceilings, m.quantized);
                }
                *layer_ops
                    .entry(region.layer_name())
                    .or_default()
                    .entry(code.name().to_string())
                    .or_default() += st.ns;
                slots += st.count;
                match code.pipe() {
                    Pipe::D => split.d_ns += st.ns,
                    Pipe::S => split.s_ns += st.ns,
                    Pipe::C if is_sync(code) => split.c_sync_ns += st.ns,
                    Pipe::C => split.c_other_ns += st.ns,
                }
                if is_sync(code) {
                    sync += st.ns;
                } else {
                    busy += st.ns;
                }
            }
        }
        let outside = sp.run_ns.saturating_sub(busy + sync);
        // Two clock readings per timed slot (start and end).
        let timer = ((2 * slots) as f64 * m.clock_ns) as u64;
        let timer = timer.min(outside);
        split.timer_ns += timer;
        split.dispatch_ns += outside - timer;
        let c = p.counters.iter().find(|c| c.sentron == sp.id);
        sentrons.push(SentronRow {
            id: sp.id,
            run_ns: sp.run_ns,
            busy_ns: busy,
            sync_ns: sync,
            dispatch_ns: outside - timer,
            timer_ns: timer,
            siws: c.map_or(0, |c| c.siws),
            ops_per_siw: c.map_or(0.0, |c| c.ops_per_siw()),
            pipe_util: c.map_or([0.0; 3], |c| {
                [
                    c.pipe_utilization(0),
                    c.pipe_utilization(1),
                    c.pipe_utilization(2),
                ]
            }),
            ppt_hit_rate: c.and_then(|c| c.ppt_hit_rate()),
            host_blocked_ns: c.map_or(0, |c| c.host_blocked_ns),
        });
    }
    let fig = |name: String, a: &Acc| figures(name, a, total_ns, p.tokens, n);
    let regions: Vec<Figures> = by_region.iter().map(|(r, a)| fig(r.name(), a)).collect();
    let layers: Vec<Figures> = by_layer
        .iter()
        .map(|(r, a)| fig(r.layer_name(), a))
        .collect();
    let mut ops: Vec<Figures> = by_op
        .iter()
        .map(|(c, a)| fig(c.name().to_string(), a))
        .collect();
    ops.sort_by_key(|f| std::cmp::Reverse(f.ns));

    let t = Counters::total(p.counters);
    let virtual_counters = Virtual {
        siws_per_token_per_sentron: t.siws as f64 / p.tokens.max(1) as f64 / n as f64,
        ops_per_siw: t.ops_per_siw(),
        pipe_util: [
            t.pipe_utilization(0),
            t.pipe_utilization(1),
            t.pipe_utilization(2),
        ],
        ppt_hit_rate: t.ppt_hit_rate(),
        flops: t.flops,
        bytes_gathered: t.bytes_gathered,
    };
    let tok_s = p
        .unprofiled_wall_ns
        .filter(|&w| w > 0)
        .map(|w| p.tokens as f64 / (w as f64 / 1e9));
    let bottlenecks = rank_bottlenecks(&ops, &split, total_ns, tok_s);
    let (timeline, timeline_ns) = timeline(m, p.profile);
    PhaseReport {
        name: p.name.to_string(),
        tokens: p.tokens,
        calls: p.calls,
        wall_ns: p.wall_ns,
        unprofiled_wall_ns: p.unprofiled_wall_ns,
        tok_s,
        tok_s_profiled: p.tokens as f64 / (p.wall_ns.max(1) as f64 / 1e9),
        split,
        layers,
        regions,
        ops,
        layer_ops,
        sentrons,
        virtual_counters,
        bottlenecks,
        timeline,
        timeline_ns,
        notes,
    }
}

/// Most bottlenecks listed.
pub const MAX_BOTTLENECKS: usize = 8;

/// Rank what would save the most time: each op kind's distance to its ceiling, its sync
/// time, and the dispatch time.
pub fn rank_bottlenecks(
    ops: &[Figures],
    split: &Split,
    total_ns: u64,
    tok_s: Option<f64>,
) -> Vec<Bottleneck> {
    let total = total_ns.max(1) as f64;
    let mut out = Vec::new();
    let mut push = |what: String, bound: Bound, detail: String, ns: u64, gain: u64| {
        let gain_share = gain as f64 / total;
        out.push(Bottleneck {
            what,
            bound,
            detail,
            share: ns as f64 / total,
            gain_share,
            tok_s_if_fixed: tok_s.map(|t| t / (1.0 - gain_share.min(0.99))),
        });
    };
    for f in ops {
        let work = f.ns - f.sync_ns.min(f.ns);
        if f.sync_ns > 0 {
            push(
                format!("{} (waiting)", f.name),
                Bound::Sync,
                "waiting for the other sentrons: load imbalance between them or fabric \
                 latency; gain assumes no wait at all"
                    .into(),
                f.sync_ns,
                f.sync_ns,
            );
        }
        if work == 0 {
            continue;
        }
        let gain = f.gain_ns - f.sync_ns.min(f.gain_ns);
        let (bound, detail) = match (f.bound, f.ceiling_frac) {
            (Bound::Sync, _) => (Bound::Overhead, "the reduction's own work".to_string()),
            (b @ (Bound::Memory | Bound::Compute), Some(x)) => (
                b,
                format!(
                    "at {:.0}% of the {} ceiling ({:.1} GB/s, {:.1} GFLOP/s)",
                    100.0 * x,
                    if b == Bound::Memory {
                        "read-bandwidth"
                    } else {
                        "arithmetic"
                    },
                    f.gbs,
                    f.gflops
                ),
            ),
            (b, x) => (
                b,
                format!(
                    "{:.1} us per call, {} of its roofline ceiling: fixed per-op costs",
                    f.ns as f64 / 1e3 / f.count.max(1) as f64,
                    x.map_or("no bytes or flops".to_string(), |x| format!(
                        "{:.1}%",
                        100.0 * x
                    ))
                ),
            ),
        };
        push(f.name.clone(), bound, detail, work, gain);
    }
    push(
        "dispatch".into(),
        Bound::Overhead,
        "the executor's loop between ops (estimated: time outside ops minus the \
         profiler's clock readings)"
            .into(),
        split.dispatch_ns,
        split.dispatch_ns,
    );
    out.sort_by(|a, b| b.gain_share.total_cmp(&a.gain_share));
    out.truncate(MAX_BOTTLENECKS);
    out
}

fn timeline(m: &ModelSide<'_>, p: &OpProfile) -> (Vec<Span>, u64) {
    let t0 = p
        .sentrons
        .iter()
        .filter_map(|s| s.span_run.map(|r| r.0))
        .min()
        .unwrap_or(0);
    let t1 = p
        .sentrons
        .iter()
        .filter_map(|s| s.span_run.map(|r| r.1))
        .max()
        .unwrap_or(t0);
    let mut out = Vec::new();
    for s in &p.sentrons {
        let map = m.maps.get(s.id as usize);
        for sp in &s.spans {
            let Some(code) = op_at(m.program, s.id, sp.pc as usize, sp.slot as usize) else {
                continue;
            };
            out.push(Span {
                sentron: s.id,
                start_ns: sp.start_ns.saturating_sub(t0),
                ns: sp.ns,
                op: code.name(),
                region: map.map_or(Region::Setup, |mp| {
                    mp.region(sp.pc as usize, sp.slot as usize)
                }),
                sync: is_sync(code),
            });
        }
    }
    (out, t1 - t0)
}

/// The cost of one `Instant::now()` in ns (median of a few batches).
pub fn clock_cost_ns() -> f64 {
    let mut v: Vec<f64> = (0..7)
        .map(|_| {
            let t0 = std::time::Instant::now();
            let mut x = t0;
            for _ in 0..10_000 {
                x = std::hint::black_box(std::time::Instant::now());
            }
            (x - t0).as_nanos() as f64 / 10_000.0
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEIL: Ceilings = Ceilings {
        threads: 2,
        read_gbs: 40.0,
        f32_gflops: 200.0,
        int8_gops: 800.0,
    };

    #[test]
    fn ideal_time_is_the_larger_roof_per_sentron() {
        // 2 sentrons share 40 GB/s: 20 bytes/ns each. 2e6 bytes -> 1e5 ns.
        let (ns, mem) = ideal_ns(1000, 2_000_000, Opcode::DTAdd, &CEIL, false);
        assert!(mem);
        assert!((ns - 1e5).abs() < 1e-6);
        // 100 flops/ns f32 per sentron: 1e7 flops -> 1e5 ns; 1e5 bytes -> 5e3 ns.
        let (ns, mem) = ideal_ns(10_000_000, 100_000, Opcode::DTMm, &CEIL, false);
        assert!(!mem);
        assert!((ns - 1e5).abs() < 1e-6);
        // Quantized DTMM: the int8 peak (400 per sentron) -> 2.5e4 ns.
        let (ns, _) = ideal_ns(10_000_000, 100_000, Opcode::DTMm, &CEIL, true);
        assert!((ns - 2.5e4).abs() < 1e-6);
        // Only DTMM uses the int8 peak.
        let (ns, _) = ideal_ns(10_000_000, 100_000, Opcode::DTMmN, &CEIL, true);
        assert!((ns - 1e5).abs() < 1e-6);
    }

    #[test]
    fn classification_follows_the_roofline_and_the_thresholds() {
        assert_eq!(classify(1000, 0, 600.0, 100.0), (Bound::Memory, Some(0.7)));
        assert_eq!(classify(1000, 0, 100.0, 600.0), (Bound::Compute, Some(0.7)));
        // 5% of the ceiling: overhead.
        assert_eq!(classify(1000, 0, 50.0, 0.0).0, Bound::Overhead);
        assert_eq!(classify(1000, 0, 0.0, 0.0).0, Bound::Overhead);
        // More than half waiting: sync.
        assert_eq!(classify(1000, 600, 300.0, 0.0), (Bound::Sync, None));
        // Less than half: the work part decides (400 ns of work, ideal 300).
        assert_eq!(classify(1000, 400, 300.0, 0.0).0, Bound::Memory);
        assert_eq!(classify(0, 0, 0.0, 0.0), (Bound::Overhead, None));
    }

    fn acc(ns: u64, sync: u64, bytes: u64, flops: u64, code: Opcode) -> Acc {
        let mut a = Acc::default();
        let st = OpStat {
            count: 10,
            ns: ns - sync,
            flops,
            bytes,
        };
        a.add(&st, code, &CEIL, false);
        if sync > 0 {
            a.add(
                &OpStat {
                    count: 1,
                    ns: sync,
                    flops: 0,
                    bytes: 0,
                },
                Opcode::CReduce,
                &CEIL,
                false,
            );
        }
        a
    }

    #[test]
    fn figures_rates_are_aggregate_and_gains_are_distance_to_the_ceiling() {
        // Two sentrons spent 2e5 ns in total (1e5 each, side by side) reading 2e6 bytes:
        // 20 GB/s aggregate; ideal 1e5 ns -> 50% of the ceiling, gain 1e5 ns.
        let a = acc(200_000, 0, 2_000_000, 0, Opcode::DTMm);
        let f = figures("x".into(), &a, 1_000_000, 4, 2);
        assert!((f.gbs - 20.0).abs() < 1e-9, "{}", f.gbs);
        assert_eq!(f.bound, Bound::Memory);
        assert!((f.ceiling_frac.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(f.gain_ns, 100_000);
        assert!((f.share - 0.2).abs() < 1e-12);
        assert!((f.us_per_token - 50.0).abs() < 1e-9);
        // Sync time counts whole in the gain, and is kept out of the ceiling fraction.
        let a = acc(300_000, 100_000, 2_000_000, 0, Opcode::DTMm);
        let f = figures("y".into(), &a, 1_000_000, 1, 2);
        assert_eq!(f.sync_ns, 100_000);
        assert_eq!(f.gain_ns, 200_000);
        assert!((f.ceiling_frac.unwrap() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn bottlenecks_rank_by_gain_and_split_sync_from_work() {
        let mm = figures(
            "DTMM".into(),
            &acc(400, 0, 4000, 0, Opcode::DTMm),
            1000,
            1,
            2,
        );
        // 400 ns at ideal 200 -> gain 200.
        assert_eq!(mm.gain_ns, 200);
        let red = figures(
            "CREDUCE".into(),
            &acc(300, 250, 0, 0, Opcode::CReduce),
            1000,
            1,
            2,
        );
        let split = Split {
            dispatch_ns: 100,
            total_ns: 1000,
            ..Split::default()
        };
        let b = rank_bottlenecks(&[mm, red], &split, 1000, Some(10.0));
        let names: Vec<&str> = b.iter().map(|b| b.what.as_str()).collect();
        assert_eq!(names[0], "CREDUCE (waiting)");
        assert_eq!(names[1], "DTMM");
        assert!((b[0].gain_share - 0.3).abs() < 1e-12);
        assert!((b[1].gain_share - 0.2).abs() < 1e-12);
        assert!((b[1].tok_s_if_fixed.unwrap() - 12.5).abs() < 1e-9);
        assert!(names.contains(&"dispatch"));
        // Sorted by gain.
        assert!(b.windows(2).all(|w| w[0].gain_share >= w[1].gain_share));
    }
}

#[cfg(test)]
mod roofline_scope {
    use super::*;

    #[test]
    fn view_bytes_are_kept_out_of_the_roofline() {
        assert!(roofline_applies(Opcode::DTMm));
        assert!(!roofline_applies(Opcode::SGatherV));
        assert!(!roofline_applies(Opcode::DTEmbed));
        let mut a = Acc::default();
        let st = OpStat {
            count: 1,
            ns: 100,
            flops: 0,
            bytes: 1 << 30,
        };
        a.add(&st, Opcode::SGather, &super::tests_ceil(), false);
        assert_eq!(a.bytes, 1 << 30);
        assert_eq!(a.ideal_mem + a.ideal_cmp, 0.0);
        assert_eq!(
            classify(a.ns, a.sync_ns, a.ideal_mem, a.ideal_cmp).0,
            Bound::Overhead
        );
    }
}

#[cfg(test)]
fn tests_ceil() -> Ceilings {
    Ceilings {
        threads: 1,
        read_gbs: 20.0,
        f32_gflops: 100.0,
        int8_gops: 400.0,
    }
}
