//! A machine whose sentrons are spread over the ranks of an MPI job and which runs its
//! programs many times, driven by rank 0: tensor-parallel generation
//! (`mpirun -n R vtpu generate`).
//!
//! Every rank builds the same programs and its own copy of the pages (weights are mapped
//! from the model file, so a rank's memory holds only the rows its sentrons read), and
//! hosts sentrons `rank * S .. rank * S + S` on pinned worker threads that live as long
//! as the machine, as [`vtpu_runtime::Session`]'s do. The calling thread is the rank's
//! pump, the only thread that calls MPI.
//!
//! One step (a run of program `k`), with frames on the one tag of `comm.rs`:
//! 1. rank 0 sends `Step { seq, k, inputs }` to every rank: the bytes the host wrote to
//!    the input pages (argument page, token ids), which each rank copies into its own;
//! 2. every rank starts its sentrons and pumps frames until they all ended, then makes
//!    its transport ready for the next step and sends rank 0 `StepDone` with its
//!    sentrons' counters and its share of the output page (the logits rows its sentrons
//!    wrote);
//! 3. rank 0, with every `StepDone`, has the whole output page and every counter.
//!
//! Nothing of step `s + 1` can reach a rank before it is ready for it: rank 0 sends
//! `Step(s + 1)` only after every `StepDone(s)`, and each rank resets before sending its
//! `StepDone`. Collective generations count on across steps on every rank alike.
//!
//! Faults: a trap or deadlock on any rank stops every rank's sentrons (the transport's
//! `Abort`), the step still ends everywhere and rank 0 returns the error. Rank 0 judges
//! silence: a rank that sends nothing for `rank_timeout` during a step is lost, and the
//! job must end with `MPI_Abort` (done when the machine is dropped). Ranks other than 0
//! wait for rank 0 between steps; if rank 0 stays silent for `follower_timeout` they
//! give up (mpirun normally ends the job first when a process dies).
//!
//! The end: rank 0 sends `Finish` when its machine is dropped; then every rank sends
//! `Bye` to every other and stops once it has all of them and its sends completed, so
//! `MPI_Finalize` is safe.

use crate::comm::{CommConfig, PendingSend, TAG};
use crate::error::MpiError;
use crate::frame::{Frame, MAX_FRAME_BYTES};
use crate::monitor::Monitor;
use crate::transport::{MpiTransport, Placement};
use mpi::datatype::Equivalence;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};
use vtpu_isa::Program;
use vtpu_kernels::Kernels;
use vtpu_llm::model::{MachineHost, StepIo};
use vtpu_phext::{Page, PhextSpace, TranslationCache};
use vtpu_runtime::fast::{FastSentron, PreWord};
use vtpu_runtime::{
    predecode, run_once_reporting, validate_for, Counters, MachineError, OpProfile, ProgramMachine,
    RunConfig, SessionReport,
};

/// Starts [`MpiMachine`]s for `Model::load_hosted`: `per_rank` sentrons on each rank of
/// the world communicator.
#[derive(Clone, Debug)]
pub struct MpiHost {
    pub per_rank: u32,
    pub comm: CommConfig,
    /// How long a rank other than 0 waits for rank 0's next step before it gives up.
    pub follower_timeout: Duration,
    /// A checksum of the model file this rank loaded: ranks compare theirs (and the
    /// programs they built) before anything runs.
    pub model_checksum: u64,
    pub pin: bool,
    /// For the fault tests: `(rank, step)`: that rank (not 0) exits with status 3 when
    /// step `step` arrives, as a crashed process would (`VTPU_MPI_FAULT=exit:R@S`).
    pub fault: Option<(u32, u64)>,
}

impl MpiHost {
    /// `exit:R@S` (see [`MpiHost::fault`]).
    pub fn parse_fault(s: &str) -> Result<(u32, u64), MpiError> {
        let bad = || MpiError::Setup(format!("VTPU_MPI_FAULT={s:?}: expected exit:RANK@STEP"));
        let rest = s.strip_prefix("exit:").ok_or_else(bad)?;
        let (r, st) = rest.split_once('@').ok_or_else(bad)?;
        Ok((
            r.parse().map_err(|_| bad())?,
            st.parse().map_err(|_| bad())?,
        ))
    }
}

