//! `vtpu probe` and `vtpu profile` end to end on the committed qwen3 fixture
//! (testdata/models/qwen3-tiny.gguf): the reports are written and consistent, and bad
//! input (missing or unreadable model, unwritable output, a corrupt or foreign probe
//! cache) is a clear error naming the path with exit code 1, or a fresh probe.
//!
//! Every test uses its own VTPU_CACHE with a small probe (hidden options keep it to a
//! fraction of a second), so the user's cache is never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> String {
    repo()
        .join("testdata/models/qwen3-tiny.gguf")
        .display()
        .to_string()
}

fn vtpu(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vtpu"))
        .args(args)
        .env("VTPU_CACHE", cache)
        .output()
        .expect("run vtpu")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A small probe into `cache` (8 MiB buffer, one repetition).
fn quick_probe(cache: &Path) -> Output {
    vtpu(cache, &["probe", "--buffer-mib", "8", "--reps", "1"])
}

fn probe_file(cache: &Path) -> PathBuf {
    let dir = cache.join("probe");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

#[test]
fn probe_caches_and_reprobes_a_corrupt_or_foreign_cache() {
    let cache = tempfile::tempdir().unwrap();
    let o = quick_probe(cache.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no cached probe"), "{}", stderr(&o));
    assert!(stdout(&o).contains("read GB/s"), "{}", stdout(&o));
    let f = probe_file(cache.path());
    // Second run: from the cache.
    let o = quick_probe(cache.path());
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("source: cached probe"),
        "{}",
        stdout(&o)
    );
    // Damaged: a fresh probe, no panic.
    std::fs::write(&f, "{ not json").unwrap();
    let o = quick_probe(cache.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cached probe damaged"),
        "{}",
        stderr(&o)
    );
    // Another machine's file under this machine's name: a fresh probe.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    v["fingerprint"]["cpu_model"] = "Another CPU".into();
    std::fs::write(&f, v.to_string()).unwrap();
    let o = quick_probe(cache.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("another machine"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    assert_ne!(v["fingerprint"]["cpu_model"], "Another CPU");
}

#[test]
fn profile_writes_consistent_text_json_html_and_trace() {
    let cache = tempfile::tempdir().unwrap();
    assert!(quick_probe(cache.path()).status.success());
    let out = tempfile::tempdir().unwrap();
    let (html, json, trace) = (
        out.path().join("r.html"),
        out.path().join("r.json"),
        out.path().join("r.trace.json"),
    );
    let m = fixture();
    let o = vtpu(
        cache.path(),
        &[
            "profile",
            "-m",
            &m,
            "-p",
            "5",
            "-n",
            "3",
            "--threads",
            "2",
            "--no-pin",
            "--html",
            html.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "== prefill",
        "== decode",
        "per layer",
        "per op kind",
        "bottlenecks",
        "hardware counters",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let layers = r["model"]["layers"].as_u64().unwrap();
    let phases = r["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    let dec = &phases[1];
    assert_eq!(dec["tokens"], 3);
    // Every layer of the model has a row, and the rows' shares add up to the time
    // inside ops (at most the whole).
    let names: Vec<&str> = dec["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    for l in 0..layers {
        assert!(names.contains(&format!("L{l}").as_str()), "{names:?}");
    }
    let share: f64 = dec["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["share"].as_f64().unwrap())
        .sum();
    let ops: f64 = dec["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["share"].as_f64().unwrap())
        .sum();
    assert!((share - ops).abs() < 1e-9, "{share} vs {ops}");
    assert!(share > 0.5 && share <= 1.0 + 1e-9, "{share}");
    assert_eq!(dec["sentrons"].as_array().unwrap().len(), 2);
    assert!(!dec["bottlenecks"].as_array().unwrap().is_empty());
    // Hardware counters: values or a reason, never guesses.
    let hw = &r["hw_counters"];
    assert!(hw["available"].as_bool().unwrap() || hw["reason"].is_string());
    // HTML: self-contained, with the three charts.
    let h = std::fs::read_to_string(&html).unwrap();
    for id in [
        "id=\"roofline\"",
        "id=\"layers-decode\"",
        "id=\"timeline-decode\"",
    ] {
        assert!(h.contains(id), "{id}");
    }
    // Nothing fetched from anywhere (the SVG namespace is a name, not a fetch).
    assert!(!h.contains("https://") && !h.contains("<script src") && !h.contains("<link"));
    // Trace: layer spans and op spans for both sentrons.
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let ev = t["traceEvents"].as_array().unwrap();
    assert!(ev
        .iter()
        .any(|e| e["cat"] == "layer" && e["name"] == "L0.attn"));
    assert!(ev.iter().any(|e| e["cat"] == "op" && e["tid"] == 1));
}

/// `--batch 3`: three sequences prefilled, then decoded together by the batched
/// program of 4 rows; the decode phase counts every sequence's tokens and attributes
/// the per-sequence work to the layers (not to setup).
#[test]
fn profile_of_a_batch_profiles_the_batched_program() {
    let cache = tempfile::tempdir().unwrap();
    assert!(quick_probe(cache.path()).status.success());
    let out = tempfile::tempdir().unwrap();
    let (html, json) = (out.path().join("b.html"), out.path().join("b.json"));
    let m = fixture();
    let o = vtpu(
        cache.path(),
        &[
            "profile",
            "-m",
            &m,
            "-p",
            "5",
            "-n",
            "3",
            "--batch",
            "3",
            "--threads",
            "2",
            "--no-pin",
            "--html",
            html.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let phases = r["phases"].as_array().unwrap();
    assert_eq!(phases[0]["tokens"], 15, "three prompts of 5");
    let dec = &phases[1];
    assert_eq!(dec["tokens"], 9, "three sequences x 3 steps");
    assert_eq!(dec["calls"], 3);
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("3 sequences per step (the batched program of 4 rows)"),
        "{notes}"
    );
    let layers = r["model"]["layers"].as_u64().unwrap();
    let share = |name: &str| {
        dec["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .map_or(0.0, |l| l["share"].as_f64().unwrap())
    };
    for l in 0..layers {
        assert!(share(&format!("L{l}")) > 0.0, "L{l}");
    }
    let layer_share: f64 = (0..layers).map(|l| share(&format!("L{l}"))).sum();
    assert!(
        share("setup") < layer_share,
        "setup {} vs layers {layer_share}",
        share("setup")
    );
    // --batch 0 is refused before anything loads.
    let o = vtpu(
        cache.path(),
        &[
            "profile",
            "-m",
            &m,
            "--batch",
            "0",
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--batch 0"), "{}", stderr(&o));
}

#[test]
fn bad_input_is_a_clear_error_naming_the_path() {
    let cache = tempfile::tempdir().unwrap();
    assert!(quick_probe(cache.path()).status.success());
    let dir = tempfile::tempdir().unwrap();
    let m = fixture();
    let check = |o: Output, want: &str| {
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains(want), "{want:?} not in {e}");
        assert!(!e.contains("panicked"), "{e}");
    };
    let missing = dir.path().join("missing.gguf");
    check(
        vtpu(
            cache.path(),
            &[
                "profile",
                "-m",
                missing.to_str().unwrap(),
                "--html",
                dir.path().join("a.html").to_str().unwrap(),
            ],
        ),
        missing.to_str().unwrap(),
    );
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"GGUF but not really").unwrap();
    check(
        vtpu(
            cache.path(),
            &[
                "profile",
                "-m",
                garbage.to_str().unwrap(),
                "--html",
                dir.path().join("b.html").to_str().unwrap(),
            ],
        ),
        garbage.to_str().unwrap(),
    );
    let unwritable = dir.path().join("no/such/dir/r.html");
    check(
        vtpu(
            cache.path(),
            &["profile", "-m", &m, "--html", unwritable.to_str().unwrap()],
        ),
        unwritable.to_str().unwrap(),
    );
    check(
        vtpu(
            cache.path(),
            &[
                "profile",
                "-m",
                &m,
                "--html",
                dir.path().join("c.html").to_str().unwrap(),
                "--json",
                dir.path().to_str().unwrap(),
            ],
        ),
        "is a directory",
    );
    let bad_trace = dir.path().join("nope/t.json");
    check(
        vtpu(
            cache.path(),
            &[
                "profile",
                "-m",
                &m,
                "--html",
                dir.path().join("d.html").to_str().unwrap(),
                "--trace",
                bad_trace.to_str().unwrap(),
            ],
        ),
        bad_trace.to_str().unwrap(),
    );
    // Nothing was written for the failed runs.
    assert!(!dir.path().join("a.html").exists());
}
