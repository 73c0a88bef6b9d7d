//! Run one program across the ranks of an MPI job: every rank loads the whole program
//! and builds its own phext space (ranks share nothing but the C pipe), runs its own
//! sentrons on pinned threads with the fast executor over an [`MpiTransport`], and
//! pumps frames on the calling thread until the job ends.
//!
//! Pages are per rank. What a page "is" after the run is the copy of the rank(s) whose
//! sentrons changed it: for a program in which each page is written by sentrons of one
//! rank only, that is exactly the single-process result (see [`merge_pages`]).

use crate::comm::{pump_until_done, CommConfig, PumpOutcome};
use crate::error::MpiError;
use crate::frame::{RankReport, ShownPage};
use crate::transport::{MpiTransport, Placement};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vtpu_isa::{PageInitData, Program};
use vtpu_phext::{Coord, PhextSpace, TranslationCache};
use vtpu_runtime::budget::{default_limit, MemBudget};
use vtpu_runtime::fabric::Transport;
use vtpu_runtime::fast::{FastSentron, PreWord};
use vtpu_runtime::{predecode, run_once_reporting, validate_for, Counters, MachineError};

/// A fault to inject, for the fault tests (`VTPU_MPI_FAULT=exit:R` or `hang:R`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedFault {
    /// Rank R exits with status 3 as soon as its sentrons started (a crash).
    Exit(u32),
    /// Rank R stops its pump and sleeps (alive but silent: a hang outside the C pipe).
    Hang(u32),
}

impl InjectedFault {
    /// Parse `exit:R` / `hang:R`.
    pub fn parse(s: &str) -> Result<InjectedFault, MpiError> {
        let bad = || {
            MpiError::Setup(format!(
                "VTPU_MPI_FAULT={s:?}: expected exit:RANK or hang:RANK"
            ))
        };
        let (kind, rank) = s.split_once(':').ok_or_else(bad)?;
        let rank: u32 = rank.parse().map_err(|_| bad())?;
        match kind {
            "exit" => Ok(InjectedFault::Exit(rank)),
            "hang" => Ok(InjectedFault::Hang(rank)),
            _ => Err(bad()),
        }
    }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Sentrons on each rank (S): rank r hosts sentrons r*S .. r*S+S-1.
    pub per_rank: u32,
    /// Pages to report (rank 0 merges them, see [`merge_pages`]).
    pub shows: Vec<Coord>,
    /// Endless-loop guard per sentron.
    pub word_limit: u64,
    pub pin: bool,
    pub layout: vtpu_phext::Layout,
    pub comm: CommConfig,
    pub fault: Option<InjectedFault>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            per_rank: 1,
            shows: Vec::new(),
            word_limit: u64::MAX,
            pin: true,
            layout: vtpu_phext::Layout::ZOrder,
            comm: CommConfig::default(),
            fault: None,
        }
    }
}

/// What one rank's run ended with.
#[derive(Debug)]
pub struct RankRun {
    pub rank: u32,
    pub placement: Placement,
    /// The run's error, if any (the same machine-wide cause on every rank, as far as
    /// each rank learnt it).
    pub error: Option<MpiError>,
    /// A rank was lost: the caller must call `MPI_Abort` rather than finalize.
    pub lost: bool,
    /// Rank 0: every rank's report, in rank order.
    pub reports: Vec<RankReport>,
    /// Host: this rank's wall time of the run.
    pub host_wall_ns: u64,
}

