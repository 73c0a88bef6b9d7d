//! Counters: virtual (per SIW, per pipe, PPT) and host (wall time), never mixed.
//!
//! Virtual figures count what the program did on the virtual machine: one SIW is one
//! virtual cycle, so "ops/cycle" is ops per SIW (at most 3.0) and says nothing about
//! speed. Host figures are measured on this machine with a monotonic clock and are
//! labelled "host" wherever they are printed.

use serde::Serialize;

/// Per-sentron counters. Cheap enough to leave on: the executor bumps one counter per
/// word executed; per-pipe op counts are derived from those and the static word mix.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    pub sentron: u32,
    /// SIWs retired (virtual cycles).
    pub siws: u64,
    /// Non-NOP ops retired, per pipe [D, S, C].
    pub ops: [u64; 3],
    /// NOP slots retired, per pipe [D, S, C].
    pub nops: [u64; 3],
    /// Translation-cache lookups in front of the PPT, and their hits and misses.
    pub ppt_lookups: u64,
    pub ppt_hits: u64,
    pub ppt_misses: u64,
    /// Page bytes gathered into tiles (copied or viewed zero-copy) and scattered to pages.
    pub bytes_gathered: u64,
    pub bytes_scattered: u64,
    /// Bytes of page data copied (gathers of writable pages, scatters).
    pub bytes_copied: u64,
    /// Message payload bytes sent.
    pub msg_bytes: u64,
    pub msgs_sent: u64,
    /// Floating-point operations of D-pipe tile ops (an FMA counts 2).
    pub flops: u64,
    /// Host: nanoseconds this sentron spent blocked in CRECV / CBAR / CREDUCE / CCAST.
    pub host_blocked_ns: u64,
    /// Host: nanoseconds from this sentron's start to its halt.
    pub host_ns: u64,
}

impl Counters {
    pub fn new(sentron: u32) -> Counters {
        Counters {
            sentron,
            ..Default::default()
        }
    }
    pub fn total_ops(&self) -> u64 {
        self.ops.iter().sum()
    }
    /// Virtual: ops per SIW ("ops/cycle"), 0..=3.
    pub fn ops_per_siw(&self) -> f64 {
        ratio(self.total_ops(), self.siws)
    }
    /// Virtual: fraction of all slots that held an op, 0..=1.
    pub fn utilization(&self) -> f64 {
        ratio(self.total_ops(), 3 * self.siws)
    }
    /// Virtual: fraction of SIWs whose slot of `pipe` (0=D, 1=S, 2=C) held an op.
    pub fn pipe_utilization(&self, pipe: usize) -> f64 {
        ratio(self.ops[pipe], self.siws)
    }
    /// Translation-cache hit rate (the "PPT hit rate"); None when nothing was looked up.
    pub fn ppt_hit_rate(&self) -> Option<f64> {
        (self.ppt_lookups > 0).then(|| ratio(self.ppt_hits, self.ppt_lookups))
    }
    /// Host: nanoseconds per SIW, from this sentron's own wall time.
    pub fn host_ns_per_siw(&self) -> Option<f64> {
        (self.siws > 0).then(|| self.host_ns as f64 / self.siws as f64)
    }
    /// Sum of several sentrons' counters (sentron field = u32::MAX).
    pub fn total(all: &[Counters]) -> Counters {
        let mut t = Counters::new(u32::MAX);
        for c in all {
            t.siws += c.siws;
            for p in 0..3 {
                t.ops[p] += c.ops[p];
                t.nops[p] += c.nops[p];
            }
            t.ppt_lookups += c.ppt_lookups;
            t.ppt_hits += c.ppt_hits;
            t.ppt_misses += c.ppt_misses;
            t.bytes_gathered += c.bytes_gathered;
            t.bytes_scattered += c.bytes_scattered;
            t.bytes_copied += c.bytes_copied;
            t.msg_bytes += c.msg_bytes;
            t.msgs_sent += c.msgs_sent;
            t.flops += c.flops;
            t.host_blocked_ns += c.host_blocked_ns;
            t.host_ns = t.host_ns.max(c.host_ns);
        }
        t
    }
    /// The virtual part only: what both executors must agree on exactly.
    pub fn virtual_part(&self) -> Counters {
        Counters {
            host_blocked_ns: 0,
            host_ns: 0,
            ..self.clone()
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
