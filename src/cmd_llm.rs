//! `vtpu bench-layer` and `vtpu profile-layer`: one transformer decoder layer on the
//! vTPU, timed against NumPy and PyTorch (same run, same threads), and profiled per op.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use vtpu_llm::layer_bench::{self, CaseResult, Mode, SHAPES};
use vtpu_llm::{LayerConfig, LayerOptions};
use vtpu_phext::DType;

/// Decode KV lengths and prefill length of the benchmark (those of the baseline script).
const DECODE_KV: [usize; 4] = [0, 128, 512, 1024];
const PREFILL_T: usize = 128;
/// KV cache capacity of the benchmark layers (>= 1024 + 1 and >= 128).
const KV_CAPACITY: usize = 1152;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Shapes to run (comma separated): smollm2_135m, qwen25_05b, qwen3_style.
    #[arg(long, default_value = "smollm2_135m,qwen25_05b,qwen3_style")]
    shapes: String,
    /// Threads: vTPU sentrons, and NumPy / PyTorch threads (1..=64).
    #[arg(long, default_value_t = 2, value_parser = crate::cmd_run::parse_sentrons)]
    threads: usize,
    /// Weight dtypes of the vTPU layer (comma separated: f32, f16, bf16). PyTorch runs
    /// in bf16 for the bf16 rows and in f32 for the others; NumPy only in f32.
    #[arg(long, default_value = "f32,bf16")]
    dtypes: String,
    /// bf16 weights multiply the exact f32 activations (slower, more accurate) instead
    /// of bf16-rounded ones (AVX-512 BF16 `vdpbf16ps`, as PyTorch's bf16 does).
    #[arg(long)]
    bf16_exact: bool,
    /// Also time every case cold: cycling through copies of the layer's weights that
    /// together exceed twice the last-level cache, so each call reads them from DRAM
    /// (as a whole model's layers do); the baseline does the same.
    #[arg(long)]
    cold: bool,
    /// Modes to run (comma separated): decode, prefill.
    #[arg(long, default_value = "decode,prefill")]
    modes: String,
    /// Untimed calls before timing (0 allowed).
    #[arg(long, default_value_t = 5, value_parser = parse_warmup)]
    warmup: usize,
    /// Timed calls per case (median).
    #[arg(long, default_value_t = 30, value_parser = crate::cmd_run::parse_runs)]
    runs: usize,
    /// Python with numpy, torch, safetensors, threadpoolctl (default: $VTPU_PYTHON, else
    /// the venv of scripts/setup_python.sh if it exists).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the NumPy / PyTorch baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Write (or replace) the results section in this Markdown file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ProfileArgs {
    /// smollm2_135m, qwen25_05b or qwen3_style.
    #[arg(long, default_value = "smollm2_135m")]
    shape: String,
    /// decode (one token over --kv cached positions) or prefill (--tokens tokens).
    #[arg(long, default_value = "decode")]
    mode: String,
    #[arg(long, default_value_t = 512)]
    kv: usize,
    #[arg(long, default_value_t = 128, value_parser = crate::cmd_run::parse_count)]
    tokens: usize,
    #[arg(long, default_value_t = 2, value_parser = crate::cmd_run::parse_sentrons)]
    sentrons: usize,
    /// Weight dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// bf16 weights multiply the exact f32 activations instead of bf16-rounded ones
    /// (as in `bench-layer`).
    #[arg(long)]
    bf16_exact: bool,
    /// Profiled calls (after one warm-up call).
    #[arg(long, default_value_t = 20, value_parser = crate::cmd_run::parse_runs)]
    calls: usize,
    /// Also print the layer program of sentron 0 (disassembly).
    #[arg(long)]
    program: bool,
}

/// `--warmup`: 0 is a valid choice (no warm-up), absurd counts are not.
fn parse_warmup(s: &str) -> Result<usize, String> {
    if s == "0" {
        return Ok(0);
    }
    crate::cmd_run::parse_runs(s)
}

fn config(name: &str) -> Result<LayerConfig> {
    match layer_bench::shape(name) {
        Some(c) => Ok(c),
        None => bail!("unknown shape {name:?} (known: {})", SHAPES.join(", ")),
    }
}

fn dtype(name: &str) -> Result<DType> {
    match DType::parse(name.trim()) {
        Some(d @ (DType::F32 | DType::F16 | DType::BF16)) => Ok(d),
        _ => bail!("weight dtype {name:?}: the layer supports f32, f16, bf16"),
    }
}

