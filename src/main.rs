//! `vtpu`: the command line of the virtual TPU.

mod cmd_chat;
mod cmd_compile;
mod cmd_convert;
mod cmd_llm;
mod cmd_model;
mod cmd_probe;
mod cmd_profile;
mod cmd_run;
mod cmd_serve;
mod fetch;
#[cfg(feature = "mpi")]
mod mpi_run;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vtpu_isa::Program;
use vtpu_phext::{LoadMode, PhextSpace};

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
        /// Check it for a machine of this many sentrons (1..=64, as `run` takes).
        #[arg(long, default_value_t = 1, value_parser = cmd_run::parse_sentrons)]
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
    /// Generate text with a model (GGUF) on the sentrons; the continuation goes to
    /// stdout, timings and counters to stderr.
    Generate(cmd_model::GenerateArgs),
    /// Print the token ids of a text as the model's tokenizer makes them (JSON array).
    Tokenize(cmd_model::TokenizeArgs),
    /// List a model file's metadata and tensors (no weights are read).
    Inspect(cmd_model::InspectArgs),
    /// Prompt-processing and generation speed (tok/s, mean ± sd), as llama-bench
    /// reports it, with the vTPU counters of the run.
    Bench(cmd_model::BenchArgs),
    /// Write a model as a phext-space image (manifest + mmap-able sidecar, checksummed,
    /// atomic) that every `-m` accepts; optionally requantized (--type).
    Convert(cmd_convert::ConvertArgs),
    /// Measure this machine's ceilings (read bandwidth, f32 FMA and int8 dot throughput
    /// per thread count, cache sizes) once and cache them.
    Probe(cmd_probe::ProbeArgs),
    /// Profile a model's prefill and generation: time per layer, op kind and sentron
    /// against the probed ceilings, bottlenecks, cache analysis; text, JSON, HTML, trace.
    Profile(cmd_profile::ProfileArgs),
    /// Serve a model over HTTP with the OpenAI API (chat and completions, streaming),
    /// a chat page at /, /health, /metrics and a prompt cache kept in phext space.
    Serve(cmd_serve::ServeArgs),
    /// Chat with a model in the terminal (chat template, streaming, /reset, /exit);
    /// --session keeps the conversation and its KV cache in a .phext file.
    Chat(cmd_chat::ChatArgs),
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
    /// Number of sentrons (threads, 1..=64); each runs its `.sentron N` stream or the
    /// shared one.
    #[arg(long, short = 'n', value_parser = cmd_run::parse_sentrons)]
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
    #[arg(long, value_parser = cmd_run::parse_max_words)]
    max_words: Option<u64>,
    /// Do not pin sentron threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Memory budget of the run (bytes, or with K, M, G, T): pages, tile buffers,
    /// waiting messages and SALLOC pages draw from it, and a program that asks for
    /// more traps instead of aborting. Default: 3/4 of the smallest of the system's
    /// available memory and the process's memory limits (`ulimit -v`).
    #[arg(long, value_parser = cmd_run::parse_bytes)]
    mem_limit: Option<u64>,
    /// Also pack the program with the SIW compiler and run both: with --report, the
    /// counters before (as given) and after (packed), side by side. Every other option
    /// applies to both runs; --save, --show and --report-json (then {"before",
    /// "after"}) take the packed run's results.
    #[arg(long)]
    packed: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap quotes a rejected value whole: cut long ones to a prefix.
            let text = cmd_run::shorten_long_words(&e.render().to_string());
            if e.use_stderr() {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    // Tiles of megabytes are freed and allocated again per op: keep them mapped.
    vtpu_runtime::host_memory::retain_freed_memory();
    // Under mpirun (feature `mpi`): MPI is initialised here and finalized when
    // `_universe` goes, after the command (and its machine) ended.
    #[cfg(feature = "mpi")]
    let _universe = match mpi_run::init() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {}", cmd_run::error_text(&e));
            return ExitCode::FAILURE;
        }
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One write: under mpirun several ranks may report at once.
            let line = format!(
                "{}error: {}\n",
                cmd_model::rank_prefix(),
                cmd_run::error_text(&e)
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    #[cfg(feature = "mpi")]
    {
        let (_, ranks) = mpi_run::job();
        if ranks > 1 && !matches!(cli.cmd, Cmd::Generate(_) | Cmd::Bench(_)) {
            bail!(
                "under mpirun with {ranks} ranks only `vtpu generate` and `vtpu bench` run spread over the ranks; start other commands without mpirun (or with -n 1)"
            );
        }
    }
    match cli.cmd {
        Cmd::Run(a) => cmd_run::run(a),
        Cmd::Asm { input, output } => {
            let out = output.unwrap_or_else(|| input.with_extension("vsiw"));
            cmd_run::refuse_overwrite(&input, &out, "-o")?;
            let p = read_program(&input)?;
            cmd_run::check_output_file(&out, "-o")?;
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
            if let Some(o) = &output {
                cmd_run::refuse_overwrite(&input, o, "-o")?;
            }
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
        Cmd::Generate(a) => cmd_model::generate_cmd(a),
        Cmd::Tokenize(a) => cmd_model::tokenize_cmd(a),
        Cmd::Inspect(a) => cmd_model::inspect_cmd(a),
        Cmd::Bench(a) => cmd_model::bench_cmd(a),
        Cmd::Convert(a) => cmd_convert::convert_cmd(a),
        Cmd::Probe(a) => cmd_probe::probe_cmd(a),
        Cmd::Profile(a) => cmd_profile::profile_cmd(a),
        Cmd::Serve(a) => cmd_serve::serve_cmd(a),
        Cmd::Chat(a) => cmd_chat::chat_cmd(a),
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

/// Read a program: .vsiw files (by their magic) are decoded, anything else assembled
/// (bounded: see `cmd_run::read_program`).
fn read_program(path: &Path) -> Result<Program> {
    cmd_run::read_program(path)
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
