//! The C pipe of one rank: its own sentrons' mailboxes and collectives, and the frames
//! that carry everything else to other ranks.
//!
//! This file knows nothing about MPI. Sentron threads call the [`Transport`] methods;
//! whatever must leave the rank becomes a frame in the outbox, and frames from other
//! ranks come in through [`MpiTransport::handle`]. One thread, the pump (`comm.rs`),
//! moves frames between the outbox, MPI and `handle`, so MPI is only ever called from one
//! thread. Unit tests connect several transports with an in-process pump instead.
//!
//! Placement: sentron `s` lives on rank `s / per_rank`. Messages between two sentrons
//! of one rank never leave it. A collective of group `members` is run by its *leader*,
//! the rank of the group's lowest sentron: every member's contribution goes there, the
//! leader combines them with the runtime's own `combine` (in sentron order, so the bits
//! equal the in-process fabric's) and sends the result to every rank with a member.
//! Each group counts generations (one per completed collective) on every rank; frames
//! carry the generation so that a mix-up is a protocol error, not a wrong result.
//!
//! Deadlocks: a wait that involves only this rank's sentrons is judged here, exactly as
//! the in-process fabric does (remote sentrons count as running, so nothing is reported
//! that a remote sentron could still end). Waits across ranks are judged by rank 0's
//! monitor from heartbeats (`monitor.rs`).

use crate::error::MpiError;
use crate::frame::{Frame, Outcome, SentronStatus, StatusEntry};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use vtpu_runtime::budget::{MemBudget, OverBudget};
use vtpu_runtime::error::Waiter;
use vtpu_runtime::fabric::{
    combine, group_text, CollError, CollKind, CollTile, Mailbox, Message, SendError, Stopped,
    Transport, WaitSite, MAX_MAILBOX_BYTES,
};
use vtpu_runtime::waitgraph::WaitGraph;
use vtpu_runtime::{Deadlock, MachineError};

/// Which rank hosts which sentrons: `ranks` x `per_rank`, sentron s on rank s / per_rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub ranks: u32,
    pub per_rank: u32,
}

impl Placement {
    /// At least one rank and one sentron per rank, at most 64 sentrons in all.
    pub fn new(ranks: u32, per_rank: u32) -> Result<Placement, MpiError> {
        let n = ranks as u64 * per_rank as u64;
        if ranks == 0 || per_rank == 0 || n > vtpu_isa::MAX_SENTRONS as u64 {
            return Err(MpiError::Setup(format!(
                "{ranks} ranks x {per_rank} sentrons per rank: need 1..={} sentrons in all and at least one per rank",
                vtpu_isa::MAX_SENTRONS
            )));
        }
        Ok(Placement { ranks, per_rank })
    }
    pub fn sentrons(&self) -> usize {
        (self.ranks * self.per_rank) as usize
    }
    pub fn rank_of(&self, sentron: u32) -> u32 {
        sentron / self.per_rank
    }
    pub fn first(&self, rank: u32) -> u32 {
        rank * self.per_rank
    }
    pub fn last(&self, rank: u32) -> u32 {
        rank * self.per_rank + self.per_rank - 1
    }
    /// The ranks hosting members of `members`, as a bit mask over ranks.
    fn ranks_of(&self, members: u64) -> u64 {
        (0..self.ranks)
            .filter(|&r| members & (self.mask_of(r)) != 0)
            .fold(0, |m, r| m | (1u64 << r))
    }
    /// Sentrons of `rank` as a bit mask.
    pub fn mask_of(&self, rank: u32) -> u64 {
        let bits = if self.per_rank >= 64 {
            u64::MAX
        } else {
            (1u64 << self.per_rank) - 1
        };
        bits << self.first(rank)
    }
    /// The rank that combines the collectives of `members`: the lowest member's.
    pub fn leader(&self, members: u64) -> u32 {
        self.rank_of(members.trailing_zeros())
    }
}

#[derive(Clone, Debug)]
enum Status {
    Running,
    Blocked { site: WaitSite, on: Wait },
    Halted,
    Failed,
}

#[derive(Clone, Copy, Debug)]
enum Wait {
    Recv {
        from: u32,
    },
    Coll {
        members: u64,
        kind: CollKind,
        gen: u64,
    },
}

