//! The SIW compiler on the command line:
//! - `vtpu compile PROG [-o OUT]`: pack a `.vasm` / `.vsiw` program into SIWs and write
//!   the packed `.vasm` (`--report` also runs both and prints before/after counters);
//! - `vtpu run PROG --packed --report`: run the program as given (before) and packed
//!   (after) in the same process and print both;
//! - `vtpu workload microvtpu-batched|gemv|compile-time`: the workloads that prove the
//!   compiler, unpacked and packed, with counters, host times and their ratio.

use crate::cmd_run::Setup;
use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use std::path::PathBuf;
use std::time::Instant;
use vtpu_compiler::workloads::{
    self, gemv::GemvParams, microvtpu_batched::MicroParams, RunOptions,
};
use vtpu_compiler::{compile_program, report, CompileOptions};
use vtpu_isa::Program;
use vtpu_phext::{Layout, PhextSpace};
use vtpu_runtime::{RunConfig, RunReport};

#[derive(clap::Args)]
pub struct CompileArgs {
    /// The program to pack (.vasm or .vsiw). Straight-line code and counted CLOOP loops
    /// are renamed, software-pipelined and register-allocated; any other control flow is
    /// scheduled block by block in place (see docs/COMPILER.md).
    input: PathBuf,
    /// Where to write the packed .vasm (default: INPUT with extension .packed.vasm).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Do not insert SPREFCH ahead of gathers.
    #[arg(long)]
    no_prefetch: bool,
    /// Do not software-pipeline loops.
    #[arg(long)]
    no_pipeline: bool,
    /// Also run the input and the packed program and print before/after counters.
    #[arg(long)]
    report: bool,
    /// Sentrons to run on for --report (default: the program's streams).
    #[arg(long, short = 'n', value_parser = crate::cmd_run::parse_sentrons)]
    sentrons: Option<usize>,
    /// Executor for --report.
    #[arg(long, value_enum, default_value_t = crate::Exec::Fast)]
    executor: crate::Exec,
    /// Timed runs of each form for --report (median).
    #[arg(long, default_value_t = 5, value_parser = crate::cmd_run::parse_runs)]
    runs: usize,
    /// For --report: stop with a trap when a sentron retires more than this many words
    /// (an endless loop in the input then ends instead of hanging the compile).
    #[arg(long, value_parser = crate::cmd_run::parse_max_words)]
    max_words: Option<u64>,
}

pub fn compile(a: CompileArgs) -> Result<()> {
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| a.input.with_extension("packed.vasm"));
    // Before any work: the output must not be the input (the source would be lost) and
    // must be creatable (checked after reading the input, so a missing input is what
    // the error names).
    crate::cmd_run::refuse_overwrite(&a.input, &out, "-o")?;
    let p = crate::read_program(&a.input)?;
    crate::cmd_run::check_output_file(&out, "-o")?;
    let n = a.sentrons.unwrap_or_else(|| p.min_sentrons());
    if a.report {
        let name = format!("{} (for --report)", a.input.display());
        crate::cmd_run::validate_for_run(&p, &name, n, vtpu_phext::DEFAULT_PART_LIMIT)?;
    }
    let opts = CompileOptions {
        prefetch: !a.no_prefetch,
        pipeline: !a.no_pipeline,
        ..CompileOptions::packed()
    };
    let t0 = Instant::now();
    let c = compile_program(&p, &opts).map_err(|e| anyhow!("{}: {e}", a.input.display()))?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let text = format!(
        "; packed by `vtpu compile` from {}\n{}",
        a.input.display(),
        vtpu_isa::disassemble(&c.program)
    );
    std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?;
    let (ops, w0, w1) = (
        p.streams
            .iter()
            .flat_map(|s| &s.words)
            .map(|w| w.op_count())
            .sum::<usize>(),
        p.total_words(),
        c.program.total_words(),
    );
    println!(
        "{} -> {}: {w0} -> {w1} words ({ops} ops in the input; static ops per word {:.3} -> {:.3}), compiled in {ms:.1} ms",
        a.input.display(),
        out.display(),
        ops as f64 / w0.max(1) as f64,
        c.program.streams.iter().flat_map(|s| &s.words).map(|w| w.op_count()).sum::<usize>() as f64 / w1.max(1) as f64,
    );
    print!("{}", report::compile_summary("packed", &c));
    if let Ok(g) = vtpu_compiler::frontend::program_graph(&p) {
        let l = vtpu_compiler::layout::choose(&g, &[], None);
        let scores: Vec<String> = l
            .scores
            .iter()
            .map(|s| format!("{} {:.0}%", s.layout, 100.0 * s.sequential))
            .collect();
        println!(
            "page layout: {} (sequential first-touch transitions: {}; `vtpu run --layout {}`)",
            l.layout,
            scores.join(", "),
            l.layout
        );
    }
    for (label, prog) in [("input", &p), ("packed", &c.program)] {
        let dead = vtpu_isa::validate::dead_ops(prog);
        println!("dead ops in the {label} program: {}", dead.len());
        for d in dead.iter().take(5) {
            println!("  {d}");
        }
    }
    if a.report {
        let cfg = RunConfig {
            sentrons: n,
            executor: crate::cmd_run::exec_kind(a.executor),
            word_limit: a.max_words.unwrap_or(u64::MAX),
            ..RunConfig::default()
        };
        let setup = Setup {
            layout: Layout::ZOrder,
            load: None,
            mem_limit: vtpu_runtime::budget::default_limit(),
        };
        let name = a.input.display().to_string();
        print!(
            "{}",
            before_after(&p, &c.program, &name, &setup, &cfg, a.runs)?.text
        );
    }
    Ok(())
}

