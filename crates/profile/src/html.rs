//! A self-contained HTML report: inline SVG charts and CSS, no scripts or fonts from
//! anywhere (it opens offline). Charts: time per layer broken down by op kind, a
//! roofline of each op kind against the probed ceilings, and each sentron's busy vs
//! waiting timeline of one call; then the tables of the text report.

use crate::analysis::{Figures, PhaseReport};
use crate::report::{bytes, pct, Report};
use std::collections::BTreeMap;
use std::fmt::Write;

const PALETTE: [&str; 9] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f",
];
const OTHER: &str = "#bab0ac";

/// Escape text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Stacked bars: one row per layer, one segment per op kind (the 8 largest, + other).
fn layer_chart(p: &PhaseReport) -> String {
    let top: Vec<String> = p.ops.iter().take(8).map(|f| f.name.clone()).collect();
    let color = |op: &str| {
        top.iter()
            .position(|t| t == op)
            .map_or(OTHER, |i| PALETTE[i % PALETTE.len()])
    };
    // Rows in model order: setup, embed, L0.., head (layers' order in `p.layers`).
    let rows: Vec<&Figures> = p.layers.iter().collect();
    let max = rows
        .iter()
        .map(|f| f.us_per_token)
        .fold(0.0, f64::max)
        .max(1e-9);
    let (left, width, bar, gap) = (70.0, 640.0, 12.0, 3.0);
    let h = 40.0 + rows.len() as f64 * (bar + gap) + 30.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="layers-{}" width="{}" height="{h}" viewBox="0 0 {} {h}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(&p.name),
        left + width + 200.0,
        left + width + 200.0
    );
    let _ = write!(
        s,
        r#"<text x="{left}" y="14" class="t">host us per token per layer (summed over sentrons), by op kind</text>"#
    );
    let tokens = p.tokens.max(1) as f64;
    for (i, f) in rows.iter().enumerate() {
        let y = 24.0 + i as f64 * (bar + gap);
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="l" text-anchor="end">{}</text>"#,
            left - 4.0,
            y + bar - 2.0,
            esc(&f.name)
        );
        let mut x = left;
        let mut segs: Vec<(String, u64)> = p
            .layer_ops
            .get(&f.name)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        segs.sort_by_key(|(k, _)| top.iter().position(|t| t == k).unwrap_or(usize::MAX));
        for (op, ns) in segs {
            let us = ns as f64 / 1e3 / tokens;
            let w = us / max * width;
            if w <= 0.0 {
                continue;
            }
            let _ = write!(
                s,
                r#"<rect x="{x:.2}" y="{y}" width="{w:.2}" height="{bar}" fill="{}"><title>{} {}: {us:.1} us/token</title></rect>"#,
                color(&op),
                esc(&f.name),
                esc(&op)
            );
            x += w;
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" class="l">{:.1} us ({:.1}%, {})</text>"#,
            x + 4.0,
            y + bar - 2.0,
            f.us_per_token,
            100.0 * f.share,
            f.bound.name()
        );
    }
    // Legend.
    let y = 30.0 + rows.len() as f64 * (bar + gap);
    let mut x = left;
    for (i, op) in top
        .iter()
        .chain(std::iter::once(&"other".to_string()))
        .enumerate()
    {
        let c = if i < top.len() {
            PALETTE[i % PALETTE.len()]
        } else {
            OTHER
        };
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{y}" width="10" height="10" fill="{c}"/><text x="{}" y="{}" class="l">{}</text>"#,
            x + 13.0,
            y + 9.0,
            esc(op)
        );
        x += 20.0 + 7.0 * op.len() as f64;
    }
    s.push_str("</svg>");
    s
}

fn log_scale(v: f64, lo: f64, hi: f64, px: f64) -> f64 {
    (v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln()) * px
}

