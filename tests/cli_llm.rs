//! `vtpu profile-layer` and `vtpu bench-layer` as a user meets them: a short real run of
//! each (one sentron, one call, no Python baseline), and clear errors on bad arguments.

use std::process::{Command, Output};

fn vtpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vtpu"))
        .args(args)
        .output()
        .expect("vtpu runs")
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = vtpu(args);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn profile_layer_prints_ops_time_split_and_counters() {
    let (ok, out, err) = run(&[
        "profile-layer",
        "--sentrons",
        "1",
        "--calls",
        "1",
        "--kv",
        "16",
    ]);
    assert!(ok, "{out}\n{err}");
    for needle in [
        "DTMM",
        "GB/s",
        "dispatch",
        "ops/SIW",
        "PPT",
        "f64 reference",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
}

#[test]
fn bench_layer_writes_its_table() {
    let dir = std::env::temp_dir().join(format!("vtpu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let md = dir.join("BENCH.md");
    std::fs::write(&md, "# Benchmarks\n\n## Someone else's section\nkept\n").unwrap();
    let args = [
        "bench-layer",
        "--shapes",
        "smollm2_135m",
        "--dtypes",
        "f32",
        "--threads",
        "1",
        "--warmup",
        "0",
        "--runs",
        "1",
        "--no-baseline",
        "--markdown",
        md.to_str().unwrap(),
    ];
    for _ in 0..2 {
        let (ok, out, err) = run(&args);
        assert!(ok, "{out}\n{err}");
        assert!(
            out.contains("| smollm2_135m | decode | 512 | f32 |"),
            "{out}"
        );
    }
    // Written twice: the section is replaced, not duplicated; other sections stay.
    let text = std::fs::read_to_string(&md).unwrap();
    assert_eq!(
        text.matches("## One transformer layer").count(),
        1,
        "{text}"
    );
    assert!(text.contains("Someone else's section\nkept"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--cold` adds rows that cycle through copies of the layer, named with their count;
/// `--modes prefill` runs only the prefill case; bf16 rows say which products they use.
#[test]
fn bench_layer_cold_prefill_rows() {
    let (ok, out, err) = run(&[
        "bench-layer",
        "--shapes",
        "smollm2_135m",
        "--dtypes",
        "bf16",
        "--modes",
        "prefill",
        "--cold",
        "--threads",
        "1",
        "--warmup",
        "0",
        "--runs",
        "1",
        "--no-baseline",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("| smollm2_135m | prefill warm | 0 |"), "{out}");
    assert!(out.contains("| smollm2_135m | prefill cold ("), "{out}");
    assert!(
        !out.contains("| decode"),
        "decode rows with --modes prefill:\n{out}"
    );
    // Whether the CPU runs bf16 products decides the label, not the run.
    let products = vtpu_kernels::Kernels::current()
        .with_bf16_products(true)
        .bf16_products_active();
    let label = if products {
        "| bf16 |"
    } else {
        "| bf16 (f32 act.) |"
    };
    assert!(out.contains(label), "{label:?} missing:\n{out}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    for (args, needle) in [
        (vec!["profile-layer", "--shape", "gpt9"], "unknown shape"),
        (vec!["profile-layer", "--dtype", "q4_0"], "weight dtype"),
        (vec!["profile-layer", "--mode", "train"], "--mode"),
        (vec!["profile-layer", "--sentrons", "0"], "sentrons"),
        (
            vec!["bench-layer", "--dtypes", "i8", "--no-baseline"],
            "weight dtype",
        ),
        (
            vec!["bench-layer", "--modes", "train", "--no-baseline"],
            "--modes",
        ),
    ] {
        let (ok, out, err) = run(&args);
        assert!(!ok, "{args:?} should fail:\n{out}");
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in:\n{err}");
    }
}
