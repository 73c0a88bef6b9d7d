//! The C-pipe fabric: messages, barriers, reductions and broadcasts between sentron
//! threads, with deadlock detection.
//!
//! All coordination state sits behind one mutex. C-pipe ops are tile-granular and rare
//! next to the work between them, so one lock costs little, and it buys a simple proof
//! that deadlock detection is exact: a sentron's status changes only under the lock,
//! and whoever satisfies a waiter marks it running before releasing the lock, so a set
//! of blocked sentrons that wait only for each other (or for finished ones) seen under
//! the lock can never be woken (see `waitgraph.rs`), whatever the others do.
//!
//! The [`Transport`] trait is the seam for other backends (e.g. MPI across hosts).

use crate::budget::{MemBudget, OverBudget};
use crate::error::{Deadlock, MachineError, Waiter};
use crate::waitgraph::WaitGraph;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// How long a blocked sentron spins before it sleeps (see `LocalFabric::wait`).
pub const WAIT_SPIN: std::time::Duration = std::time::Duration::from_micros(100);
/// Within [`WAIT_SPIN`], how long it polls without yielding its core.
const WAIT_PAUSE: std::time::Duration = std::time::Duration::from_micros(20);

/// A message payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Scalar(i64),
    Tile {
        rows: u32,
        cols: u32,
        data: Vec<f32>,
    },
}

impl Message {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::Scalar(_) => "scalar",
            Message::Tile { .. } => "tile",
        }
    }
    pub fn bytes(&self) -> u64 {
        match self {
            Message::Scalar(_) => 8,
            Message::Tile { data, .. } => 4 * data.len() as u64,
        }
    }
}

/// Most payload bytes that may wait in one sender -> receiver mailbox. A program that
/// sends faster than its partner receives traps at this point instead of exhausting
/// host memory.
pub const MAX_MAILBOX_BYTES: u64 = 1 << 28;

/// The messages from one sentron to another, in order, with their pending byte count.
#[derive(Clone, Debug, Default)]
pub struct Mailbox {
    queue: VecDeque<Message>,
    bytes: u64,
}

impl Mailbox {
    /// Queue a message; `Err(pending bytes)` if that would pass [`MAX_MAILBOX_BYTES`].
    pub fn push(&mut self, msg: Message) -> Result<(), u64> {
        let b = msg.bytes();
        if self.bytes + b > MAX_MAILBOX_BYTES {
            return Err(self.bytes);
        }
        self.bytes += b;
        self.queue.push_back(msg);
        Ok(())
    }
    pub fn pop(&mut self) -> Option<Message> {
        let m = self.queue.pop_front()?;
        self.bytes -= m.bytes();
        Some(m)
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
    pub fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

/// Which collective a sentron entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollKind {
    Barrier,
    /// All-reduce with `vtpu_isa::word::REDUCE_SUM` or `REDUCE_MAX`, or the all-gather
    /// `REDUCE_CAT`.
    Reduce(u8),
    /// Broadcast from the root sentron.
    Cast(u32),
}

impl CollKind {
    /// As wait reports and mismatch errors name it (`CREDUCE sum`, `CCAST from @1`).
    pub fn name(self) -> String {
        match self {
            CollKind::Barrier => "CBAR".into(),
            CollKind::Reduce(0) => "CREDUCE sum".into(),
            CollKind::Reduce(vtpu_isa::word::REDUCE_CAT) => "CREDUCE cat".into(),
            CollKind::Reduce(_) => "CREDUCE max".into(),
            CollKind::Cast(r) => format!("CCAST from @{r}"),
        }
    }
}

/// Most buffers [`LocalFabric`] keeps for reuse (two sentrons' contributions and a
/// result in flight, plus one).
const POOL_BUFFERS: usize = 4;

/// Puts `v` in `pool` unless the pool is full (then `v` is freed).
fn recycle(pool: &mut Vec<Vec<f32>>, mut v: Vec<f32>) {
    if pool.len() < POOL_BUFFERS && v.capacity() > 0 {
        v.clear();
        pool.push(v);
    }
}

/// A tile contributed to (or produced by) a collective.
#[derive(Clone, Debug, PartialEq)]
pub struct CollTile {
    pub rows: u32,
    pub cols: u32,
    pub data: Vec<f32>,
}

/// Why a blocked sentron is waiting, for deadlock reports. The op is kept as decoded
/// and printed only when a report needs it: a message or collective in a token loop
/// must not format text (or allocate) every time it waits.
#[derive(Clone, Copy, Debug)]
pub struct WaitSite {
    pub pc: u32,
    pub op: vtpu_isa::Op,
}

/// The sentron cannot go on: the machine stopped (another sentron trapped, or a
/// deadlock was found and recorded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

/// A message could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The mailbox holds this many bytes already ([`MAX_MAILBOX_BYTES`]).
    MailboxFull(u64),
    /// Queuing it would pass the machine's memory budget.
    OverBudget(OverBudget),
}