impl MachineHost for MpiHost {
    fn start(
        &self,
        programs: &[Program],
        space: Arc<PhextSpace>,
        cfg: &RunConfig,
        io: &StepIo,
    ) -> Result<Box<dyn ProgramMachine>, MachineError> {
        let world = SimpleCommunicator::world();
        MpiMachine::start(world, self, programs, space, cfg, io)
            .map(|m| Box::new(m) as Box<dyn ProgramMachine>)
            .map_err(|e| e.to_machine())
    }
}

/// One sentron's counters and profile of the current step.
type SentronResult = (Counters, Option<OpProfile>);

/// What the sentron workers share with the pump.
struct Shared {
    space: Arc<PhextSpace>,
    /// Per program, per local sentron.
    streams: Vec<Vec<Vec<PreWord>>>,
    t: MpiTransport,
    first: u32,
    tlb: (usize, usize),
    word_limit: u64,
    kern: Kernels,
    program: AtomicUsize,
    run: AtomicU64,
    shutdown: AtomicBool,
    profile: AtomicBool,
    done: AtomicUsize,
    lock: Mutex<Vec<Option<SentronResult>>>,
    start_cv: Condvar,
}

/// Host figures of the steps since the last report.
#[derive(Clone, Debug, Default)]
struct Wire {
    steps: u64,
    /// Per rank: bytes handed to MPI during steps, and time its sentrons were blocked
    /// in the C pipe (summed over its sentrons).
    sent: Vec<u64>,
    blocked_ns: Vec<u64>,
    wall_ns: u64,
    /// Collectives across ranks (rank 0's first sentron's count).
    colls: u64,
}

/// This rank's part of a machine spread over an MPI job (see the module doc).
pub struct MpiMachine {
    world: SimpleCommunicator,
    /// MPI was initialised for one calling thread: every MPI call stays on this one.
    home: ThreadId,
    rank: u32,
    place: Placement,
    sh: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    io: StepIo,
    inputs: Vec<Arc<Page>>,
    output: Arc<Page>,
    comm: CommConfig,
    follower_timeout: Duration,
    fault: Option<(u32, u64)>,
    seq: u64,
    pending: Vec<PendingSend>,
    outbox: Vec<(u32, Vec<u8>)>,
    /// Bytes handed to MPI since the start of the current step.
    step_sent: u64,
    /// Ranks that said `Bye`, and whether this rank sent its own.
    bye_from: u64,
    sent_bye: bool,
    /// Whether a `Finish` arrived (followers) or was sent (rank 0).
    finished: bool,
    /// The first error: the machine runs no more steps after it.
    dead: Option<MpiError>,
    /// A rank was lost: the job must end with `MPI_Abort`.
    lost: bool,
    wire: Wire,
    /// `wire.colls` at the last report.
    colls_reported: u64,
}

// SAFETY: `MpiMachine` holds MPI handles (the communicator, send requests), which are
// not `Send` because MPI was initialised for one thread (`Threading::Funneled`). Moving
// the machine between threads is harmless in itself; what must not happen is an MPI
// call from another thread, and every method that calls MPI first checks that it runs
// on `home`, the thread that created the machine (see `on_home`). `Drop` calls MPI only
// on `home` too.
unsafe impl Send for MpiMachine {}

