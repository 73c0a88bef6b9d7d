//! Rank 0's deadlock monitor for waits that cross ranks.
//!
//! Every rank sends rank 0 the state of its sentrons with each heartbeat. Rank 0 builds
//! the same wait-for graph as the in-process fabric (`vtpu_runtime::waitgraph`) over all
//! sentrons. MPI cannot say whether a frame is still on its way (a message sent just
//! before its sender halted, a result the leader sent but the member has not yet seen),
//! so a stuck set is only reported once the whole state stayed the same (same stuck set,
//! no sentron finished a wait) for the grace time: far longer than any frame takes, far
//! shorter than a hang. Running sentrons are never stuck, so a rank that computes for a
//! long time is not mistaken for a deadlock.

use crate::error::MpiError;
use crate::frame::{SentronStatus, StatusEntry};
use crate::transport::{kind_name, Placement};
use std::time::{Duration, Instant};
use vtpu_runtime::error::Waiter;
use vtpu_runtime::fabric::group_text;
use vtpu_runtime::waitgraph::WaitGraph;
use vtpu_runtime::Deadlock;

pub struct Monitor {
    place: Placement,
    status: Vec<Option<StatusEntry>>,
    grace: Duration,
    /// The stuck set and everyone's progress when it was first seen, and when.
    since: Option<(u64, Vec<u64>, Instant)>,
}

impl Monitor {
    pub fn new(place: Placement, grace: Duration) -> Monitor {
        Monitor {
            place,
            status: vec![None; place.sentrons()],
            grace,
            since: None,
        }
    }

    /// The latest state of some sentrons (one rank's heartbeat).
    pub fn update(&mut self, entries: Vec<StatusEntry>) {
        for e in entries {
            if let Some(slot) = self.status.get_mut(e.sentron as usize) {
                *slot = Some(e);
            }
        }
    }

    fn waits_for(&self, i: usize, s: &SentronStatus) -> u64 {
        match *s {
            SentronStatus::Recv { from } => 1u64 << from,
            SentronStatus::Coll { members, gen, .. } => {
                let arrived = self
                    .status
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| {
                        matches!(e, Some(StatusEntry { status: SentronStatus::Coll { members: m, gen: g, .. }, .. }) if *m == members && *g == gen)
                    })
                    .fold(0u64, |m, (j, _)| m | (1u64 << j));
                members & !arrived & !(1u64 << i)
            }
            _ => 0,
        }
    }

    /// A deadlock, if the same sentrons have been stuck for the grace time.
    pub fn check(&mut self, now: Instant) -> Option<MpiError> {
        let n = self.place.sentrons();
        let mut g = WaitGraph::new(n);
        let mut progress = Vec::with_capacity(n);
        for (i, e) in self.status.iter().enumerate() {
            // A rank not heard from yet: its sentrons may be doing anything.
            let Some(e) = e else {
                self.since = None;
                return None;
            };
            progress.push(e.progress);
            match &e.status {
                SentronStatus::Running => g.set_running(i),
                SentronStatus::Halted | SentronStatus::Failed => g.set_finished(i),
                s => g.set_blocked(i, self.waits_for(i, s)),
            }
        }
        let stuck = g.stuck();
        if stuck == 0 {
            self.since = None;
            return None;
        }
        match &self.since {
            Some((s, p, t0)) if *s == stuck && *p == progress => {
                let stable = now.duration_since(*t0);
                if stable < self.grace {
                    return None;
                }
                Some(self.report(&g, stuck, stable))
            }
            _ => {
                self.since = Some((stuck, progress, now));
                None
            }
        }
    }

    fn describe(&self, s: u32) -> String {
        let rank = self.place.rank_of(s);
        match self.status.get(s as usize).and_then(|e| e.as_ref()) {
            None => format!("rank {rank}, unknown"),
            Some(e) => match e.status {
                SentronStatus::Running => format!("rank {rank}, running"),
                SentronStatus::Halted => format!("rank {rank}, halted"),
                SentronStatus::Failed => format!("rank {rank}, stopped by an error"),
                _ => format!("rank {rank}, blocked at pc {} in {}", e.pc, e.op),
            },
        }
    }

    fn report(&self, g: &WaitGraph, stuck: u64, stable: Duration) -> MpiError {
        let waiters = g
            .ids(stuck)
            .into_iter()
            .filter_map(|i| {
                let e = self.status.get(i as usize)?.as_ref()?;
                let waits_for = match e.status {
                    SentronStatus::Recv { from } => {
                        format!("a message from sentron {from} ({})", self.describe(from))
                    }
                    SentronStatus::Coll { members, kind, .. } => {
                        let missing: Vec<String> = g
                            .ids(self.waits_for(i as usize, &e.status))
                            .into_iter()
                            .map(|j| format!("sentron {j} ({})", self.describe(j)))
                            .collect();
                        format!(
                            "{} of group {}: still missing {}",
                            kind_name(kind),
                            group_text(members),
                            missing.join(", ")
                        )
                    }
                    _ => return None,
                };
                Some(Waiter {
                    sentron: i,
                    pc: e.pc,
                    op: format!("{}, on rank {}", e.op, self.place.rank_of(i)),
                    waits_for,
                })
            })
            .collect();
        let live = self
            .status
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(e, Some(e) if !matches!(e.status, SentronStatus::Halted | SentronStatus::Failed))
            })
            .fold(0u64, |m, (i, _)| m | (1u64 << i));
        MpiError::Deadlock {
            deadlock: Deadlock {
                waiters,
                witness: g.witness(stuck).map(|w| w.text()).unwrap_or_default(),
                still_running: g.ids(live & !stuck),
            },
            placement: placement_text(self.place),
            stable_ms: stable.as_millis() as u64,
        }
    }
}

