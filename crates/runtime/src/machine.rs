//! The machine: load a program's pages into phext space, start N sentrons, collect
//! counters and final state.

use crate::budget::{default_limit, MemBudget};
use crate::counters::Counters;
use crate::error::{MachineError, Trap};
use crate::fabric::{LocalFabric, Transport};
use crate::fast::{FastSentron, FaultKind, PreWord};
use crate::state::{Regs, SentronState};
use std::sync::Arc;
use std::time::Instant;
use vtpu_isa::{PageInitData, Program};
use vtpu_phext::{PhextSpace, TranslationCache};

/// Which executor runs the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ExecutorKind {
    /// Pre-decoded words, SIMD kernels, one pinned OS thread per sentron.
    Fast,
    /// The specification: deterministic round robin on the calling thread.
    Reference,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub sentrons: usize,
    pub executor: ExecutorKind,
    /// Pin sentron i to core i mod cores, where the OS allows.
    pub pin: bool,
    /// Translation cache geometry per sentron: sets (a power of two) x ways.
    pub tlb_sets: usize,
    pub tlb_ways: usize,
    /// A sentron that retires more words than this traps (endless-loop guard).
    pub word_limit: u64,
    /// Instruction-set level of the fast executor's kernels (None: the process-wide
    /// level, i.e. the best this CPU supports unless VTPU_KERNELS says otherwise).
    pub kernel_level: Option<vtpu_kernels::KernelLevel>,
    /// Memory budget of the run in bytes: the phext space's pages (all but mapped
    /// ones), tile buffers, waiting messages and SALLOC pages draw from it
    /// (`budget.rs`). None: the default from the system's available memory and limits
    /// at the start of the run (`budget::default_limit`) plus the space's pages.
    pub mem_limit: Option<u64>,
    /// Copy every sentron's final registers into the report (`RunReport::states`):
    /// tests compare them; a command line that never reads them saves the memory (the
    /// copy doubles the tile memory at the end of a run).
    pub keep_states: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            sentrons: 1,
            executor: ExecutorKind::Fast,
            pin: true,
            tlb_sets: 64,
            tlb_ways: 4,
            word_limit: u64::MAX,
            kernel_level: None,
            mem_limit: None,
            keep_states: true,
        }
    }
}

/// What a completed run measured.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub executor: ExecutorKind,
    pub sentrons: usize,
    pub counters: Vec<Counters>,
    pub states: Vec<SentronState>,
    /// Host: wall time of the whole run (threads started to all joined).
    pub host_wall_ns: u64,
}

impl RunReport {
    pub fn total(&self) -> Counters {
        Counters::total(&self.counters)
    }
}

