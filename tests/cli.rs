//! The `vtpu` command line as a user meets it: real runs, and clear errors (non-zero
//! exit, a message naming what and where, never a panic) on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vtpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vtpu"))
        .args(args)
        .output()
        .expect("vtpu runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let o = vtpu(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "vtpu {args:?} failed:\n{out}\n{err}");
    out
}

/// Runs `vtpu args`, expects failure with exit code 1 and `needle` in stderr.
fn fails(args: &[&str], needle: &str) -> String {
    let o = vtpu(args);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "vtpu {args:?} should fail:\n{out}");
    assert!(!err.contains("panicked"), "vtpu {args:?} panicked:\n{err}");
    assert!(
        err.contains(needle),
        "vtpu {args:?}: expected {needle:?} in:\n{err}"
    );
    err
}

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p.display().to_string()
}

#[test]
fn run_microvtpu_with_report_and_json() {
    let d = tmp();
    let json = d.path().join("r.json").display().to_string();
    let out = ok(&[
        "run",
        &repo("examples/vasm/microvtpu.vasm"),
        "--report",
        "--report-json",
        &json,
        "--show",
        "1.1.1/1.1.2/1.1.1",
        "--show",
        "1.1.1/1.1.2/1.1.2",
    ]);
    assert!(out.contains("1.1.1/1.1.2/1.1.1 = 42"), "{out}");
    assert!(out.contains("1.1.1/1.1.2/1.1.2 = 47"), "{out}");
    assert!(out.contains("virtual ops/cycle"), "{out}");
    assert!(out.contains("host ns per SIW"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["sentrons"], 2);
    assert!(v["total"]["virtual"]["siws"].as_u64().unwrap() > 0);
    assert_eq!(v["host"]["hardware_counters"], "unavailable");
}

#[test]
fn reference_executor_gives_the_same_answer() {
    let out = ok(&[
        "run",
        &repo("examples/vasm/microvtpu.vasm"),
        "--executor",
        "reference",
        "--show",
        "1.1.1/1.1.2/1.1.2",
    ]);
    assert!(out.contains("= 47"), "{out}");
}

#[test]
fn asm_disasm_validate_round_trip() {
    let d = tmp();
    let bin = d.path().join("m.vsiw").display().to_string();
    ok(&["asm", &repo("examples/vasm/microvtpu.vasm"), "-o", &bin]);
    let text1 = ok(&["disasm", &bin]);
    let re = write(d.path(), "re.vasm", &text1);
    let text2 = ok(&["disasm", &re]);
    assert_eq!(text1, text2);
    let out = ok(&["validate", &bin, "--sentrons", "2"]);
    assert!(out.contains("valid"), "{out}");
    let out = ok(&["run", &bin, "--show", "1.1.1/1.1.2/1.1.2"]);
    assert!(out.contains("= 47"), "{out}");
}

#[test]
fn save_load_and_list_pages() {
    let d = tmp();
    let manifest = d.path().join("space.phext").display().to_string();
    ok(&[
        "run",
        &repo("examples/vasm/microvtpu.vasm"),
        "--save",
        &manifest,
    ]);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let pages = libphext::phext::explode(&text);
    assert_eq!(pages.len(), 6, "one scroll per page");
    let out = ok(&["pages", &manifest]);
    assert!(
        out.contains("1.1.1/1.1.2/1.1.2") && out.contains("[47.0]"),
        "{out}"
    );
    // A program run against the saved space keeps its pages.
    let prog = write(
        d.path(),
        "add.vasm",
        ".page 1.1.1/1.1.2/1.1.2 f32 1x1\nSCLI c0, 1.1.1/1.1.2/1.1.2\nSGATHER t0, c0\nDTADD t0, t0, t0\nSSCATTR t0, c0, r0\n",
    );
    let out = ok(&[
        "run",
        &prog,
        "--load",
        &manifest,
        "--show",
        "1.1.1/1.1.2/1.1.2",
    ]);
    assert!(out.contains("= 94"), "{out}");
}

#[test]
fn malformed_assembly_names_file_line_and_column() {
    let d = tmp();
    let p = write(d.path(), "bad.vasm", "DLI r1, 5\nDTADD t16, t0, t1\n");
    let err = fails(&["run", &p], "bad.vasm:2:");
    assert!(err.contains("t16"), "{err}");
    let p = write(d.path(), "bad2.vasm", "FROB r1\n");
    fails(&["validate", &p], "bad2.vasm:1:");
    let p = write(d.path(), "bad3.vasm", "SCLI c0, 1.2.3/4.5.6/7.8.0\n");
    fails(&["run", &p], "bad3.vasm:1:");
}

#[test]
fn traps_and_deadlocks_are_errors_not_hangs() {
    let d = tmp();
    let p = write(
        d.path(),
        "fault.vasm",
        "SCLI c0, 1.1.1/1.1.1/1.1.7\nSGATHER t0, c0\n",
    );
    let err = fails(&["run", &p], "trap in sentron 0 at pc 1");
    assert!(err.contains("1.1.1/1.1.1/1.1.7"), "{err}");
    let p = write(
        d.path(),
        "dead.vasm",
        ".sentron 0\nCRECV r1, @1\n.sentron 1\nCRECV r1, @0\n",
    );
    fails(&["run", &p], "deadlock");
    let p = write(d.path(), "spin.vasm", "top:\nCJMP top\n");
    fails(&["run", &p, "--max-words", "1000"], "word limit");
}

#[test]
fn bad_arguments_and_files() {
    fails(
        &["run", "/nonexistent/prog.vasm"],
        "cannot read /nonexistent/prog.vasm",
    );
    fails(
        &[
            "run",
            &repo("examples/vasm/microvtpu.vasm"),
            "--sentrons",
            "0",
        ],
        "--sentrons",
    );
    fails(
        &[
            "run",
            &repo("examples/vasm/microvtpu.vasm"),
            "--sentrons",
            "1",
        ],
        "sentron",
    );
    fails(
        &[
            "run",
            &repo("examples/vasm/microvtpu.vasm"),
            "--show",
            "1.1.1",
        ],
        "--show 1.1.1",
    );
    let o = vtpu(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    let d = tmp();
    let bin = d.path().join("m.vsiw");
    ok(&[
        "asm",
        &repo("examples/vasm/microvtpu.vasm"),
        "-o",
        &bin.display().to_string(),
    ]);
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes.truncate(bytes.len() - 5);
    let cut = write(d.path(), "cut.vsiw", "");
    std::fs::write(&cut, &bytes).unwrap();
    fails(&["run", &cut], "cut.vsiw");
}

#[test]
fn corrupt_saved_space_is_an_error() {
    let d = tmp();
    let manifest = d.path().join("space.phext");
    let m = manifest.display().to_string();
    ok(&["run", &repo("examples/vasm/microvtpu.vasm"), "--save", &m]);
    // Flip a byte in the sidecar: the checksum must catch it.
    let sidecar = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .expect("a sidecar");
    let mut b = std::fs::read(&sidecar).unwrap();
    // The first page's bytes start right after the 64-byte sidecar header.
    b[64] ^= 0x55;
    std::fs::write(&sidecar, &b).unwrap();
    fails(&["pages", &m], "cannot load");
    fails(
        &["run", &repo("examples/vasm/microvtpu.vasm"), "--load", &m],
        "cannot load",
    );
}

// ------------------------------------------------- issue 8: every option in every mode

/// Runs `vtpu args` and fails the test if it takes longer than `limit` (killing it):
/// an option that is silently ignored (`--max-words` under `--packed`) hangs.
fn within(args: &[&str], limit: std::time::Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vtpu"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vtpu runs");
    let t0 = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vtpu {args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn packed_honours_max_words() {
    let d = tmp();
    let p = write(
        d.path(),
        "spin.vasm",
        "DLI r0, 1\ntop:\nCBNE r0, r31, top\n",
    );
    let o = within(
        &["run", &p, "--packed", "--max-words", "1000"],
        std::time::Duration::from_secs(30),
    );
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("word limit of 1000"),
        "{err}"
    );
    // compile --report too.
    let o = within(
        &[
            "compile",
            &p,
            "--report",
            "--max-words",
            "1000",
            "--runs",
            "1",
        ],
        std::time::Duration::from_secs(30),
    );
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("word limit of 1000"),
        "{err}"
    );
}

#[test]
fn packed_writes_save_show_report_json_and_reads_load() {
    let d = tmp();
    let manifest = d.path().join("s.phext").display().to_string();
    let json = d.path().join("r.json").display().to_string();
    let prog = repo("examples/vasm/microvtpu.vasm");
    let out = ok(&[
        "run",
        &prog,
        "--packed",
        "--layout",
        "hilbert",
        "--save",
        &manifest,
        "--report-json",
        &json,
        "--show",
        "1.1.1/1.1.2/1.1.2",
    ]);
    assert!(out.contains("1.1.1/1.1.2/1.1.2 = 47"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        v["before"]["total"]["virtual"]["siws"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(
        v["after"]["total"]["virtual"]["siws"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(ok(&["pages", &manifest]).contains("[47.0]"));
    // --load under --packed: both forms start from the saved space.
    let add = write(
        d.path(),
        "add.vasm",
        ".page 1.1.1/1.1.2/1.1.2 f32 1x1\nSCLI c0, 1.1.1/1.1.2/1.1.2\nSGATHER t0, c0\nDTADD t0, t0, t0\nSSCATTR t0, c0, r0\n",
    );
    let out = ok(&[
        "run",
        &add,
        "--packed",
        "--load",
        &manifest,
        "--show",
        "1.1.1/1.1.2/1.1.2",
    ]);
    assert!(out.contains("= 94"), "{out}");
}

/// A bad `--show` or an unwritable `--report-json` fails before the run, so nothing
/// is computed and lost, and `--save` is never half done.
#[test]
fn output_arguments_are_checked_before_the_run() {
    let d = tmp();
    let manifest = d.path().join("s.phext");
    let m = manifest.display().to_string();
    let prog = repo("examples/vasm/microvtpu.vasm");
    fails(
        &["run", &prog, "--save", &m, "--show", "1.1.x/1.1.1/1.1.1"],
        "--show",
    );
    fails(
        &[
            "run",
            &prog,
            "--save",
            &m,
            "--report-json",
            "/nonexistent/r.json",
        ],
        "--report-json /nonexistent/r.json: directory /nonexistent does not exist",
    );
    fails(
        &[
            "run",
            &prog,
            "--save",
            &m,
            "--report-json",
            &d.path().display().to_string(),
        ],
        "is a directory",
    );
    fails(
        &["run", &prog, "--packed", "--save", &m, "--show", "nope"],
        "--show",
    );
    assert!(!manifest.exists(), "nothing saved by a failed invocation");
    // A page that does not exist after the run: the save was written first.
    let err = fails(
        &["run", &prog, "--save", &m, "--show", "9.9.9/9.9.9/9.9.9"],
        "no page",
    );
    assert!(manifest.exists(), "{err}");
}

#[test]
fn counts_of_zero_are_errors() {
    let prog = repo("examples/vasm/microvtpu.vasm");
    for (args, needle) in [
        (vec!["run", &prog, "--sentrons", "0"], "--sentrons"),
        (vec!["run", &prog, "--sentrons", "65"], "must be 1..=64"),
        (vec!["run", &prog, "--max-words", "0"], "--max-words"),
        (vec!["validate", &prog, "--sentrons", "0"], "--sentrons"),
        (
            vec!["validate", &prog, "--sentrons", "65"],
            "must be 1..=64",
        ),
        (vec!["compile", &prog, "--runs", "0"], "--runs"),
        (vec!["compile", &prog, "--runs", "1000000000"], "at most"),
        (vec!["compile", &prog, "--sentrons", "0"], "--sentrons"),
        (vec!["workload", "gemv", "--runs", "0"], "--runs"),
        (vec!["workload", "gemv", "--sentrons", "0"], "--sentrons"),
        (
            vec!["workload", "microvtpu-batched", "--features", "0"],
            "--features",
        ),
        (vec!["profile-layer", "--calls", "0"], "--calls"),
        (vec!["profile-layer", "--sentrons", "0"], "--sentrons"),
        (vec!["bench-layer", "--threads", "0"], "--threads"),
        (vec!["bench-layer", "--runs", "0"], "--runs"),
    ] {
        let o = vtpu(&args);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn validate_checks_sentrons_as_run_does() {
    let d = tmp();
    let p = write(d.path(), "two.vasm", ".sentron 3\nCHALT\n");
    fails(
        &["validate", &p, "--sentrons", "2"],
        "sentron id 3 is not below the machine's 2 sentrons",
    );
    fails(
        &["run", &p, "--sentrons", "2"],
        "sentron id 3 is not below the machine's 2 sentrons",
    );
    assert!(ok(&["validate", &p, "--sentrons", "4"]).contains("valid"));
}

#[test]
fn outputs_never_overwrite_their_input() {
    let d = tmp();
    let src = ".page 1.1.1/1.1.1/1.1.1 f32 1x1\nDLI r1, 2\nCHALT\n";
    let p = write(d.path(), "p.vasm", src);
    fails(&["compile", &p, "-o", &p], "is the input file");
    fails(&["asm", &p, "-o", &p], "is the input file");
    fails(&["disasm", &p, "-o", &p], "is the input file");
    // Through another name for the same file.
    let alias = format!("{}/./p.vasm", d.path().display());
    fails(&["compile", &p, "-o", &alias], "is the input file");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), src);
}

#[test]
fn workload_sizes_are_capped_before_allocating() {
    let o = within(
        &[
            "workload",
            "microvtpu-batched",
            "--features",
            "4294967295",
            "--samples",
            "8",
        ],
        std::time::Duration::from_secs(10),
    );
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("beyond the page limits"),
        "{err}"
    );
    let o = within(
        &["workload", "gemv", "--n", "4000000000", "--k", "4000000000"],
        std::time::Duration::from_secs(10),
    );
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("beyond the page limits"),
        "{err}"
    );
}

#[test]
fn reads_are_bounded_and_causes_printed_once() {
    let o = within(&["run", "/dev/zero"], std::time::Duration::from_secs(10));
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("limit"), "{err}");
    let o = within(&["pages", "/dev/zero"], std::time::Duration::from_secs(10));
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("character device"),
        "{err}"
    );
    let err = fails(&["pages", "/nonexistent/m.phext"], "No such file");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    let err = fails(&["run", "/nonexistent/p.vasm"], "No such file");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn long_tokens_are_quoted_by_a_short_prefix() {
    let d = tmp();
    let long = "x".repeat(1 << 20);
    let p = write(d.path(), "long.vasm", &format!("DLI {long}, 1\n"));
    let err = fails(&["run", &p], "characters)");
    assert!(err.len() < 1000, "{} bytes of error", err.len());
    let prog = repo("examples/vasm/microvtpu.vasm");
    let err = fails(&["run", &prog, "--show", &"1".repeat(100_000)], "--show");
    assert!(err.len() < 1000, "{} bytes of error", err.len());
}

#[test]
fn damaged_vsiw_is_reported_not_run() {
    let d = tmp();
    let bin = d.path().join("m.vsiw").display().to_string();
    ok(&["asm", &repo("examples/vasm/microvtpu.vasm"), "-o", &bin]);
    let good = std::fs::read(&bin).unwrap();
    // Flip one bit in the last word's immediate: without the checksum this would
    // decode (as another valid program).
    let mut b = good.clone();
    let at = b.len() - 1;
    b[at] ^= 1;
    std::fs::write(&bin, &b).unwrap();
    fails(&["run", &bin], "the file is damaged");
}
