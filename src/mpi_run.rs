//! `mpirun -n R vtpu generate|bench ...`: the model's sentrons spread over the ranks of
//! an MPI job (feature `mpi`). Every rank opens the same model file and builds the same
//! programs; rank 0 tokenizes, drives every step, samples and prints; the other ranks
//! host their sentrons and follow (`vtpu_mpi::machine`).
//!
//! Without the feature, or when not started by mpirun, nothing here runs and vtpu is a
//! single process.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;
use vtpu_mpi::comm::CommConfig;
use vtpu_mpi::MpiHost;

/// This process's place in the job: (rank, ranks, ranks on this machine).
static JOB: OnceLock<(u32, u32, u32)> = OnceLock::new();

/// Was this process started by mpirun (Open MPI, or a PMI launcher)?
fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Initialise MPI when started by mpirun (hold the result until the end of `main`:
/// dropping it finalizes MPI). `None` when not under mpirun.
pub fn init() -> Result<Option<mpi::environment::Universe>> {
    if !launched_by_mpirun() {
        return Ok(None);
    }
    // One thread (the pump) calls MPI; sentron threads never do.
    let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Funneled)
        .context("MPI is already initialized")?;
    if level < mpi::Threading::Funneled {
        anyhow::bail!("this MPI library does not allow a threaded program (MPI_THREAD_FUNNELED)");
    }
    let world = universe.world();
    use mpi::topology::Communicator;
    let local = std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(world.size() as u32);
    let _ = JOB.set((world.rank() as u32, world.size() as u32, local.max(1)));
    Ok(Some(universe))
}

/// (rank, ranks) of this process: (0, 1) outside an MPI job.
pub fn job() -> (u32, u32) {
    JOB.get().map_or((0, 1), |&(r, n, _)| (r, n))
}

/// Is this process one of several ranks, not rank 0?
pub fn is_follower() -> bool {
    job().0 != 0
}

/// Sentrons per rank: `--threads`, or this machine's cores shared by its ranks.
pub fn per_rank(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let local = JOB.get().map_or(1, |j| j.2) as usize;
        (cores / local).max(1)
    })
}

/// The host of a machine of `per_rank` sentrons on each rank, with the model file's
/// checksum for the ranks to compare.
pub fn host(per_rank: usize, model: &Path, pin: bool) -> Result<MpiHost> {
    let fault = match std::env::var("VTPU_MPI_FAULT") {
        Ok(s) => Some(MpiHost::parse_fault(&s)?),
        Err(_) => None,
    };
    let mut comm = CommConfig {
        // Steps are milliseconds apart: a short sleep when idle keeps a step's start
        // latency low.
        idle_sleep: Duration::from_micros(50),
        ..CommConfig::default()
    };
    if let Ok(ms) = std::env::var("VTPU_MPI_RANK_TIMEOUT_MS") {
        let ms: u64 =
            ms.parse().ok().filter(|&m| m > 0).with_context(|| {
                format!("VTPU_MPI_RANK_TIMEOUT_MS={ms:?}: expected milliseconds")
            })?;
        comm.rank_timeout = Duration::from_millis(ms);
    }
    Ok(MpiHost {
        per_rank: per_rank as u32,
        comm,
        follower_timeout: Duration::from_secs(120),
        model_checksum: checksum(model)?,
        pin,
        fault,
    })
}

/// xxh3 of the model's bytes (every file of a model directory, in name order), read
/// with ordinary reads: the page cache, not this process's memory, holds them.
fn checksum(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut files = Vec::new();
    if path.is_dir() {
        for e in
            std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
        {
            let p = e?.path();
            if p.is_file() {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        if let Some(name) = f.file_name() {
            h.update(name.to_string_lossy().as_bytes());
        }
        let mut r =
            std::fs::File::open(&f).with_context(|| format!("cannot open {}", f.display()))?;
        loop {
            let n = r
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", f.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.digest())
}