/// Roofline: attainable GFLOP/s vs arithmetic intensity, with each op kind of each
/// phase at its achieved rate (aggregate over sentrons).
fn roofline(r: &Report) -> String {
    let c = &r.ceilings;
    let (w, h, l, t) = (640.0, 380.0, 60.0, 24.0);
    let (xlo, xhi) = (0.01, 1000.0);
    let ymax = c.int8_gops.max(c.f32_gflops) * 3.0;
    let ylo = (ymax / 1e6).max(1e-3);
    let x = |ai: f64| l + log_scale(ai, xlo, xhi, w);
    let y = |g: f64| t + h - log_scale(g, ylo, ymax, h);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="roofline" width="{}" height="{}" viewBox="0 0 {} {}" xmlns="http://www.w3.org/2000/svg">"#,
        l + w + 160.0,
        t + h + 50.0,
        l + w + 160.0,
        t + h + 50.0
    );
    let _ = write!(
        s,
        r#"<text x="{l}" y="14" class="t">roofline at {} threads: GFLOP/s (log) vs flops per byte touched (log)</text>"#,
        c.threads
    );
    let _ = write!(
        s,
        r##"<rect x="{l}" y="{t}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##
    );
    // Grid: decades.
    let mut d = xlo;
    while d <= xhi * 1.001 {
        let xx = x(d);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" y1="{t}" x2="{xx:.1}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" class="l" text-anchor="middle">{d}</text>"##,
            t + h,
            t + h + 14.0
        );
        d *= 10.0;
    }
    let mut g = 10f64.powf(ylo.log10().ceil());
    while g <= ymax {
        let yy = y(g);
        let _ = write!(
            s,
            r##"<line x1="{l}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" class="l" text-anchor="end">{g}</text>"##,
            l + w,
            l - 4.0,
            yy + 4.0
        );
        g *= 10.0;
    }
    // Roofs: min(bw * ai, peak), for the f32 and int8 peaks.
    for (peak, name, col) in [
        (c.f32_gflops, "f32 FMA", "#4e79a7"),
        (c.int8_gops, "int8 dot", "#e15759"),
    ] {
        let ridge = peak / c.read_gbs.max(1e-9);
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{col}" stroke-width="2" points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}"><title>{name} peak {peak:.1} G/s, ridge at {ridge:.2} flop/byte</title></polyline>"#,
            x(xlo),
            y(c.read_gbs * xlo),
            x(ridge),
            y(peak),
            x(xhi),
            y(peak)
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="l" fill="{col}">{name} {peak:.0}</text>"#,
            l + w + 4.0,
            y(peak) + 4.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" class="l" fill="#555" transform="rotate(-38 {:.1} {:.1})">read {:.1} GB/s</text>"##,
        x(0.05),
        y(c.read_gbs * 0.05) - 6.0,
        x(0.05),
        y(c.read_gbs * 0.05) - 6.0,
        c.read_gbs
    );
    for (pi, p) in r.phases.iter().enumerate() {
        let col = PALETTE[(pi * 2 + 2) % PALETTE.len()];
        for f in p.ops.iter().filter(|f| f.flops > 0 && f.bytes > 0) {
            let ai = f.flops as f64 / f.bytes as f64;
            let (cx, cy) = (x(ai), y(f.gflops));
            let rad = 3.0 + 12.0 * f.share.sqrt();
            let _ = write!(
                s,
                r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{rad:.1}" fill="{col}" fill-opacity="0.45" stroke="{col}"><title>{} {}: {ai:.2} flop/byte, {:.2} GFLOP/s, {:.2} GB/s, {} of ceiling, {:.1}% of time</title></circle><text x="{:.1}" y="{:.1}" class="l">{}</text>"#,
                esc(&p.name),
                esc(&f.name),
                f.gflops,
                f.gbs,
                pct(f.ceiling_frac),
                100.0 * f.share,
                cx + rad + 2.0,
                cy + 3.0,
                esc(&f.name)
            );
        }
        let _ = write!(
            s,
            r#"<circle cx="{}" cy="{}" r="5" fill="{col}" fill-opacity="0.45" stroke="{col}"/><text x="{}" y="{}" class="l">{}</text>"#,
            l + w + 10.0,
            t + h - 40.0 + 16.0 * pi as f64,
            l + w + 20.0,
            t + h - 36.0 + 16.0 * pi as f64,
            esc(&p.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// Per-sentron lanes of one call: op time (busy), waiting in C ops, and the gaps
/// between ops (dispatch and the profiler's clock), with the layer regions above.
fn timeline(p: &PhaseReport) -> String {
    let (l, w, lane) = (80.0, 900.0, 22.0);
    let mut ids: Vec<u32> = p.timeline.iter().map(|s| s.sentron).collect();
    ids.sort_unstable();
    ids.dedup();
    let total = p.timeline_ns.max(1) as f64;
    let h = 44.0 + (ids.len() as f64 + 1.0) * (lane + 6.0) + 20.0;
    let px = |ns: u64| ns as f64 / total * w;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="timeline-{}" width="{}" height="{h}" viewBox="0 0 {} {h}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(&p.name),
        l + w + 20.0,
        l + w + 20.0
    );
    let _ = write!(
        s,
        r#"<text x="{l}" y="14" class="t">one {} call ({:.2} ms), per sentron: busy in ops (green), waiting in C ops (red), between ops (grey)</text>"#,
        esc(&p.name),
        total / 1e6
    );
    // Layer bands (from sentron 0's spans).
    let y0 = 24.0;
    let mut bands: Vec<(String, u64, u64)> = Vec::new();
    for sp in p
        .timeline
        .iter()
        .filter(|s| Some(&s.sentron) == ids.first())
    {
        let name = sp.region.layer_name();
        match bands.last_mut() {
            Some((n, _, e)) if *n == name => *e = sp.start_ns + sp.ns,
            _ => bands.push((name, sp.start_ns, sp.start_ns + sp.ns)),
        }
    }
    for (i, (name, a, b)) in bands.iter().enumerate() {
        let _ = write!(
            s,
            r#"<rect x="{:.2}" y="{y0}" width="{:.2}" height="{lane}" fill="{}"><title>{}</title></rect>"#,
            l + px(*a),
            (px(*b) - px(*a)).max(0.5),
            if i % 2 == 0 { "#d9e4f0" } else { "#b9cde4" },
            esc(name)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" class="l" text-anchor="end">layers</text>"#,
        l - 4.0,
        y0 + 15.0
    );
    for (k, id) in ids.iter().enumerate() {
        let y = y0 + (k as f64 + 1.0) * (lane + 6.0);
        let _ = write!(
            s,
            r##"<rect x="{l}" y="{y}" width="{w}" height="{lane}" fill="#ddd"/><text x="{}" y="{}" class="l" text-anchor="end">sentron {id}</text>"##,
            l - 4.0,
            y + 15.0
        );
        // Merge runs of one class closer than a third of a pixel: a 0.5B model's call
        // is ~10 000 spans.
        let mut merged: Vec<(bool, f64, f64)> = Vec::new();
        for sp in p.timeline.iter().filter(|s| s.sentron == *id) {
            let (a, b) = (l + px(sp.start_ns), l + px(sp.start_ns + sp.ns));
            match merged.last_mut() {
                Some((sync, _, e)) if *sync == sp.sync && a - *e < 0.33 => *e = b,
                _ => merged.push((sp.sync, a, b)),
            }
        }
        for (sync, a, b) in merged {
            let _ = write!(
                s,
                r#"<rect x="{a:.2}" y="{y}" width="{:.2}" height="{lane}" fill="{}"/>"#,
                (b - a).max(0.2),
                if sync { "#e15759" } else { "#59a14f" }
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn fig_table(rows: &[Figures], first: &str) -> String {
    let mut s = format!(
        "<table><tr><th>{first}</th><th>us/token</th><th>share</th><th>bytes</th><th>GB/s</th><th>GFLOP/s</th><th>of ceiling</th><th>bound</th><th>sync us/token</th><th>gain if at ceiling</th></tr>"
    );
    for f in rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.1}%</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td class=\"{}\">{}</td><td>{:.1}</td><td>{:.1}%</td></tr>",
            esc(&f.name),
            f.us_per_token,
            100.0 * f.share,
            bytes(f.bytes),
            f.gbs,
            f.gflops,
            pct(f.ceiling_frac),
            f.bound.name(),
            f.bound.name(),
            f.us_per_token * f.sync_ns as f64 / f.ns.max(1) as f64,
            100.0 * f.gain_ns as f64 / f.ns.max(1) as f64 * f.share
        );
    }
    s.push_str("</table>");
    s
}

fn phase_section(p: &PhaseReport) -> String {
    let mut s = String::new();
    let sp = &p.split;
    let t = sp.total_ns.max(1) as f64 / 100.0;
    let v = &p.virtual_counters;
    let _ = write!(
        s,
        "<h2>{} &mdash; {} tokens, {} calls</h2><p>host: <b>{:.1} tok/s</b> unprofiled, {:.1} tok/s profiled. Sentron time: D ops {:.1}%, S ops {:.1}%, waiting in C ops {:.1}%, other C {:.1}%, dispatch {:.1}% (est.), profiler clock {:.1}% (est.).<br>virtual: {:.0} SIWs/token/sentron, {:.2} ops/cycle (ops per SIW), pipe utilization D {:.1}% S {:.1}% C {:.1}%, PPT hit rate {}.</p>",
        esc(&p.name),
        p.tokens,
        p.calls,
        p.tok_s.unwrap_or(0.0),
        p.tok_s_profiled,
        sp.d_ns as f64 / t,
        sp.s_ns as f64 / t,
        sp.c_sync_ns as f64 / t,
        sp.c_other_ns as f64 / t,
        sp.dispatch_ns as f64 / t,
        sp.timer_ns as f64 / t,
        v.siws_per_token_per_sentron,
        v.ops_per_siw,
        100.0 * v.pipe_util[0],
        100.0 * v.pipe_util[1],
        100.0 * v.pipe_util[2],
        pct(v.ppt_hit_rate)
    );
    s.push_str("<h3>Bottlenecks</h3><ol class=\"bn\">");
    for b in &p.bottlenecks {
        let _ = write!(
            s,
            "<li><b>{}</b> &mdash; {:.1}% of time, estimated gain <b>{:.1}%</b>{} <span class=\"{}\">[{}]</span> {}</li>",
            esc(&b.what),
            100.0 * b.share,
            100.0 * b.gain_share,
            b.tok_s_if_fixed
                .map_or(String::new(), |t| format!(" (&rarr; {t:.1} tok/s)")),
            b.bound.name(),
            b.bound.name(),
            esc(&b.detail)
        );
    }
    s.push_str("</ol>");
    s.push_str("<h3>Time per layer</h3>");
    s.push_str(&layer_chart(p));
    s.push_str("<h3>Sentron timeline</h3>");
    if p.timeline.is_empty() {
        s.push_str("<p>no spans recorded</p>");
    } else {
        s.push_str(&timeline(p));
    }
    s.push_str("<h3>Per op kind</h3>");
    s.push_str(&fig_table(&p.ops, "op"));
    s.push_str("<h3>Per sentron</h3><table><tr><th>sentron</th><th>run ms</th><th>busy</th><th>waiting</th><th>dispatch (est.)</th><th>SIWs</th><th>ops/SIW</th><th>D util</th><th>S util</th><th>C util</th><th>PPT hit</th></tr>");
    for r in &p.sentrons {
        let t = r.run_ns.max(1) as f64 / 100.0;
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.2}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:.1}%</td><td>{}</td><td>{:.2}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:.1}%</td><td>{}</td></tr>",
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
    s.push_str("</table><h3>Per layer</h3>");
    s.push_str(&fig_table(&p.layers, "layer"));
    s.push_str("<details><summary>Per layer and phase</summary>");
    s.push_str(&fig_table(&p.regions, "region"));
    s.push_str("</details>");
    for n in &p.notes {
        let _ = write!(s, "<p class=\"note\">{}</p>", esc(n));
    }
    s
}

fn cache_section(r: &Report) -> String {
    let mut s = String::from("<h2>Cache analysis</h2>");
    let hw = &r.hw_counters;
    if hw.available {
        let _ = write!(s, "<p>hardware counters ({}):</p><table>", esc(&hw.scope));
        for v in &hw.values {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td></tr>",
                v.name,
                v.value.map_or_else(
                    || format!("unavailable: {}", esc(v.error.as_deref().unwrap_or(""))),
                    |x| x.to_string()
                )
            );
        }
        s.push_str("</table>");
    } else {
        let _ = write!(
            s,
            "<p>hardware counters: <b>unavailable</b>: {}</p>",
            esc(hw.reason.as_deref().unwrap_or(""))
        );
    }
    match (&r.cachegrind, &r.cachegrind_error) {
        (Some(cg), _) => {
            let _ = write!(
                s,
                "<p>cachegrind (valgrind's simulated caches, AVX2 kernels, one thread at a time): <code>{}</code></p><table><tr><th>op kind (by function name)</th>",
                esc(&cg.command)
            );
            for e in &cg.events {
                let _ = write!(s, "<th>{}</th>", esc(e));
            }
            s.push_str("</tr>");
            for k in cg.by_kind.iter().chain(&cg.top_functions) {
                let _ = write!(s, "<tr><td>{}</td>", esc(&k.name));
                for v in &k.counts {
                    let _ = write!(s, "<td>{v}</td>");
                }
                s.push_str("</tr>");
            }
            s.push_str("</table><p class=\"note\">the rows after the op kinds are the functions with the most data-cache misses</p>");
        }
        (None, Some(e)) => {
            let _ = write!(s, "<p>cachegrind failed: {}</p>", esc(e));
        }
        (None, None) => {
            s.push_str("<p>cachegrind: not run (<code>vtpu profile --cachegrind</code>)</p>")
        }
    }
    s
}

/// The HTML report.
pub fn render(r: &Report) -> String {
    let m = &r.model;
    let c = &r.ceilings;
    let mut s = String::from(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>vtpu profile</title><style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}
.chart{display:block;margin:8px 0}.chart .t{font-size:13px;font-weight:600}.chart .l{font-size:11px}
.memory{color:#2a6}.compute{color:#26a}.overhead{color:#a62}.sync{color:#c33}.note{color:#666;font-size:12px}
ol.bn li{margin:2px 0}
</style></head><body>"#,
    );
    let _ = write!(
        s,
        "<h1>vtpu profile</h1><p><b>{}</b>: {} {} layers, D {}, vocab {}, {} weights, {:.1} M parameters; {} sentrons; program {} SIWs; {} mapped, {} copied.</p>",
        esc(&m.path),
        esc(&m.arch),
        m.layers,
        m.dim,
        m.vocab,
        esc(&m.weight_type),
        m.params as f64 / 1e6,
        m.sentrons,
        m.program_words,
        bytes(m.mapped_bytes),
        bytes(m.copied_bytes)
    );
    let _ = write!(
        s,
        "<p>machine: {} ({} cores); probed ceilings at {} threads: read <b>{:.1} GB/s</b>, f32 FMA <b>{:.1} GFLOP/s</b> ({}), int8 dot <b>{:.1} GOP/s</b> ({}). <span class=\"note\">{}</span></p>",
        esc(&r.machine.cpu_model),
        r.machine.cores,
        c.threads,
        c.read_gbs,
        c.f32_gflops,
        esc(&r.machine.f32_kernel),
        c.int8_gops,
        esc(&r.machine.int8_kernel),
        esc(&r.machine.probe_source)
    );
    s.push_str("<p class=\"note\">All times are host times summed over sentrons while profiling (every slot timed); &ldquo;of ceiling&rdquo; is the roofline time (bytes at the probed bandwidth or flops at the probed peak, per sentron) over the actual time. Virtual counters (SIWs, ops/cycle, pipe utilization, PPT hit rate) are labelled as such.</p>");
    s.push_str("<h2>Roofline</h2>");
    s.push_str(&roofline(r));
    for p in &r.phases {
        s.push_str(&phase_section(p));
    }
    s.push_str(&cache_section(r));
    if let (Some(off), Some(on)) = (r.profiler.decode_tok_s_off, r.profiler.decode_tok_s_on) {
        let _ = write!(
            s,
            "<h2>Profiler cost</h2><p>decode {off:.1} tok/s with profiling off, {on:.1} tok/s on; one clock reading {:.0} ns.</p>",
            r.profiler.clock_ns
        );
    }
    let mut caches: BTreeMap<String, u64> = BTreeMap::new();
    for cl in &r.machine.caches {
        caches.insert(format!("L{} {}", cl.level, cl.kind), cl.size_bytes);
    }
    s.push_str("<h2>Probe</h2><table><tr><th>threads</th><th>read GB/s</th><th>f32 GFLOP/s</th><th>int8 GOP/s</th></tr>");
    for row in &r.machine.probe {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            row.threads, row.read_gbs, row.f32_gflops, row.int8_gops
        );
    }
    s.push_str("</table><p>caches: ");
    let cs: Vec<String> = caches
        .iter()
        .map(|(k, v)| format!("{} {}", esc(k), bytes(*v)))
        .collect();
    s.push_str(&cs.join(", "));
    s.push_str("</p>");
    for n in &r.notes {
        let _ = write!(s, "<p class=\"note\">{}</p>", esc(n));
    }
    s.push_str("<p class=\"note\" id=\"rendered\">generated by vtpu profile</p></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn log_scale_maps_decades_evenly() {
        assert!((log_scale(0.01, 0.01, 1000.0, 500.0)).abs() < 1e-9);
        assert!((log_scale(1000.0, 0.01, 1000.0, 500.0) - 500.0).abs() < 1e-9);
        assert!((log_scale(1.0, 0.01, 1000.0, 500.0) - 200.0).abs() < 1e-9);
        // Below the axis: clamped to it.
        assert_eq!(log_scale(0.0, 0.01, 1000.0, 500.0), 0.0);
    }
}