impl MpiMachine {
    /// Start this rank's sentrons of a machine of `world.size() * host.per_rank`
    /// sentrons. Every rank must call this at the same point (it compares checksums
    /// with a collective).
    pub fn start(
        world: SimpleCommunicator,
        host: &MpiHost,
        programs: &[Program],
        space: Arc<PhextSpace>,
        cfg: &RunConfig,
        io: &StepIo,
    ) -> Result<MpiMachine, MpiError> {
        let rank = world.rank() as u32;
        let place = Placement::new(world.size() as u32, host.per_rank)?;
        let n = place.sentrons();
        if n != cfg.sentrons {
            return Err(MpiError::Setup(format!(
                "the model was planned for {} sentrons, but {} ranks x {} sentrons per rank = {n}",
                cfg.sentrons, place.ranks, place.per_rank
            )));
        }
        if programs.is_empty() || io.batch.len() != programs.len() || io.rows.len() != n {
            return Err(MpiError::Setup(format!(
                "{} programs, {} batch sizes and {} output row ranges for {n} sentrons",
                programs.len(),
                io.batch.len(),
                io.rows.len()
            )));
        }
        check_same_everywhere(&world, host.model_checksum, programs)?;
        let first = place.first(rank);
        let mut streams = Vec::with_capacity(programs.len());
        for program in programs {
            validate_for(program, n, space.part_limit()).map_err(MpiError::Machine)?;
            streams.push(predecode(program, first..first + place.per_rank));
        }
        let page = |c: vtpu_phext::Coord| {
            space
                .get(c)
                .ok_or_else(|| MpiError::Setup(format!("step page {c} is not in the space")))
        };
        let inputs = io
            .inputs
            .iter()
            .map(|&c| page(c))
            .collect::<Result<Vec<_>, _>>()?;
        let output = page(io.output)?;
        let budget = crate::runner::rank_budget(&space);
        let t = MpiTransport::new(place, rank, budget)?;
        let s = place.per_rank as usize;
        let sh = Arc::new(Shared {
            space,
            streams,
            t,
            first,
            tlb: (cfg.tlb_sets, cfg.tlb_ways),
            word_limit: cfg.word_limit,
            kern: cfg
                .kernel_level
                .and_then(Kernels::new)
                .unwrap_or_else(Kernels::current),
            program: AtomicUsize::new(0),
            run: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            profile: AtomicBool::new(false),
            done: AtomicUsize::new(0),
            lock: Mutex::new(vec![None; s]),
            start_cv: Condvar::new(),
        });
        let cores = if host.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let ranks = place.ranks as usize;
        let mut m = MpiMachine {
            world,
            home: std::thread::current().id(),
            rank,
            place,
            sh,
            workers: Vec::with_capacity(s),
            io: io.clone(),
            inputs,
            output,
            comm: host.comm.clone(),
            follower_timeout: host.follower_timeout,
            fault: host.fault,
            seq: 0,
            pending: Vec::new(),
            outbox: Vec::new(),
            step_sent: 0,
            bye_from: 0,
            sent_bye: false,
            finished: false,
            dead: None,
            lost: false,
            wire: Wire {
                sent: vec![0; ranks],
                blocked_ns: vec![0; ranks],
                ..Wire::default()
            },
            colls_reported: 0,
        };
        for li in 0..s {
            let id = first + li as u32;
            let sh = Arc::clone(&m.sh);
            // Sentrons of all ranks of one machine spread over its cores.
            let core = (!cores.is_empty()).then(|| cores[id as usize % cores.len()]);
            let h = std::thread::Builder::new()
                .name(format!("sentron-{id}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    worker(&sh, li);
                })
                .map_err(|e| MpiError::Setup(format!("cannot start sentron {id}: {e}")))?;
            m.workers.push(h);
        }
        Ok(m)
    }

    fn on_home(&self) -> Result<(), MpiError> {
        if std::thread::current().id() != self.home {
            return Err(MpiError::Setup(
                "the MPI machine was used from another thread than the one that started it (MPI is initialised for one thread)".into(),
            ));
        }
        Ok(())
    }

    fn send(&mut self, to: u32, bytes: Vec<u8>) {
        // Nothing may follow a Bye (the receiver stops listening).
        if self.sent_bye {
            return;
        }
        self.step_sent += bytes.len() as u64;
        self.pending
            .push(PendingSend::start(&self.world, to, bytes));
    }

    /// Hand the transport's outbox to MPI and retire completed sends. True if anything
    /// moved.
    fn flush(&mut self) -> bool {
        let mut out = std::mem::take(&mut self.outbox);
        self.sh.t.take_outbox(&mut out);
        let busy = !out.is_empty();
        for (to, bytes) in out.drain(..) {
            self.send(to, bytes);
        }
        self.outbox = out;
        self.pending.retain_mut(|p| !p.done());
        busy
    }

