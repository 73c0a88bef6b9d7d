//! Counter reports for people (`vtpu run --report`) and machines (`--report-json`).
//! Every line says whether it is a virtual figure (counted on the virtual machine) or a
//! host figure (measured on this computer).

use crate::counters::Counters;
use crate::machine::RunReport;
use std::fmt::Write;

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn columns(r: &RunReport) -> Vec<(String, Counters)> {
    let mut cols: Vec<(String, Counters)> = r
        .counters
        .iter()
        .map(|c| (format!("sentron {}", c.sentron), c.clone()))
        .collect();
    if r.counters.len() > 1 {
        cols.push(("total".into(), r.total()));
    }
    cols
}

/// A table: one column per sentron (plus a total), virtual rows then host rows.
pub fn format_report(r: &RunReport) -> String {
    let cols = columns(r);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "vtpu run: {} sentron{}, {:?} executor",
        r.sentrons,
        if r.sentrons == 1 { "" } else { "s" },
        r.executor
    );
    let mut header = format!("{:<34}", "");
    for (name, _) in &cols {
        header.push_str(&format!("{name:>16}"));
    }
    let _ = writeln!(out, "{header}");
    let mut body = String::new();
    let mut line = |label: &str, f: &dyn Fn(&Counters) -> String| {
        let _ = write!(body, "{label:<34}");
        for (_, c) in &cols {
            let _ = write!(body, "{:>16}", f(c));
        }
        body.push('\n');
    };
    line("virtual SIWs retired (cycles)", &|c| c.siws.to_string());
    line("virtual ops D / S / C", &|c| {
        format!("{}/{}/{}", c.ops[0], c.ops[1], c.ops[2])
    });
    line("virtual NOP slots D / S / C", &|c| {
        format!("{}/{}/{}", c.nops[0], c.nops[1], c.nops[2])
    });
    line("virtual ops/cycle (ops per SIW)", &|c| {
        format!("{:.3}", c.ops_per_siw())
    });
    line("virtual utilization (all slots)", &|c| pct(c.utilization()));
    line(
        "virtual utilization D pipe",
        &|c| pct(c.pipe_utilization(0)),
    );
    line(
        "virtual utilization S pipe",
        &|c| pct(c.pipe_utilization(1)),
    );
    line(
        "virtual utilization C pipe",
        &|c| pct(c.pipe_utilization(2)),
    );
    line("virtual PPT lookups", &|c| c.ppt_lookups.to_string());
    line("virtual PPT hit rate (trans. cache)", &|c| {
        c.ppt_hit_rate().map(pct).unwrap_or_else(|| "n/a".into())
    });
    line("virtual bytes gathered / scattered", &|c| {
        format!("{}/{}", c.bytes_gathered, c.bytes_scattered)
    });
    line("virtual messages / bytes sent", &|c| {
        format!("{}/{}", c.msgs_sent, c.msg_bytes)
    });
    line("virtual flops (FMA = 2)", &|c| c.flops.to_string());
    line("host time (ms)", &|c| {
        format!("{:.3}", c.host_ns as f64 / 1e6)
    });
    line("host ns per SIW", &|c| {
        c.host_ns_per_siw()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "n/a".into())
    });
    line("host time blocked in C pipe (ms)", &|c| {
        format!("{:.3}", c.host_blocked_ns as f64 / 1e6)
    });
    line("host GB/s (page bytes moved)", &|c| {
        rate((c.bytes_gathered + c.bytes_scattered) as f64, c.host_ns)
    });
    line("host GFLOP/s", &|c| rate(c.flops as f64, c.host_ns));
    let _ = write!(
        body,
        "host wall time of the run: {:.3} ms\nhost hardware counters: unavailable (not collected)\n",
        r.host_wall_ns as f64 / 1e6
    );
    out.push_str(&body);
    out
}

fn rate(units: f64, ns: u64) -> String {
    if ns == 0 {
        "n/a".into()
    } else {
        format!("{:.3}", units / ns as f64)
    }
}

/// The same figures as JSON, with virtual and host values in separate objects.
pub fn report_json(r: &RunReport) -> serde_json::Value {
    let per = |c: &Counters| {
        serde_json::json!({
            "sentron": if c.sentron == u32::MAX { serde_json::Value::Null } else { c.sentron.into() },
            "virtual": {
                "siws": c.siws,
                "ops": { "D": c.ops[0], "S": c.ops[1], "C": c.ops[2] },
                "nops": { "D": c.nops[0], "S": c.nops[1], "C": c.nops[2] },
                "ops_per_siw": c.ops_per_siw(),
                "utilization": c.utilization(),
                "pipe_utilization": { "D": c.pipe_utilization(0), "S": c.pipe_utilization(1), "C": c.pipe_utilization(2) },
                "ppt_lookups": c.ppt_lookups,
                "ppt_hits": c.ppt_hits,
                "ppt_misses": c.ppt_misses,
                "ppt_hit_rate": c.ppt_hit_rate(),
                "bytes_gathered": c.bytes_gathered,
                "bytes_scattered": c.bytes_scattered,
                "bytes_copied": c.bytes_copied,
                "msgs_sent": c.msgs_sent,
                "msg_bytes": c.msg_bytes,
                "flops": c.flops,
            },
            "host": {
                "ns": c.host_ns,
                "ns_per_siw": c.host_ns_per_siw(),
                "blocked_ns": c.host_blocked_ns,
            }
        })
    };
    serde_json::json!({
        "executor": format!("{:?}", r.executor),
        "sentrons": r.sentrons,
        "per_sentron": r.counters.iter().map(per).collect::<Vec<_>>(),
        "total": per(&r.total()),
        "host": { "wall_ns": r.host_wall_ns, "hardware_counters": "unavailable" },
    })
}
