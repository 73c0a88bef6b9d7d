//! Before/after reports: the unpacked and the packed form of one program side by side.
//! Every line says whether it is virtual (counted on the virtual machine: one SIW is
//! one "cycle", so ops/cycle is ops per SIW and says nothing about speed) or host
//! (measured on this computer). Host wall time and ns per SIW appear wherever ops/cycle
//! does, and the packed/unpacked host time ratio is printed whichever way it goes.

use std::fmt::Write;

use crate::lower::Compiled;
use crate::workloads::{Side, WorkloadReport};
use vtpu_runtime::Counters;

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn hit(c: &Counters) -> String {
    match c.ppt_hit_rate() {
        Some(h) => format!("{} of {}", pct(h), c.ppt_lookups),
        None => "n/a".into(),
    }
}

/// Per-sentron and total counter rows for several sides.
pub fn counter_table(sides: &[(&str, &[Counters])]) -> String {
    let mut out = String::new();
    let n = sides.iter().map(|s| s.1.len()).max().unwrap_or(0);
    let mut header = format!("{:<40}", "");
    for (label, _) in sides {
        header.push_str(&format!("{label:>18}"));
    }
    let _ = writeln!(out, "{header}");
    let mut groups: Vec<(String, Vec<Counters>)> = (0..n)
        .map(|i| {
            let cs = sides
                .iter()
                .map(|s| s.1.get(i).cloned().unwrap_or_default())
                .collect();
            (format!("sentron {i}"), cs)
        })
        .collect();
    if n > 1 {
        groups.push((
            "all sentrons".into(),
            sides.iter().map(|s| Counters::total(s.1)).collect(),
        ));
    }
    for (name, cs) in groups {
        let _ = writeln!(out, "{name}");
        let mut row = |label: &str, f: &dyn Fn(&Counters) -> String| {
            let _ = write!(out, "  {label:<38}");
            for c in &cs {
                let _ = write!(out, "{:>18}", f(c));
            }
            out.push('\n');
        };
        row("virtual SIWs retired (cycles)", &|c| c.siws.to_string());
        row("virtual ops D / S / C", &|c| {
            format!("{}/{}/{}", c.ops[0], c.ops[1], c.ops[2])
        });
        row("virtual ops/cycle (ops per SIW)", &|c| {
            format!("{:.3}", c.ops_per_siw())
        });
        row("virtual utilization D / S / C", &|c| {
            format!(
                "{:.0}/{:.0}/{:.0}%",
                100.0 * c.pipe_utilization(0),
                100.0 * c.pipe_utilization(1),
                100.0 * c.pipe_utilization(2)
            )
        });
        row("virtual PPT hit rate (trans. cache)", &hit);
        row(
            "virtual bytes gathered / PPT miss",
            &|c| match (c.bytes_gathered + c.bytes_scattered).checked_div(c.ppt_misses) {
                Some(b) => b.to_string(),
                None => "n/a".into(),
            },
        );
        row("host time of this sentron (ms)", &|c| {
            format!("{:.3}", c.host_ns as f64 / 1e6)
        });
        row("host ns per SIW", &|c| {
            c.host_ns_per_siw()
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "n/a".into())
        });
        row("host time blocked in C pipe (ms)", &|c| {
            format!("{:.3}", c.host_blocked_ns as f64 / 1e6)
        });
    }
    out
}

/// Static facts of a compiled program: words, ops, loops.
pub fn compile_summary(label: &str, c: &Compiled) -> String {
    let mut out = String::new();
    for s in &c.streams {
        let who = s
            .sentron
            .map(|i| format!("sentron {i}"))
            .unwrap_or_else(|| "spmd".into());
        let _ = write!(
            out,
            "  {label:<9} {who}: {} words ({} frontend), {} prefetch(es) inserted, {} copies, {} word(s) the fast executor must buffer",
            s.words, s.frontend, s.prefetches, s.copies, s.buffered_words
        );
        out.push('\n');
        for l in &s.loops {
            let _ = writeln!(
                out,
                "            loop: {} iterations x {} ops, {}; II {} (bounds: resources {}, recurrences {}), {} stage(s), kernel unrolled x{} for register rotation, kernel runs {} time(s){}",
                l.trip,
                l.body_ops,
                if l.pipelined { "software-pipelined" } else { "not pipelined" },
                l.ii,
                l.res_mii,
                l.rec_mii,
                l.stages,
                l.unroll,
                l.kernel_trips,
                l.why_not.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
            );
        }
    }
    out
}

