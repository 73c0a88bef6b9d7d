//! Traps and machine errors: values that name the sentron, the pc, the op and the
//! coordinate, never panics.

use std::fmt;
use vtpu_phext::Coord;

/// Why a sentron stopped the machine.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TrapKind {
    #[error("page fault: no page is mapped at {0}")]
    PageFault(Coord),
    #[error("out of bounds: elements {offset}..{end} of a page of {page_elems} elements")]
    OutOfBounds {
        offset: i64,
        end: i64,
        page_elems: usize,
    },
    #[error("write to a read-only page")]
    ReadOnly,
    #[error("a page already exists at {0}")]
    AlreadyMapped(Coord),
    #[error("bad dtype: {0}")]
    BadDType(String),
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("tile register t{0} is empty (never written)")]
    EmptyTile(u8),
    #[error("integer division by zero")]
    DivByZero,
    #[error("integer overflow in division")]
    DivOverflow,
    #[error("coordinate out of range: {0}")]
    CoordRange(String),
    #[error("sentron {0} does not exist in this machine")]
    NoSuchSentron(u32),
    #[error("this sentron is not a member of group {0}")]
    NotInGroup(String),
    #[error("collective mismatch on group {group}: {detail}")]
    CollectiveMismatch { group: String, detail: String },
    #[error("expected a {expected} message from sentron {from}, got a {got} message")]
    MessageKind {
        from: u32,
        expected: &'static str,
        got: &'static str,
    },
    #[error("mailbox to sentron {to} is full: {pending} bytes are waiting, at most {max} may (the receiver does not keep up)")]
    MailboxFull { to: u32, pending: u64, max: u64 },
    #[error("word limit of {0} exceeded (an endless loop?)")]
    WordLimit(u64),
    #[error("page allocation failed: {0}")]
    Alloc(String),
    #[error("out of memory: asked for {asked} more bytes while {in_use} of the machine's {limit}-byte memory budget are in use (--mem-limit)")]
    OverBudget { asked: u64, in_use: u64, limit: u64 },
    #[error("out of memory: the allocator refused {bytes} bytes")]
    AllocFailed { bytes: u64 },
}

/// A trap: the machine stops, naming where and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Trap {
    pub sentron: u32,
    pub pc: u32,
    /// The op as assembly text.
    pub op: String,
    pub coord: Option<Coord>,
    pub kind: TrapKind,
}

impl From<crate::budget::OverBudget> for TrapKind {
    fn from(o: crate::budget::OverBudget) -> TrapKind {
        TrapKind::OverBudget {
            asked: o.asked,
            in_use: o.in_use,
            limit: o.limit,
        }
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trap in sentron {} at pc {} ({})",
            self.sentron, self.pc, self.op
        )?;
        if let Some(c) = self.coord {
            write!(f, " at coordinate {c}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// What a blocked sentron waits for.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiter {
    pub sentron: u32,
    pub pc: u32,
    pub op: String,
    /// Who it waits for, in words: "a message from sentron 1 (halted)".
    pub waits_for: String,
}

/// Some sentrons can never proceed: they wait for each other in a cycle, or for a
/// sentron that finished (see `waitgraph.rs`). Found as soon as the last wait closes
/// it, even while other sentrons still run; the machine is stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct Deadlock {
    /// The sentrons that can never proceed, lowest first.
    pub waiters: Vec<Waiter>,
    /// Why, as a path of sentron ids through the wait-for graph: `0 -> 1 -> 0` (a
    /// cycle) or `1 -> 0` (1 waits for 0, which finished).
    pub witness: String,
    /// Sentrons that were still running (or waiting only for running ones) when the
    /// deadlock was found; the machine stopped them.
    pub still_running: Vec<u32>,
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.still_running.is_empty() {
            write!(f, "deadlock: every live sentron is blocked")?;
        } else {
            let ids: Vec<String> = self.waiters.iter().map(|w| w.sentron.to_string()).collect();
            let others: Vec<String> = self.still_running.iter().map(u32::to_string).collect();
            write!(
                f,
                "deadlock: sentron(s) {} can never proceed (sentron(s) {} still running were stopped)",
                ids.join(", "),
                others.join(", ")
            )?;
        }
        if !self.witness.is_empty() {
            write!(f, "; wait-for path {}", self.witness)?;
        }
        for w in &self.waiters {
            write!(
                f,
                "\n  sentron {} at pc {} ({}) waits for {}",
                w.sentron, w.pc, w.op, w.waits_for
            )?;
        }
        Ok(())
    }
}

/// Why a run did not complete.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MachineError {
    #[error("{0}")]
    Trap(Box<Trap>),
    #[error("{0}")]
    Deadlock(Deadlock),
    #[error("invalid program:\n{0}")]
    Invalid(String),
    #[error("machine set-up failed: {0}")]
    Setup(String),
}

impl MachineError {
    pub fn as_trap(&self) -> Option<&Trap> {
        match self {
            MachineError::Trap(t) => Some(t),
            _ => None,
        }
    }
}
