//! vtpu-compiler: the SIW compiler.
//!
//! A program is written as a dataflow [`graph`] of D/S/C ops on values (one graph per
//! sentron; [`builder`] has shorthands, [`loops`] the counted loops), or read from a
//! `.vasm` program ([`frontend`]: renamed into a graph when it is straight-line code and
//! counted loops, else scheduled [`in_place`]). The compiler packs it into sentron
//! instruction words ([`lower`] drives):
//! - [`deps`]: dependencies from op properties (operand roles, memory effects,
//!   coordination kinds, pipes) — never from op names; [`coords`]: which pages may alias;
//! - [`schedule`]: list scheduling with slot constraints, critical-path priority and a
//!   register-pressure guard;
//! - [`modulo`], [`plan`], [`sink`]: software pipelining of counted loops and the
//!   lifetime passes;
//! - [`prefetch`]: SPREFCH ahead of the gathers that need a page;
//! - [`pipeline`]: prologue / kernel / epilogue code;
//! - [`rotation`], [`regalloc`]: register allocation with rotation (double buffering) of
//!   loop values;
//! - [`messages`]: sends, receives and collectives checked for deadlock across sentrons;
//! - [`layout`]: page placement (Z-order, Hilbert or insertion order) chosen from the
//!   program's page access order;
//! - [`workloads`], [`report`]: the batched microvtpu and the tiled GEMV that prove it,
//!   and their before/after reports; [`random`]: random graphs for tests and timing.
//!
//! Every compiled program passes the ISA validator; the unpacked form of the same graph
//! (one op per word) is the baseline that reports compare against. See
//! `docs/COMPILER.md`.

pub mod builder;
pub mod coords;
pub mod deps;
pub mod error;
pub mod frontend;
pub mod graph;
pub mod in_place;
pub mod layout;
pub mod loops;
pub mod lower;
pub mod messages;
pub mod modulo;
pub mod pipeline;
pub mod plan;
pub mod prefetch;
mod pressure;
pub mod random;
pub mod regalloc;
pub mod report;
pub mod rotation;
pub mod schedule;
pub mod sink;
pub mod workloads;

pub use error::{CompileError, Result};
pub use frontend::compile_program;
pub use graph::{Arg, Graph, LoopId, NodeId, SentronGraph, Value};
pub use lower::{compile, CompileOptions, Compiled, Mode};