/// The whole before/after report of a workload.
pub fn format_workload(r: &WorkloadReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "workload {}: {}", r.name, r.description);
    let _ = writeln!(
        out,
        "executor {:?}; phext space {:.1} MiB; packed form compiled in {:.1} ms",
        r.executor,
        r.space_bytes as f64 / (1 << 20) as f64,
        1e3 * r.compile_s
    );
    let l = &r.layout;
    let scores: Vec<String> = l
        .scores
        .iter()
        .map(|s| format!("{} {} sequential", s.layout, pct(s.sequential)))
        .collect();
    let _ = writeln!(
        out,
        "page layout: {} ({}; static access order: {}); {} page touches, {} distinct pages, {:.0} bytes per page touched",
        l.layout,
        if l.forced { "forced" } else { "chosen by the compiler" },
        scores.join(", "),
        l.touches,
        l.distinct_pages,
        if l.distinct_pages == 0 { 0.0 } else { l.touched_bytes as f64 / l.distinct_pages as f64 }
    );
    let cols: Vec<(&str, &[Counters])> =
        r.sides.iter().map(|s| (s.label, &s.counters[..])).collect();
    out.push_str(&counter_table(&cols));
    let median = |s: &Side| s.median_ns() as f64 / 1e6;
    let _ = write!(
        out,
        "{:<42}",
        format!(
            "host wall time, median of {} (ms)",
            r.sides.first().map_or(0, |s| s.wall_ns.len())
        )
    );
    for s in &r.sides {
        let _ = write!(out, "{:>18}", format!("{:.3}", median(s)));
    }
    out.push('\n');
    let _ = write!(
        out,
        "{:<42}",
        "host time of the slowest sentron, median (ms)"
    );
    for s in &r.sides {
        let _ = write!(
            out,
            "{:>18}",
            format!("{:.3}", s.median_sentron_ns() as f64 / 1e6)
        );
    }
    out.push('\n');
    if let (Some(u), Some(p)) = (
        r.sides.iter().find(|s| s.label == "unpacked"),
        r.sides.iter().find(|s| s.label == "packed"),
    ) {
        let ratio = median(p) / median(u).max(1e-9);
        let sratio = p.median_sentron_ns() as f64 / (u.median_sentron_ns() as f64).max(1.0);
        let _ =
            writeln!(
            out,
            "host time ratio packed / unpacked: {ratio:.3} wall, {sratio:.3} slowest sentron ({})",
            if ratio <= 1.0 { "packed is not slower" } else { "PACKED IS SLOWER on the host" }
        );
    }
    for s in &r.sides {
        out.push_str(&compile_summary(s.label, &s.compiled));
        let _ = writeln!(
            out,
            "  {:<9} dead ops: {}; result: {}",
            s.label,
            s.dead_ops.len(),
            s.check
        );
        for d in s.dead_ops.iter().take(5) {
            let _ = writeln!(out, "            {d}");
        }
    }
    out
}

/// A short summary of a workload run: per form, ops/cycle per sentron, PPT hit rate,
/// host medians and the ratio.
pub fn summary(r: &WorkloadReport) -> String {
    let mut out = format!("workload {}: {}\n", r.name, r.description);
    for s in &r.sides {
        let per: Vec<String> = s
            .counters
            .iter()
            .map(|c| format!("sentron {} {:.3}", c.sentron, c.ops_per_siw()))
            .collect();
        let t = s.total();
        let _ = writeln!(
            out,
            "  {:<9} virtual ops/cycle: {}; utilization D/S/C {:.0}/{:.0}/{:.0}%; PPT hit rate {}; host wall median {:.3} ms, {:.1} ns per SIW (slowest sentron); dead ops {}",
            s.label,
            per.join(", "),
            100.0 * t.pipe_utilization(0),
            100.0 * t.pipe_utilization(1),
            100.0 * t.pipe_utilization(2),
            hit(&t),
            s.median_ns() as f64 / 1e6,
            s.median_sentron_ns() as f64 / s.counters.iter().map(|c| c.siws).max().unwrap_or(1).max(1) as f64,
            s.dead_ops.len()
        );
    }
    if let (Some(u), Some(p)) = (
        r.sides.iter().find(|s| s.label == "unpacked"),
        r.sides.iter().find(|s| s.label == "packed"),
    ) {
        let ratio = p.median_ns() as f64 / (u.median_ns() as f64).max(1.0);
        let _ = writeln!(
            out,
            "  host wall time ratio packed / unpacked: {ratio:.3}{}",
            if ratio > 1.0 {
                " (packed is SLOWER on the host)"
            } else {
                ""
            }
        );
    }
    out
}