/// A collective failed for this sentron: it should trap with this detail.
#[derive(Clone, Debug, PartialEq)]
pub enum CollError {
    Stopped,
    Mismatch(String),
}

/// The C pipe's view of the other sentrons.
pub trait Transport: Sync {
    fn sentrons(&self) -> usize;
    /// Queue a message for `to`; never blocks. Fails when the mailbox is full
    /// ([`MAX_MAILBOX_BYTES`]) or the message would pass the memory budget.
    fn send(&self, from: u32, to: u32, msg: Message) -> Result<(), SendError>;
    /// The next message from `from` to `me`, blocking until there is one.
    fn recv(&self, me: u32, from: u32, site: &WaitSite) -> Result<Message, Stopped>;
    /// Enter a collective of group `members` (a resolved bit mask that contains `me`).
    /// Returns the result tile (reductions, broadcasts) once every member arrived.
    fn collective(
        &self,
        me: u32,
        members: u64,
        kind: CollKind,
        contribution: Option<CollTile>,
        site: &WaitSite,
    ) -> Result<Option<Arc<CollTile>>, CollError>;
    /// This sentron finished normally.
    fn halt(&self, me: u32);
    /// This sentron stopped the machine with an error.
    fn fail(&self, me: u32, err: MachineError);
    /// Has the machine stopped (trap or deadlock elsewhere)?
    fn stopped(&self) -> bool;
    /// The first error recorded, if any.
    fn error(&self) -> Option<MachineError>;
    /// Sentron `me`'s tile buffers now hold `bytes`: charge (or give back) the
    /// difference to what they were charged (see `budget.rs`). On `Err` nothing
    /// changed. The default is a transport without a budget.
    fn settle_tiles(&self, me: u32, bytes: u64) -> Result<(), OverBudget> {
        let _ = (me, bytes);
        Ok(())
    }
    /// Charge `bytes` of pages a program allocates (SALLOC); `release_pages` gives
    /// them back (SFREE).
    fn charge_pages(&self, bytes: u64) -> Result<(), OverBudget> {
        let _ = bytes;
        Ok(())
    }
    fn release_pages(&self, bytes: u64) {
        let _ = bytes;
    }
    /// An empty buffer to build a collective contribution in: one the transport got
    /// back from an earlier collective when it keeps them (see [`LocalFabric`]), so a
    /// large all-gather does not fault fresh pages in every time. The default is new.
    fn contribution_buffer(&self) -> Vec<f32> {
        Vec::new()
    }
}

#[derive(Clone, Debug)]
enum Status {
    Running,
    Blocked { site: WaitSite, on: Wait },
    Halted,
    Failed,
}

#[derive(Clone, Debug)]
enum Wait {
    Recv { from: u32 },
    Collective { members: u64, kind: CollKind },
}

#[derive(Default)]
struct Group {
    generation: u64,
    kind: Option<CollKind>,
    arrived: u64,
    contributions: Vec<Option<CollTile>>,
    result: Option<Arc<CollTile>>,
    /// Set when the completing member found the contributions inconsistent.
    failed: Option<String>,
}

