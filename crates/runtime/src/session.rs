//! A persistent machine for running one program many times (a token loop): the
//! program is validated and pre-decoded once, and every sentron lives on its own worker
//! thread, pinned to a core, that waits between runs. The calling thread only signals
//! the start and sleeps until the last sentron is done (running sentron 0 on the caller
//! would save one wake-up, but the caller is not pinned, and an unpinned sentron that
//! lands on a worker's core halves both). A run spawns nothing and, once the tile
//! buffers have grown to their working sizes, allocates nothing but its report.
//!
//! Between runs the workers spin briefly on an atomic run number (a token loop calls
//! again within microseconds) when every sentron has a core of its own, then sleep on a
//! condition variable, so an idle session costs no CPU.
//!
//! Semantics are exactly those of [`crate::run`] with the fast executor: registers start
//! at their initial values on every run, pages persist (they are the state), and the
//! fabric is reset between runs. What a run does not return is the final register
//! state (a program's results are its pages).
//!
//! A session may hold several programs over the same pages (a model's one-sequence
//! program and its batched-decode programs): each worker keeps one pre-decoded sentron
//! per program, and [`Session::run_program`] picks the one to run.

use crate::counters::Counters;
use crate::error::{MachineError, Trap};
use crate::fabric::{LocalFabric, Transport};
use crate::fast::{FastSentron, FaultKind, PreWord, StopAt};
use crate::machine::{ExecutorKind, RunConfig};
use crate::profile::OpProfile;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vtpu_isa::Program;
use vtpu_kernels::Kernels;
use vtpu_phext::{PhextSpace, TranslationCache};

/// How long an idle worker spins before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// What one run of a session measured.
#[derive(Clone, Debug)]
pub struct SessionReport {
    pub counters: Vec<Counters>,
    /// Host: wall time from the start signal to the last sentron done.
    pub host_wall_ns: u64,
    /// Per-opcode host time of all sentrons, when profiling is on.
    pub profile: Option<OpProfile>,
}

/// One sentron's counters and profile of the current run.
type SentronResult = (Counters, Option<OpProfile>);

struct Shared {
    space: Arc<PhextSpace>,
    /// Per program, per sentron.
    streams: Vec<Vec<Vec<PreWord>>>,
    /// The program of the current run.
    program: AtomicUsize,
    fabric: LocalFabric,
    cfg: RunConfig,
    kern: Kernels,
    /// Run number: workers start a run when it moves past the last one they ran.
    run: AtomicU64,
    shutdown: AtomicBool,
    profile: AtomicBool,
    /// Idle workers spin before sleeping only when every sentron has a core of its own
    /// (a spinning worker would otherwise take the core a busy one needs).
    spin: bool,
    /// Workers done with the current run.
    done: AtomicUsize,
    lock: Mutex<Vec<Option<SentronResult>>>,
    start_cv: Condvar,
    done_cv: Condvar,
}

/// Something that runs a set of programs over one phext space, many times: an
/// in-process [`Session`], or this process's part of a machine whose sentrons are spread
/// over several processes (the MPI transport, crate `vtpu-mpi`). A model drives either
/// through this trait and does not know which it has.
pub trait ProgramMachine: Send {
    /// Sentrons of the whole machine (on every process).
    fn sentrons(&self) -> usize;
    /// Run program `k` once on every sentron; pages keep what it wrote. The report's
    /// counters are those of every sentron of the machine, in sentron order.
    fn run_program(&mut self, k: usize) -> Result<SessionReport, MachineError>;
    /// Profile the following runs per opcode (host time; slower), or stop.
    fn set_profile(&mut self, on: bool);
    /// Machine-specific figures of the runs since the last call, one line each (the
    /// MPI machine: bytes sent to other processes, time blocked on them); none here.
    fn take_extra_report(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// On a process that does not drive the machine: run whatever the driving process
    /// asks for until it ends the machine. A machine driven from here has nothing to
    /// follow (an error).
    fn follow(&mut self) -> Result<(), MachineError> {
        Err(MachineError::Setup(
            "this machine is driven by this process; there is nothing to follow".into(),
        ))
    }
}

impl ProgramMachine for Session {
    fn sentrons(&self) -> usize {
        Session::sentrons(self)
    }
    fn run_program(&mut self, k: usize) -> Result<SessionReport, MachineError> {
        Session::run_program(self, k)
    }
    fn set_profile(&mut self, on: bool) {
        Session::set_profile(self, on)
    }
}

/// A program loaded on N sentrons, ready to run many times.
pub struct Session {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Session {
    /// Validate and pre-decode `program` for `cfg.sentrons` sentrons over `space`, and
    /// start the worker threads. Only the fast executor runs in a session.
    pub fn new(
        program: &Program,
        space: Arc<PhextSpace>,
        cfg: &RunConfig,
    ) -> Result<Session, MachineError> {
        Session::with_programs(std::slice::from_ref(program), space, cfg)
    }

