//! Cache analysis without a PMU: the same workload under valgrind's cachegrind (a
//! simulated I1/D1/LL hierarchy), its output file summarised per function and per op
//! kind.
//!
//! The op kind of a function is read from its name (the kernels' and the executor's
//! function names say which op they serve); anything unrecognised is "other". These
//! are simulated misses of valgrind's model of the caches, not hardware counts, and
//! valgrind runs the AVX2 kernels (it does not emulate AVX-512) on one thread at a time.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Largest cachegrind output read (a model run writes a few MB).
pub const MAX_OUT_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CachegrindError {
    #[error("cannot run valgrind ({0}); install it (Debian: apt-get install valgrind)")]
    Spawn(std::io::Error),
    #[error("valgrind exited with {status}: {stderr}")]
    Failed { status: String, stderr: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Format { path: String, what: String },
}

/// Event counts of one function or group (names as in the file's `events:` line).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub name: String,
    pub counts: Vec<u64>,
}

/// What one cachegrind run found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CachegrindSummary {
    /// The command valgrind ran (from the file's `cmd:` line).
    pub command: String,
    /// Event names: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw (when cache simulation is on).
    pub events: Vec<String>,
    pub totals: Vec<u64>,
    /// Per op kind, most D1 + LL misses first.
    pub by_kind: Vec<Counts>,
    /// The functions with the most data-cache misses (at most 15).
    pub top_functions: Vec<Counts>,
}

impl CachegrindSummary {
    /// The count of event `name` in `c`, if the file has that event.
    pub fn get(&self, c: &[u64], name: &str) -> Option<u64> {
        self.events
            .iter()
            .position(|e| e == name)
            .and_then(|i| c.get(i).copied())
    }

    fn misses(&self, c: &[u64]) -> u64 {
        ["D1mr", "D1mw", "DLmr", "DLmw"]
            .iter()
            .filter_map(|e| self.get(c, e))
            .sum()
    }
}

/// The op kind a function serves, from its (demangled) name.
pub fn op_kind(function: &str) -> &'static str {
    let f = function.to_ascii_lowercase();
    let has = |ks: &[&str]| ks.iter().any(|k| f.contains(k));
    // Copies first: glibc's "__memcpy_avx_unaligned_erms" contains "rms".
    if has(&["memcpy", "memmove", "memset"]) {
        "memcpy / memset (tile and page copies)"
    } else if has(&["softmax"]) {
        "DTSOFTMAX"
    } else if has(&["rms"]) {
        "DTRMSNORM"
    } else if has(&["rope"]) {
        "DTROPE"
    } else if has(&["swiglu", "silu"]) {
        "DTSWIGLU"
    } else if has(&["embed"]) {
        "DTEMBED"
    } else if has(&["attn", "attention"]) {
        "attention"
    } else if has(&[
        "matmul", "gemm", "gemv", "dot", "quant", "q8_", "q4_", "q5_", "q6_", "dtmm",
    ]) {
        "DTMM / DTMMN (matmul and quantized dot kernels)"
    } else if has(&[
        "fabric",
        "collective",
        "reduce",
        "condvar",
        "futex",
        "mutex",
        "park",
    ]) {
        "C pipe (fabric, collectives, waiting)"
    } else if has(&["gather", "scatter", "translat", "window", "page", "phext"]) {
        "S pipe (pages, translation cache)"
    } else if has(&["fast::", "exec_", "session", "sentron"]) {
        "executor (dispatch)"
    } else {
        "other"
    }
}

/// Parse a cachegrind output file's text.
pub fn parse(path: &str, text: &str) -> Result<CachegrindSummary, CachegrindError> {
    let fmt = |what: String| CachegrindError::Format {
        path: path.to_string(),
        what,
    };
    let mut events: Vec<String> = Vec::new();
    let mut command = String::new();
    let mut per_fn: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(e) = line.strip_prefix("events:") {
            events = e.split_whitespace().map(str::to_string).collect();
        } else if let Some(c) = line.strip_prefix("cmd:") {
            command = c.trim().to_string();
        } else if let Some(f) = line.strip_prefix("fn=") {
            current = Some(f.to_string());
        } else if line.starts_with(|c: char| c.is_ascii_digit()) {
            let Some(f) = &current else {
                return Err(fmt(format!("line {}: counts before any fn=", i + 1)));
            };
            if events.is_empty() {
                return Err(fmt(format!(
                    "line {}: counts before the events: line",
                    i + 1
                )));
            }
            let acc = per_fn
                .entry(f.clone())
                .or_insert_with(|| vec![0; events.len()]);
            // First number is the source line; missing trailing counts are zero.
            for (k, v) in line.split_whitespace().skip(1).enumerate() {
                let v: u64 = v
                    .parse()
                    .map_err(|_| fmt(format!("line {}: {v:?} is not a count", i + 1)))?;
                if let Some(a) = acc.get_mut(k) {
                    *a += v;
                }
            }
        }
    }
    if events.is_empty() {
        return Err(fmt("no events: line (not a cachegrind output file)".into()));
    }
    let mut s = CachegrindSummary {
        command,
        totals: vec![0; events.len()],
        events,
        ..Default::default()
    };
    let mut kinds: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for (f, c) in &per_fn {
        for (t, v) in s.totals.iter_mut().zip(c) {
            *t += v;
        }
        let k = kinds.entry(op_kind(f)).or_insert_with(|| vec![0; c.len()]);
        for (t, v) in k.iter_mut().zip(c) {
            *t += v;
        }
    }
    let mut by_kind: Vec<Counts> = kinds
        .into_iter()
        .map(|(k, c)| Counts {
            name: k.to_string(),
            counts: c,
        })
        .collect();
    by_kind.sort_by_key(|c| std::cmp::Reverse(s.misses(&c.counts)));
    let mut top: Vec<Counts> = per_fn
        .into_iter()
        .map(|(f, c)| Counts { name: f, counts: c })
        .collect();
    top.sort_by_key(|c| std::cmp::Reverse(s.misses(&c.counts)));
    top.truncate(15);
    s.by_kind = by_kind;
    s.top_functions = top;
    Ok(s)
}

