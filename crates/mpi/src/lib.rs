//! The vTPU's C pipe over MPI: sentrons spread over the ranks of an MPI job.
//!
//! - [`transport`]: [`MpiTransport`], the runtime's `Transport` for one rank (MPI-free:
//!   it turns cross-rank traffic into frames);
//! - [`frame`]: the frames ranks exchange, with capped, checked decoding;
//! - [`comm`]: the pump, the one thread that calls MPI (sends, receives, heartbeats,
//!   lost ranks, the orderly end of a run);
//! - [`monitor`]: rank 0's deadlock judge for waits across ranks;
//! - [`runner`]: run one program across the ranks (`vtpu-mpi run`);
//! - [`machine`]: a machine across the ranks that runs its programs many times, driven
//!   by rank 0 (tensor-parallel generation: `mpirun -n R vtpu generate`).
//!
//! Sentron `s` lives on rank `s / S` (S sentrons per rank). Results are bit for bit
//! those of the in-process fabric: reductions are combined by the runtime's own
//! `combine`, in sentron order, on one rank (the group's leader).

pub mod comm;
pub mod error;
pub mod frame;
pub mod machine;
pub mod monitor;
pub mod runner;
pub mod transport;

pub use comm::{pump_until_done, CommConfig, PumpOutcome};
pub use error::{FrameError, MpiError};
pub use frame::RankReport;
pub use machine::{MpiHost, MpiMachine};
pub use runner::{run_rank, InjectedFault, RankRun, RunOptions};
pub use transport::{MpiTransport, Placement};