    /// The next frame from any rank, if one is waiting (its source, the frame and its
    /// length in bytes). A frame that cannot come from this job's ranks stops the
    /// machine.
    fn poll(&mut self) -> Option<(u32, Frame, usize)> {
        let ranks = self.place.ranks as usize;
        let (msg, status) = self
            .world
            .any_process()
            .immediate_matched_probe_with_tag(TAG)?;
        let src = status.source_rank() as u32;
        let count = status.count(u8::equivalent_datatype());
        if count < 0 || count as usize > MAX_FRAME_BYTES || src as usize >= ranks {
            // Receiving it would mean an unbounded allocation; the job is aborted.
            std::mem::forget(msg);
            self.fail(
                MpiError::Protocol {
                    rank: src,
                    detail: format!("a frame of {count} bytes (at most {MAX_FRAME_BYTES})"),
                },
                true,
            );
            return None;
        }
        let (bytes, _) = (msg, status).matched_receive_vec::<u8>();
        match Frame::decode(&bytes, self.place.sentrons()) {
            Ok(f) => Some((src, f, bytes.len())),
            Err(e) => {
                self.sh.t.abort(MpiError::Protocol {
                    rank: src,
                    detail: e.to_string(),
                });
                None
            }
        }
    }

    /// Record the first error; `lost`: a rank is gone, the job must be aborted.
    fn fail(&mut self, err: MpiError, lost: bool) {
        self.sh.t.abort(err.clone());
        if self.dead.is_none() {
            self.dead = Some(err);
        }
        self.lost |= lost;
    }

    /// A frame the pump does not handle itself (C pipe traffic) goes to the transport.
    fn hand_to_transport(&mut self, src: u32, f: Frame) {
        if let Err(e) = self.sh.t.handle(src, f) {
            self.sh.t.abort(e);
        }
    }

    /// Sleep a little when nothing moved for a while (little CPU while sentrons
    /// compute), spin when something did (low latency in a busy exchange).
    fn idle(&self, busy: bool, last_busy: &mut Instant) {
        if busy {
            *last_busy = Instant::now();
        } else if last_busy.elapsed() < self.comm.busy_poll {
            std::thread::yield_now();
        } else {
            self.sh.t.wait_for_work(self.comm.idle_sleep);
        }
    }

