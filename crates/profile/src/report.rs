//! The whole report of one `vtpu profile` run: what ran where, the ceilings, each
//! phase's analysis, hardware counters or their absence, the cachegrind summary.
//! Serialized as is for `--json`; the text, HTML and trace writers read it.

use crate::analysis::{Ceilings, PhaseReport};
use crate::cachegrind::CachegrindSummary;
use crate::hwcounters::HwCounters;
use crate::probe::{CacheLevel, Ceiling};
use serde::Serialize;

/// Format version of the JSON report.
pub const REPORT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelInfo {
    pub path: String,
    pub arch: String,
    pub layers: usize,
    pub dim: usize,
    pub vocab: usize,
    pub params: u64,
    /// Element type of the projection weights (e.g. "q8_0").
    pub weight_type: String,
    pub sentrons: usize,
    pub file_bytes: u64,
    pub mapped_bytes: u64,
    pub copied_bytes: u64,
    /// SIWs of the program, all streams.
    pub program_words: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MachineInfo {
    pub cpu_model: String,
    pub cores: usize,
    pub features: Vec<String>,
    pub caches: Vec<CacheLevel>,
    /// Every probed row (1..=cores threads).
    pub probe: Vec<Ceiling>,
    pub f32_kernel: String,
    pub int8_kernel: String,
    /// Where the probe came from ("cached <path>" or "measured now ...").
    pub probe_source: String,
}

/// What profiling costs, measured in this run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfilerCost {
    /// One clock reading, ns.
    pub clock_ns: f64,
    /// Decode tok/s without / with profiling on (same process, same tokens).
    pub decode_tok_s_off: Option<f64>,
    pub decode_tok_s_on: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    pub model: ModelInfo,
    pub machine: MachineInfo,
    /// The ceilings used for the roofline: the probe's row for `model.sentrons` threads.
    pub ceilings: Ceilings,
    pub phases: Vec<PhaseReport>,
    pub profiler: ProfilerCost,
    pub hw_counters: HwCounters,
    pub cachegrind: Option<CachegrindSummary>,
    /// Why there is no cachegrind section, when it was asked for and failed.
    pub cachegrind_error: Option<String>,
    pub notes: Vec<String>,
}

/// Human-readable byte counts ("12.3 MB").
pub fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

/// "12.3%" or "-".
pub fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:.1}%", 100.0 * x))
}