struct State {
    /// Mailboxes, indexed `to * n + from`, FIFO per pair.
    mail: Vec<Mailbox>,
    status: Vec<Status>,
    groups: HashMap<u64, Group>,
    error: Option<MachineError>,
}

/// The in-process transport: sentron threads of one machine.
pub struct LocalFabric {
    n: usize,
    /// The machine's memory budget: tile buffers (`held`), messages waiting in
    /// mailboxes and SALLOC pages are charged to it.
    budget: Arc<MemBudget>,
    /// Bytes each sentron's tile buffers are charged for (only that sentron writes it).
    held: Vec<AtomicU64>,
    state: Mutex<State>,
    /// Buffers of finished collectives (spent contributions, results every member has
    /// copied), at most [`POOL_BUFFERS`], for the next contributions and gather results:
    /// a prefill all-gather moves megabytes, and a fresh allocation of that size is
    /// fresh pages to fault in on every collective. A leaf lock: taken alone, or inside
    /// `state`, never the other way round.
    pool: Mutex<Vec<Vec<f32>>>,
    wake: Vec<Condvar>,
    /// Bumped (under the lock) every time a sentron is woken; a waiter spins on it for a
    /// short while before sleeping on its condition variable (see `wait`).
    pokes: Vec<AtomicU64>,
    /// Set (under the lock) while a sentron sleeps on its condition variable: a wake-up
    /// notifies only then, since a notification is a futex system call even with nobody
    /// asleep (about a microsecond on a VM, made with the lock held, on every collective).
    sleeping: Vec<AtomicBool>,
    /// Spin before sleeping only when every sentron can have a core of its own: with
    /// more sentrons than cores a spinning waiter takes the core its partner needs
    /// (measured: 15-35x slower barriers and message rings when oversubscribed).
    spin: bool,
    stopped: AtomicBool,
}

impl LocalFabric {
    /// A fabric without a memory limit.
    pub fn new(n: usize) -> LocalFabric {
        LocalFabric::with_budget(n, Arc::new(MemBudget::unlimited()))
    }

    /// A fabric whose sentrons draw tile, message and page memory from `budget`.
    pub fn with_budget(n: usize, budget: Arc<MemBudget>) -> LocalFabric {
        LocalFabric {
            n,
            budget,
            held: (0..n).map(|_| AtomicU64::new(0)).collect(),
            state: Mutex::new(State {
                mail: vec![Mailbox::default(); n * n],
                status: vec![Status::Running; n],
                groups: HashMap::new(),
                error: None,
            }),
            pool: Mutex::new(Vec::new()),
            wake: (0..n).map(|_| Condvar::new()).collect(),
            pokes: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sleeping: (0..n).map(|_| AtomicBool::new(false)).collect(),
            spin: std::thread::available_parallelism().is_ok_and(|c| n <= c.get()),
            stopped: AtomicBool::new(false),
        }
    }

