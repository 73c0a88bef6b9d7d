//! `vtpu chat`: the terminal chat on the committed tiny qwen3 fixture, driven through
//! standard input. The point is `--session`: a conversation saved at exit and resumed
//! in a new process answers exactly as the uninterrupted conversation does.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn chat(args: &[&str], input: &str) -> (bool, String, String) {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models/qwen3-tiny.gguf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vtpu"))
        .arg("chat")
        .arg("-m")
        .arg(model)
        .args(["-t", "1", "--no-pin", "--ctx", "1024", "-n", "16"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vtpu chat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn resumed_equals_uninterrupted(sampling: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("talk.phext");
    let s = session.to_str().unwrap();
    let (ok, whole, err) = chat(sampling, "Hello there\nAnd a second question\nA third\n");
    assert!(ok, "{err}");
    let mut args = sampling.to_vec();
    args.extend(["--session", s]);
    let (ok, part1, err1) = chat(&args, "Hello there\n/exit\n");
    assert!(ok, "{err1}");
    assert!(err1.contains("session saved"), "{err1}");
    let (ok, part2, err2) = chat(&args, "And a second question\n");
    assert!(ok, "{err2}");
    assert!(err2.contains("resumed 2 messages"), "{err2}");
    // The second turn keeps everything the first fed to the model.
    assert!(!err2.contains("(0 cached)"), "{err2}");
    let (ok, part3, err3) = chat(&args, "A third\n");
    assert!(ok, "{err3}");
    assert!(err3.contains("resumed 4 messages"), "{err3}");
    assert_eq!(format!("{part1}{part2}{part3}"), whole);
    assert_eq!(whole.lines().count() >= 3, true, "{whole:?}");
}

#[test]
fn a_resumed_session_answers_as_the_uninterrupted_chat_greedy() {
    resumed_equals_uninterrupted(&["--temp", "0"]);
}

#[test]
fn a_resumed_session_answers_as_the_uninterrupted_chat_sampled() {
    resumed_equals_uninterrupted(&["--temp", "0.9", "--seed", "7"]);
}

#[test]
fn reset_starts_over_and_a_damaged_session_is_an_error() {
    // After /reset the same question gets the same answer as at the start.
    let (ok, out, err) = chat(&["--temp", "0"], "Hi\n/reset\nHi\n");
    assert!(ok, "{err}");
    assert!(err.contains("new conversation"));
    let lines: Vec<&str> = out.split('\n').collect();
    let half = lines.len() / 2;
    assert_eq!(
        lines[..half].join("\n"),
        lines[half..2 * half].join("\n"),
        "{out:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s.phext");
    let s = session.to_str().unwrap();
    let (ok, _, err) = chat(&["--session", s], "Hi\n");
    assert!(ok, "{err}");
    std::fs::write(&session, "not a phext manifest").unwrap();
    let (ok, _, err) = chat(&["--session", s], "Hi\n");
    assert!(!ok);
    assert!(err.contains("cannot resume the session"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
