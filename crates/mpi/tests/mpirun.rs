//! The vtpu-mpi runner under `mpirun`, on 2 and 3 ranks of this machine: results equal
//! the in-process fabric's bit for bit, and faults (a deadlock across ranks, a trap on
//! another rank, a rank that exits or hangs) end every rank with an error that names
//! the ranks and sentrons, within a time limit.
//!
//! Without `mpirun` on PATH every test prints why it is skipped and passes
//! (scripts/mpi_test.sh installs OpenMPI and runs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest any job may take; a test whose job runs longer failed (a hang).
const JOB_LIMIT: Duration = Duration::from_secs(60);

fn mpirun() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("mpirun"))
        .find(|p| p.is_file())
}

macro_rules! need_mpirun {
    () => {
        match mpirun() {
            Some(p) => p,
            None => {
                // Written to stderr directly, not with eprintln!, which the test harness
                // captures and hides for a passing test: a skip must be seen.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {}: mpirun is not on PATH (apt-get install openmpi-bin libopenmpi-dev, or run scripts/mpi_test.sh)",
                    module_path!()
                );
                return;
            }
        }
    };
}

fn program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
}

fn microvtpu() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vasm/microvtpu.vasm")
}

struct Job {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Run `vtpu-mpi run` on `ranks` ranks; kills the job and fails past [`JOB_LIMIT`].
fn job(mpirun: &Path, ranks: u32, mpi_args: &[&str], env: &[(&str, &str)], args: &[String]) -> Job {
    let mut cmd = Command::new(mpirun);
    cmd.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-n",
        &ranks.to_string(),
    ])
    .args(mpi_args)
    .arg(env!("CARGO_BIN_EXE_vtpu-mpi"))
    .arg("run")
    .args(args)
    .arg("--no-pin")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("mpirun starts");
    loop {
        match child.try_wait().expect("wait for mpirun") {
            Some(_) => break,
            None if t0.elapsed() > JOB_LIMIT => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "mpirun {args:?} on {ranks} ranks hung for {JOB_LIMIT:?}\nstdout: {}\nstderr: {}",
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

/// The same program on the in-process fabric (`vtpu run --sentrons n --show ...`), each
/// shown page printed as `vtpu run` prints it.
fn in_process(path: &Path, sentrons: usize, shows: &[&str]) -> String {
    let text = std::fs::read_to_string(path).expect("program");
    let p = vtpu_isa::asm::assemble_file("p", &text).expect("assembles");
    let space = vtpu_runtime::build_space(&p, vtpu_phext::Layout::ZOrder).expect("space");
    let cfg = vtpu_runtime::RunConfig {
        sentrons,
        pin: false,
        ..Default::default()
    };
    vtpu_runtime::run(&p, &space, &cfg).expect("in-process run");
    let mut out = String::new();
    for s in shows {
        let c = vtpu_phext::Coord::parse(s).expect("coord");
        let v = space.get(c).expect("page").to_f32_vec().expect("f32");
        let t = if v.len() == 1 {
            format!("{}", v[0])
        } else {
            format!("{v:?}")
        };
        out.push_str(&format!("{s} = {t}\n"));
    }
    out
}

fn show_args(path: &Path, shows: &[&str], extra: &[&str]) -> Vec<String> {
    let mut a = vec![path.display().to_string()];
    for s in shows {
        a.push("--show".into());
        a.push(s.to_string());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn assert_ok(j: &Job) {
    assert_eq!(
        j.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        j.stdout,
        j.stderr
    );
}

#[test]
fn microvtpu_alice_and_bob_on_different_ranks() {
    let mpirun = need_mpirun!();
    let shows = ["1.1.1/1.1.2/1.1.1", "1.1.1/1.1.2/1.1.2"];
    let j = job(
        &mpirun,
        2,
        &[],
        &[],
        &show_args(&microvtpu(), &shows, &["--report"]),
    );
    assert_ok(&j);
    assert!(
        j.stdout
            .starts_with("1.1.1/1.1.2/1.1.1 = 42\n1.1.1/1.1.2/1.1.2 = 47\n"),
        "{}",
        j.stdout
    );
    assert_eq!(
        in_process(&microvtpu(), 2, &shows),
        "1.1.1/1.1.2/1.1.1 = 42\n1.1.1/1.1.2/1.1.2 = 47\n"
    );
    // Alice's tile went over MPI: rank 0 reports one message sent, rank 1 none.
    assert!(
        j.stdout
            .contains("rank 0 (sentrons 0..=0): virtual: 13 SIWs, 13 ops, 1 messages"),
        "{}",
        j.stdout
    );
    assert!(
        j.stdout
            .contains("rank 1 (sentrons 1..=1): virtual: 8 SIWs"),
        "{}",
        j.stdout
    );
}

const COLL_PAGES: [&str; 4] = [
    "1.1.1/1.1.2/1.1.1",
    "1.1.1/1.1.2/1.1.2",
    "1.1.1/1.1.2/1.1.3",
    "1.1.1/1.1.2/1.1.4",
];

fn collectives_match(ranks: u32, per_rank: u32) {
    let mpirun = need_mpirun!();
    let path = program("collectives.vasm");
    let s = per_rank.to_string();
    let j = job(
        &mpirun,
        ranks,
        &[],
        &[],
        &show_args(&path, &COLL_PAGES, &["--sentrons-per-rank", &s]),
    );
    assert_ok(&j);
    let want = in_process(&path, (ranks * per_rank) as usize, &COLL_PAGES);
    // Debug-printed f32 round-trips: equal text is equal bits.
    assert_eq!(j.stdout, want, "stderr: {}", j.stderr);
}

#[test]
fn collectives_bit_for_bit_on_2_ranks() {
    collectives_match(2, 1);
}

#[test]
fn collectives_bit_for_bit_on_3_ranks() {
    collectives_match(3, 1);
}

#[test]
fn collectives_bit_for_bit_on_3_ranks_of_2_sentrons() {
    collectives_match(3, 2);
}

#[test]
fn deadlock_across_ranks_names_the_cycle() {
    let mpirun = need_mpirun!();
    let j = job(
        &mpirun,
        2,
        &[],
        &[],
        &show_args(
            &program("deadlock.vasm"),
            &[],
            &["--deadlock-grace-ms", "300"],
        ),
    );
    assert_ne!(j.code, Some(0));
    assert!(
        j.stderr.contains("wait-for path 0 -> 1 -> 0"),
        "{}",
        j.stderr
    );
    assert!(
        j.stderr
            .contains("sentron 1 at pc 0 (CRECV r0, @0, on rank 1)"),
        "{}",
        j.stderr
    );
    assert!(j.took < Duration::from_secs(30), "took {:?}", j.took);
}

#[test]
fn collective_missing_a_halted_member_on_another_rank() {
    let mpirun = need_mpirun!();
    let j = job(
        &mpirun,
        2,
        &[],
        &[],
        &show_args(
            &program("halted_partner.vasm"),
            &[],
            &["--deadlock-grace-ms", "300"],
        ),
    );
    assert_ne!(j.code, Some(0));
    assert!(
        j.stderr
            .contains("still missing sentron 1 (rank 1, halted)"),
        "{}",
        j.stderr
    );
}

#[test]
fn trap_on_one_rank_stops_every_rank() {
    let mpirun = need_mpirun!();
    let j = job(
        &mpirun,
        2,
        &[],
        &[],
        &show_args(&program("trap.vasm"), &[], &[]),
    );
    assert_ne!(j.code, Some(0));
    assert!(
        j.stderr.contains("rank 1 stopped the machine: trap in sentron 1 at pc 1 (DDIV r1, r0, r0): integer division by zero"),
        "{}",
        j.stderr
    );
}

#[test]
fn a_rank_that_exits_is_reported_by_the_others() {
    let mpirun = need_mpirun!();
    let args = show_args(
        &program("long_loop.vasm"),
        &[],
        &["--rank-timeout-ms", "2000"],
    );
    // mpirun's own default: it kills the job when a rank exits non-zero.
    let j = job(&mpirun, 3, &[], &[("VTPU_MPI_FAULT", "exit:1")], &args);
    assert_ne!(j.code, Some(0));
    assert!(j.took < Duration::from_secs(30), "took {:?}", j.took);
    // With mpirun told to let the job run on, the surviving ranks find it themselves.
    let j = job(
        &mpirun,
        3,
        &["--mca", "orte_abort_on_non_zero_status", "0"],
        &[("VTPU_MPI_FAULT", "exit:1")],
        &args,
    );
    assert_ne!(j.code, Some(0));
    assert!(
        j.stderr
            .contains("rank 1 (sentrons 1..=1) sent nothing for"),
        "{}",
        j.stderr
    );
    assert!(j.took < Duration::from_secs(30), "took {:?}", j.took);
}

#[test]
fn a_rank_that_hangs_is_reported_and_the_job_aborted() {
    let mpirun = need_mpirun!();
    let args = show_args(
        &program("long_loop.vasm"),
        &[],
        &["--rank-timeout-ms", "2000"],
    );
    let j = job(&mpirun, 3, &[], &[("VTPU_MPI_FAULT", "hang:2")], &args);
    assert_ne!(j.code, Some(0));
    assert!(
        j.stderr
            .contains("rank 2 (sentrons 2..=2) sent nothing for"),
        "{}",
        j.stderr
    );
    assert!(j.took < Duration::from_secs(30), "took {:?}", j.took);
}

#[test]
fn bad_placement_is_refused_on_every_rank() {
    let mpirun = need_mpirun!();
    // microvtpu needs sentron 1: one rank of one sentron cannot run it.
    let j = job(&mpirun, 1, &[], &[], &show_args(&microvtpu(), &[], &[]));
    assert_ne!(j.code, Some(0));
    assert!(j.stderr.contains("invalid program"), "{}", j.stderr);
}