    /// Run program `k` on this rank's sentrons and pump until they all ended. Rank 0
    /// also collects every other rank's `StepDone`. Returns the counters of every
    /// sentron this rank knows of (rank 0: all), and rank 0's profile.
    fn step(&mut self, k: usize) -> Result<(Vec<Counters>, Option<OpProfile>), MpiError> {
        let s = self.place.per_rank as usize;
        let ranks = self.place.ranks as usize;
        let me = self.rank;
        self.sh.program.store(k, Ordering::Release);
        self.sh.done.store(0, Ordering::Release);
        {
            let _g = self.sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.sh.run.fetch_add(1, Ordering::AcqRel);
            self.sh.start_cv.notify_all();
        }
        let seq = self.seq;
        let mut all: Vec<Option<Vec<Counters>>> = vec![None; ranks];
        let mut last_heard = vec![Instant::now(); ranks];
        let mut monitor = (me == 0).then(|| Monitor::new(self.place, self.comm.deadlock_grace));
        let mut next_hb = Instant::now() + self.comm.heartbeat;
        let mut last_busy = Instant::now();
        let mut local_done = false;
        let mut profile: Option<OpProfile> = None;
        loop {
            let mut busy = self.flush();
            while let Some((src, f, len)) = self.poll() {
                busy = true;
                last_heard[src as usize] = Instant::now();
                match f {
                    Frame::Status { entries, .. } => {
                        if let Some(m) = monitor.as_mut() {
                            m.update(entries);
                        }
                    }
                    Frame::StepDone {
                        seq: got,
                        counters,
                        output,
                        sent,
                    } if me == 0 => {
                        if got != seq || all[src as usize].is_some() {
                            self.sh.t.abort(MpiError::Protocol {
                                rank: src,
                                detail: format!("the end of step {got} during step {seq}"),
                            });
                            continue;
                        }
                        if let Err(e) = self.take_output(k, src, &output) {
                            self.sh.t.abort(e);
                        }
                        // What the rank sent during the step, and this report (its
                        // share of the logits) on top.
                        self.wire.sent[src as usize] += sent + len as u64;
                        self.wire.blocked_ns[src as usize] +=
                            counters.iter().map(|c| c.host_blocked_ns).sum::<u64>();
                        all[src as usize] = Some(counters);
                    }
                    Frame::Bye { .. } | Frame::Finish | Frame::Done(_) | Frame::Step { .. } => {
                        self.sh.t.abort(MpiError::Protocol {
                            rank: src,
                            detail: format!("an out-of-place frame during step {seq}"),
                        });
                    }
                    other => self.hand_to_transport(src, other),
                }
            }
            let now = Instant::now();
            if now >= next_hb && (me == 0 || !local_done) {
                let entries = self.sh.t.status_entries();
                if me == 0 {
                    if let Some(m) = monitor.as_mut() {
                        m.update(entries);
                    }
                    // Ranks already done with this step wait for the next one and
                    // judge rank 0's silence: it is alive.
                    let hb = Frame::Status {
                        rank: 0,
                        entries: Vec::new(),
                    }
                    .encode();
                    for r in 1..self.place.ranks {
                        self.send(r, hb.clone());
                    }
                } else {
                    let f = Frame::Status { rank: me, entries };
                    self.send(0, f.encode());
                }
                next_hb = now + self.comm.heartbeat;
            }
            if let Some(m) = monitor.as_mut() {
                if let Some(e) = m.check(now) {
                    self.sh.t.abort(e);
                }
            }
            if me == 0 {
                // Rank 0 judges silence: only ranks still in this step must speak.
                for r in 1..ranks {
                    let silent = now.duration_since(last_heard[r]);
                    if all[r].is_none() && silent > self.comm.rank_timeout {
                        let r = r as u32;
                        let err = MpiError::LostRank {
                            rank: r,
                            first: self.place.first(r),
                            last: self.place.last(r),
                            silent_ms: silent.as_millis() as u64,
                            limit_ms: self.comm.rank_timeout.as_millis() as u64,
                            waiting: self.sh.t.waiting_on(r),
                        };
                        self.fail(err.clone(), true);
                        return Err(err);
                    }
                }
            }
            if !local_done && self.sh.done.load(Ordering::Acquire) >= s {
                local_done = true;
                busy = true;
                let mut mine = Vec::with_capacity(s);
                {
                    let mut slots = self.sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
                    for slot in slots.iter_mut() {
                        let (c, p) = slot.take().unwrap_or_default();
                        mine.push(c);
                        match (profile.as_mut(), p) {
                            (Some(acc), Some(p)) => acc.merge(&p),
                            (None, p) => profile = p,
                            _ => {}
                        }
                    }
                }
                self.sh.t.reset_for_step();
                self.wire.blocked_ns[me as usize] +=
                    mine.iter().map(|c| c.host_blocked_ns).sum::<u64>();
                if me == 0 {
                    all[0] = Some(mine);
                } else {
                    // Whatever is still queued for other ranks goes before the report.
                    self.flush();
                    let range = self.io.output_range(k, self.sh.first as usize, s);
                    let output = self
                        .output
                        .read(|b| b.get(range.start * 4..range.end * 4).map(<[u8]>::to_vec))
                        .unwrap_or_default();
                    let sent = self.step_sent;
                    let f = Frame::StepDone {
                        seq,
                        counters: mine,
                        output,
                        sent,
                    };
                    self.send(0, f.encode());
                    self.wire.sent[me as usize] += sent;
                    return Ok((Vec::new(), None));
                }
            }
            if me == 0 && all.iter().all(Option::is_some) {
                let mut counters: Vec<Counters> = all.into_iter().flatten().flatten().collect();
                counters.sort_by_key(|c| c.sentron);
                return Ok((counters, profile));
            }
            self.idle(busy, &mut last_busy);
        }
    }

    /// Rank 0: put rank `src`'s share of the output page into its own copy.
    fn take_output(&self, k: usize, src: u32, bytes: &[u8]) -> Result<(), MpiError> {
        let s = self.place.per_rank as usize;
        let range = self.io.output_range(k, self.place.first(src) as usize, s);
        let proto = |detail: String| MpiError::Protocol { rank: src, detail };
        if bytes.len() != range.len() * 4 {
            return Err(proto(format!(
                "{} output bytes for elements {}..{}",
                bytes.len(),
                range.start,
                range.end
            )));
        }
        self.output
            .write(|b| {
                if let Some(dst) = b.get_mut(range.start * 4..range.end * 4) {
                    dst.copy_from_slice(bytes);
                }
            })
            .map_err(|e| proto(format!("output page: {e}")))
    }

