//! Chrome trace export (chrome://tracing, Perfetto): per phase (a process) and sentron
//! (a thread), one span per layer region and one per op, from the first profiled run of
//! each phase.

use crate::analysis::Span;
use crate::report::Report;
use serde_json::{json, Value};

/// Consecutive spans of one sentron in one region, as one layer span.
fn layer_spans(spans: &[&Span]) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    for s in spans {
        let name = s.region.name();
        let end = s.start_ns + s.ns;
        match out.last_mut() {
            Some((n, _, e)) if *n == name => *e = (*e).max(end),
            _ => out.push((name, s.start_ns, end)),
        }
    }
    out
}

/// The trace as JSON (`{"traceEvents": [...]}`, times in microseconds).
pub fn render(r: &Report) -> Value {
    let mut ev = Vec::new();
    for (pid, p) in r.phases.iter().enumerate() {
        ev.push(json!({"ph": "M", "name": "process_name", "pid": pid,
            "args": {"name": format!("{} (first profiled call)", p.name)}}));
        let mut ids: Vec<u32> = p.timeline.iter().map(|s| s.sentron).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            ev.push(
                json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": id,
                "args": {"name": format!("sentron {id}")}}),
            );
            let mut spans: Vec<&Span> = p.timeline.iter().filter(|s| s.sentron == id).collect();
            spans.sort_by_key(|s| s.start_ns);
            for (name, t0, t1) in layer_spans(&spans) {
                ev.push(
                    json!({"ph": "X", "name": name, "cat": "layer", "pid": pid, "tid": id,
                    "ts": t0 as f64 / 1e3, "dur": (t1 - t0) as f64 / 1e3}),
                );
            }
            for s in spans {
                ev.push(
                    json!({"ph": "X", "name": s.op, "cat": if s.sync { "sync" } else { "op" },
                    "pid": pid, "tid": id, "ts": s.start_ns as f64 / 1e3, "dur": s.ns as f64 / 1e3,
                    "args": {"region": s.region.name()}}),
                );
            }
        }
    }
    json!({"traceEvents": ev, "displayTimeUnit": "ns"})
}