/// A fresh phext space holding the pages a program declares, placed in one arena in the
/// order of `layout`'s space-filling curve over their coordinates (so coordinate
/// neighbours are memory neighbours). Pages the program allocates at run time (SALLOC)
/// are separate heap pages.
pub fn build_space(
    program: &Program,
    layout: vtpu_phext::Layout,
) -> Result<PhextSpace, MachineError> {
    let mut inits = Vec::with_capacity(program.pages.len());
    for p in &program.pages {
        let bytes = match &p.init {
            PageInitData::Zero => None,
            PageInitData::F32(v) => Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        inits.push(vtpu_phext::PageInit {
            coord: p.coord,
            dtype: p.dtype,
            shape: [p.shape[0] as usize, p.shape[1] as usize],
            bytes,
            read_only: p.read_only,
            kind: p.kind,
        });
    }
    PhextSpace::build_placed(layout, inits, vtpu_phext::DEFAULT_PART_LIMIT)
        .map_err(|e| MachineError::Setup(e.to_string()))
}

/// Create the pages a program declares in an existing space (e.g. one loaded from a
/// save). A page that already exists (e.g. loaded from a
/// saved space) is kept as it is if its dtype and shape match the declaration, so a
/// program can run against saved state; a mismatch is an error.
pub fn load_pages(program: &Program, space: &PhextSpace) -> Result<(), MachineError> {
    for p in &program.pages {
        let shape = [p.shape[0] as usize, p.shape[1] as usize];
        if let Some(existing) = space.get(p.coord) {
            if existing.dtype() != p.dtype || existing.shape() != shape {
                return Err(MachineError::Setup(format!(
                    "page {} exists as {} {}x{} but the program declares {} {}x{}",
                    p.coord,
                    existing.dtype().name(),
                    existing.shape()[0],
                    existing.shape()[1],
                    p.dtype.name(),
                    shape[0],
                    shape[1]
                )));
            }
            continue;
        }
        let r = match &p.init {
            PageInitData::Zero if !p.read_only => space.alloc(p.coord, p.dtype, shape, p.kind),
            PageInitData::Zero => {
                let bytes = p
                    .dtype
                    .bytes_for(shape[0] * shape[1])
                    .map_err(|e| MachineError::Setup(format!("page {}: {e}", p.coord)))?;
                space.insert_bytes(p.coord, p.dtype, shape, &vec![0u8; bytes], true, p.kind)
            }
            PageInitData::F32(v) => {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                space.insert_bytes(p.coord, p.dtype, shape, &bytes, p.read_only, p.kind)
            }
        };
        r.map_err(|e| MachineError::Setup(format!("page {}: {e}", p.coord)))?;
    }
    Ok(())
}

/// Validate and run `program` on phext space `space` (pages already loaded).
pub fn run(
    program: &Program,
    space: &PhextSpace,
    cfg: &RunConfig,
) -> Result<RunReport, MachineError> {
    let n = cfg.sentrons;
    if n == 0 || n > vtpu_isa::MAX_SENTRONS {
        return Err(MachineError::Setup(format!(
            "--sentrons must be 1..={}, got {n}",
            vtpu_isa::MAX_SENTRONS
        )));
    }
    if !cfg.tlb_sets.is_power_of_two() || cfg.tlb_ways == 0 {
        return Err(MachineError::Setup(format!(
            "translation cache needs a power-of-two set count and at least one way, got {}x{}",
            cfg.tlb_sets, cfg.tlb_ways
        )));
    }
    validate_for(program, n, space.part_limit())?;
    // The pages already in the space count first: a space beyond the budget fails
    // here, before any sentron starts. Mapped pages are views of a file (the page
    // cache), not memory of this process, and are not charged. The default limit is
    // measured now, when the space's memory is already in use, so it is added back.
    let space_bytes: u64 = space
        .pages()
        .iter()
        .filter(|p| p.kind() != vtpu_phext::PageKind::Mapped)
        .map(|p| p.len_bytes() as u64)
        .sum();
    let limit = cfg
        .mem_limit
        .unwrap_or_else(|| default_limit().saturating_add(space_bytes));
    let budget = Arc::new(MemBudget::new(limit));
    budget.charge(space_bytes).map_err(|o| {
        MachineError::Setup(format!(
            "the phext space holds {space_bytes} bytes of pages, more than the memory budget of {} bytes (--mem-limit)",
            o.limit
        ))
    })?;
    let t0 = Instant::now();
    let (counters, states) = match cfg.executor {
        ExecutorKind::Reference => {
            let r = crate::reference::run_reference(
                program,
                space,
                n,
                (cfg.tlb_sets, cfg.tlb_ways),
                cfg.word_limit,
                &budget,
                cfg.keep_states,
            )?;
            (r.counters, r.states)
        }
        ExecutorKind::Fast => run_fast(program, space, cfg, budget)?,
    };
    Ok(RunReport {
        executor: cfg.executor,
        sentrons: n,
        counters,
        states,
        host_wall_ns: t0.elapsed().as_nanos() as u64,
    })
}

fn run_fast(
    program: &Program,
    space: &PhextSpace,
    cfg: &RunConfig,
    budget: Arc<MemBudget>,
) -> Result<(Vec<Counters>, Vec<SentronState>), MachineError> {
    let n = cfg.sentrons;
    let streams = predecode(program, 0..n as u32);
    let fabric = LocalFabric::with_budget(n, budget);
    let cores = if cfg.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let results: Vec<(Counters, Regs)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let words = &streams[i];
                let fabric = &fabric;
                let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
                let h = std::thread::Builder::new()
                    .name(format!("sentron-{i}"))
                    .spawn_scoped(sc, move || {
                        // Whatever happens on this thread, the fabric must hear of it:
                        // a sentron that vanished silently would stay "running" for
                        // ever, so its partners would neither be woken nor be found
                        // deadlocked, and the joins below would hang.
                        let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            if let Some(c) = core {
                                // Best effort: an OS that refuses pinning still runs us.
                                core_affinity::set_for_current(c);
                            }
                            run_one(i as u32, space, fabric, words, cfg)
                        }));
                        body.unwrap_or_else(|p| {
                            fabric.fail(
                                i as u32,
                                MachineError::Setup(format!(
                                    "internal error in sentron {i}: {}",
                                    panic_text(&*p)
                                )),
                            );
                            (Counters::new(i as u32), Regs::default())
                        })
                    });
                if let Err(e) = &h {
                    // Stop the sentrons already started now, not when this handle's turn
                    // to be joined comes: they may be waiting for this one.
                    fabric.fail(
                        i as u32,
                        MachineError::Setup(format!("cannot start sentron {i}: {e}")),
                    );
                }
                h
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| (Counters::new(i as u32), Regs::default())),
                // Already reported to the fabric when the spawn failed.
                Err(_) => (Counters::new(i as u32), Regs::default()),
            })
            .collect()
    });
    if let Some(err) = fabric.error() {
        return Err(err);
    }
    // The final registers are copied only for a run that finished and wants them, and
    // only within the memory budget: the copy doubles the tile memory. (After the
    // joins, so a sentron's trap is never hidden behind another's copy.)
    let mut counters = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    for (i, (c, regs)) in results.into_iter().enumerate() {
        counters.push(c);
        if !cfg.keep_states {
            states.push(Regs::default().snapshot());
            continue;
        }
        let bytes = snapshot_bytes(&regs);
        fabric.budget().charge(bytes).map_err(|o| {
            MachineError::Setup(format!(
                "the run finished, but a copy of sentron {i}'s final registers ({bytes} bytes) does not fit the memory budget ({} of {} bytes in use)",
                o.in_use, o.limit
            ))
        })?;
        states.push(regs.snapshot());
    }
    Ok((counters, states))
}