    /// Like [`Session::new`] for several programs over the same pages; run number `k`
    /// with [`Session::run_program`].
    pub fn with_programs(
        programs: &[Program],
        space: Arc<PhextSpace>,
        cfg: &RunConfig,
    ) -> Result<Session, MachineError> {
        let n = cfg.sentrons;
        if programs.is_empty() {
            return Err(MachineError::Setup("a session needs a program".into()));
        }
        if cfg.executor != ExecutorKind::Fast {
            return Err(MachineError::Setup(
                "a session runs the fast executor only".into(),
            ));
        }
        if n == 0 || n > vtpu_isa::MAX_SENTRONS {
            return Err(MachineError::Setup(format!(
                "sentrons must be 1..={}, got {n}",
                vtpu_isa::MAX_SENTRONS
            )));
        }
        if !cfg.tlb_sets.is_power_of_two() || cfg.tlb_ways == 0 {
            return Err(MachineError::Setup(format!(
                "translation cache needs a power-of-two set count and at least one way, got {}x{}",
                cfg.tlb_sets, cfg.tlb_ways
            )));
        }
        let mut streams = Vec::with_capacity(programs.len());
        for program in programs {
            crate::machine::validate_for(program, n, space.part_limit())?;
            streams.push(crate::machine::predecode(program, 0..n as u32));
        }
        let kern = cfg
            .kernel_level
            .and_then(Kernels::new)
            .unwrap_or_else(Kernels::current);
        let shared = Arc::new(Shared {
            space,
            streams,
            program: AtomicUsize::new(0),
            fabric: LocalFabric::new(n),
            cfg: cfg.clone(),
            kern,
            run: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            profile: AtomicBool::new(false),
            spin: std::thread::available_parallelism().is_ok_and(|c| n <= c.get()),
            done: AtomicUsize::new(0),
            lock: Mutex::new(vec![None; n]),
            start_cv: Condvar::new(),
            done_cv: Condvar::new(),
        });
        let cores = if cfg.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        // Workers join `session` as they start: if a later one cannot start, dropping
        // `session` shuts down and joins the ones already running.
        let mut session = Session {
            shared,
            workers: Vec::with_capacity(n),
        };
        for i in 0..n {
            let sh = Arc::clone(&session.shared);
            let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
            let h = std::thread::Builder::new()
                .name(format!("sentron-{i}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    worker(&sh, i as u32);
                })
                .map_err(|e| MachineError::Setup(format!("cannot start sentron {i}: {e}")))?;
            session.workers.push(h);
        }
        Ok(session)
    }

    pub fn sentrons(&self) -> usize {
        self.shared.cfg.sentrons
    }

    /// Programs this session holds.
    pub fn programs(&self) -> usize {
        self.shared.streams.len()
    }

    /// Profile every following run per opcode (host time; slower) or stop profiling.
    pub fn set_profile(&mut self, on: bool) {
        self.shared.profile.store(on, Ordering::Release);
    }

    /// Run the (first) program once on every sentron; pages keep what it wrote.
    pub fn run(&mut self) -> Result<SessionReport, MachineError> {
        self.run_program(0)
    }

