//! The model commands end to end (`vtpu generate`, `tokenize`, `inspect`, `bench`) on the
//! committed qwen3 fixture (testdata/models/qwen3-tiny.gguf): stdout carries only the
//! result, the same seed gives the same text, and bad input is a clear error with exit
//! code 1 (2 for command-line usage).

use std::path::PathBuf;
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

fn vtpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vtpu"))
        .args(args)
        .output()
        .expect("run vtpu")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn greedy_generation_matches_llama_cpp_and_stdout_is_only_the_text() {
    let m = fixture();
    let o = vtpu(&[
        "generate",
        "-m",
        &m,
        "-p",
        "The capital of France is",
        "-n",
        "12",
        "--temp",
        "0",
        "--no-pin",
        "--verbose-tokens",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // llama.cpp's greedy tokens for this prompt (testdata/llamacpp/qwen3-tiny.json); its
    // first 12 steps have no near-tie.
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/llamacpp/qwen3-tiny.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<u64> = g["prompts"][0]["steps"].as_array().unwrap()[..12]
        .iter()
        .map(|s| s["token"].as_u64().unwrap())
        .collect();
    let e = stderr(&o);
    let got: Vec<u64> = e
        .lines()
        .filter_map(|l| l.strip_prefix("token ").and_then(|t| t.trim().parse().ok()))
        .collect();
    assert_eq!(got, want, "{e}");
    let text = stdout(&o);
    assert!(
        !text.contains("vtpu:") && !text.contains("token "),
        "stdout carries more than the text: {text:?}"
    );
    assert!(!text.is_empty());
    assert!(
        e.contains("tok/s") && e.contains("ops/cycle") && e.contains("PPT hit rate"),
        "{e}"
    );
}

#[test]
fn same_seed_same_text_and_temperature_sampling_varies_by_seed() {
    let m = fixture();
    let run = |seed: &str| {
        let o = vtpu(&[
            "generate",
            "-m",
            &m,
            "-p",
            "Once upon a time",
            "-n",
            "16",
            "--temp",
            "1.0",
            "--seed",
            seed,
            "--no-pin",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let a = run("7");
    assert_eq!(a, run("7"));
    let others: Vec<String> = ["8", "9", "10"].iter().map(|s| run(s)).collect();
    assert!(
        others.iter().any(|o| *o != a),
        "three other seeds all gave {a:?}"
    );
}

#[test]
fn tokenize_prints_llama_cpp_ids() {
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/llamacpp/tokenize_qwen3-tiny.json"))
            .unwrap(),
    )
    .unwrap();
    let m = fixture();
    for case in g["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        if text.is_empty() || text.starts_with('-') {
            continue;
        }
        let o = vtpu(&["tokenize", "-m", &m, "-p", text]);
        assert!(o.status.success(), "{}", stderr(&o));
        let got: Vec<u64> = serde_json::from_str(stdout(&o).trim()).unwrap();
        let want: Vec<u64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{text:?}");
    }
}

#[test]
fn inspect_lists_tensors_and_coordinates() {
    let o = vtpu(&["inspect", &fixture()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("qwen3") && s.contains("blk.0.attn_q.weight"),
        "{s}"
    );
    assert!(
        s.contains("token_embd.weight") && s.contains("-> 1.999.16/1.1.1/1.1.1"),
        "{s}"
    );
}

#[test]
fn bench_json_has_llama_bench_keys() {
    let o = vtpu(&[
        "bench",
        "-m",
        &fixture(),
        "-p",
        "8",
        "-n",
        "4",
        "-r",
        "2",
        "-o",
        "json",
        "--no-pin",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 2);
    for (t, (np, ng)) in a.iter().zip([(8, 0), (0, 4)]) {
        assert_eq!(t["n_prompt"], np);
        assert_eq!(t["n_gen"], ng);
        assert!(t["avg_ts"].as_f64().unwrap() > 0.0);
        assert!(t["stddev_ts"].as_f64().unwrap() >= 0.0);
        assert_eq!(t["samples_ts"].as_array().unwrap().len(), 2);
        assert!(t["vtpu_counters"]["siws"].as_u64().unwrap() > 0);
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let m = fixture();
    let dir = std::env::temp_dir().join(format!("vtpu-cli-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trunc = dir.join("trunc.gguf");
    let bytes = std::fs::read(&m).unwrap();
    std::fs::write(&trunc, &bytes[..5000]).unwrap();
    let not_gguf = dir.join("x.gguf");
    std::fs::write(&not_gguf, b"definitely not a model").unwrap();
    let long_prompt = "word ".repeat(300);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["generate", "-m", "/nonexistent/model.gguf"],
            "/nonexistent/model.gguf",
        ),
        (vec!["generate", "-m", trunc.to_str().unwrap()], "truncated"),
        (
            vec!["generate", "-m", not_gguf.to_str().unwrap()],
            "bad magic",
        ),
        (
            vec!["generate", "-m", &m, "-p", &long_prompt, "--ctx", "64"],
            "context holds 64",
        ),
        (
            vec!["generate", "-m", &m, "-n", "100", "--ctx", "32"],
            "context holds 32",
        ),
        (vec!["generate", "-m", &m, "--ctx", "100000000"], "--ctx"),
        (vec!["generate", "-m", &m, "--top-p", "0"], "top_p"),
        (vec!["generate", "-m", &m, "-t", "0"], "--threads"),
        (vec!["bench", "-m", &m, "-r", "0"], "-r must be"),
        (vec!["bench", "-m", &m, "--batch", "0"], "--batch sizes"),
        (vec!["bench", "-m", &m, "--batch", "65"], "at most 64"),
        (vec!["inspect", trunc.to_str().unwrap()], "truncated"),
    ];
    for (args, needle) in cases {
        let o = vtpu(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
    }
    let o = vtpu(&["generate", "-m", &m, "--temp", "abc"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Prompt files: an empty line, a missing file, a prompt past the context.
    let empty_line = dir.join("p1.txt");
    std::fs::write(&empty_line, "a prompt\n\nanother\n").unwrap();
    let long = dir.join("p2.txt");
    std::fs::write(&long, format!("short\n{long_prompt}\n")).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "generate",
                "-m",
                &m,
                "--prompts",
                empty_line.to_str().unwrap(),
            ],
            "line 2 is empty",
        ),
        (
            vec![
                "generate",
                "-m",
                &m,
                "--prompts",
                "/nonexistent/prompts.txt",
            ],
            "/nonexistent/prompts.txt",
        ),
        (
            vec![
                "generate",
                "-m",
                &m,
                "--prompts",
                long.to_str().unwrap(),
                "--ctx",
                "64",
                "-n",
                "4",
            ],
            "line 2 has",
        ),
    ];
    for (args, needle) in cases {
        let o = vtpu(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(stdout(&o).is_empty(), "{args:?}: nothing half-run");
    }
}

/// `--prompts FILE`: the sequences decoded together give the texts each gives alone.
#[test]
fn prompts_file_decodes_together_with_the_texts_of_single_runs() {
    let m = fixture();
    let dir = std::env::temp_dir().join(format!("vtpu-cli-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prompts = ["The capital of France is", "Once upon a time", "1 2 3"];
    let f = dir.join("prompts.txt");
    std::fs::write(&f, prompts.join("\n")).unwrap();
    let o = vtpu(&[
        "generate",
        "-m",
        &m,
        "--prompts",
        f.to_str().unwrap(),
        "-n",
        "10",
        "--temp",
        "0",
        "--no-pin",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        assert_eq!(lines[i]["index"], i);
        assert_eq!(lines[i]["prompt"], *p);
        let alone = vtpu(&[
            "generate", "-m", &m, "-p", p, "-n", "10", "--temp", "0", "--no-pin",
        ]);
        assert!(alone.status.success());
        assert_eq!(
            lines[i]["text"].as_str().unwrap(),
            stdout(&alone).strip_suffix('\n').unwrap(),
            "prompt {p:?}"
        );
    }
    assert!(stderr(&o).contains("batched steps"), "{}", stderr(&o));
    let b = vtpu(&[
        "bench", "-m", &m, "-p", "8", "-n", "4", "-r", "1", "--batch", "1,3", "-o", "json",
        "--no-pin",
    ]);
    assert!(b.status.success(), "{}", stderr(&b));
    let v: serde_json::Value = serde_json::from_str(&stdout(&b)).unwrap();
    let batched: Vec<&serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["n_batch"].as_u64() == Some(3))
        .collect();
    assert_eq!(batched.len(), 1);
    assert!(batched[0]["avg_ts"].as_f64().unwrap() > 0.0);
}

#[test]
fn hf_directory_chat_template_from_chat_template_jinja() {
    // Recent transformers write the template to chat_template.jinja only.
    let src = repo().join("testdata/hf/qwen3");
    let dir = std::env::temp_dir().join(format!("vtpu-cli-hf-jinja-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut template = None;
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name == "tokenizer_config.json" {
            let mut v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            template = v.as_object_mut().unwrap().remove("chat_template");
            std::fs::write(dir.join(&name), v.to_string()).unwrap();
        } else {
            std::fs::copy(&p, dir.join(&name)).unwrap();
        }
    }
    let template = template.expect("the fixture has a chat template");
    std::fs::write(dir.join("chat_template.jinja"), template.as_str().unwrap()).unwrap();
    let d = dir.display().to_string();
    let o = vtpu(&[
        "generate",
        "-m",
        &d,
        "--chat",
        "-p",
        "hi",
        "-n",
        "3",
        "--temp",
        "0",
        "--no-pin",
        "--verbose-tokens",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    // The ChatML turn markers are in the prompt ids.
    let prompt_line = e.lines().find(|l| l.starts_with("prompt tokens:")).unwrap();
    let tok = vtpu(&["tokenize", "-m", &d, "-p", "<|im_start|>"]);
    let ids: Vec<u64> = serde_json::from_str(stdout(&tok).trim()).unwrap();
    let im_start = ids.last().unwrap().to_string();
    assert!(
        prompt_line.contains(&im_start),
        "{prompt_line} lacks {im_start}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