/// Run `program` on this rank's sentrons of a job of `world.size()` ranks.
pub fn run_rank(
    world: &SimpleCommunicator,
    program: &Program,
    opts: &RunOptions,
) -> Result<RankRun, MpiError> {
    let rank = world.rank() as u32;
    let place = Placement::new(world.size() as u32, opts.per_rank)?;
    let n = place.sentrons();
    validate_for(program, n, vtpu_phext::DEFAULT_PART_LIMIT).map_err(MpiError::Machine)?;
    let space = vtpu_runtime::build_space(program, opts.layout).map_err(MpiError::Machine)?;
    let budget = rank_budget(&space);
    let first = place.first(rank);
    let streams = predecode(program, first..first + place.per_rank);
    let t = MpiTransport::new(place, rank, budget)?;
    let counters: Mutex<Vec<Counters>> = Mutex::new(Vec::new());
    let cores = if opts.pin { core_ids() } else { Vec::new() };
    // Every rank has its space and streams before any frame flows, so the silence
    // clock starts for everyone at about the same time.
    world.barrier();
    let t0 = Instant::now();
    let outcome: PumpOutcome = std::thread::scope(|sc| {
        for (k, words) in streams.iter().enumerate() {
            let id = first + k as u32;
            let (t, space, counters) = (&t, &space, &counters);
            let core = (!cores.is_empty()).then(|| cores[id as usize % cores.len()]);
            let spawned = std::thread::Builder::new()
                .name(format!("sentron-{id}"))
                .spawn_scoped(sc, move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    let c = run_one(id, space, t, words, opts.word_limit);
                    counters.lock().unwrap_or_else(|e| e.into_inner()).push(c);
                    t.sentron_finished();
                });
            if let Err(e) = spawned {
                t.fail(
                    id,
                    MachineError::Setup(format!("cannot start sentron {id}: {e}")),
                );
                t.sentron_finished();
            }
        }
        match opts.fault {
            Some(InjectedFault::Exit(r)) if r == rank => {
                eprintln!("rank {rank}: injected fault: exiting now (VTPU_MPI_FAULT)");
                std::process::exit(3);
            }
            Some(InjectedFault::Hang(r)) if r == rank => {
                eprintln!("rank {rank}: injected fault: hanging without a word (VTPU_MPI_FAULT)");
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            _ => {}
        }
        let report = || {
            let mut cs = std::mem::take(&mut *counters.lock().unwrap_or_else(|e| e.into_inner()));
            cs.sort_by_key(|c| c.sentron);
            RankReport {
                rank,
                counters: cs,
                pages: shown_pages(&space, &opts.shows),
                host_wall_ns: t0.elapsed().as_nanos() as u64,
                ..Default::default()
            }
        };
        pump_until_done(world, &t, &opts.comm, report)
    });
    Ok(RankRun {
        rank,
        placement: place,
        error: t.mpi_error(),
        lost: outcome.lost,
        reports: outcome.reports,
        host_wall_ns: t0.elapsed().as_nanos() as u64,
    })
}

/// A rank's memory budget: the default limit on top of the pages already in its space
/// (charged up front, as the in-process machine does).
pub(crate) fn rank_budget(space: &PhextSpace) -> Arc<MemBudget> {
    let space_bytes: u64 = space.pages().iter().map(|p| p.len_bytes() as u64).sum();
    let budget = Arc::new(MemBudget::new(default_limit().saturating_add(space_bytes)));
    budget.force(space_bytes);
    budget
}

fn core_ids() -> Vec<core_affinity::CoreId> {
    core_affinity::get_core_ids().unwrap_or_default()
}

/// Run one sentron to its end; its halt or failure is reported to the transport.
fn run_one(
    id: u32,
    space: &PhextSpace,
    t: &MpiTransport,
    words: &[PreWord],
    word_limit: u64,
) -> Counters {
    let tlb = TranslationCache::new(64, 4);
    let mut s = FastSentron::new(
        id,
        space,
        t,
        words,
        tlb,
        word_limit,
        vtpu_kernels::Kernels::current(),
    );
    // A panic is a simulator bug: it becomes an error that stops every rank.
    run_once_reporting(t, &mut s, false);
    s.counters.clone()
}

/// The pages asked for, as this rank holds them.
fn shown_pages(space: &PhextSpace, shows: &[Coord]) -> Vec<ShownPage> {
    shows
        .iter()
        .map(|&c| {
            let coord = c.to_string();
            let (note, values) = match space.get(c) {
                None => ("<no page>".to_string(), Vec::new()),
                Some(p) if p.dtype() != vtpu_phext::DType::F32 => (
                    format!(
                        "<{} page, {}x{}>",
                        p.dtype().name(),
                        p.shape()[0],
                        p.shape()[1]
                    ),
                    Vec::new(),
                ),
                Some(p) => match p.to_f32_vec() {
                    Ok(v) => (String::new(), v),
                    Err(e) => (format!("<unreadable: {e}>"), Vec::new()),
                },
            };
            ShownPage {
                coord,
                note,
                values,
            }
        })
        .collect()
}

/// A page's values as `vtpu run --show` prints them.
fn values_text(v: &[f32]) -> String {
    if v.len() == 1 {
        format!("{}", v[0])
    } else {
        format!("{v:?}")
    }
}