    /// Run program `k` once on every sentron.
    pub fn run_program(&mut self, k: usize) -> Result<SessionReport, MachineError> {
        let sh = &*self.shared;
        if k >= sh.streams.len() {
            return Err(MachineError::Setup(format!(
                "program {k} of a session with {}",
                sh.streams.len()
            )));
        }
        let n = sh.cfg.sentrons;
        sh.program.store(k, Ordering::Release);
        sh.fabric.reset();
        sh.done.store(0, Ordering::Release);
        let t0 = Instant::now();
        {
            let _g = sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
            sh.run.fetch_add(1, Ordering::AcqRel);
            sh.start_cv.notify_all();
        }
        let mut slots = sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while sh.done.load(Ordering::Acquire) < n {
            slots = sh
                .done_cv
                .wait(slots)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let host_wall_ns = t0.elapsed().as_nanos() as u64;
        let mut counters = Vec::with_capacity(n);
        let mut profile: Option<OpProfile> = None;
        for s in slots.iter_mut() {
            let (c, p) = s.take().unwrap_or_default();
            counters.push(c);
            match (profile.as_mut(), p) {
                (Some(acc), Some(p)) => acc.merge(&p),
                (None, p) => profile = p,
                _ => {}
            }
        }
        drop(slots);
        if let Some(err) = sh.fabric.error() {
            return Err(err);
        }
        Ok(SessionReport {
            counters,
            host_wall_ns,
            profile,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        {
            let _g = self
                .shared
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.start_cv.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Run `s` once from its initial state and tell `t` how it ended: halted, trapped (the
/// trap is recorded, which stops the other sentrons) or panicked (a simulator bug,
/// recorded as an internal error naming the sentron), exactly as `machine::run_one`
/// does. Its host time goes to `s.counters.host_ns`. Returns false when it panicked
/// (its state is then not trusted again). Shared by every runner of persistent
/// sentrons: [`Session`] and the MPI machine (`vtpu-mpi`).
pub fn run_once_reporting<T: Transport>(t: &T, s: &mut FastSentron<'_, T>, profile: bool) -> bool {
    let id = s.id;
    let t0 = Instant::now();
    s.reset();
    s.set_profile(profile);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run()));
    let ok = outcome.is_ok();
    match outcome {
        Ok(Ok(())) => t.halt(id),
        Ok(Err(stop)) => report_stop(t, id, stop),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            t.fail(
                id,
                MachineError::Setup(format!("internal error in sentron {id}: {msg}")),
            );
        }
    }
    s.counters.host_ns = t0.elapsed().as_nanos() as u64;
    ok
}

fn report_stop<T: Transport>(t: &T, id: u32, stop: StopAt) {
    match *stop.fault {
        FaultKind::Stopped => {}
        FaultKind::Trap(kind, coord) => t.fail(
            id,
            MachineError::Trap(Box::new(Trap {
                sentron: id,
                pc: stop.pc,
                op: vtpu_isa::disasm::format_op(&stop.op),
                coord,
                kind,
            })),
        ),
    }
}

fn new_sentron(sh: &Shared, k: usize, id: u32) -> FastSentron<'_, LocalFabric> {
    FastSentron::new(
        id,
        &sh.space,
        &sh.fabric,
        &sh.streams[k][id as usize],
        TranslationCache::new(sh.cfg.tlb_sets, sh.cfg.tlb_ways),
        sh.cfg.word_limit,
        sh.kern,
    )
}

fn worker(sh: &Shared, id: u32) {
    let mut seen = 0u64;
    // One sentron for the session's whole life: its registers are reset between runs,
    // its tile buffers and translation cache are kept, so a token loop allocates
    // nothing here (only a sentron that panicked is rebuilt).
    let mut sentrons: Vec<_> = (0..sh.streams.len())
        .map(|k| new_sentron(sh, k, id))
        .collect();
    loop {
        // Spin, then sleep, until a new run starts or the session ends.
        let spin_until = Instant::now() + if sh.spin { SPIN } else { Duration::ZERO };
        while sh.run.load(Ordering::Acquire) == seen
            && !sh.shutdown.load(Ordering::Acquire)
            && Instant::now() < spin_until
        {
            std::hint::spin_loop();
        }
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
        // Whatever happens, the fabric and the caller must hear of this run's end: a
        // worker that vanished would leave its partners waiting and `run` sleeping.
        let (c, p) = if run_once_reporting(&sh.fabric, sentron, sh.profile.load(Ordering::Acquire))
        {
            (sentron.counters.clone(), sentron.take_profile())
        } else {
            let c = Counters::new(id);
            *sentron = new_sentron(sh, k, id);
            (c, None)
        };
        let mut slots = sh.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.get_mut(id as usize) {
            *s = Some((c, p));
        }
        sh.done.fetch_add(1, Ordering::AcqRel);
        sh.done_cv.notify_all();
    }
}