    /// The orderly end: `Bye` to every rank, then wait for theirs and for every send
    /// to complete. Rank 0 first tells the others to end (`Finish`).
    fn end(&mut self) {
        if self.on_home().is_err() || self.lost || self.sent_bye {
            return;
        }
        let ranks = self.place.ranks;
        if self.rank == 0 && !self.finished {
            for r in 1..ranks {
                self.send(r, Frame::Finish.encode());
            }
            self.finished = true;
        }
        let me = self.rank;
        for r in (0..ranks).filter(|&r| r != me) {
            self.send(r, Frame::Bye { rank: me }.encode());
        }
        self.sent_bye = true;
        let others: u64 = (0..ranks)
            .filter(|&r| r != self.rank)
            .fold(0, |m, r| m | (1u64 << r));
        let t0 = Instant::now();
        let mut last_busy = Instant::now();
        loop {
            let mut busy = self.flush();
            while let Some((src, f, _)) = self.poll() {
                busy = true;
                if let Frame::Bye { .. } = f {
                    self.bye_from |= 1u64 << src;
                }
                // Anything else (late heartbeats) no longer matters.
            }
            if self.bye_from & others == others && self.pending.is_empty() {
                return;
            }
            if t0.elapsed() > self.comm.rank_timeout {
                // A rank that never says goodbye: finalizing would wait for ever.
                self.lost = true;
                return;
            }
            self.idle(busy, &mut last_busy);
        }
    }

    /// Host figures since the last call, one line per rank (rank 0 knows every rank's).
    fn wire_lines(&mut self) -> Vec<String> {
        let w = std::mem::replace(
            &mut self.wire,
            Wire {
                sent: vec![0; self.place.ranks as usize],
                blocked_ns: vec![0; self.place.ranks as usize],
                ..Wire::default()
            },
        );
        // Collectives are counted from the start: report the difference.
        self.wire.colls = w.colls;
        let colls = w.colls - std::mem::replace(&mut self.colls_reported, w.colls);
        if w.steps == 0 {
            return Vec::new();
        }
        let steps = w.steps as f64;
        let mut out = vec![format!(
            "mpi: {} ranks x {} sentrons, {} steps, {:.3} ms per step (host wall), {:.1} collectives across ranks per step",
            self.place.ranks,
            self.place.per_rank,
            w.steps,
            w.wall_ns as f64 / 1e6 / steps,
            colls as f64 / steps
        )];
        for r in 0..self.place.ranks as usize {
            out.push(format!(
                "mpi: rank {r}: {:.0} bytes sent per step (C pipe frames, heartbeats, step and output frames), {:.3} ms blocked in the C pipe per step (summed over its {} sentrons)",
                w.sent[r] as f64 / steps,
                w.blocked_ns[r] as f64 / 1e6 / steps,
                self.place.per_rank
            ));
        }
        out
    }

    fn check_alive(&self) -> Result<(), MachineError> {
        self.on_home().map_err(|e| e.to_machine())?;
        match &self.dead {
            Some(e) => Err(e.to_machine()),
            None => Ok(()),
        }
    }
}

impl ProgramMachine for MpiMachine {
    fn sentrons(&self) -> usize {
        self.place.sentrons()
    }

