//! `vtpu`: the command line of the virtual TPU.

mod cmd_compile;
mod cmd_llm;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vtpu_isa::Program;
use vtpu_phext::{Coord, Layout, LoadMode, PhextSpace};
use vtpu_runtime::{ExecutorKind, RunConfig};

#[derive(Parser)]
#[command(
    name = "vtpu",
    version,
    about = "A software-defined virtual TPU: sentrons running three-slot instruction words (D: tile math, S: pages in phext space, C: coordination) on your CPU cores.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a program (.vasm text or .vsiw binary) and optionally report the counters.
    Run(RunArgs),
    /// Assemble a .vasm text program into a .vsiw binary.
    Asm {
        /// The .vasm file to assemble.
        input: PathBuf,
        /// Where to write the binary (default: the input with a .vsiw extension).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Disassemble a .vsiw binary (or re-print a .vasm program) in canonical text form.
    Disasm {
        /// The program to disassemble.
        input: PathBuf,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check a program without running it: registers, coordinates, labels, pages, and
    /// the rule that no two slots of one word write the same register.
    Validate {
        /// The program to check.
        input: PathBuf,
        /// Check it for a machine of this many sentrons.
        #[arg(long, default_value_t = 1)]
        sentrons: usize,
    },
    /// List the pages of a saved phext space (.phext manifest + sidecar).
    Pages {
        /// The .phext manifest.
        manifest: PathBuf,
    },
    /// Time one transformer layer (decode and prefill, three shapes) on the vTPU against
    /// NumPy and PyTorch in the same run; optionally write the table to BENCHMARKS.md.
    BenchLayer(cmd_llm::BenchArgs),
    /// Profile one transformer layer call per op: host time, GB/s, GFLOP/s, counters.
    ProfileLayer(cmd_llm::ProfileArgs),
    /// Pack a program into SIWs (D, S and C slots filled by the SIW compiler) and write
    /// the packed .vasm.
    Compile(cmd_compile::CompileArgs),
    /// Run a compiler workload (microvtpu-batched, gemv, compile-time), unpacked and
    /// packed, with virtual counters and host times.
    Workload(cmd_compile::WorkloadArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Exec {
    /// Pre-decoded words, SIMD kernels, one pinned thread per sentron.
    Fast,
    /// The specification: simple, deterministic, single-threaded.
    Reference,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    Zorder,
    Hilbert,
    Insertion,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The program: .vasm text or .vsiw binary.
    program: PathBuf,
    /// Number of sentrons (threads); each runs its `.sentron N` stream or the shared one.
    #[arg(long, short = 'n')]
    sentrons: Option<usize>,
    /// Which executor runs the program.
    #[arg(long, value_enum, default_value_t = Exec::Fast)]
    executor: Exec,
    /// Print the counters: virtual (per SIW, per pipe, PPT) and host (time) figures.
    #[arg(long)]
    report: bool,
    /// Write the counters as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// Start from a saved phext space (a .phext manifest written by --save).
    #[arg(long, value_name = "MANIFEST")]
    load: Option<PathBuf>,
    /// Save phext space after the run (atomically: the previous save survives a failure).
    #[arg(long, value_name = "MANIFEST")]
    save: Option<PathBuf>,
    /// Memory placement of pages by a space-filling curve over their coordinates.
    #[arg(long, value_enum, default_value_t = LayoutArg::Zorder)]
    layout: LayoutArg,
    /// Print the f32 contents of the page at this coordinate after the run (repeatable).
    #[arg(long, value_name = "COORD")]
    show: Vec<String>,
    /// Stop with a trap when a sentron retires more than this many words.
    #[arg(long)]
    max_words: Option<u64>,
    /// Do not pin sentron threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Also pack the program with the SIW compiler and run both: with --report, the
    /// counters before (as given) and after (packed), side by side.
    #[arg(long)]
    packed: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Asm { input, output } => {
            let p = read_program(&input)?;
            let out = output.unwrap_or_else(|| input.with_extension("vsiw"));
            std::fs::write(&out, vtpu_isa::encode::encode_program(&p))
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "{}: {} stream(s), {} words, {} page(s) -> {}",
                input.display(),
                p.streams.len(),
                p.total_words(),
                p.pages.len(),
                out.display()
            );
            Ok(())
        }
        Cmd::Disasm { input, output } => {
            let p = read_program(&input)?;
            let text = vtpu_isa::disasm::disassemble(&p);
            match output {
                Some(o) => std::fs::write(&o, text)
                    .with_context(|| format!("cannot write {}", o.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        Cmd::Validate { input, sentrons } => {
            let p = read_program(&input)?;
            let opts = vtpu_isa::validate::ValidateOptions {
                sentrons: Some(sentrons),
                part_limit: vtpu_phext::DEFAULT_PART_LIMIT,
            };
            match vtpu_isa::validate::validate(&p, &opts) {
                Ok(()) => {
                    println!(
                        "{}: valid ({} stream(s), {} words, {} page(s))",
                        input.display(),
                        p.streams.len(),
                        p.total_words(),
                        p.pages.len()
                    );
                    // Not an error, but counted ops of a packed program should all be needed.
                    for d in vtpu_isa::validate::dead_ops(&p) {
                        println!("{}: warning: dead op: {d}", input.display());
                    }
                    Ok(())
                }
                Err(errs) => {
                    for e in &errs {
                        eprintln!("{}: {e}", input.display());
                    }
                    bail!("{}: {} validation error(s)", input.display(), errs.len())
                }
            }
        }
        Cmd::BenchLayer(a) => cmd_llm::bench(a),
        Cmd::ProfileLayer(a) => cmd_llm::profile(a),
        Cmd::Compile(a) => cmd_compile::compile(a),
        Cmd::Workload(a) => cmd_compile::workload(a),
        Cmd::Pages { manifest } => {
            let space = PhextSpace::load(&manifest, LoadMode::Map)
                .with_context(|| format!("cannot load {}", manifest.display()))?;
            for c in space.coords() {
                if let Some(p) = space.get(c) {
                    println!(
                        "{c}  {:<5} {}x{}  {:?}{}",
                        p.dtype().name(),
                        p.shape()[0],
                        p.shape()[1],
                        p.kind(),
                        preview(&p)
                    );
                }
            }
            Ok(())
        }
    }
}

/// Read a program: .vsiw files (by their magic) are decoded, anything else assembled.
fn read_program(path: &Path) -> Result<Program> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(b"VSIW") {
        return vtpu_isa::encode::decode_program(&bytes)
            .with_context(|| format!("{}: not a valid .vsiw program", path.display()));
    }
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{}: not UTF-8 text and not a .vsiw binary", path.display()))?;
    vtpu_isa::asm::assemble_file(&path.display().to_string(), &text)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn preview(p: &vtpu_phext::Page) -> String {
    if p.dtype() != vtpu_phext::DType::F32 || p.elems() > 8 {
        return String::new();
    }
    let mut v = vec![0f32; p.elems()];
    match p.read_f32(0, &mut v) {
        Ok(()) => format!("  = {v:?}"),
        Err(_) => String::new(),
    }
}

fn run(a: RunArgs) -> Result<()> {
    let program = read_program(&a.program)?;
    if a.packed {
        return cmd_compile::run_packed(&program, a.sentrons, a.executor, a.report, !a.no_pin);
    }
    let layout = match a.layout {
        LayoutArg::Zorder => Layout::ZOrder,
        LayoutArg::Hilbert => Layout::Hilbert,
        LayoutArg::Insertion => Layout::Insertion,
    };
    // A fresh space places the declared pages by the layout's curve; a loaded one keeps
    // its pages and gains any the program declares that it lacks.
    let space = match &a.load {
        Some(m) => {
            let space = PhextSpace::load(m, LoadMode::Copy)
                .with_context(|| format!("cannot load {}", m.display()))?;
            vtpu_runtime::load_pages(&program, &space)?;
            space
        }
        None => vtpu_runtime::build_space(&program, layout)?,
    };
    let cfg = RunConfig {
        sentrons: a.sentrons.unwrap_or_else(|| program.min_sentrons()),
        executor: match a.executor {
            Exec::Fast => ExecutorKind::Fast,
            Exec::Reference => ExecutorKind::Reference,
        },
        pin: !a.no_pin,
        word_limit: a.max_words.unwrap_or(u64::MAX),
        ..RunConfig::default()
    };
    let report = vtpu_runtime::run(&program, &space, &cfg)?;
    for c in &a.show {
        let coord = Coord::parse(c).with_context(|| format!("--show {c}"))?;
        match space.get(coord) {
            Some(p) => println!("{coord} = {}", page_values(&p)?),
            None => bail!("--show {coord}: no page at that coordinate"),
        }
    }
    if a.report {
        print!("{}", vtpu_runtime::report::format_report(&report));
    }
    if let Some(path) = &a.report_json {
        let text = serde_json::to_string_pretty(&vtpu_runtime::report::report_json(&report))?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(m) = &a.save {
        let stats = space
            .save(m)
            .with_context(|| format!("cannot save phext space to {}", m.display()))?;
        eprintln!("saved phext space to {} ({stats:?})", m.display());
    }
    Ok(())
}

fn page_values(p: &vtpu_phext::Page) -> Result<String> {
    if p.dtype() != vtpu_phext::DType::F32 {
        return Ok(format!(
            "<{} page, {}x{}>",
            p.dtype().name(),
            p.shape()[0],
            p.shape()[1]
        ));
    }
    let mut v = vec![0f32; p.elems()];
    p.read_f32(0, &mut v)?;
    Ok(if v.len() == 1 {
        format!("{}", v[0])
    } else {
        format!("{v:?}")
    })
}