/// Run a program as given and packed (`vtpu run --packed`), each form from the same
/// start (`setup`: a fresh space by its layout, or `--load`), with `cfg` (sentrons,
/// executor, pinning, word limit). The caller saves, shows and reports from the result.
pub fn run_packed(p: &Program, name: &str, setup: &Setup, cfg: &RunConfig) -> Result<BeforeAfter> {
    let c = compile_program(p, &CompileOptions::packed()).map_err(|e| anyhow!("{name}: {e}"))?;
    before_after(p, &c.program, name, setup, cfg, 5)
}

/// One program measured: the last run's report and final space, every run's wall ns,
/// and the final pages (to compare forms).
struct Measured {
    report: RunReport,
    space: PhextSpace,
    walls: Vec<u64>,
    pages: Vec<(vtpu_phext::Coord, Vec<u8>)>,
}

/// Run `p` once to warm up and `runs` times timed, each from a fresh start.
fn measure(
    p: &Program,
    name: &str,
    setup: &Setup,
    cfg: &RunConfig,
    runs: usize,
) -> Result<Measured> {
    let mut walls = Vec::with_capacity(runs);
    let mut last = None;
    for i in 0..=runs {
        let space = setup.space(p, name, cfg.sentrons)?;
        let r = vtpu_runtime::run(p, &space, cfg)?;
        if i > 0 {
            walls.push(r.host_wall_ns);
        }
        last = Some((r, space));
    }
    let (report, space) = last.ok_or_else(|| anyhow!("no run"))?;
    let mut pages: Vec<_> = space
        .pages()
        .iter()
        .map(|pg| (pg.coord(), pg.read(|b| b.to_vec())))
        .collect();
    pages.sort_by_key(|x| x.0);
    Ok(Measured {
        report,
        space,
        walls,
        pages,
    })
}

fn median(v: &[u64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0) as f64
}

/// Two forms of a program run side by side.
pub struct BeforeAfter {
    /// The before/after table, host medians, their ratio and the page check.
    pub text: String,
    pub before: RunReport,
    pub after: RunReport,
    /// The phext space after the packed program's last run.
    pub after_space: PhextSpace,
}

/// Before/after table of two programs, with host medians, their ratio and a page check.
pub fn before_after(
    before: &Program,
    after: &Program,
    name: &str,
    setup: &Setup,
    cfg: &RunConfig,
    runs: usize,
) -> Result<BeforeAfter> {
    let runs = runs.max(1);
    let b = measure(before, name, setup, cfg, runs)?;
    let a = measure(after, &format!("{name} (packed)"), setup, cfg, runs)?;
    let (n, exec) = (cfg.sentrons, cfg.executor);
    let mut out = format!("before/after on {n} sentron(s), {exec:?} executor\n");
    out.push_str(&report::counter_table(&[
        ("before", &b.report.counters),
        ("after (packed)", &a.report.counters),
    ]));
    let (mb, ma) = (median(&b.walls), median(&a.walls));
    out.push_str(&format!(
        "host wall time, median of {} (ms): before {:.3}, after {:.3}; ratio after/before {:.3}{}\n",
        b.walls.len(),
        mb / 1e6,
        ma / 1e6,
        ma / mb.max(1.0),
        if ma > mb { " (the packed program is SLOWER on the host)" } else { "" }
    ));
    out.push_str(if b.pages == a.pages {
        "pages after the run: identical\n"
    } else {
        "pages after the run: DIFFERENT\n"
    });
    if b.pages != a.pages {
        bail!("{out}the packed program left different pages: this is a compiler bug, please report it");
    }
    Ok(BeforeAfter {
        text: out,
        before: b.report,
        after: a.report,
        after_space: a.space,
    })
}

