//! The report for a terminal.

use crate::analysis::{Figures, PhaseReport};
use crate::report::{bytes, pct, Report};
use std::fmt::Write;

fn row(out: &mut String, f: &Figures) {
    let _ = writeln!(
        out,
        "  {:<12} {:>9.1} {:>6.1}% {:>10} {:>8.2} {:>9.2} {:>7} {:>9} {:>9.1}",
        f.name,
        f.us_per_token,
        100.0 * f.share,
        bytes(f.bytes),
        f.gbs,
        f.gflops,
        pct(f.ceiling_frac),
        f.bound.name(),
        // Per token, as us/token: the row's us/token scaled by its waiting share.
        f.us_per_token * f.sync_ns as f64 / f.ns.max(1) as f64,
    );
}

fn header(out: &mut String, first: &str) {
    let _ = writeln!(
        out,
        "  {:<12} {:>9} {:>7} {:>10} {:>8} {:>9} {:>7} {:>9} {:>9}",
        first, "us/token", "share", "bytes", "GB/s", "GFLOP/s", "of ceil", "bound", "sync us/t"
    );
}

fn phase(out: &mut String, p: &PhaseReport, max_layers: usize) {
    let _ = writeln!(
        out,
        "\n== {} : {} tokens in {} calls; host {:.1} tok/s unprofiled, {:.1} tok/s profiled",
        p.name,
        p.tokens,
        p.calls,
        p.tok_s.unwrap_or(0.0),
        p.tok_s_profiled
    );
    let s = &p.split;
    let t = s.total_ns.max(1) as f64 / 100.0;
    let _ = writeln!(
        out,
        "host time of all sentrons: D ops {:.1}%, S ops {:.1}%, C waiting (CRECV/CREDUCE/CBAR) {:.1}%, other C {:.1}%, dispatch {:.1}% (est.), profiler clock {:.1}% (est.)",
        s.d_ns as f64 / t,
        s.s_ns as f64 / t,
        s.c_sync_ns as f64 / t,
        s.c_other_ns as f64 / t,
        s.dispatch_ns as f64 / t,
        s.timer_ns as f64 / t
    );
    let v = &p.virtual_counters;
    let _ = writeln!(
        out,
        "virtual: {:.0} SIWs/token/sentron, {:.2} ops/cycle (ops per SIW), pipe utilization D {:.1}% S {:.1}% C {:.1}%, PPT hit rate {}",
        v.siws_per_token_per_sentron,
        v.ops_per_siw,
        100.0 * v.pipe_util[0],
        100.0 * v.pipe_util[1],
        100.0 * v.pipe_util[2],
        pct(v.ppt_hit_rate)
    );
    let _ = writeln!(
        out,
        "\n per layer (host; \"of ceil\" = roofline time / actual time, sync excluded):"
    );
    header(out, "layer");
    let n = p.layers.len();
    for (i, f) in p.layers.iter().enumerate() {
        // Long models: first and last layers and the non-layer rows.
        if n > max_layers
            && i >= max_layers / 2
            && i < n - max_layers / 2
            && f.name.starts_with('L')
        {
            if i == max_layers / 2 {
                let _ = writeln!(
                    out,
                    "  ... ({} more layers in --json / --html)",
                    n - max_layers
                );
            }
            continue;
        }
        row(out, f);
    }
    let _ = writeln!(out, "\n per op kind:");
    header(out, "op");
    for f in &p.ops {
        row(out, f);
    }
    let _ = writeln!(out, "\n per sentron (host; virtual counters):");
    let _ = writeln!(
        out,
        "  {:<4} {:>10} {:>7} {:>7} {:>9} {:>8} {:>8} {:>6} {:>6} {:>6} {:>8}",
        "id", "run ms", "busy", "sync", "dispatch", "SIWs", "ops/SIW", "D", "S", "C", "PPT hit"
    );
    for r in &p.sentrons {
        let t = r.run_ns.max(1) as f64 / 100.0;
        let _ = writeln!(
            out,
            "  {:<4} {:>10.2} {:>6.1}% {:>6.1}% {:>8.1}% {:>8} {:>8.2} {:>5.1}% {:>5.1}% {:>5.1}% {:>8}",
            r.id,
            r.run_ns as f64 / 1e6,
            r.busy_ns as f64 / t,
            r.sync_ns as f64 / t,
            r.dispatch_ns as f64 / t,
            r.siws,
            r.ops_per_siw,
            100.0 * r.pipe_util[0],
            100.0 * r.pipe_util[1],
            100.0 * r.pipe_util[2],
            pct(r.ppt_hit_rate)
        );
    }
    let _ = writeln!(
        out,
        "\n bottlenecks (estimated gain if the row ran at its ceiling / did not wait):"
    );
    for (i, b) in p.bottlenecks.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}. {:<20} {:>5.1}% of time, gain {:>5.1}%{}  [{}] {}",
            i + 1,
            b.what,
            100.0 * b.share,
            100.0 * b.gain_share,
            b.tok_s_if_fixed
                .map_or(String::new(), |t| format!(" (-> {t:.1} tok/s)")),
            b.bound.name(),
            b.detail
        );
    }
    for n in &p.notes {
        let _ = writeln!(out, " note: {n}");
    }
}