    fn run_program(&mut self, k: usize) -> Result<SessionReport, MachineError> {
        self.check_alive()?;
        if self.rank != 0 {
            return Err(MachineError::Setup(format!(
                "rank {} follows rank 0's steps; only rank 0 runs programs",
                self.rank
            )));
        }
        if k >= self.sh.streams.len() {
            return Err(MachineError::Setup(format!(
                "program {k} of a machine with {}",
                self.sh.streams.len()
            )));
        }
        let t0 = Instant::now();
        self.seq += 1;
        self.step_sent = 0;
        let inputs: Vec<Vec<u8>> = self.inputs.iter().map(|p| p.read(<[u8]>::to_vec)).collect();
        let f = Frame::Step {
            seq: self.seq,
            program: k as u32,
            inputs,
        }
        .encode();
        for r in 1..self.place.ranks {
            self.send(r, f.clone());
        }
        let result = self.step(k);
        self.wire.sent[0] += self.step_sent;
        self.wire.steps += 1;
        let colls = self.sh.t.cross_collectives();
        self.wire.colls = colls;
        let host_wall_ns = t0.elapsed().as_nanos() as u64;
        self.wire.wall_ns += host_wall_ns;
        let (counters, profile) = match result {
            Ok(r) => r,
            Err(e) => {
                if self.dead.is_none() {
                    self.dead = Some(e.clone());
                }
                return Err(e.to_machine());
            }
        };
        if let Some(e) = self.sh.t.mpi_error() {
            self.dead = Some(e.clone());
            return Err(e.to_machine());
        }
        Ok(SessionReport {
            counters,
            host_wall_ns,
            profile,
        })
    }

    fn set_profile(&mut self, on: bool) {
        self.sh.profile.store(on, Ordering::Release);
    }

    fn take_extra_report(&mut self) -> Vec<String> {
        self.wire_lines()
    }

    fn follow(&mut self) -> Result<(), MachineError> {
        self.check_alive()?;
        if self.rank == 0 {
            return Err(MachineError::Setup(
                "rank 0 drives the machine; it has no one to follow".into(),
            ));
        }
        let mut last_busy = Instant::now();
        let mut heard = Instant::now();
        loop {
            let mut busy = self.flush();
            let mut next = None;
            while let Some((src, f, _)) = self.poll() {
                busy = true;
                if src == 0 {
                    heard = Instant::now();
                }
                match f {
                    Frame::Step {
                        seq,
                        program,
                        inputs,
                    } if src == 0 => {
                        next = Some((seq, program as usize, inputs));
                        break;
                    }
                    Frame::Finish if src == 0 => {
                        self.finished = true;
                        self.end();
                        return match self.sh.t.mpi_error() {
                            Some(e) => Err(e.to_machine()),
                            None => Ok(()),
                        };
                    }
                    Frame::Bye { .. } => self.bye_from |= 1u64 << src,
                    // Heartbeats of a step this rank already finished.
                    Frame::Status { .. } => {}
                    Frame::Step { .. }
                    | Frame::Finish
                    | Frame::StepDone { .. }
                    | Frame::Done(_) => {
                        self.sh.t.abort(MpiError::Protocol {
                            rank: src,
                            detail: "an out-of-place frame between steps".into(),
                        });
                    }
                    // C pipe traffic of the next step from a rank that started it.
                    other => self.hand_to_transport(src, other),
                }
            }
            if let Some((seq, k, inputs)) = next {
                if self.fault == Some((self.rank, seq)) {
                    eprintln!(
                        "rank {}: injected fault: exiting at step {seq} (VTPU_MPI_FAULT)",
                        self.rank
                    );
                    std::process::exit(3);
                }
                if k >= self.sh.streams.len() || inputs.len() != self.inputs.len() {
                    let e = MpiError::Protocol {
                        rank: 0,
                        detail: format!(
                            "step {seq}: program {k} of {}, {} inputs of {}",
                            self.sh.streams.len(),
                            inputs.len(),
                            self.inputs.len()
                        ),
                    };
                    self.sh.t.abort(e);
                }
                for (page, bytes) in self.inputs.iter().zip(&inputs) {
                    let ok = page.write(|b| {
                        if b.len() == bytes.len() {
                            b.copy_from_slice(bytes);
                            true
                        } else {
                            false
                        }
                    });
                    if !matches!(ok, Ok(true)) {
                        self.sh.t.abort(MpiError::Protocol {
                            rank: 0,
                            detail: format!(
                                "step {seq}: an input of {} bytes for a page of {}",
                                bytes.len(),
                                page.len_bytes()
                            ),
                        });
                    }
                }
                self.seq = seq;
                self.step_sent = 0;
                let k = k.min(self.sh.streams.len() - 1);
                if let Err(e) = self.step(k) {
                    if self.dead.is_none() {
                        self.dead = Some(e.clone());
                    }
                    return Err(e.to_machine());
                }
                heard = Instant::now();
                last_busy = Instant::now();
                continue;
            }
            if heard.elapsed() > self.follower_timeout {
                let e = MpiError::LostRank {
                    rank: 0,
                    first: 0,
                    last: self.place.last(0),
                    silent_ms: heard.elapsed().as_millis() as u64,
                    limit_ms: self.follower_timeout.as_millis() as u64,
                    waiting: format!("; rank {} waits for its next step", self.rank),
                };
                self.fail(e.clone(), true);
                return Err(e.to_machine());
            }
            self.idle(busy, &mut last_busy);
        }
    }
}