/// One line per shown page, `coord = values`, as `vtpu run --show` prints it. Pages are
/// per rank, so each element is taken from the rank(s) whose copy changed it (compared
/// bit for bit with what `program` declared); an element no rank changed keeps its
/// declared value. For a program in which every element is written by sentrons of one
/// rank only, that is the single-process result. Ranks that changed an element to
/// different values are a conflict: the line lists every rank's copy, and the flag
/// returned is true.
pub fn merge_pages(program: &Program, reports: &[RankReport]) -> (Vec<String>, bool) {
    let Some(first) = reports.first() else {
        return (Vec::new(), false);
    };
    let mut conflict = false;
    let lines = first
        .pages
        .iter()
        .enumerate()
        .map(|(i, p0)| {
            let coord = &p0.coord;
            if !p0.note.is_empty() {
                return format!("{coord} = {}", p0.note);
            }
            let init: Vec<f32> = match Coord::parse(coord)
                .ok()
                .and_then(|c| program.pages.iter().find(|d| d.coord == c))
                .map(|d| &d.init)
            {
                Some(PageInitData::F32(v)) => v.clone(),
                // Zero-initialised, or made at run time (SALLOC: zeroed).
                _ => vec![0.0; p0.values.len()],
            };
            let copies: Vec<(u32, &[f32])> = reports
                .iter()
                .filter_map(|r| r.pages.get(i).map(|p| (r.rank, p.values.as_slice())))
                .collect();
            if copies.iter().any(|(_, v)| v.len() != init.len()) {
                conflict = true;
                return format!("{coord} = <ranks hold pages of different sizes>");
            }
            let mut merged = init.clone();
            let mut disagree = false;
            for (k, m) in merged.iter_mut().enumerate() {
                let mut taken: Option<f32> = None;
                for (_, v) in &copies {
                    if v[k].to_bits() == init[k].to_bits() {
                        continue;
                    }
                    match taken {
                        None => taken = Some(v[k]),
                        Some(t) if t.to_bits() == v[k].to_bits() => {}
                        Some(_) => disagree = true,
                    }
                }
                if let Some(t) = taken {
                    *m = t;
                }
            }
            if disagree {
                conflict = true;
                let each: Vec<String> = copies
                    .iter()
                    .map(|(r, v)| format!("rank {r}: {}", values_text(v)))
                    .collect();
                return format!("{coord} = <ranks disagree> {}", each.join("; "));
            }
            format!("{coord} = {}", values_text(&merged))
        })
        .collect();
    (lines, conflict)
}

/// Per-rank counters as text (virtual and host lines labelled).
pub fn format_reports(reports: &[RankReport], place: Placement) -> String {
    let mut s = String::new();
    for r in reports {
        let t = Counters::total(&r.counters);
        s.push_str(&format!(
            "rank {} (sentrons {}..={}): virtual: {} SIWs, {} ops, {} messages ({} bytes) sent, {} flops; host: {:.3} ms wall, {:.3} ms blocked in the C pipe (summed over sentrons), {} frames / {} bytes handed to MPI\n",
            r.rank,
            place.first(r.rank),
            place.last(r.rank),
            t.siws,
            t.total_ops(),
            t.msgs_sent,
            t.msg_bytes,
            t.flops,
            r.host_wall_ns as f64 / 1e6,
            r.counters.iter().map(|c| c.host_blocked_ns).sum::<u64>() as f64 / 1e6,
            r.frames_sent,
            r.bytes_sent,
        ));
        for c in &r.counters {
            s.push_str(&format!(
                "  sentron {}: virtual: {} SIWs, ops D/S/C {}/{}/{}, {} messages sent; host: {:.3} ms, {:.3} ms blocked\n",
                c.sentron,
                c.siws,
                c.ops[0],
                c.ops[1],
                c.ops[2],
                c.msgs_sent,
                c.host_ns as f64 / 1e6,
                c.host_blocked_ns as f64 / 1e6
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(rank: u32, values: &[f32]) -> RankReport {
        RankReport {
            rank,
            pages: vec![ShownPage {
                coord: "1.1.1/1.1.1/1.1.2".into(),
                note: String::new(),
                values: values.to_vec(),
            }],
            ..Default::default()
        }
    }

    fn program() -> Program {
        vtpu_isa::asm::assemble_file(
            "t",
            ".page 1.1.1/1.1.1/1.1.2 f32 1x3 = 1, 2, 3\n.sentron 0\n CHALT\n",
        )
        .expect("assembles")
    }

    #[test]
    fn pages_merge_element_by_element_by_who_changed_them() {
        let p = program();
        let (l, c) = merge_pages(&p, &[rep(0, &[9.0, 2.0, 3.0]), rep(1, &[1.0, 2.0, 47.0])]);
        assert_eq!(l, vec!["1.1.1/1.1.1/1.1.2 = [9.0, 2.0, 47.0]"]);
        assert!(!c);
        let (l, c) = merge_pages(&p, &[rep(0, &[1.0, 2.0, 3.0]), rep(1, &[1.0, 2.0, 3.0])]);
        assert_eq!(l, vec!["1.1.1/1.1.1/1.1.2 = [1.0, 2.0, 3.0]"]);
        assert!(!c);
        // -0.0 differs from 0.0 bit for bit: a change, and a disagreement with 5.
        let (l, c) = merge_pages(&p, &[rep(0, &[5.0, 2.0, 3.0]), rep(1, &[-0.0, 2.0, 3.0])]);
        assert!(c);
        assert!(
            l[0].contains("rank 0: [5.0, 2.0, 3.0]; rank 1: [-0.0, 2.0, 3.0]"),
            "{l:?}"
        );
    }
}