fn options(sentrons: usize, dtype: DType) -> LayerOptions {
    LayerOptions {
        sentrons,
        weight_dtype: dtype,
        max_tokens: PREFILL_T,
        kv_capacity: KV_CAPACITY,
        ..LayerOptions::default()
    }
}

pub fn profile(a: ProfileArgs) -> Result<()> {
    let cfg = config(&a.shape)?;
    let mode = match a.mode.as_str() {
        "decode" => Mode::Decode { kv_len: a.kv },
        "prefill" => Mode::Prefill { tokens: a.tokens },
        m => bail!("--mode {m:?}: decode or prefill"),
    };
    vtpu_kernels::set_bf16_products(!a.bf16_exact);
    let mut opts = options(a.sentrons, dtype(&a.dtype)?);
    opts.max_tokens = opts.max_tokens.max(mode.tokens());
    opts.kv_capacity = opts.kv_capacity.max(mode.start() + mode.tokens());
    let (mut runner, w) =
        layer_bench::bench_runner(&cfg, &opts, 1).context("building the layer")?;
    // The very first call sees cold translation caches.
    let first = runner.forward(&vec![0.5; cfg.dim], 0)?.1;
    let cold = vtpu_runtime::Counters::total(&first.counters);
    println!(
        "first call (cold translation caches): PPT lookups {}, hits {}, hit rate {}",
        cold.ppt_lookups,
        cold.ppt_hits,
        cold.ppt_hit_rate()
            .map_or("n/a".into(), |r| format!("{:.1}%", 100.0 * r))
    );
    let err = layer_bench::validate_against_reference(&mut runner, &cfg, &w)?;
    let products = layer_bench::bf16_products_active(opts.weight_dtype);
    println!(
        "checked against the f64 reference first: max rel error {err:.2e}{}",
        if products { " (bf16 products)" } else { "" }
    );
    if a.program {
        println!("{}", vtpu_isa::disassemble(runner.program()));
    }
    print!(
        "{}",
        layer_bench::profile_text(&mut runner, &cfg, mode, a.calls)?
    );
    Ok(())
}

/// A vTPU result row: shape, dtype, case.
struct Row {
    shape: String,
    dtype: DType,
    /// bf16 weights multiplied bf16-rounded activations.
    products: bool,
    r: CaseResult,
    cfg: LayerConfig,
}

