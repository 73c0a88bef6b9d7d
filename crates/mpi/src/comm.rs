//! The pump: the one thread of a rank that calls MPI.
//!
//! It hands the transport's outbox to MPI as non-blocking sends, receives whatever other
//! ranks sent (matched probe, any source, one tag), sends heartbeats, runs rank 0's
//! deadlock monitor and notices ranks that fell silent. Sends never block the pump, so
//! two pumps sending large frames to each other cannot deadlock.
//!
//! Ending a run (every frame received, every send completed, so MPI_Finalize is safe):
//! 1. a rank whose sentrons all ended sends `Done` with its report to rank 0;
//! 2. rank 0, with every `Done`, sends `Finish` to the others;
//! 3. on `Finish` (rank 0: on sending it), a rank sends `Bye` to every other rank and
//!    nothing after it; it stops once it has a `Bye` from every rank and its sends
//!    completed. Frames between two ranks are FIFO, so nothing can arrive after a `Bye`.
//!
//! A rank that sends nothing (not even a heartbeat) for `rank_timeout` is lost: the pump
//! returns at once with [`MpiError::LostRank`], and the caller must `MPI_Abort` (a
//! clean finalize would wait for the lost rank for ever).

use crate::error::MpiError;
use crate::frame::{Frame, RankReport, MAX_FRAME_BYTES};
use crate::monitor::Monitor;
use crate::transport::MpiTransport;
use mpi::datatype::Equivalence;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::request::{Request, StaticScope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::time::{Duration, Instant};

/// The one MPI tag of every frame (one tag keeps all frames between two ranks FIFO).
pub(crate) const TAG: i32 = 0x76;

/// Timing of the pump.
#[derive(Clone, Debug)]
pub struct CommConfig {
    /// How often every rank tells the others it is alive (and rank 0 its sentrons'
    /// state).
    pub heartbeat: Duration,
    /// A rank silent for this long is reported lost.
    pub rank_timeout: Duration,
    /// How long a stuck set seen in the heartbeats must stay unchanged before rank 0
    /// reports a deadlock across ranks.
    pub deadlock_grace: Duration,
    /// After the last piece of work the pump polls MPI without sleeping for this long
    /// (low latency in a busy exchange); afterwards it sleeps up to `idle_sleep` between
    /// polls (little CPU while sentrons compute).
    pub busy_poll: Duration,
    pub idle_sleep: Duration,
}

impl Default for CommConfig {
    fn default() -> Self {
        CommConfig {
            heartbeat: Duration::from_millis(100),
            rank_timeout: Duration::from_secs(10),
            deadlock_grace: Duration::from_secs(1),
            busy_poll: Duration::from_millis(2),
            idle_sleep: Duration::from_micros(200),
        }
    }
}

/// What the pump saw, for the caller.
#[derive(Debug, Default)]
pub struct PumpOutcome {
    /// Rank 0: every rank's report, in rank order (empty elsewhere or when lost).
    pub reports: Vec<RankReport>,
    /// A rank was lost: the caller must abort the job instead of finalizing.
    pub lost: bool,
    /// Host: frames and bytes this rank sent.
    pub frames_sent: u64,
    pub bytes_sent: u64,
}

/// A send MPI may still be reading from. The buffer is leaked into the request's
/// `'static` scope and taken back once MPI says the send completed.
pub(crate) struct PendingSend {
    req: Option<Request<'static, [u8], StaticScope>>,
    buf: *mut [u8],
}

impl PendingSend {
    pub(crate) fn start(world: &SimpleCommunicator, to: u32, bytes: Vec<u8>) -> PendingSend {
        let buf: &'static mut [u8] = Box::leak(bytes.into_boxed_slice());
        let ptr: *mut [u8] = buf;
        // SAFETY: `ptr` stays valid (leaked) until `done` sees the send complete.
        let shared: &'static [u8] = unsafe { &*ptr };
        let req =
            world
                .process_at_rank(to as i32)
                .immediate_send_with_tag(StaticScope, shared, TAG);
        PendingSend {
            req: Some(req),
            buf: ptr,
        }
    }

    /// Has MPI finished with the buffer? Then it is freed.
    pub(crate) fn done(&mut self) -> bool {
        let Some(req) = self.req.take() else {
            return true;
        };
        match req.test() {
            Ok(_) => {
                // SAFETY: the buffer came from `Box::leak` in `start`, and MPI no
                // longer reads it (the request completed); nothing else refers to it.
                drop(unsafe { Box::from_raw(self.buf) });
                true
            }
            Err(req) => {
                self.req = Some(req);
                false
            }
        }
    }
}

impl Drop for PendingSend {
    fn drop(&mut self) {
        // Only on the lost-rank path, right before MPI_Abort: dropping an incomplete
        // request panics in rsmpi, and freeing the buffer MPI may read is unsound, so
        // both are leaked.
        if let Some(req) = self.req.take() {
            std::mem::forget(req);
        }
    }
}

/// Move frames until the run ends (see the module doc). `report` builds this rank's
/// report once all its sentrons ended.
pub fn pump_until_done(
    world: &SimpleCommunicator,
    t: &MpiTransport,
    cfg: &CommConfig,
    report: impl FnOnce() -> RankReport,
) -> PumpOutcome {
    let place = t.placement();
    let me = t.rank();
    let ranks = place.ranks as usize;
    let others: u64 = (0..ranks as u32)
        .filter(|&r| r != me)
        .fold(0, |m, r| m | (1u64 << r));
    let n = place.sentrons();
    let mut report = Some(report);
    let mut out = PumpOutcome::default();
    let mut pending: Vec<PendingSend> = Vec::new();
    let mut outbox: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut last_heard = vec![Instant::now(); ranks];
    let mut monitor = (me == 0).then(|| Monitor::new(place, cfg.deadlock_grace));
    let mut done_from: Vec<Option<RankReport>> = vec![None; ranks];
    let (mut sent_done, mut got_finish, mut sent_bye) = (false, false, false);
    let mut bye_from = 0u64;
    let mut next_hb = Instant::now();
    let mut last_busy = Instant::now();
    let send = |pending: &mut Vec<PendingSend>, out: &mut PumpOutcome, to: u32, b: Vec<u8>| {
        out.frames_sent += 1;
        out.bytes_sent += b.len() as u64;
        pending.push(PendingSend::start(world, to, b));
    };
    loop {
        let mut busy = false;
        t.take_outbox(&mut outbox);
        for (to, bytes) in outbox.drain(..) {
            busy = true;
            // Nothing may follow a Bye (the receiver stops listening).
            if !sent_bye {
                send(&mut pending, &mut out, to, bytes);
            }
        }
        pending.retain_mut(|p| !p.done());
        while let Some((msg, status)) = world.any_process().immediate_matched_probe_with_tag(TAG) {
            busy = true;
            let src = status.source_rank() as u32;
            let count = status.count(u8::equivalent_datatype());
            if count < 0 || count as usize > MAX_FRAME_BYTES || src as usize >= ranks {
                // Cannot come from a rank of this program; receiving it would mean an
                // unbounded allocation. The job is aborted by the caller.
                std::mem::forget(msg);
                t.abort(MpiError::Protocol {
                    rank: src,
                    detail: format!("a frame of {count} bytes (at most {MAX_FRAME_BYTES})"),
                });
                out.lost = true;
                return out;
            }
            let (bytes, _) = (msg, status).matched_receive_vec::<u8>();
            last_heard[src as usize] = Instant::now();
            let frame = match Frame::decode(&bytes, n) {
                Ok(f) => f,
                Err(e) => {
                    t.abort(MpiError::Protocol {
                        rank: src,
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            match frame {
                Frame::Status { entries, .. } => {
                    if let Some(m) = monitor.as_mut() {
                        m.update(entries);
                    }
                }
                Frame::Done(rep) => {
                    if let Some(slot) = done_from.get_mut(src as usize) {
                        *slot = Some(*rep);
                    }
                }
                Frame::Finish => got_finish = true,
                Frame::Bye { .. } => bye_from |= 1u64 << src,
                other => {
                    if let Err(e) = t.handle(src, other) {
                        t.abort(e);
                    }
                }
            }
        }
        let now = Instant::now();
        if !sent_bye && now >= next_hb {
            let entries = t.status_entries();
            for r in (0..ranks as u32).filter(|&r| r != me) {
                let f = Frame::Status {
                    rank: me,
                    entries: if r == 0 { entries.clone() } else { Vec::new() },
                };
                send(&mut pending, &mut out, r, f.encode());
            }
            if let Some(m) = monitor.as_mut() {
                m.update(entries);
            }
            next_hb = now + cfg.heartbeat;
        }
        if let Some(m) = monitor.as_mut() {
            if let Some(e) = m.check(now) {
                t.abort(e);
            }
        }
        for r in (0..ranks as u32).filter(|&r| r != me && bye_from & (1u64 << r) == 0) {
            let silent = now.duration_since(last_heard[r as usize]);
            if silent > cfg.rank_timeout {
                t.abort(MpiError::LostRank {
                    rank: r,
                    first: place.first(r),
                    last: place.last(r),
                    silent_ms: silent.as_millis() as u64,
                    limit_ms: cfg.rank_timeout.as_millis() as u64,
                    waiting: t.waiting_on(r),
                });
                out.lost = true;
                return out;
            }
        }
        if !sent_done && t.all_finished() {
            let mut rep = report.take().map(|f| f()).unwrap_or_default();
            // Frames up to this report (the ending frames and heartbeats after it are
            // not counted).
            rep.frames_sent = out.frames_sent;
            rep.bytes_sent = out.bytes_sent;
            (rep.msg_frames_sent, rep.msg_bytes_sent) = t.remote_messages();
            if me == 0 {
                done_from[0] = Some(rep);
            } else {
                send(
                    &mut pending,
                    &mut out,
                    0,
                    Frame::Done(Box::new(rep)).encode(),
                );
            }
            sent_done = true;
            busy = true;
        }
        if me == 0 && !got_finish && done_from.iter().all(Option::is_some) {
            for r in 1..ranks as u32 {
                send(&mut pending, &mut out, r, Frame::Finish.encode());
            }
            got_finish = true;
        }
        if got_finish && !sent_bye {
            // Whatever is still queued goes first (an Abort, say).
            t.take_outbox(&mut outbox);
            for (to, bytes) in outbox.drain(..) {
                send(&mut pending, &mut out, to, bytes);
            }
            for r in (0..ranks as u32).filter(|&r| r != me) {
                send(&mut pending, &mut out, r, Frame::Bye { rank: me }.encode());
            }
            sent_bye = true;
            busy = true;
        }
        if sent_bye && bye_from & others == others {
            pending.retain_mut(|p| !p.done());
            if pending.is_empty() {
                break;
            }
        }
        if busy {
            last_busy = Instant::now();
        } else if last_busy.elapsed() < cfg.busy_poll {
            std::thread::yield_now();
        } else {
            t.wait_for_work(cfg.idle_sleep);
        }
    }
    if me == 0 {
        out.reports = done_from.into_iter().flatten().collect();
    }
    out
}
