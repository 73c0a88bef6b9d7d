//! `vtpu compile`, `vtpu run --packed` and `vtpu workload` as a user meets them.

use std::path::Path;
use std::process::{Command, Output};

fn vtpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vtpu"))
        .args(args)
        .output()
        .expect("vtpu runs")
}

fn ok(args: &[&str]) -> String {
    let o = vtpu(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "vtpu {args:?} failed:\n{out}\n{err}");
    out.into_owned()
}

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

#[test]
fn compile_writes_a_packed_program_that_runs_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("micro.packed.vasm").display().to_string();
    let src = repo("examples/vasm/microvtpu.vasm");
    let text = ok(&[
        "compile",
        &src,
        "-o",
        &out,
        "--report",
        "--runs",
        "1",
        "--executor",
        "reference",
    ]);
    assert!(text.contains("pages after the run: identical"), "{text}");
    assert!(text.contains("dead ops in the packed program: 0"), "{text}");
    let v = ok(&["validate", &out, "--sentrons", "2"]);
    assert!(v.contains("valid"), "{v}");
    let r = ok(&[
        "run",
        &src,
        "--packed",
        "--report",
        "--executor",
        "reference",
        "--no-pin",
    ]);
    assert!(
        r.contains("before") && r.contains("after (packed)") && r.contains("ops/cycle"),
        "{r}"
    );
}

#[test]
fn workloads_print_before_and_after() {
    let m = ok(&[
        "workload",
        "microvtpu-batched",
        "--samples",
        "512",
        "--features",
        "8",
        "--runs",
        "1",
        "--no-pin",
    ]);
    assert!(
        m.contains("packed") && m.contains("virtual ops/cycle") && m.contains("host wall"),
        "{m}"
    );
    let g = ok(&[
        "workload",
        "gemv",
        "--n",
        "256",
        "--k",
        "1024",
        "--tile-cols",
        "32",
        "--runs",
        "1",
        "--no-pin",
        "--report",
    ]);
    assert!(
        g.contains("PPT hit rate") && g.contains("host time ratio"),
        "{g}"
    );
}

#[test]
fn compile_errors_are_reported() {
    let o = vtpu(&["compile", "/nonexistent/prog.vasm"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("cannot read"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