#[derive(Default)]
struct Group {
    /// Generations completed, as seen on this rank.
    done_gen: u64,
    result: Option<Arc<CollTile>>,
    failed: Option<String>,
    /// This rank's members that entered the current generation.
    local_arrived: u64,
    // Leader only: the generation being gathered.
    lead_gen: u64,
    kind: Option<CollKind>,
    arrived: u64,
    contributions: Vec<Option<CollTile>>,
}

struct State {
    /// Mailboxes of this rank's sentrons, indexed `local receiver * n + sender`.
    mail: Vec<Mailbox>,
    status: Vec<Status>,
    progress: Vec<u64>,
    groups: HashMap<u64, Group>,
    /// Encoded frames for other ranks, in order: (destination rank, bytes).
    outbox: Vec<(u32, Vec<u8>)>,
    error: Option<MpiError>,
    /// Sentron threads of this rank that ended (whatever the outcome).
    finished: usize,
}

/// The C pipe of one rank of an MPI job (see the module doc).
pub struct MpiTransport {
    place: Placement,
    rank: u32,
    n: usize,
    budget: Arc<MemBudget>,
    held: Vec<AtomicU64>,
    state: Mutex<State>,
    /// One per local sentron.
    wake: Vec<Condvar>,
    /// The pump sleeps on this when idle; anything that fills the outbox wakes it.
    pump: Condvar,
    stopped: AtomicBool,
    /// Host: CSEND messages that left this rank, and their frame bytes.
    msg_frames: AtomicU64,
    msg_bytes: AtomicU64,
    /// Collectives this rank's first sentron entered that involve another rank.
    cross_colls: AtomicU64,
}

impl MpiTransport {
    pub fn new(place: Placement, rank: u32, budget: Arc<MemBudget>) -> Result<Self, MpiError> {
        if rank >= place.ranks {
            return Err(MpiError::Setup(format!(
                "rank {rank} of a job of {} ranks",
                place.ranks
            )));
        }
        let n = place.sentrons();
        let s = place.per_rank as usize;
        Ok(MpiTransport {
            place,
            rank,
            n,
            budget,
            held: (0..s).map(|_| AtomicU64::new(0)).collect(),
            state: Mutex::new(State {
                mail: vec![Mailbox::default(); s * n],
                status: vec![Status::Running; s],
                progress: vec![0; s],
                groups: HashMap::new(),
                outbox: Vec::new(),
                error: None,
                finished: 0,
            }),
            wake: (0..s).map(|_| Condvar::new()).collect(),
            pump: Condvar::new(),
            stopped: AtomicBool::new(false),
            msg_frames: AtomicU64::new(0),
            msg_bytes: AtomicU64::new(0),
            cross_colls: AtomicU64::new(0),
        })
    }

    pub fn placement(&self) -> Placement {
        self.place
    }
    pub fn rank(&self) -> u32 {
        self.rank
    }
    pub fn budget(&self) -> &MemBudget {
        &self.budget
    }
    /// Host: CSEND messages that left this rank so far, and their frame bytes.
    pub fn remote_messages(&self) -> (u64, u64) {
        (
            self.msg_frames.load(Ordering::Relaxed),
            self.msg_bytes.load(Ordering::Relaxed),
        )
    }