impl Drop for MpiMachine {
    fn drop(&mut self) {
        self.end();
        {
            let _g = self.sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.sh.shutdown.store(true, Ordering::Release);
            self.sh.start_cv.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        if self.lost && self.on_home().is_ok() {
            // A rank is gone or never said goodbye: a clean finalize would wait for it
            // for ever, so the job ends here (the error was already reported).
            // MPI_Abort ends this process too: the error is said here, as the
            // caller will not get to print it.
            let why = self.dead.as_ref().map_or_else(
                || "a rank did not end in order".to_string(),
                |e| e.to_string(),
            );
            eprintln!(
                "error: rank {}: {why}\nvtpu: aborting the MPI job (a rank was lost)",
                self.rank
            );
            self.world.abort(2);
        }
    }
}

/// Every rank loaded the same model file and built the same programs: compared with
/// one all-gather before anything runs, so that mismatched files are an error naming
/// the ranks rather than wrong tokens.
fn check_same_everywhere(
    world: &SimpleCommunicator,
    model: u64,
    programs: &[Program],
) -> Result<(), MpiError> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in programs {
        h.update(&vtpu_isa::encode::encode_program(p));
    }
    let mine = [model, h.digest()];
    let mut all = vec![0u64; 2 * world.size() as usize];
    world.all_gather_into(&mine[..], &mut all[..]);
    let (m0, p0) = (all[0], all[1]);
    let mut bad = Vec::new();
    for (r, pair) in all.chunks_exact(2).enumerate() {
        if pair[0] != m0 {
            bad.push(format!(
                "rank {r} loaded a different model file (checksum {:016x}, rank 0's {m0:016x})",
                pair[0]
            ));
        } else if pair[1] != p0 {
            bad.push(format!(
                "rank {r} built different programs (other options?) than rank 0"
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(MpiError::Setup(bad.join("; ")))
    }
}

fn new_sentron(sh: &Shared, k: usize, li: usize) -> FastSentron<'_, MpiTransport> {
    FastSentron::new(
        sh.first + li as u32,
        &sh.space,
        &sh.t,
        &sh.streams[k][li],
        TranslationCache::new(sh.tlb.0, sh.tlb.1),
        sh.word_limit,
        sh.kern,
    )
}

fn worker(sh: &Shared, li: usize) {
    let mut seen = 0u64;
    let mut sentrons: Vec<_> = (0..sh.streams.len())
        .map(|k| new_sentron(sh, k, li))
        .collect();
    loop {
        {
            let mut g = sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
            while sh.run.load(Ordering::Acquire) == seen && !sh.shutdown.load(Ordering::Acquire) {
                g = sh.start_cv.wait(g).unwrap_or_else(PoisonError::into_inner);
            }
        }
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = sh.run.load(Ordering::Acquire);
        let k = sh.program.load(Ordering::Acquire).min(sentrons.len() - 1);
        let sentron = &mut sentrons[k];
        let (c, p) = if run_once_reporting(&sh.t, sentron, sh.profile.load(Ordering::Acquire)) {
            (sentron.counters.clone(), sentron.take_profile())
        } else {
            let c = Counters::new(sh.first + li as u32);
            *sentron = new_sentron(sh, k, li);
            (c, None)
        };
        // The pump sleeps on the transport: this wakes it to see the sentron's end (it
        // looks at `done`, counted below).
        sh.t.sentron_finished();
        let mut slots = sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.get_mut(li) {
            *s = Some((c, p));
        }
        sh.done.fetch_add(1, Ordering::AcqRel);
    }
}