fn run_one(
    id: u32,
    space: &PhextSpace,
    fabric: &LocalFabric,
    words: &[PreWord],
    cfg: &RunConfig,
) -> (Counters, Regs) {
    let t0 = Instant::now();
    let tlb = TranslationCache::new(cfg.tlb_sets, cfg.tlb_ways);
    let kern = cfg
        .kernel_level
        .and_then(vtpu_kernels::Kernels::new)
        .unwrap_or_else(vtpu_kernels::Kernels::current);
    let mut s = FastSentron::new(id, space, fabric, words, tlb, cfg.word_limit, kern);
    // A panic here is a simulator bug; turn it into an error so the other sentrons are
    // woken and stopped instead of waiting forever for this one.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run()));
    match outcome {
        Ok(Ok(())) => fabric.halt(id),
        Ok(Err(stop)) => match *stop.fault {
            FaultKind::Stopped => {}
            FaultKind::Trap(kind, coord) => fabric.fail(
                id,
                MachineError::Trap(Box::new(Trap {
                    sentron: id,
                    pc: stop.pc,
                    op: vtpu_isa::disasm::format_op(&stop.op),
                    coord,
                    kind,
                })),
            ),
        },
        Err(p) => {
            fabric.fail(
                id,
                MachineError::Setup(format!(
                    "internal error in sentron {id}: {}",
                    panic_text(&*p)
                )),
            );
        }
    }
    s.counters.host_ns = t0.elapsed().as_nanos() as u64;
    (s.counters.clone(), std::mem::take(&mut s.regs))
}

/// Bytes of a register snapshot: every non-empty tile widened to f32.
fn snapshot_bytes(r: &Regs) -> u64 {
    r.t.iter()
        .filter(|t| !t.is_empty())
        .map(|t| 4 * t.elems() as u64)
        .sum()
}

/// The message of a panic payload (a `&str` or a `String`), or "" for anything else.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Check `program` for a machine of `n` sentrons whose pages allow coordinate parts up to
/// `part_limit`: what every runner does before anything runs (in process, in a session,
/// on MPI ranks).
pub fn validate_for(program: &Program, n: usize, part_limit: u32) -> Result<(), MachineError> {
    let opts = vtpu_isa::validate::ValidateOptions {
        sentrons: Some(n),
        part_limit,
    };
    vtpu_isa::validate::validate(program, &opts).map_err(|errs| {
        let text: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
        MachineError::Invalid(text.join("\n"))
    })
}

/// The pre-decoded word streams of sentrons `ids` (empty for a sentron the program gives
/// no stream).
pub fn predecode(program: &Program, ids: std::ops::Range<u32>) -> Vec<Vec<PreWord>> {
    ids.map(|id| {
        program
            .stream_for(id)
            .map(|s| s.words.iter().map(PreWord::new).collect())
            .unwrap_or_default()
    })
    .collect()
}