    /// Collectives across ranks entered so far by this rank's first sentron (each
    /// sentron enters the same ones in these programs: one count per collective).
    pub fn cross_collectives(&self) -> u64 {
        self.cross_colls.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking sentron thread poisons the lock; the state stays reportable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn local(&self, sentron: u32) -> Option<usize> {
        (self.place.rank_of(sentron) == self.rank)
            .then(|| (sentron - self.place.first(self.rank)) as usize)
    }

    fn push_frame(&self, st: &mut State, to_rank: u32, f: &Frame) {
        st.outbox.push((to_rank, f.encode()));
        self.pump.notify_one();
    }

    /// Record the first error, stop this rank's sentrons and, for an error seen here,
    /// tell every other rank (`Abort`). Call with the lock held.
    fn stop_with(&self, st: &mut State, err: MpiError, broadcast: bool) {
        if st.error.is_none() {
            if broadcast {
                let f = Frame::Abort {
                    rank: self.rank,
                    text: err.to_string(),
                };
                for r in (0..self.place.ranks).filter(|&r| r != self.rank) {
                    self.push_frame(st, r, &f);
                }
            }
            st.error = Some(err);
        }
        self.stopped.store(true, Ordering::Release);
        for cv in &self.wake {
            cv.notify_all();
        }
        self.pump.notify_one();
    }

    /// Stop the machine with `err` (seen on this rank: the other ranks are told).
    pub fn abort(&self, err: MpiError) {
        let mut st = self.lock();
        self.stop_with(&mut st, err, true);
    }

    /// The first error this rank recorded (its own or another rank's).
    pub fn mpi_error(&self) -> Option<MpiError> {
        self.lock().error.clone()
    }

    /// A sentron thread of this rank ended (after its halt or failure was reported).
    pub fn sentron_finished(&self) {
        let mut st = self.lock();
        st.finished += 1;
        self.pump.notify_one();
    }

    /// Make ready for the next step of a stepped machine (`machine.rs`), once every
    /// local sentron of this step finished: they count as running again. Collective
    /// generations carry on counting (every rank completed the same ones), and nothing
    /// of the next step can have arrived yet (see the step protocol), so mailboxes and
    /// groups stay as they are. Returns false, and changes nothing, once the machine
    /// stopped: a stopped machine runs no more steps.
    pub fn reset_for_step(&self) -> bool {
        let mut st = self.lock();
        if self.stopped.load(Ordering::Acquire) {
            return false;
        }
        st.status.iter_mut().for_each(|s| *s = Status::Running);
        st.finished = 0;
        true
    }

    /// Every sentron thread of this rank ended.
    pub fn all_finished(&self) -> bool {
        self.lock().finished >= self.place.per_rank as usize
    }

    /// Move the frames waiting to leave into `out` (destination rank, bytes).
    pub fn take_outbox(&self, out: &mut Vec<(u32, Vec<u8>)>) {
        out.append(&mut self.lock().outbox);
    }

    /// Sleep until there is something to send or `timeout` passed.
    pub fn wait_for_work(&self, timeout: Duration) {
        let st = self.lock();
        if !st.outbox.is_empty() {
            return;
        }
        let _ = self.pump.wait_timeout(st, timeout);
    }

    /// The state of this rank's sentrons, for the heartbeat.
    pub fn status_entries(&self) -> Vec<StatusEntry> {
        let st = self.lock();
        st.status
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let sentron = self.place.first(self.rank) + i as u32;
                let (status, pc, op) = match s {
                    Status::Running => (SentronStatus::Running, 0, String::new()),
                    Status::Halted => (SentronStatus::Halted, 0, String::new()),
                    Status::Failed => (SentronStatus::Failed, 0, String::new()),
                    Status::Blocked { site, on } => {
                        let status = match *on {
                            Wait::Recv { from } => SentronStatus::Recv { from },
                            Wait::Coll { members, kind, gen } => {
                                SentronStatus::Coll { members, kind, gen }
                            }
                        };
                        (status, site.pc, vtpu_isa::disasm::format_op(&site.op))
                    }
                };
                StatusEntry {
                    sentron,
                    status,
                    pc,
                    op,
                    progress: st.progress[i],
                }
            })
            .collect()
    }

    /// "; sentron 0 (rank 0) at pc 3 (CRECV r0, @1) waits for ..." for every local
    /// sentron blocked on a sentron of `rank` (for a lost-rank report).
    pub fn waiting_on(&self, rank: u32) -> String {
        let st = self.lock();
        let theirs = self.place.mask_of(rank);
        let mut out = String::new();
        for (li, s) in st.status.iter().enumerate() {
            let Status::Blocked { site, on } = s else {
                continue;
            };
            let hit = match *on {
                Wait::Recv { from } => theirs & (1u64 << from) != 0,
                Wait::Coll { members, .. } => members & theirs != 0,
            };
            if hit {
                out.push_str(&format!(
                    "; sentron {} (rank {}) at pc {} ({}) waits for {}",
                    self.place.first(self.rank) + li as u32,
                    self.rank,
                    site.pc,
                    vtpu_isa::disasm::format_op(&site.op),
                    self.describe_wait(&st, *on)
                ));
            }
        }
        out
    }

    /// A frame from rank `src` (Msg, Arrive, Result or Abort; the pump handles the
    /// rest). An error means the protocol broke: the caller stops the machine with it.
    pub fn handle(&self, src: u32, frame: Frame) -> Result<(), MpiError> {
        let proto = |detail: String| MpiError::Protocol { rank: src, detail };
        let mut st = self.lock();
        match frame {
            Frame::Msg { from, to, msg } => {
                let Some(li) = self.local(to) else {
                    return Err(proto(format!(
                        "a message for sentron {to}, not on this rank"
                    )));
                };
                if self.place.rank_of(from) != src {
                    return Err(proto(format!(
                        "a message from sentron {from}, not on that rank"
                    )));
                }
                self.deliver_msg(&mut st, from, to, li, msg)
            }
            Frame::Arrive {
                members,
                gen,
                sentron,
                kind,
                tile,
            } => {
                if self.place.leader(members) != self.rank || self.place.rank_of(sentron) != src {
                    return Err(proto(format!(
                        "sentron {sentron} arrived at group {} here, which does not lead it",
                        group_text(members)
                    )));
                }
                self.lead_arrive(&mut st, members, gen, sentron, kind, tile)
                    .map_err(proto)
            }
            Frame::Result {
                members,
                gen,
                outcome,
            } => {
                if self.place.leader(members) != src {
                    return Err(proto(format!(
                        "a result for group {} from a rank that does not lead it",
                        group_text(members)
                    )));
                }
                self.complete(&mut st, members, gen, outcome).map_err(proto)
            }
            Frame::Abort { rank, text } => {
                self.stop_with(&mut st, MpiError::Remote { rank, text }, false);
                Ok(())
            }
            other => Err(proto(format!("unexpected frame {other:?}"))),
        }
    }

    fn deliver_msg(
        &self,
        st: &mut State,
        from: u32,
        to: u32,
        li: usize,
        msg: Message,
    ) -> Result<(), MpiError> {
        let bytes = msg.bytes();
        let full = |pending| MpiError::MailboxFull {
            from,
            from_rank: self.place.rank_of(from),
            to,
            to_rank: self.place.rank_of(to),
            pending,
            max: MAX_MAILBOX_BYTES,
        };
        if self.budget.charge(bytes).is_err() {
            return Err(full(self.budget.used()));
        }
        if let Err(pending) = st.mail[li * self.n + from as usize].push(msg) {
            self.budget.release(bytes);
            return Err(full(pending));
        }
        if let Status::Blocked {
            on: Wait::Recv { from: f },
            ..
        } = st.status[li]
        {
            if f == from {
                st.status[li] = Status::Running;
                self.wake[li].notify_one();
            }
        }
        Ok(())
    }

    /// The leader's side of an arrival (local or from a frame). Err: protocol error.
    fn lead_arrive(
        &self,
        st: &mut State,
        members: u64,
        gen: u64,
        sentron: u32,
        kind: CollKind,
        tile: Option<CollTile>,
    ) -> Result<(), String> {
        let n = self.n;
        let g = st.groups.entry(members).or_default();
        if gen != g.lead_gen {
            return Err(format!(
                "sentron {sentron} arrived at generation {gen} of group {}, the leader gathers generation {}",
                group_text(members),
                g.lead_gen
            ));
        }
        if g.arrived & (1u64 << sentron) != 0 {
            return Err(format!(
                "sentron {sentron} arrived twice at generation {gen} of group {}",
                group_text(members)
            ));
        }
        if g.arrived == 0 {
            g.kind = Some(kind);
            g.contributions.clear();
            g.contributions.resize(n, None);
        }
        let mismatch = match g.kind {
            Some(k) if k != kind => Some(format!(
                "sentron {sentron} entered {} while others are in {}",
                kind_name(kind),
                kind_name(k)
            )),
            _ => None,
        };
        g.arrived |= 1u64 << sentron;
        g.contributions[sentron as usize] = tile;
        if mismatch.is_none() && g.arrived != members {
            return Ok(());
        }
        let outcome = match mismatch {
            Some(m) => Outcome::Failed(m),
            None => match combine(kind, &g.contributions) {
                Ok(r) => Outcome::Done(r.map(Arc::new)),
                Err(e) => Outcome::Failed(e),
            },
        };
        g.arrived = 0;
        g.lead_gen += 1;
        g.contributions.iter_mut().for_each(|c| *c = None);
        let f = Frame::Result {
            members,
            gen,
            outcome: outcome.clone(),
        };
        let ranks = self.place.ranks_of(members) & !(1u64 << self.rank);
        for r in (0..self.place.ranks).filter(|&r| ranks & (1u64 << r) != 0) {
            self.push_frame(st, r, &f);
        }
        if self.place.ranks_of(members) & (1u64 << self.rank) != 0 {
            self.complete(st, members, gen, outcome)?;
        }
        Ok(())
    }

    /// Generation `gen` of `members` completed: hand the outcome to this rank's members.
    fn complete(
        &self,
        st: &mut State,
        members: u64,
        gen: u64,
        outcome: Outcome,
    ) -> Result<(), String> {
        let g = st.groups.entry(members).or_default();
        if gen != g.done_gen {
            return Err(format!(
                "result of generation {gen} of group {} while this rank waits for generation {}",
                group_text(members),
                g.done_gen
            ));
        }
        g.done_gen += 1;
        g.local_arrived = 0;
        match outcome {
            Outcome::Done(r) => {
                g.result = r;
                g.failed = None;
            }
            Outcome::Failed(e) => {
                g.result = None;
                g.failed = Some(e);
            }
        }
        let mine = members & self.place.mask_of(self.rank);
        for (i, s) in st.status.iter_mut().enumerate() {
            let id = self.place.first(self.rank) + i as u32;
            if mine & (1u64 << id) != 0 {
                if let Status::Blocked { .. } = s {
                    *s = Status::Running;
                }
                self.wake[i].notify_one();
            }
        }
        Ok(())
    }

    /// Under the lock, after a local sentron blocked or finished: if some local sentrons
    /// can never proceed (judged with every remote sentron counted as running), record
    /// the deadlock and stop the machine. Returns true if it did.
    fn check_local_deadlock(&self, st: &mut State) -> bool {
        let mut g = WaitGraph::new(self.n);
        let first = self.place.first(self.rank) as usize;
        for i in 0..self.n {
            g.set_running(i);
        }
        for (li, s) in st.status.iter().enumerate() {
            let i = first + li;
            match s {
                Status::Running => g.set_running(i),
                Status::Halted | Status::Failed => g.set_finished(i),
                Status::Blocked { on, .. } => {
                    let waits = match *on {
                        Wait::Recv { from } => 1u64 << from,
                        Wait::Coll { members, .. } => {
                            let arrived = st.groups.get(&members).map_or(0, |g| g.local_arrived);
                            members & !arrived & !(1u64 << i)
                        }
                    };
                    g.set_blocked(i, waits);
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
            .filter_map(|i| match &st.status[i as usize - first] {
                Status::Blocked { site, on } => Some(Waiter {
                    sentron: i,
                    pc: site.pc,
                    op: vtpu_isa::disasm::format_op(&site.op),
                    waits_for: self.describe_wait(st, *on),
                }),
                _ => None,
            })
            .collect();
        let live = st
            .status
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Status::Running | Status::Blocked { .. }))
            .fold(0u64, |m, (i, _)| m | (1u64 << (first + i)));
        let dl = Deadlock {
            waiters,
            witness: g.witness(stuck).map(|w| w.text()).unwrap_or_default(),
            still_running: g.ids(live & !stuck),
        };
        self.stop_with(st, MpiError::Machine(MachineError::Deadlock(dl)), true);
        true
    }

    fn describe_local(&self, st: &State, s: u32) -> String {
        match self.local(s).map(|i| &st.status[i]) {
            Some(Status::Running) => "running".into(),
            Some(Status::Halted) => "halted".into(),
            Some(Status::Failed) => "stopped by an error".into(),
            Some(Status::Blocked { site, .. }) => format!(
                "blocked at pc {} in {}",
                site.pc,
                vtpu_isa::disasm::format_op(&site.op)
            ),
            None => format!("on rank {}", self.place.rank_of(s)),
        }
    }

    fn describe_wait(&self, st: &State, on: Wait) -> String {
        match on {
            Wait::Recv { from } => format!(
                "a message from sentron {from} ({})",
                self.describe_local(st, from)
            ),
            Wait::Coll { members, kind, .. } => {
                let arrived = st.groups.get(&members).map_or(0, |g| g.local_arrived);
                let missing: Vec<String> = (0..self.n as u32)
                    .filter(|&i| members & (1u64 << i) != 0 && arrived & (1u64 << i) == 0)
                    .map(|i| format!("sentron {i} ({})", self.describe_local(st, i)))
                    .collect();
                format!(
                    "{} of group {}: still missing {}",
                    kind_name(kind),
                    group_text(members),
                    missing.join(", ")
                )
            }
        }
    }

    fn wait<'a>(&'a self, li: usize, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.wake[li].wait(g).unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn kind_name(k: CollKind) -> String {
    k.name()
}

impl Transport for MpiTransport {
    fn sentrons(&self) -> usize {
        self.n
    }

    fn send(&self, from: u32, to: u32, msg: Message) -> Result<(), SendError> {
        if let Some(li) = self.local(to) {
            let bytes = msg.bytes();
            self.budget.charge(bytes).map_err(SendError::OverBudget)?;
            let mut st = self.lock();
            if let Err(pending) = st.mail[li * self.n + from as usize].push(msg) {
                self.budget.release(bytes);
                return Err(SendError::MailboxFull(pending));
            }
            if let Status::Blocked {
                on: Wait::Recv { from: f },
                ..
            } = st.status[li]
            {
                if f == from {
                    st.status[li] = Status::Running;
                    self.wake[li].notify_one();
                }
            }
            return Ok(());
        }
        // Encoded outside the lock: a tile message is a copy of its data.
        let bytes = Frame::Msg { from, to, msg }.encode();
        self.msg_frames.fetch_add(1, Ordering::Relaxed);
        self.msg_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let mut st = self.lock();
        st.outbox.push((self.place.rank_of(to), bytes));
        self.pump.notify_one();
        Ok(())
    }

    fn recv(&self, me: u32, from: u32, site: &WaitSite) -> Result<Message, Stopped> {
        let Some(li) = self.local(me) else {
            return Err(Stopped);
        };
        let slot = li * self.n + from as usize;
        let mut st = self.lock();
        let mut waited = false;
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return Err(Stopped);
            }
            if let Some(m) = st.mail[slot].pop() {
                st.status[li] = Status::Running;
                if waited {
                    st.progress[li] += 1;
                }
                self.budget.release(m.bytes());
                return Ok(m);
            }
            st.status[li] = Status::Blocked {
                site: *site,
                on: Wait::Recv { from },
            };
            waited = true;
            if self.check_local_deadlock(&mut st) {
                return Err(Stopped);
            }
            st = self.wait(li, st);
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
        let Some(li) = self.local(me) else {
            return Err(CollError::Stopped);
        };
        let leader = self.place.leader(members);
        if me == self.place.first(self.rank) && members & !self.place.mask_of(self.rank) != 0 {
            self.cross_colls.fetch_add(1, Ordering::Relaxed);
        }
        let mut st = self.lock();
        if self.stopped.load(Ordering::Acquire) {
            return Err(CollError::Stopped);
        }
        let g = st.groups.entry(members).or_default();
        let my_gen = g.done_gen;
        g.local_arrived |= 1u64 << me;
        if leader == self.rank {
            if let Err(detail) = self.lead_arrive(&mut st, members, my_gen, me, kind, contribution)
            {
                let err = MpiError::Protocol {
                    rank: self.rank,
                    detail,
                };
                self.stop_with(&mut st, err, true);
                return Err(CollError::Stopped);
            }
        } else {
            let f = Frame::Arrive {
                members,
                gen: my_gen,
                sentron: me,
                kind,
                tile: contribution,
            };
            self.push_frame(&mut st, leader, &f);
        }
        let mut waited = false;
        loop {
            let g = st.groups.entry(members).or_default();
            if g.done_gen != my_gen {
                // Our generation completed; the next cannot complete without us, so
                // the group still holds our outcome.
                let (result, failed) = (g.result.clone(), g.failed.clone());
                st.status[li] = Status::Running;
                if waited {
                    st.progress[li] += 1;
                }
                return match failed {
                    Some(e) => Err(CollError::Mismatch(e)),
                    None => Ok(result),
                };
            }
            if self.stopped.load(Ordering::Acquire) {
                return Err(CollError::Stopped);
            }
            if !waited {
                st.status[li] = Status::Blocked {
                    site: *site,
                    on: Wait::Coll {
                        members,
                        kind,
                        gen: my_gen,
                    },
                };
                waited = true;
                if self.check_local_deadlock(&mut st) {
                    return Err(CollError::Stopped);
                }
            }
            st = self.wait(li, st);
        }
    }

    fn halt(&self, me: u32) {
        let Some(li) = self.local(me) else { return };
        let mut st = self.lock();
        st.status[li] = Status::Halted;
        self.check_local_deadlock(&mut st);
        self.pump.notify_one();
    }

    fn fail(&self, me: u32, err: MachineError) {
        let mut st = self.lock();
        if let Some(li) = self.local(me) {
            st.status[li] = Status::Failed;
        }
        self.stop_with(&mut st, MpiError::Machine(err), true);
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn error(&self) -> Option<MachineError> {
        self.lock().error.as_ref().map(MpiError::to_machine)
    }

    fn settle_tiles(&self, me: u32, bytes: u64) -> Result<(), OverBudget> {
        let Some(h) = self.local(me).and_then(|li| self.held.get(li)) else {
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
