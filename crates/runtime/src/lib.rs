//! The vTPU runtime: sentrons on OS threads running SIW streams over phext space.
//!
//! - [`machine`]: load pages, run a program on N sentrons, collect counters and state;
//! - [`fast`]: the fast executor (pre-decoded words, SIMD kernels, pinned threads);
//! - [`reference`]: the reference executor, the living specification of the ISA;
//! - [`fabric`]: the C pipe between sentrons (messages, collectives, deadlock
//!   detection) behind the [`fabric::Transport`] trait;
//! - [`counters`] and [`report`]: virtual and host counters, never mixed.

pub mod budget;
pub mod common;
pub mod counters;
pub mod error;
pub mod fabric;
pub mod fast;
pub mod host_memory;
pub mod layer_ops;
pub mod machine;
pub mod profile;
pub mod reference;
pub mod report;
pub mod session;
pub mod state;
pub mod waitgraph;

pub use counters::Counters;
pub use error::{Deadlock, MachineError, Trap, TrapKind};
pub use machine::{
    build_space, load_pages, predecode, run, validate_for, ExecutorKind, RunConfig, RunReport,
};
pub use profile::{OpProfile, OpStat};
pub use session::{run_once_reporting, ProgramMachine, Session, SessionReport};
pub use state::{SentronState, TileValue};