    /// Make a finished fabric ready for another run of the same sentrons (a persistent
    /// session): empty mailboxes, everyone running, no error. Only call it when no
    /// sentron is inside a fabric call (between runs).
    pub fn reset(&self) {
        let mut st = self.lock();
        let waiting: u64 = st.mail.iter().map(|m| m.bytes).sum();
        self.budget.release(waiting);
        st.mail.iter_mut().for_each(Mailbox::clear);
        st.status.iter_mut().for_each(|s| *s = Status::Running);
        st.groups.clear();
        st.error = None;
        self.stopped.store(false, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A sentron thread that panicked (a simulator bug) poisons the lock; the state
        // is still consistent enough to report, so carry on rather than cascade.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait until someone wakes `me` (or a spurious wake-up: callers re-check). Spins
    /// for up to [`WAIT_SPIN`] outside the lock first: the partner of a collective in a
    /// token loop usually arrives within microseconds, and a futex sleep + wake costs
    /// 5-50 us on a VM (far more when the core is given to another process meanwhile).
    /// No wake-up can be lost: pokes and notifications happen under the lock, and the
    /// last check before sleeping is made under it.
    fn wait<'a>(&'a self, me: u32, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let poke = &self.pokes[me as usize];
        let seen = poke.load(Ordering::Acquire);
        drop(g);
        if self.spin {
            // Busy-poll for WAIT_PAUSE (a partner usually arrives within a few
            // microseconds, and a sched_yield costs about one under KVM), then keep
            // polling but yield the core each time, so another process (or sentron)
            // that needs it gets it, until WAIT_SPIN.
            let start = std::time::Instant::now();
            let mut polls = 0u32;
            while poke.load(Ordering::Acquire) == seen && !self.stopped.load(Ordering::Acquire) {
                polls += 1;
                if !polls.is_multiple_of(16) {
                    std::hint::spin_loop();
                    continue;
                }
                let t = start.elapsed();
                if t >= WAIT_SPIN {
                    break;
                }
                if t >= WAIT_PAUSE {
                    std::thread::yield_now();
                }
            }
        }
        let g = self.lock();
        if poke.load(Ordering::Acquire) != seen || self.stopped.load(Ordering::Acquire) {
            return g;
        }
        let flag = &self.sleeping[me as usize];
        flag.store(true, Ordering::Release);
        let g = self.wake[me as usize]
            .wait(g)
            .unwrap_or_else(|e| e.into_inner());
        flag.store(false, Ordering::Release);
        g
    }

    /// Wake sentron `i` (call with the lock held).
    fn wake_one(&self, i: usize) {
        self.pokes[i].fetch_add(1, Ordering::AcqRel);
        // `sleeping` is set and cleared under the lock, which the caller holds: a
        // sentron about to sleep has not released it yet, so none is missed.
        if self.sleeping[i].load(Ordering::Acquire) {
            self.wake[i].notify_one();
        }
    }

    fn stop_all(&self, st: &mut State, err: MachineError) {
        if st.error.is_none() {
            st.error = Some(err);
        }
        self.stopped.store(true, Ordering::Release);
        for cv in &self.wake {
            cv.notify_all();
        }
        for p in &self.pokes {
            p.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Called under the lock after a sentron blocked or finished: if some sentrons can
    /// never proceed (a cycle in the wait-for graph, or a wait for a finished sentron;
    /// see `waitgraph.rs`), record the deadlock and stop the machine, even while
    /// others still run. Returns true if it did. Allocation-free unless it reports.
    fn check_deadlock(&self, st: &mut State) -> bool {
        let mut g = WaitGraph::new(self.n);
        for (i, s) in st.status.iter().enumerate() {
            match s {
                Status::Running => g.set_running(i),
                Status::Halted | Status::Failed => g.set_finished(i),
                Status::Blocked { on, .. } => {
                    let waits_for = match on {
                        Wait::Recv { from } => 1u64.checked_shl(*from).unwrap_or(0),
                        Wait::Collective { members, .. } => {
                            let arrived = st.groups.get(members).map_or(0, |g| g.arrived);
                            members & !arrived & !(1u64 << i)
                        }
                    };
                    g.set_blocked(i, waits_for);
                }
            }
        }
        let stuck = g.stuck();
        if stuck == 0 {
            return false;
        }
        let waiters = g
            .ids(stuck)
            .into_iter()
            .filter_map(|i| match &st.status[i as usize] {
                Status::Blocked { site, on } => Some(Waiter {
                    sentron: i,
                    pc: site.pc,
                    op: vtpu_isa::disasm::format_op(&site.op),
                    waits_for: describe_wait(on, &st.status, st.groups.get(&members_of(on))),
                }),
                _ => None,
            })
            .collect();
        let live = st
            .status
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Status::Running | Status::Blocked { .. }))
            .fold(0u64, |m, (i, _)| m | (1u64 << i));
        let dl = Deadlock {
            waiters,
            witness: g.witness(stuck).map(|w| w.text()).unwrap_or_default(),
            still_running: g.ids(live & !stuck),
        };
        self.stop_all(st, MachineError::Deadlock(dl));
        true
    }
}

fn members_of(w: &Wait) -> u64 {
    match w {
        Wait::Collective { members, .. } => *members,
        Wait::Recv { .. } => 0,
    }
}

fn status_text(s: &Status) -> String {
    match s {
        Status::Running => "running".into(),
        Status::Halted => "halted".into(),
        Status::Failed => "stopped by an error".into(),
        Status::Blocked { site, .. } => format!(
            "blocked at pc {} in {}",
            site.pc,
            vtpu_isa::disasm::format_op(&site.op)
        ),
    }
}

fn describe_wait(on: &Wait, status: &[Status], group: Option<&Group>) -> String {
    match on {
        Wait::Recv { from } => format!(
            "a message from sentron {from} ({})",
            status_text(&status[*from as usize])
        ),
        Wait::Collective { members, kind } => {
            let arrived = group.map(|g| g.arrived).unwrap_or(0);
            let missing: Vec<String> = (0..status.len())
                .filter(|&i| members & (1 << i) != 0 && arrived & (1 << i) == 0)
                .map(|i| format!("sentron {i} ({})", status_text(&status[i])))
                .collect();
            format!(
                "{} of group {}: still missing {}",
                kind.name(),
                group_text(*members),
                missing.join(", ")
            )
        }
    }
}

/// `{0,1,3}`.
pub fn group_text(mask: u64) -> String {
    let ids: Vec<String> = (0..64)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(|i| i.to_string())
        .collect();
    format!("{{{}}}", ids.join(","))
}

/// Combine contributions in sentron order (deterministic, so every executor agrees
/// bit for bit). `contributions[i]` is sentron i's tile (None: not a member, or no tile).
/// Public so that other transports (the MPI one in `crates/mpi`) combine with exactly
/// this code and so produce the same bits.
pub fn combine(
    kind: CollKind,
    contributions: &[Option<CollTile>],
) -> Result<Option<CollTile>, String> {
    combine_owned(kind, contributions.to_vec())
}

/// CREDUCE cat: the tiles `(sentron, rows, cols, data)` (in sentron order) side by side,
/// row by row: `(rows, total cols, data)`, `None` for no tile. Every tile must have the
/// same rows; the result is no larger than the contributions together.
pub fn concat_cols(
    parts: &[(usize, u32, u32, &[f32])],
) -> Result<Option<(u32, u32, Vec<f32>)>, String> {
    concat_cols_into(parts, Vec::new())
}

/// [`concat_cols`] into `out` (cleared first; its allocation is reused).
fn concat_cols_into(
    parts: &[(usize, u32, u32, &[f32])],
    mut out: Vec<f32>,
) -> Result<Option<(u32, u32, Vec<f32>)>, String> {
    let Some(&(_, rows, _, _)) = parts.first() else {
        return Ok(None);
    };
    let mut cols: u32 = 0;
    for &(i, r, c, data) in parts {
        if r != rows {
            return Err(format!(
                "sentron {i} contributed a {r}x{c} tile to CREDUCE cat, others have {rows} rows"
            ));
        }
        if data.len() as u64 != u64::from(r) * u64::from(c) {
            return Err(format!(
                "sentron {i} contributed {} elements for a {r}x{c} tile",
                data.len()
            ));
        }
        cols = cols
            .checked_add(c)
            .ok_or_else(|| "CREDUCE cat: more than 2^32 columns".to_string())?;
    }
    out.clear();
    let len = rows as usize * cols as usize;
    out.try_reserve_exact(len)
        .map_err(|_| format!("CREDUCE cat: cannot allocate a {rows}x{cols} result"))?;
    for r in 0..rows as usize {
        for &(_, _, c, data) in parts {
            let c = c as usize;
            out.extend_from_slice(&data[r * c..(r + 1) * c]);
        }
    }
    Ok(Some((rows, cols, out)))
}

/// [`combine`] taking the contributions: the first one becomes the result's buffer
/// instead of a copy (a prefill all-gather moves megabytes per collective).
pub fn combine_owned(
    kind: CollKind,
    contributions: Vec<Option<CollTile>>,
) -> Result<Option<CollTile>, String> {
    combine_pooled(kind, contributions, &mut Vec::new())
}

/// [`combine_owned`] that takes a gather's result buffer from `pool` and gives the
/// contributions it is done with back to it (same results).
fn combine_pooled(
    kind: CollKind,
    mut contributions: Vec<Option<CollTile>>,
    pool: &mut Vec<Vec<f32>>,
) -> Result<Option<CollTile>, String> {
    match kind {
        CollKind::Barrier => Ok(None),
        CollKind::Cast(root) => contributions
            .get_mut(root as usize)
            .and_then(|c| c.take())
            .map(Some)
            .ok_or_else(|| format!("root sentron {root} contributed no tile")),
        CollKind::Reduce(vtpu_isa::word::REDUCE_CAT) => {
            let parts: Vec<(usize, u32, u32, &[f32])> = contributions
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (i, c.rows, c.cols, &c.data[..])))
                .collect();
            let out = pool.pop().unwrap_or_default();
            let r = concat_cols_into(&parts, out)?;
            for c in contributions.into_iter().flatten() {
                recycle(pool, c.data);
            }
            Ok(r.map(|(rows, cols, data)| CollTile { rows, cols, data }))
        }
        CollKind::Reduce(op) => {
            let mut acc: Option<CollTile> = None;
            for (i, c) in contributions.into_iter().enumerate() {
                let Some(c) = c else { continue };
                match &mut acc {
                    None => acc = Some(c),
                    Some(a) => {
                        if (a.rows, a.cols) != (c.rows, c.cols) {
                            return Err(format!(
                                "sentron {i} contributed a {}x{} tile, others {}x{}",
                                c.rows, c.cols, a.rows, a.cols
                            ));
                        }
                        if op == vtpu_isa::word::REDUCE_SUM {
                            a.data.iter_mut().zip(&c.data).for_each(|(x, y)| *x += *y);
                        } else {
                            a.data
                                .iter_mut()
                                .zip(&c.data)
                                .for_each(|(x, y)| *x = x.max(*y));
                        }
                        recycle(pool, c.data);
                    }
                }
            }
            Ok(acc)
        }
    }
}