/// Run `exe args` under cachegrind, writing its output to `out`, and summarise it.
pub fn run(exe: &Path, args: &[String], out: &Path) -> Result<CachegrindSummary, CachegrindError> {
    let o = std::process::Command::new("valgrind")
        .arg("--tool=cachegrind")
        .arg("--cache-sim=yes")
        .arg(format!("--cachegrind-out-file={}", out.display()))
        .arg(exe)
        .args(args)
        .output()
        .map_err(CachegrindError::Spawn)?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        return Err(CachegrindError::Failed {
            status: o.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    read(out)
}

/// Read and summarise a cachegrind output file.
pub fn read(path: &Path) -> Result<CachegrindSummary, CachegrindError> {
    use std::io::Read;
    let p = path.display().to_string();
    let err = |source| CachegrindError::Read {
        path: p.clone(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut text = String::new();
    f.take(MAX_OUT_BYTES)
        .read_to_string(&mut text)
        .map_err(err)?;
    parse(&p, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "desc: I1 cache: 65536 B, 64 B, 8-way associative
cmd: vtpu profile --workload-only
events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
fl=/x/kernels/src/quant/dot.rs
fn=vtpu_kernels::quant::dot::q8_0_dot_avx2
10 100 1 0 50 20 5 10 1 0
11 100 0 0 50 20 5 10 1 1
fn=vtpu_runtime::fast::FastSentron::exec_d
3 40 2 1 10 1 0 5
fl=???
fn=memcpy
0 10 0 0 5 3 3 5 3 3
summary: 250 3 1 115 44 13 30 5 4
";

    #[test]
    fn counts_sum_per_function_and_kind() {
        let s = parse("sample", SAMPLE).unwrap();
        assert_eq!(s.command, "vtpu profile --workload-only");
        assert_eq!(s.events.len(), 9);
        assert_eq!(s.totals, vec![250, 3, 1, 115, 44, 13, 30, 5, 4]);
        assert_eq!(
            s.top_functions[0].name,
            "vtpu_kernels::quant::dot::q8_0_dot_avx2"
        );
        assert_eq!(s.top_functions[0].counts[4], 40);
        // exec_d's short row: missing trailing counts are zero.
        let exec = s
            .top_functions
            .iter()
            .find(|c| c.name.contains("exec_d"))
            .unwrap();
        assert_eq!(exec.counts, vec![40, 2, 1, 10, 1, 0, 5, 0, 0]);
        assert_eq!(s.by_kind[0].name, op_kind("q8_0_dot"));
        assert_eq!(s.get(&s.totals, "D1mr"), Some(44));
        assert_eq!(s.get(&s.totals, "nope"), None);
    }

    #[test]
    fn damaged_files_are_errors_naming_the_file() {
        for bad in [
            "",
            "fn=x\n1 2 3\n",
            "events: Ir\n1 2\n",
            "events: Ir\nfn=f\n1 x\n",
        ] {
            let e = parse("f.out", bad).unwrap_err().to_string();
            assert!(e.starts_with("f.out: "), "{e}");
        }
    }

    #[test]
    fn op_kinds_come_from_names() {
        assert_eq!(op_kind("vtpu_kernels::x86_avx2::softmax_rows"), "DTSOFTMAX");
        assert_eq!(op_kind("vtpu_kernels::scalar::rms_norm"), "DTRMSNORM");
        assert_eq!(
            op_kind("__memcpy_avx_unaligned_erms"),
            "memcpy / memset (tile and page copies)"
        );
        assert_eq!(op_kind("main"), "other");
    }
}
