//! Workloads that prove the compiler, runnable from the CLI (`vtpu workload ...`):
//! each is a graph compiled twice (unpacked: one op per word; packed), both run in the
//! same process on the same phext space, alternating, after a warm-up; counters come
//! from the runs, host times are medians.

pub mod gemv;
pub mod microvtpu_batched;

use std::time::Instant;

use crate::error::{CompileError, Result};
use crate::graph::Graph;
use crate::layout::{self, LayoutChoice};
use crate::lower::{compile, CompileOptions, Compiled};
use vtpu_phext::{Layout, PageInit, PhextSpace};
use vtpu_runtime::{Counters, ExecutorKind, RunConfig};

/// A result check: Ok(summary) or Err(what is wrong).
pub type Check = Box<dyn Fn(&PhextSpace) -> std::result::Result<String, String>>;

/// A runnable workload.
pub struct Workload {
    pub name: String,
    pub description: String,
    pub graph: Graph,
    pub sentrons: usize,
    /// Large read-only pages created directly in phext space (not written into the
    /// program text); the program declares them without data.
    pub data_pages: Vec<PageInit>,
    /// Checks the results in phext space after a run; Ok(summary) or Err(what is wrong).
    pub check: Check,
}

/// How to run a workload.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Timed runs per form (after one warm-up run each).
    pub runs: usize,
    pub executor: ExecutorKind,
    /// Page placement; None: the compiler's choice.
    pub layout: Option<Layout>,
    pub pin: bool,
    /// Run the unpacked form too.
    pub unpacked: bool,
    /// Run the packed form too.
    pub packed: bool,
    /// How the packed form is compiled.
    pub compile: CompileOptions,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            runs: 9,
            executor: ExecutorKind::Fast,
            layout: None,
            pin: true,
            unpacked: true,
            packed: true,
            compile: CompileOptions::packed(),
        }
    }
}

/// One compiled form of the workload and what its runs measured.
pub struct Side {
    pub label: &'static str,
    pub compiled: Compiled,
    /// Counters of the last run, per sentron (virtual counters are the same every run).
    pub counters: Vec<Counters>,
    /// Host wall time of every timed run, ns.
    pub wall_ns: Vec<u64>,
    /// Host time of the slowest sentron (start to halt, no thread start-up) per run, ns.
    pub sentron_ns: Vec<u64>,
    pub dead_ops: Vec<String>,
    pub check: String,
}

impl Side {
    pub fn median_ns(&self) -> u64 {
        median(&self.wall_ns)
    }
    pub fn median_sentron_ns(&self) -> u64 {
        median(&self.sentron_ns)
    }
    pub fn total(&self) -> Counters {
        Counters::total(&self.counters)
    }
}

/// Everything a workload run measured.
pub struct WorkloadReport {
    pub name: String,
    pub description: String,
    pub layout: LayoutChoice,
    pub executor: ExecutorKind,
    pub sides: Vec<Side>,
    /// Seconds to compile the packed form.
    pub compile_s: f64,
    /// Page bytes in phext space.
    pub space_bytes: usize,
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Zero every writable f32 page, so a check cannot pass on an earlier run's output.
fn clear_writable(space: &PhextSpace) {
    for p in space.pages() {
        if !p.is_read_only() && p.dtype() == vtpu_phext::DType::F32 {
            let _ = p.write_f32(0, &vec![0f32; p.elems()]);
        }
    }
}

/// Compile, run and measure a workload.
pub fn run(w: &Workload, opts: &RunOptions) -> Result<WorkloadReport> {
    let t0 = Instant::now();
    let packed = compile(&w.graph, &opts.compile)?;
    let compile_s = t0.elapsed().as_secs_f64();
    let unpacked = compile(&w.graph, &CompileOptions::unpacked())?;
    let choice = layout::choose(&w.graph, &w.data_pages, opts.layout);
    let space = PhextSpace::build_placed(
        choice.layout,
        w.data_pages.clone(),
        vtpu_phext::DEFAULT_PART_LIMIT,
    )
    .map_err(|e| CompileError::Internal(format!("building phext space: {e}")))?;
    vtpu_runtime::load_pages(&packed.program, &space)
        .map_err(|e| CompileError::Internal(format!("loading pages: {e}")))?;
    let cfg = RunConfig {
        sentrons: w.sentrons,
        executor: opts.executor,
        pin: opts.pin,
        ..RunConfig::default()
    };
    let mut sides: Vec<Side> = Vec::new();
    for (label, c, want) in [
        ("unpacked", unpacked, opts.unpacked),
        ("packed", packed, opts.packed),
    ] {
        if !want {
            continue;
        }
        let dead = vtpu_isa::validate::dead_ops(&c.program)
            .iter()
            .map(|d| d.to_string())
            .collect();
        sides.push(Side {
            label,
            compiled: c,
            counters: Vec::new(),
            wall_ns: Vec::new(),
            sentron_ns: Vec::new(),
            dead_ops: dead,
            check: String::new(),
        });
    }
    let run_once = |side: &Side| -> Result<(Vec<Counters>, u64)> {
        let r = vtpu_runtime::run(&side.compiled.program, &space, &cfg).map_err(|e| {
            CompileError::Internal(format!("{} {} run failed: {e}", w.name, side.label))
        })?;
        Ok((r.counters, r.host_wall_ns))
    };
    // Warm-up (its results checked from a cleared output), then alternate so that both
    // forms see the same machine state.
    for side in &mut sides {
        clear_writable(&space);
        run_once(side)?;
        side.check = (w.check)(&space).map_err(|e| {
            CompileError::Internal(format!("{} {}: wrong result: {e}", w.name, side.label))
        })?;
    }
    for _ in 0..opts.runs.max(1) {
        for side in &mut sides {
            let (c, ns) = run_once(side)?;
            side.sentron_ns
                .push(c.iter().map(|x| x.host_ns).max().unwrap_or(0));
            side.counters = c;
            side.wall_ns.push(ns);
        }
    }
    Ok(WorkloadReport {
        name: w.name.clone(),
        description: w.description.clone(),
        layout: choice,
        executor: opts.executor,
        sides,
        compile_s,
        space_bytes: space.total_bytes(),
    })
}