/// The text report.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.model;
    let c = &r.ceilings;
    let _ = writeln!(
        out,
        "vtpu profile: {} ({} {} layers, D {}, vocab {}, {} weights, {:.1} M params) on {} sentrons",
        m.path, m.arch, m.layers, m.dim, m.vocab, m.weight_type, m.params as f64 / 1e6, m.sentrons
    );
    let _ = writeln!(
        out,
        "machine: {} ({} cores); ceilings at {} threads: read {:.1} GB/s, f32 FMA {:.1} GFLOP/s, int8 dot {:.1} GOP/s [{}]",
        r.machine.cpu_model,
        r.machine.cores,
        c.threads,
        c.read_gbs,
        c.f32_gflops,
        c.int8_gops,
        r.machine.probe_source
    );
    for p in &r.phases {
        phase(&mut out, p, 12);
    }
    let _ = writeln!(out, "\n== cache analysis");
    let hw = &r.hw_counters;
    if hw.available {
        let _ = writeln!(out, "hardware counters ({}):", hw.scope);
        for v in &hw.values {
            let _ = writeln!(
                out,
                "  {:<18} {}",
                v.name,
                v.value.map_or_else(
                    || format!("unavailable ({})", v.error.clone().unwrap_or_default()),
                    |x| x.to_string()
                )
            );
        }
    } else {
        let _ = writeln!(
            out,
            "hardware counters: unavailable: {}",
            hw.reason.clone().unwrap_or_default()
        );
    }
    if let Some(cg) = &r.cachegrind {
        let _ = writeln!(out, "cachegrind (simulated caches; {}):", cg.command);
        let _ = writeln!(
            out,
            "  {:<48} {}",
            "op kind (by function name)",
            cg.events.join(" ")
        );
        for k in &cg.by_kind {
            let nums: Vec<String> = k.counts.iter().map(|x| x.to_string()).collect();
            let _ = writeln!(out, "  {:<48} {}", k.name, nums.join(" "));
        }
        let d1 = |c: &[u64]| cg.get(c, "D1mr").unwrap_or(0) + cg.get(c, "D1mw").unwrap_or(0);
        let ll = |c: &[u64]| cg.get(c, "DLmr").unwrap_or(0) + cg.get(c, "DLmw").unwrap_or(0);
        let _ = writeln!(
            out,
            "  top functions by data-cache misses (D1 misses, LL misses):"
        );
        for f in cg.top_functions.iter().take(8) {
            let _ = writeln!(
                out,
                "    {:>12} {:>12}  {}",
                d1(&f.counts),
                ll(&f.counts),
                f.name
            );
        }
    } else if let Some(e) = &r.cachegrind_error {
        let _ = writeln!(out, "cachegrind: failed: {e}");
    } else {
        let _ = writeln!(out, "cachegrind: not run (add --cachegrind)");
    }
    let p = &r.profiler;
    if let (Some(off), Some(on)) = (p.decode_tok_s_off, p.decode_tok_s_on) {
        let _ = writeln!(
            out,
            "\nprofiler: decode {off:.1} tok/s off, {on:.1} tok/s on ({:.1}x slower while timing every slot; clock reading {:.0} ns)",
            off / on.max(1e-9),
            p.clock_ns
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}