/// "sentrons 0..=1 on rank 0, 2..=3 on rank 1".
pub fn placement_text(p: Placement) -> String {
    let parts: Vec<String> = (0..p.ranks)
        .map(|r| {
            if p.per_rank == 1 {
                format!("sentron {} on rank {r}", p.first(r))
            } else {
                format!("sentrons {}..={} on rank {r}", p.first(r), p.last(r))
            }
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sentron: u32, status: SentronStatus, progress: u64) -> StatusEntry {
        StatusEntry {
            sentron,
            status,
            pc: 3,
            op: "CRECV r0, @1".into(),
            progress,
        }
    }

    #[test]
    fn a_cycle_across_ranks_is_reported_only_after_the_grace_time() {
        let place = Placement::new(2, 1).unwrap();
        let mut m = Monitor::new(place, Duration::from_millis(100));
        let t0 = Instant::now();
        m.update(vec![entry(0, SentronStatus::Recv { from: 1 }, 0)]);
        // Rank 1 not heard from yet: nothing to say.
        assert!(m.check(t0).is_none());
        m.update(vec![entry(1, SentronStatus::Recv { from: 0 }, 0)]);
        assert!(m.check(t0).is_none());
        assert!(m.check(t0 + Duration::from_millis(50)).is_none());
        let e = m.check(t0 + Duration::from_millis(150)).expect("deadlock");
        let text = e.to_string();
        assert!(text.contains("0 -> 1 -> 0"), "{text}");
        assert!(text.contains("sentron 0 at pc 3"), "{text}");
        assert!(text.contains("rank 1"), "{text}");
    }

    #[test]
    fn progress_restarts_the_clock_and_running_partners_are_not_stuck() {
        let place = Placement::new(2, 1).unwrap();
        let mut m = Monitor::new(place, Duration::from_millis(100));
        let t0 = Instant::now();
        m.update(vec![
            entry(0, SentronStatus::Recv { from: 1 }, 0),
            entry(1, SentronStatus::Running, 0),
        ]);
        assert!(m.check(t0).is_none());
        assert!(m.check(t0 + Duration::from_secs(10)).is_none());
        m.update(vec![entry(1, SentronStatus::Recv { from: 0 }, 0)]);
        assert!(m.check(t0 + Duration::from_secs(10)).is_none());
        // Sentron 0 finished a wait meanwhile: a new state, a new clock.
        m.update(vec![entry(0, SentronStatus::Recv { from: 1 }, 1)]);
        assert!(m.check(t0 + Duration::from_millis(10_050)).is_none());
        assert!(m.check(t0 + Duration::from_millis(10_200)).is_some());
    }

    #[test]
    fn a_collective_missing_a_halted_member_is_stuck() {
        let place = Placement::new(3, 1).unwrap();
        let mut m = Monitor::new(place, Duration::ZERO);
        let coll = SentronStatus::Coll {
            members: 0b111,
            kind: vtpu_runtime::fabric::CollKind::Reduce(0),
            gen: 2,
        };
        m.update(vec![
            entry(0, coll.clone(), 5),
            entry(1, coll, 5),
            entry(2, SentronStatus::Halted, 4),
        ]);
        let t = Instant::now();
        assert!(m.check(t).is_none());
        let e = m.check(t).expect("stuck").to_string();
        assert!(
            e.contains("still missing sentron 2 (rank 2, halted)"),
            "{e}"
        );
    }
}
