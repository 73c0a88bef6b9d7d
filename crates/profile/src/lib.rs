//! Profiling a model on the vTPU: where the time of a token goes, and why.
//!
//! - [`probe`]: this machine's measured ceilings (read bandwidth, f32 FMA and int8 dot
//!   throughput per thread count, cache sizes), cached per machine;
//! - [`attribution`]: which layer and phase each word of a model program belongs to,
//!   derived from the program itself (see ARCHITECTURE.md, "Profiling");
//! - [`analysis`]: per layer, per op kind and per sentron figures, roofline
//!   classification and the ranked bottleneck list, as one serializable [`Report`];
//! - [`text`], [`html`], [`trace`]: the report for a terminal, a browser and
//!   chrome://tracing / Perfetto;
//! - [`hwcounters`] and [`cachegrind`]: cache analysis with perf_event hardware
//!   counters where the kernel allows them, and valgrind's cachegrind where it does not.
//!
//! Host and virtual figures are kept apart and labelled, as in the runtime's reports.

pub mod probe;
pub mod probe_kernels;

pub use probe::{load_or_probe, probe_machine, Probe, ProbeOptions, ProbeSource};
pub mod analysis;
pub mod attribution;
pub mod cachegrind;
pub mod html;
pub mod hwcounters;
pub mod report;
pub mod text;
pub mod trace;

pub use report::Report;
