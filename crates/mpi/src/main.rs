//! `vtpu-mpi run PROGRAM --sentrons-per-rank S`: one .vasm / .vsiw program across the
//! ranks of an MPI job (start it with `mpirun -n R`). Rank 0 prints the pages asked for
//! and, with `--report`, every rank's counters.
//!
//! Exit status: 0 done; 1 the machine stopped (trap, deadlock, another rank's error) or
//! bad arguments; 2 a rank was lost (the job is aborted with MPI_Abort).

use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use vtpu_mpi::runner::{format_reports, merge_pages};
use vtpu_mpi::{run_rank, CommConfig, InjectedFault, MpiError, RunOptions};
use vtpu_phext::Coord;

#[derive(Parser)]
#[command(
    name = "vtpu-mpi",
    about = "Run a vTPU program with its sentrons spread over the ranks of an MPI job"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run PROGRAM (.vasm or .vsiw): rank r runs sentrons r*S .. r*S+S-1.
    Run {
        program: PathBuf,
        /// Sentrons per rank (S); the machine has ranks x S sentrons (at most 64).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        sentrons_per_rank: u32,
        /// Print the page at this coordinate after the run (repeatable).
        #[arg(long)]
        show: Vec<String>,
        /// Print every rank's counters (virtual and host, labelled).
        #[arg(long)]
        report: bool,
        /// A rank silent for this long is reported lost (milliseconds).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
        rank_timeout_ms: u64,
        /// A wait across ranks that stays stuck this long is reported as a deadlock
        /// (milliseconds).
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
        deadlock_grace_ms: u64,
        /// Heartbeat period (milliseconds).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        heartbeat_ms: u64,
        /// Endless-loop guard: a sentron that retires more words traps.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_words: Option<u64>,
        /// Do not pin sentron threads to cores (several ranks on one machine).
        #[arg(long)]
        no_pin: bool,
    },
}

/// Read a program (at most the ISA's program-file limit): .vsiw by its magic, else
/// assembly text.
fn read_program(path: &Path) -> Result<vtpu_isa::Program, String> {
    let max = vtpu_isa::MAX_PROGRAM_BYTES;
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "{}: more than the {max}-byte limit for a program",
            path.display()
        ));
    }
    if bytes.starts_with(&vtpu_isa::encode::MAGIC) {
        return vtpu_isa::encode::decode_program(&bytes)
            .map_err(|e| format!("{}: not a valid .vsiw program: {e}", path.display()));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{}: not UTF-8 text and not a .vsiw binary", path.display()))?;
    vtpu_isa::asm::assemble_file(&path.display().to_string(), &text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cmd::Run {
        program,
        sentrons_per_rank,
        show,
        report,
        rank_timeout_ms,
        deadlock_grace_ms,
        heartbeat_ms,
        max_words,
        no_pin,
    } = cli.cmd;
    let Some((universe, level)) = mpi::initialize_with_threading(mpi::Threading::Funneled) else {
        eprintln!("vtpu-mpi: MPI is already initialized");
        return ExitCode::from(1);
    };
    if level < mpi::Threading::Funneled {
        eprintln!("vtpu-mpi: this MPI gives thread level {level:?}; the pump needs Funneled");
        return ExitCode::from(1);
    }
    let world = universe.world();
    use mpi::traits::Communicator;
    let rank = world.rank();
    // Every rank checks its own arguments and program the same way, so every rank
    // fails the same way on bad input and none waits for the others.
    let setup = || -> Result<(vtpu_isa::Program, RunOptions), String> {
        let shows = show
            .iter()
            .map(|c| Coord::parse(c).map_err(|e| format!("--show {c:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let fault = match std::env::var("VTPU_MPI_FAULT") {
            Ok(s) if !s.is_empty() => Some(InjectedFault::parse(&s).map_err(|e| e.to_string())?),
            _ => None,
        };
        let opts = RunOptions {
            per_rank: sentrons_per_rank,
            shows,
            word_limit: max_words.unwrap_or(u64::MAX),
            pin: !no_pin,
            layout: vtpu_phext::Layout::ZOrder,
            comm: CommConfig {
                heartbeat: Duration::from_millis(heartbeat_ms),
                rank_timeout: Duration::from_millis(rank_timeout_ms),
                deadlock_grace: Duration::from_millis(deadlock_grace_ms),
                ..CommConfig::default()
            },
            fault,
        };
        Ok((read_program(&program)?, opts))
    };
    let (prog, opts) = match setup() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vtpu-mpi (rank {rank}): {e}");
            return ExitCode::from(1);
        }
    };
    let run = match run_rank(&world, &prog, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vtpu-mpi (rank {rank}): {e}");
            return ExitCode::from(1);
        }
    };
    if run.lost {
        if let Some(e) = &run.error {
            eprintln!("vtpu-mpi (rank {rank}): {e}");
        }
        eprintln!("vtpu-mpi (rank {rank}): aborting the MPI job");
        // MPI_Abort tears the job down at once; give mpirun's output forwarding a
        // moment to carry the lines above, or the reason can be lost.
        use std::io::Write;
        let _ = std::io::stderr().flush();
        std::thread::sleep(Duration::from_millis(300));
        world.abort(2);
    }
    if rank == 0 {
        let (lines, conflict) = merge_pages(&prog, &run.reports);
        if run.error.is_none() {
            for l in &lines {
                println!("{l}");
            }
            if report {
                print!("{}", format_reports(&run.reports, run.placement));
            }
        }
        if conflict && run.error.is_none() {
            eprintln!("vtpu-mpi: ranks changed a shown page differently (pages are per rank)");
            return ExitCode::from(1);
        }
    }
    match &run.error {
        None => ExitCode::SUCCESS,
        Some(e) => {
            // Rank 0 gives the whole story; the others one line each.
            match e {
                MpiError::Remote { .. } if rank != 0 => {
                    eprintln!("vtpu-mpi (rank {rank}): stopped by another rank")
                }
                _ => eprintln!("vtpu-mpi (rank {rank}): {e}"),
            }
            ExitCode::from(1)
        }
    }
}