#[derive(Clone, Copy, ValueEnum)]
pub enum WorkloadKind {
    /// Many independent q*k*v + residual samples over Alice (0) and Bob (1).
    MicrovtpuBatched,
    /// Tiled GEMV over the pages of a >= 64 MiB weight matrix on 2 sentrons.
    Gemv,
    /// Compile time of a random graph of --ops ops (no run).
    CompileTime,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormArg {
    Both,
    Packed,
    Unpacked,
}

#[derive(clap::Args)]
pub struct WorkloadArgs {
    #[arg(value_enum)]
    which: WorkloadKind,
    /// Which forms to run.
    #[arg(long, value_enum, default_value_t = FormArg::Both)]
    mode: FormArg,
    /// Print the full before/after counter table (default: a summary).
    #[arg(long)]
    report: bool,
    /// Timed runs per form, after one warm-up each (medians are reported).
    #[arg(long, default_value_t = 9, value_parser = crate::cmd_run::parse_runs)]
    runs: usize,
    /// Page placement (default: the compiler's choice from the access order).
    #[arg(long, value_enum)]
    layout: Option<crate::LayoutArg>,
    #[arg(long, value_enum, default_value_t = crate::Exec::Fast)]
    executor: crate::Exec,
    /// Write the unpacked and packed programs as .vasm into this directory.
    #[arg(long, value_name = "DIR")]
    emit: Option<PathBuf>,
    /// Do not pin sentron threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Compile the packed form without SPREFCH insertion.
    #[arg(long)]
    no_prefetch: bool,
    /// Compile the packed form without software pipelining.
    #[arg(long)]
    no_pipeline: bool,
    /// microvtpu-batched: samples, features per sample, samples per gather.
    #[arg(long, default_value_t = 16384, value_parser = crate::cmd_run::parse_count_u32)]
    samples: u32,
    #[arg(long, default_value_t = 32, value_parser = crate::cmd_run::parse_count_u32)]
    features: u32,
    #[arg(long, default_value_t = 8, value_parser = crate::cmd_run::parse_count_u32)]
    rows: u32,
    /// gemv: matrix rows N and columns K, tile rows and columns, column blocks (pages
    /// per band) and sentrons.
    #[arg(long, default_value_t = 4096, value_parser = crate::cmd_run::parse_count_u32)]
    n: u32,
    #[arg(long, default_value_t = 4096, value_parser = crate::cmd_run::parse_count_u32)]
    k: u32,
    #[arg(long, default_value_t = 16, value_parser = crate::cmd_run::parse_count_u32)]
    tile_rows: u32,
    #[arg(long, default_value_t = 128, value_parser = crate::cmd_run::parse_count_u32)]
    tile_cols: u32,
    #[arg(long, default_value_t = 2, value_parser = crate::cmd_run::parse_count_u32)]
    col_blocks: u32,
    #[arg(long, default_value_t = 2, value_parser = parse_sentrons_u32)]
    sentrons: u32,
    /// compile-time: ops in the random graph.
    #[arg(long, default_value_t = 100_000, value_parser = parse_ops)]
    ops: usize,
}

fn parse_sentrons_u32(s: &str) -> Result<u32, String> {
    crate::cmd_run::parse_sentrons(s).map(|n| n as u32)
}

/// Most ops of the compile-time workload's random graph: its generator and the
/// compiler hold every op in memory (about a kilobyte each, with the schedule).
const MAX_OPS: usize = 10_000_000;

fn parse_ops(s: &str) -> Result<usize, String> {
    let n = crate::cmd_run::parse_count(s)?;
    if n > MAX_OPS {
        return Err(format!("must be at most {MAX_OPS}, got {n}"));
    }
    Ok(n)
}

/// Refuse workload sizes whose host buffers (page init data, the page itself) exceed
/// what a program may declare, before anything is built: `--features` near u32::MAX
/// would otherwise ask the allocator for terabytes.
fn check_workload_size(a: &WorkloadArgs) -> Result<()> {
    let page = |what: &str, rows: u32, cols: u32| -> Result<()> {
        let elems = u64::from(rows) * u64::from(cols);
        let dims = (1..=vtpu_isa::MAX_TILE_DIM).contains(&rows)
            && (1..=vtpu_isa::MAX_TILE_DIM).contains(&cols);
        if !dims || elems > vtpu_isa::MAX_PAGE_ELEMS {
            bail!(
                "{what}: a {rows}x{cols} page is beyond the page limits (each dimension 1..={}, at most {} elements)",
                vtpu_isa::MAX_TILE_DIM,
                vtpu_isa::MAX_PAGE_ELEMS
            );
        }
        Ok(())
    };
    match a.which {
        WorkloadKind::MicrovtpuBatched => {
            page("--samples x --features", a.samples, a.features)?;
            page("--rows x --features (one gather)", a.rows, a.features)?;
            if !a.samples.is_multiple_of(a.rows) {
                bail!(
                    "--samples ({}) must be a multiple of --rows ({})",
                    a.samples,
                    a.rows
                );
            }
        }
        WorkloadKind::Gemv => {
            page("--n x --k (the matrix)", a.n, a.k)?;
            page("--tile-rows x --tile-cols", a.tile_rows, a.tile_cols)?;
        }
        WorkloadKind::CompileTime => {}
    }
    // Host memory of the workload before anything is built: its pages, plus the f32
    // init values of the inputs (built once, copied into the arena), within the memory
    // budget a run would have.
    let f32_bytes = |r: u32, c: u32| 4 * u64::from(r) * u64::from(c);
    let host = match a.which {
        WorkloadKind::MicrovtpuBatched => 9 * f32_bytes(a.samples, a.features),
        WorkloadKind::Gemv => 2 * f32_bytes(a.n, a.k),
        WorkloadKind::CompileTime => 0,
    };
    let budget = vtpu_runtime::budget::default_limit();
    if host > budget {
        bail!("the workload needs about {host} bytes of host memory, more than the memory budget of {budget} bytes (3/4 of what is available)");
    }
    Ok(())
}

pub fn workload(a: WorkloadArgs) -> Result<()> {
    check_workload_size(&a)?;
    let w = match a.which {
        WorkloadKind::MicrovtpuBatched => workloads::microvtpu_batched::build(MicroParams {
            samples: a.samples,
            features: a.features,
            rows: a.rows,
        }),
        WorkloadKind::Gemv => workloads::gemv::build(GemvParams {
            rows: a.n,
            cols: a.k,
            tile_rows: a.tile_rows,
            tile_cols: a.tile_cols,
            col_blocks: a.col_blocks,
            sentrons: a.sentrons,
        }),
        WorkloadKind::CompileTime => return compile_time(a.ops),
    }
    .map_err(|e| anyhow!("{e}"))?;
    if let Some(dir) = &a.emit {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (label, opts) in [
            ("unpacked", CompileOptions::unpacked()),
            ("packed", CompileOptions::packed()),
        ] {
            let c = vtpu_compiler::compile(&w.graph, &opts).map_err(|e| anyhow!("{e}"))?;
            let path = dir.join(format!("{}.{label}.vasm", w.name));
            std::fs::write(&path, vtpu_isa::disassemble(&c.program))
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    let opts = RunOptions {
        runs: a.runs,
        executor: crate::cmd_run::exec_kind(a.executor),
        layout: a.layout.map(|l| match l {
            crate::LayoutArg::Zorder => Layout::ZOrder,
            crate::LayoutArg::Hilbert => Layout::Hilbert,
            crate::LayoutArg::Insertion => Layout::Insertion,
        }),
        pin: !a.no_pin,
        unpacked: !matches!(a.mode, FormArg::Packed),
        packed: !matches!(a.mode, FormArg::Unpacked),
        compile: CompileOptions {
            prefetch: !a.no_prefetch,
            pipeline: !a.no_pipeline,
            ..CompileOptions::packed()
        },
    };
    let r = workloads::run(&w, &opts).map_err(|e| anyhow!("{e}"))?;
    if a.report {
        print!("{}", report::format_workload(&r));
    } else {
        print!("{}", report::summary(&r));
    }
    Ok(())
}

/// Time the compiler on a random graph of about `ops` ops (2 sentrons, loops, messages).
fn compile_time(ops: usize) -> Result<()> {
    let t0 = Instant::now();
    let g = vtpu_compiler::random::graph_of_size(ops, 7).map_err(|e| anyhow!("{e}"))?;
    let gen_ms = t0.elapsed().as_secs_f64() * 1e3;
    let loops: usize = g.streams.iter().map(|s| s.loops.len()).sum();
    println!(
        "random graph: {} ops over {} sentrons, {loops} loops (generated in {gen_ms:.0} ms)",
        g.total_ops(),
        g.streams.len()
    );
    for (label, opts) in [
        ("unpacked", CompileOptions::unpacked()),
        ("packed", CompileOptions::packed()),
    ] {
        let t = Instant::now();
        let c = vtpu_compiler::compile(&g, &opts).map_err(|e| anyhow!("{label}: {e}"))?;
        let s = t.elapsed().as_secs_f64();
        let piped: usize = c
            .streams
            .iter()
            .flat_map(|s| &s.loops)
            .filter(|l| l.pipelined)
            .count();
        println!(
            "compile {label:<9} {:>8.3} s ({:.2} us per op): {} words, {piped} loops pipelined",
            s,
            1e6 * s / g.total_ops().max(1) as f64,
            c.program.total_words()
        );
    }
    Ok(())
}
