//! Errors of the MPI transport and runner: each names the ranks and sentrons involved.

use vtpu_runtime::MachineError;

/// A frame that cannot be decoded (a bug or corruption: frames come from our own ranks).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is longer than the {max}-byte limit", max = crate::frame::MAX_FRAME_BYTES)]
    TooLong(usize),
    #[error("frame ends early: {need} bytes needed at byte {at}, {have} left")]
    Short { at: usize, need: usize, have: usize },
    #[error("bad frame: {0}")]
    Bad(String),
}

/// Why a run across ranks did not complete.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MpiError {
    /// A trap or deadlock seen by this rank's own sentrons.
    #[error("{0}")]
    Machine(MachineError),
    /// Another rank stopped the machine.
    #[error("rank {rank} stopped the machine: {text}")]
    Remote { rank: u32, text: String },
    /// A rank fell silent: dead, or hung outside the C pipe.
    #[error("rank {rank} (sentrons {first}..={last}) sent nothing for {silent_ms} ms (the limit is {limit_ms} ms): it died or hangs{waiting}")]
    LostRank {
        rank: u32,
        first: u32,
        last: u32,
        silent_ms: u64,
        limit_ms: u64,
        /// ": sentron 1 (rank 0) waits for ..." lines, or empty.
        waiting: String,
    },
    /// Sentrons on several ranks wait for each other (found by rank 0's monitor from
    /// the heartbeats: MPI cannot tell, so it is declared after the state stayed the
    /// same for the grace time).
    #[error("{deadlock}\n  (across ranks: {placement}; no sentron moved for {stable_ms} ms, which is how a deadlock between ranks is told from a slow rank)")]
    Deadlock {
        deadlock: vtpu_runtime::Deadlock,
        /// "sentrons 0..=1 on rank 0, 2..=3 on rank 1".
        placement: String,
        stable_ms: u64,
    },
    /// A message could not be queued at its receiver's rank.
    #[error("sentron {from} (rank {from_rank}) sends to sentron {to} (rank {to_rank}) faster than it receives: {pending} bytes are waiting, at most {max} may")]
    MailboxFull {
        from: u32,
        from_rank: u32,
        to: u32,
        to_rank: u32,
        pending: u64,
        max: u64,
    },
    /// Frames from another rank that break the protocol (a bug, or ranks running
    /// different programs).
    #[error("protocol error with rank {rank}: {detail}")]
    Protocol { rank: u32, detail: String },
    #[error("MPI set-up: {0}")]
    Setup(String),
}

impl MpiError {
    /// As the runtime's error type (for `Transport::error`).
    pub fn to_machine(&self) -> MachineError {
        match self {
            MpiError::Machine(m) => m.clone(),
            other => MachineError::Setup(other.to_string()),
        }
    }
}