impl Transport for LocalFabric {
    fn sentrons(&self) -> usize {
        self.n
    }

    fn send(&self, from: u32, to: u32, msg: Message) -> Result<(), SendError> {
        let bytes = msg.bytes();
        // A waiting message is charged until it is received (then the receiver's tile
        // buffers count it): a sender that outruns its receiver meets the budget (or the
        // mailbox cap) instead of exhausting memory.
        self.budget.charge(bytes).map_err(SendError::OverBudget)?;
        let mut st = self.lock();
        if let Err(pending) = st.mail[to as usize * self.n + from as usize].push(msg) {
            self.budget.release(bytes);
            return Err(SendError::MailboxFull(pending));
        }
        if let Status::Blocked {
            on: Wait::Recv { from: f },
            ..
        } = st.status[to as usize]
        {
            if f == from {
                st.status[to as usize] = Status::Running;
                self.wake_one(to as usize);
            }
        }
        Ok(())
    }

    fn recv(&self, me: u32, from: u32, site: &WaitSite) -> Result<Message, Stopped> {
        let slot = me as usize * self.n + from as usize;
        let mut st = self.lock();
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return Err(Stopped);
            }
            if let Some(m) = st.mail[slot].pop() {
                st.status[me as usize] = Status::Running;
                // The receiver counts it from now on (its next settlement).
                self.budget.release(m.bytes());
                return Ok(m);
            }
            st.status[me as usize] = Status::Blocked {
                site: *site,
                on: Wait::Recv { from },
            };
            if self.check_deadlock(&mut st) {
                return Err(Stopped);
            }
            st = self.wait(me, st);
        }
    }

    fn collective(
        &self,
        me: u32,
        members: u64,
        kind: CollKind,
        contribution: Option<CollTile>,
        site: &WaitSite,
    ) -> Result<Option<Arc<CollTile>>, CollError> {
        let mut st = self.lock();
        if self.stopped.load(Ordering::Acquire) {
            return Err(CollError::Stopped);
        }
        let n = self.n;
        let g = st.groups.entry(members).or_default();
        if g.arrived != 0 {
            if let Some(k) = g.kind {
                if k != kind {
                    return Err(CollError::Mismatch(format!(
                        "this sentron entered {} while others are in {}",
                        kind.name(),
                        k.name()
                    )));
                }
            }
        }
        if g.arrived == 0 {
            g.kind = Some(kind);
            g.contributions.clear();
            g.contributions.resize(n, None);
        }
        g.arrived |= 1 << me;
        g.contributions[me as usize] = contribution;
        let my_gen = g.generation;
        if g.arrived == members {
            let taken = std::mem::replace(&mut g.contributions, vec![None; n]);
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            // Every member copied the last result out before entering this collective
            // (it is the same group), unless one is still waking up: then it is freed.
            if let Some(old) = g.result.take().and_then(|r| Arc::try_unwrap(r).ok()) {
                recycle(&mut pool, old.data);
            }
            let outcome = combine_pooled(kind, taken, &mut pool);
            drop(pool);
            g.arrived = 0;
            g.generation += 1;
            match outcome {
                Ok(r) => {
                    g.result = r.map(Arc::new);
                    g.failed = None;
                }
                Err(e) => {
                    g.result = None;
                    g.failed = Some(e.clone());
                }
            }
            let (result, failed) = (g.result.clone(), g.failed.clone());
            for i in 0..n {
                if members & (1 << i) != 0 && i != me as usize {
                    st.status[i] = Status::Running;
                    self.wake_one(i);
                }
            }
            return match failed {
                Some(e) => Err(CollError::Mismatch(e)),
                None => Ok(result),
            };
        }
        st.status[me as usize] = Status::Blocked {
            site: *site,
            on: Wait::Collective { members, kind },
        };
        if self.check_deadlock(&mut st) {
            return Err(CollError::Stopped);
        }
        loop {
            st = self.wait(me, st);
            if self.stopped.load(Ordering::Acquire) {
                return Err(CollError::Stopped);
            }
            let g = st.groups.entry(members).or_default();
            if g.generation != my_gen {
                // The generation that completed is ours: the next one cannot complete
                // without us, so `result` still holds our result.
                let (result, failed) = (g.result.clone(), g.failed.clone());
                st.status[me as usize] = Status::Running;
                return match failed {
                    Some(e) => Err(CollError::Mismatch(e)),
                    None => Ok(result),
                };
            }
        }
    }

    fn halt(&self, me: u32) {
        let mut st = self.lock();
        st.status[me as usize] = Status::Halted;
        self.check_deadlock(&mut st);
    }

    fn fail(&self, me: u32, err: MachineError) {
        let mut st = self.lock();
        st.status[me as usize] = Status::Failed;
        self.stop_all(&mut st, err);
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn error(&self) -> Option<MachineError> {
        self.lock().error.clone()
    }

    fn contribution_buffer(&self) -> Vec<f32> {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    fn settle_tiles(&self, me: u32, bytes: u64) -> Result<(), OverBudget> {
        let Some(h) = self.held.get(me as usize) else {
            return Ok(());
        };
        let was = h.load(Ordering::Relaxed);
        self.budget.settle(was, bytes)?;
        h.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    fn charge_pages(&self, bytes: u64) -> Result<(), OverBudget> {
        self.budget.charge(bytes)
    }

    fn release_pages(&self, bytes: u64) {
        self.budget.release(bytes);
    }
}

impl LocalFabric {
    /// The machine's memory budget.
    pub fn budget(&self) -> &MemBudget {
        &self.budget
    }
}