fn python(a: &BenchArgs) -> Option<PathBuf> {
    if let Some(p) = &a.python {
        return Some(p.clone());
    }
    if let Some(p) = std::env::var_os("VTPU_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("VTPU_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vtpu")))?;
    let p = std::env::var_os("VTPU_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("venv"))
        .join("bin/python");
    p.exists().then_some(p)
}

fn run_baseline(
    a: &BenchArgs,
    py: &Path,
    shapes: &[String],
    dtypes: &[DType],
) -> Result<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_layer_baseline.py");
    eprintln!(
        "running the NumPy / PyTorch baseline: {} {}",
        py.display(),
        script.display()
    );
    let out = std::process::Command::new(py)
        .arg(&script)
        .args(["--threads", &a.threads.to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .args(["--runs", &a.runs.to_string()])
        .args(["--shapes", &shapes.join(",")])
        .args(["--dtypes", &baseline_dtypes(dtypes)])
        .args(["--modes", &a.modes])
        .args(a.cold.then_some("--cold"))
        // The script's doc: these two slow a current numpy down; unset for this command.
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", py.display()))?;
    if !out.status.success() {
        bail!("the baseline script failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("the baseline script's JSON output")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unavailable".into())
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs, kernels: {}", vtpu_kernels_level())
}

fn vtpu_kernels_level() -> String {
    vtpu_kernels::level().name().to_string()
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown date".into())
}

/// The baseline's dtype for a vTPU weight dtype: bf16 for bf16, f32 otherwise.
fn baseline_dtype(d: DType) -> &'static str {
    if d == DType::BF16 {
        "bf16"
    } else {
        "f32"
    }
}

fn baseline_dtypes(dtypes: &[DType]) -> String {
    let mut v: Vec<&str> = dtypes.iter().map(|&d| baseline_dtype(d)).collect();
    v.dedup();
    v.sort_unstable();
    v.dedup();
    v.join(",")
}

fn modes(list: &str) -> Result<Vec<Mode>> {
    let mut out = Vec::new();
    for m in list.split(',').map(str::trim) {
        match m {
            "decode" => out.extend(DECODE_KV.iter().map(|&kv_len| Mode::Decode { kv_len })),
            "prefill" => out.push(Mode::Prefill { tokens: PREFILL_T }),
            _ => bail!("--modes: {m:?} is not decode or prefill"),
        }
    }
    Ok(out)
}

/// Times `cases` on `runners` (one: warm; several: cold copies), pushing rows.
fn time_cases(
    a: &BenchArgs,
    rows: &mut Vec<Row>,
    runners: &mut [vtpu_llm::LayerRunner],
    (s, cfg, dt, products): (&str, &LayerConfig, DType, bool),
    cases: &[Mode],
) -> Result<()> {
    for &mode in cases {
        let r = if runners.len() == 1 {
            layer_bench::time_case(&mut runners[0], cfg, mode, a.warmup, a.runs)?
        } else {
            layer_bench::time_case_cold(runners, cfg, mode, a.warmup, a.runs)?
        };
        eprintln!(
            "{s:13} {:5} {} {:7} kv {:5}: vtpu {:8.3} ms (min {:.3})",
            dt.name(),
            if r.copies > 1 { "cold" } else { "warm" },
            mode.name(),
            mode.start(),
            r.median_ms,
            r.min_ms
        );
        rows.push(Row {
            shape: s.to_string(),
            dtype: dt,
            products,
            r,
            cfg: cfg.clone(),
        });
    }
    Ok(())
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let shapes: Vec<String> = a.shapes.split(',').map(|s| s.trim().to_string()).collect();
    let dtypes: Vec<DType> = a.dtypes.split(',').map(dtype).collect::<Result<_>>()?;
    let cases = modes(&a.modes)?;
    // bf16 products (only bf16 weights are affected); the runners built below take the
    // process-wide choice.
    vtpu_kernels::set_bf16_products(!a.bf16_exact);
    let llc = layer_bench::llc_bytes().unwrap_or(layer_bench::DEFAULT_LLC_BYTES);
    let load_before = loadavg();
    let py = match (a.no_baseline, python(&a)) {
        (true, _) => None,
        (false, Some(py)) => Some(py),
        (false, None) => {
            eprintln!("no Python environment found (scripts/setup_python.sh creates one): baseline skipped");
            None
        }
    };
    let mut rows = Vec::new();
    let mut baselines = Vec::new();
    // Shape by shape, the vTPU and then the baseline, so that the two sides of a ratio
    // are measured as close together in time as possible on this shared machine.
    for s in &shapes {
        let cfg = config(s)?;
        for &dt in &dtypes {
            let products = layer_bench::bf16_products_active(dt);
            let (mut runner, w) = layer_bench::bench_runner(&cfg, &options(a.threads, dt), 1)
                .with_context(|| format!("building the {s} layer"))?;
            let err = layer_bench::validate_against_reference(&mut runner, &cfg, &w)?;
            eprintln!(
                "{s} {}{}: checked against the f64 reference, max rel error {err:.2e}",
                dt.name(),
                if products { " (bf16 products)" } else { "" }
            );
            time_cases(
                &a,
                &mut rows,
                std::slice::from_mut(&mut runner),
                (s, &cfg, dt, products),
                &cases,
            )?;
            drop(runner);
            if a.cold {
                let bytes =
                    layer_bench::layer_cost(&cfg, if dt == DType::F32 { 4 } else { 2 }, 1, 1).0;
                let copies = layer_bench::cold_copies(bytes, llc);
                let mut runners = Vec::with_capacity(copies);
                for i in 0..copies {
                    // Distinct weights per copy (seed), each copy checked like the warm one.
                    let (mut r, w) =
                        layer_bench::bench_runner(&cfg, &options(a.threads, dt), 100 + i as u64)
                            .with_context(|| format!("building copy {i} of the {s} layer"))?;
                    layer_bench::validate_against_reference(&mut r, &cfg, &w)?;
                    runners.push(r);
                }
                eprintln!(
                    "{s} {}: {copies} copies of {:.1} MB checked, cycling through them (LLC {} MiB)",
                    dt.name(),
                    bytes as f64 / 1e6,
                    llc >> 20
                );
                time_cases(&a, &mut rows, &mut runners, (s, &cfg, dt, products), &cases)?;
            }
        }
        if let Some(py) = &py {
            baselines.push(run_baseline(&a, py, std::slice::from_ref(s), &dtypes)?);
        }
    }
    let md = markdown(&a, &rows, &baselines, &load_before, llc);
    print!("{md}");
    if let Some(path) = &a.markdown {
        write_section(path, &md)?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}

/// The baseline's timings of one case: (numpy, torch) medians and (numpy, torch) minimums.
struct Base {
    numpy: Option<f64>,
    torch: f64,
    numpy_min: Option<f64>,
    torch_min: f64,
    /// Weight copies the baseline cycled through (1: warm).
    copies: u64,
}

/// The baseline row of a vTPU row: same shape, mode, KV length, warm or cold, and the
/// baseline dtype of its weight dtype (rows of an older script without `dtype` / `cold`
/// are f32 and warm).
fn base_of(b: &[serde_json::Value], r: &Row) -> Option<Base> {
    let (mode, cold) = (r.r.mode, r.r.copies > 1);
    let want_dtype = baseline_dtype(r.dtype);
    let row = b
        .iter()
        .filter_map(|j| j.get("results")?.as_array())
        .flatten()
        .find(|x| {
            x["shape"] == r.shape.as_str()
                && x["mode"] == mode.name()
                && x["kv_len"] == mode.start() as u64
                && x["dtype"].as_str().unwrap_or("f32") == want_dtype
                && x["cold"].as_bool().unwrap_or(false) == cold
        })?;
    // NumPy has no bf16: null there.
    Some(Base {
        numpy: row["numpy_ms"].as_f64(),
        torch: row["torch_ms"].as_f64()?,
        numpy_min: row["numpy_min_ms"].as_f64(),
        torch_min: row["torch_min_ms"].as_f64()?,
        copies: row["copies"].as_u64().unwrap_or(1),
    })
}

fn markdown(
    a: &BenchArgs,
    rows: &[Row],
    base: &[serde_json::Value],
    load_before: &str,
    llc: u64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{BEGIN}\n## One transformer layer: vTPU vs NumPy vs PyTorch\n"
    );
    let _ = writeln!(
        s,
        "Command: `vtpu bench-layer --threads {} --dtypes {}{}{}{} --warmup {} --runs {}{}` (release build), {}.",
        a.threads,
        a.dtypes,
        if a.bf16_exact { " --bf16-exact" } else { "" },
        if a.cold { " --cold" } else { "" },
        if a.modes != "decode,prefill" { format!(" --modes {}", a.modes) } else { String::new() },
        a.warmup,
        a.runs,
        if a.markdown.is_some() { " --markdown BENCHMARKS.md" } else { "" },
        date()
    );
    let _ = writeln!(s, "Machine: {}. Threads: {} (vTPU sentrons pinned one per core; NumPy/PyTorch thread pools limited to {}).", cpu_model(), a.threads, a.threads);
    let _ = writeln!(s, "Load average (1/5/15 min) before: {load_before}, after: {}. Other processes on this shared machine make every figure noisy; the ratios come from one invocation.", loadavg());
    let _ = writeln!(s, "\nHost wall-clock milliseconds per layer call, median of {} after {} warm-up calls. Decode: 1 token over a KV cache of `kv` positions; prefill: 128 tokens from position 0. Random weights; each vTPU layer is checked against the f64 reference before it is timed, and the baseline checks NumPy and PyTorch against the Hugging Face goldens and each other. Ratios > 1 mean the vTPU is faster. GB/s: weights + KV cache read per call at the vTPU median. The last two columns are the fastest single call of each side: on a shared machine, interference only ever adds time, so minimums compare the implementations when neither was disturbed (medians are the headline figures).\n", a.runs, a.warmup);
    let _ = writeln!(s, "Dtypes, like for like: f32 rows compare with NumPy and PyTorch in f32. bf16 rows compare with PyTorch in bf16 (weights, activations, KV cache in bf16, matmuls in bf16 with f32 accumulation, RMSNorm and softmax in f32, as a Hugging Face model loaded in bf16 runs); NumPy has no bf16, so its bf16 cells are `-`. `bf16` weights on the vTPU multiply bf16-rounded activations (AVX-512 BF16 `vdpbf16ps`, f32 accumulation, checked against the f64 reference within `layer_bench::tolerance_bf16_products`); `bf16 (f32 act.)` multiplies the exact f32 activations (`--bf16-exact`, or a CPU without AVX-512 BF16). f16 rows compare with the f32 baseline.\n");
    if a.cold {
        let _ = writeln!(s, "Warm and cold: `warm` calls one layer over and over, so its weights stay in the caches as far as they fit (this machine's last-level cache: {} MiB; a layer of these shapes is 14-63 MB in f32, 7-31 MB in bf16). `cold` cycles through copies of the layer (different weights) totalling more than twice the last-level cache, so each call reads its weights from DRAM, as a whole model's layers do; the mode column gives the copies (vTPU / baseline), and the baseline cycles through as many copies of its own.\n", llc >> 20);
    }
    let _ = writeln!(s, "| shape | mode | kv | weights | vTPU ms | NumPy ms | PyTorch ms | NumPy / vTPU | PyTorch / vTPU | vTPU GB/s | vTPU GFLOP/s | min: vTPU / NumPy / PyTorch ms | PyTorch / vTPU (min) |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let b = base_of(base, r);
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        let ratio = |v: Option<f64>, of: f64| v.map_or("-".into(), |v| format!("{:.2}x", v / of));
        let med = r.r.median_ms;
        let mode = if r.r.copies > 1 {
            let theirs = b
                .as_ref()
                .map_or(String::new(), |b| format!(" / {}", b.copies));
            format!("{} cold ({}{theirs} copies)", r.r.mode.name(), r.r.copies)
        } else if a.cold {
            format!("{} warm", r.r.mode.name())
        } else {
            r.r.mode.name().to_string()
        };
        let weights = match (r.dtype, r.products) {
            (DType::BF16, false) => "bf16 (f32 act.)".to_string(),
            (d, _) => d.name().to_string(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} / {} / {} | {} |",
            r.shape,
            mode,
            r.r.mode.start(),
            weights,
            med,
            f(b.as_ref().and_then(|b| b.numpy)),
            f(b.as_ref().map(|b| b.torch)),
            ratio(b.as_ref().and_then(|b| b.numpy), med),
            ratio(b.as_ref().map(|b| b.torch), med),
            r.r.gb_per_s(&r.cfg),
            r.r.gflop_per_s(),
            r.r.min_ms,
            f(b.as_ref().and_then(|b| b.numpy_min)),
            f(b.as_ref().map(|b| b.torch_min)),
            ratio(b.as_ref().map(|b| b.torch_min), r.r.min_ms),
        );
    }
    if let Some(meta) = base.first().and_then(|b| b.get("meta")) {
        let others: Vec<String> = base
            .iter()
            .map(|b| b["meta"]["other_processes_cpu_s"].to_string())
            .collect();
        let _ = writeln!(
            s,
            "\nBaseline: python {}, numpy {}, torch {} ({} threads), run shape by shape right after the vTPU cases of that shape; CPU seconds used by other processes during each shape's baseline: {} (0 = a quiet machine; with 2 threads, other load makes OpenBLAS and PyTorch stall for tens of milliseconds, see scripts/bench_layer_baseline.py).",
            meta["python"].as_str().unwrap_or("?"),
            meta["numpy"].as_str().unwrap_or("?"),
            meta["torch"].as_str().unwrap_or("?"),
            meta["torch_threads"],
            others.join(", ")
        );
    } else {
        let _ = writeln!(s, "\nBaseline: not run.");
    }
    if let Some(r) = rows.first() {
        let c = &r.r.counters;
        let _ = writeln!(
            s,
            "\nVirtual counters of the layer program ({} {} {}, one call, all sentrons): {} SIWs, {:.2} ops/SIW (ops/cycle), PPT (translation cache) hit rate {} in a warm session.",
            r.shape,
            r.dtype.name(),
            r.r.mode.name(),
            c.siws,
            c.ops_per_siw(),
            c.ppt_hit_rate().map_or("n/a".into(), |h| format!("{:.1}%", 100.0 * h))
        );
    }
    let _ = writeln!(s, "{END}");
    s
}

const BEGIN: &str = "<!-- BEGIN bench-layer: written by `vtpu bench-layer --markdown` -->";
const END: &str = "<!-- END bench-layer -->";

/// Replace the bench-layer section of `path` (or append it; create the file if needed),
/// keeping every other section.
fn write_section(path: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{}{}",
            &old[..b],
            section.trim_end(),
            &old[e + END.len()..]
        ),
        _ => format!("{}\n{}", old.trim_end(), section),
    };
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, new).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
