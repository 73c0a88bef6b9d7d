//! `vtpu serve` end to end: the built binary on a free loopback port with the committed
//! tiny qwen3 fixture (random weights, so the text is gibberish, but greedy decoding is
//! deterministic and every code path is the real one). A small HTTP/1.1 client over
//! `TcpStream` keeps the test free of extra dependencies.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MODEL: &str = "testdata/models/qwen3-tiny.gguf";

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL)
}

struct Server {
    child: Child,
    addr: String,
    /// Every stderr line the server printed (read on a thread).
    log: mpsc::Receiver<String>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vtpu"))
            .arg("serve")
            .arg("-m")
            .arg(model())
            .args(["--port", "0", "-t", "1", "--no-pin"])
            .args(if extra.contains(&"--ctx") {
                &[][..]
            } else {
                &["--ctx", "512"][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vtpu serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server printed its address");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().expect("address").to_string();
            }
        };
        let s = Server {
            child,
            addr,
            log: rx,
        };
        // /health answers 503 while loading, then 200.
        loop {
            let r = s.get("/health");
            if r.status == 200 {
                assert_eq!(r.json()["status"], "ok");
                break;
            }
            assert_eq!(r.status, 503, "{}", r.body_text());
            assert!(Instant::now() < deadline, "the model did not load");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Resp {
        http(&self.addr, method, path, body, headers)
    }
    fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, &[])
    }
    fn post(&self, path: &str, v: &Value) -> Resp {
        self.request("POST", path, Some(v.to_string().as_bytes()), &[])
    }

    /// SIGTERM, then the exit status and everything it printed.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
        let status = wait_timeout(&mut self.child, Duration::from_secs(60));
        let mut log = String::new();
        while let Ok(l) = self.log.recv_timeout(Duration::from_millis(500)) {
            log.push_str(&l);
            log.push('\n');
        }
        (status, log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, t: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + t;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(Instant::now() < end, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Resp {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body_text()))
    }
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `data:` payloads of a server-sent-event body.
    fn events(&self) -> Vec<String> {
        self.body_text()
            .split("\n\n")
            .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(str::to_string)
            .collect()
    }
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).ok();
    s
}

fn send_request(
    s: &mut TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    if let Some(b) = body {
        // A server may answer (413) before reading a large body: ignore a reset.
        let _ = s.write_all(b);
    }
}

fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut s = connect(addr);
    send_request(&mut s, addr, method, path, body, headers);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16)
            .expect("chunk size");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

fn chat_body(messages: &[(&str, &str)], max_tokens: u64, stream: bool) -> Value {
    json!({
        "model": "qwen3-tiny",
        "messages": messages.iter().map(|(r, c)| json!({"role": r, "content": c})).collect::<Vec<_>>(),
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    })
}

/// The streamed text of chat or completion chunks; checks the OpenAI chunk format.
fn stream_text(r: &Resp, chat: bool) -> (String, Value) {
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{}",
        r.headers
    );
    let ev = r.events();
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{ev:?}");
    let mut text = String::new();
    let mut last = Value::Null;
    for (i, e) in ev[..ev.len() - 1].iter().enumerate() {
        let v: Value = serde_json::from_str(e).expect("chunk JSON");
        assert_eq!(
            v["object"],
            if chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            }
        );
        let c = &v["choices"][0];
        if chat {
            if i == 0 {
                assert_eq!(c["delta"]["role"], "assistant");
            }
            text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
        } else {
            text.push_str(c["text"].as_str().unwrap_or(""));
        }
        if i + 2 < ev.len() {
            assert!(
                c["finish_reason"].is_null(),
                "only the last chunk finishes: {v}"
            );
        }
        last = v;
    }
    (text, last)
}

#[test]
fn endpoints_answer_and_stream_in_openai_format() {
    let s = Server::start(&[]);
    let models = s.get("/v1/models").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "qwen3-tiny");
    assert_eq!(models["data"][0]["meta"]["n_ctx"], 512);

    // Chat, not streamed.
    let r = s.post(
        "/v1/chat/completions",
        &chat_body(&[("user", "Hello there")], 12, false),
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    let c = &v["choices"][0];
    assert_eq!(c["message"]["role"], "assistant");
    let text = c["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    let u = &v["usage"];
    let gen = u["completion_tokens"].as_u64().unwrap();
    assert!(gen >= 1 && gen <= 12, "{u}");
    assert_eq!(
        c["finish_reason"],
        if gen == 12 { "length" } else { "stop" }
    );
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + gen)
    );
    assert_eq!(v["timings"]["predicted_n"].as_u64(), Some(gen));

    // The same request streamed: the same text, in chunks, ending with [DONE].
    let r = s.post(
        "/v1/chat/completions",
        &chat_body(&[("user", "Hello there")], 12, true),
    );
    let (streamed, last) = stream_text(&r, true);
    assert_eq!(streamed, text);
    assert_eq!(last["choices"][0]["finish_reason"], c["finish_reason"]);
    assert_eq!(last["usage"], *u);

    // Completions, both forms, and a stop string.
    let body = json!({"prompt": "Once upon a time", "max_tokens": 10, "temperature": 0});
    let v = s.post("/v1/completions", &body).json();
    assert_eq!(v["object"], "text_completion");
    let ctext = v["choices"][0]["text"].as_str().unwrap().to_string();
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let (stext, _) = stream_text(&s.post("/v1/completions", &sb), false);
    assert_eq!(stext, ctext);
    if ctext.chars().count() > 4 {
        let stop: String = ctext.chars().skip(2).take(2).collect();
        let mut b = body.clone();
        b["stop"] = json!([stop]);
        let v = s.post("/v1/completions", &b).json();
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let t = v["choices"][0]["text"].as_str().unwrap();
        assert!(
            ctext.starts_with(t) && !t.contains(&stop),
            "{t:?} vs {ctext:?} stop {stop:?}"
        );
    }
    // Seeded sampling is reproducible.
    let b = json!({"prompt": "abc", "max_tokens": 8, "temperature": 1.0, "seed": 42});
    assert_eq!(
        s.post("/v1/completions", &b).json()["choices"][0]["text"],
        s.post("/v1/completions", &b).json()["choices"][0]["text"]
    );

    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    let mt = m.body_text();
    for name in [
        "vtpu_http_requests_total",
        "vtpu_generated_tokens_total",
        "vtpu_generated_tokens_per_second",
        "vtpu_queue_length",
        "vtpu_kv_pages_in_use",
        "vtpu_ppt_hit_rate",
    ] {
        assert!(mt.contains(&format!("\n{name} ")), "{name} missing:\n{mt}");
    }
    let gen_total: f64 = mt
        .lines()
        .find_map(|l| l.strip_prefix("vtpu_generated_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(gen_total >= 2.0 * gen as f64);

    let page = s.get("/");
    assert_eq!(page.status, 200);
    let html = page.body_text();
    assert!(html.contains("<html") && html.contains("/v1/chat/completions"));
    assert!(
        !html.contains("<script src") && !html.contains("https://"),
        "the page must be self-contained"
    );
    let slots = s.get("/slots").json();
    assert_eq!(slots[0]["id"], 0);
    assert_eq!(slots[0]["is_processing"], false);
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let s = Server::start(&[]);
    let check = |r: Resp, status: u16, needle: &str| {
        assert_eq!(r.status, status, "{}", r.body_text());
        let v = r.json();
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message: {v}"));
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert!(v["error"]["type"].is_string());
    };
    let raw = |body: &[u8]| s.request("POST", "/v1/chat/completions", Some(body), &[]);
    check(
        raw(b"{\"messages\": [{\"role\": \"user\""),
        400,
        "not valid JSON",
    );
    check(raw(b"{\"messages\": \"hi\"}"), 400, "invalid type");
    check(
        raw(br#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"}"#),
        400,
        "invalid type",
    );
    check(
        raw(br#"{"messages":[{"role":"user","content":"hi"}],"temperature":-1}"#),
        400,
        "temperature",
    );
    check(
        s.post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        404,
        "does not exist",
    );
    check(
        s.post("/v1/chat/completions", &json!({"messages": []})),
        400,
        "empty",
    );
    check(
        s.post(
            "/v1/chat/completions",
            &chat_body(&[("user", "hi")], 100_000, false),
        ),
        400,
        "past the context",
    );
    check(
        s.post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "hi"}], "n": 2}),
        ),
        400,
        "n = 1",
    );
    check(
        s.post("/v1/completions", &json!({"prompt": ""})),
        400,
        "empty",
    );
    check(
        s.post("/v1/completions", &json!({"prompt": [5, 99999]})),
        400,
        "vocabulary",
    );
    let big = vec![b' '; (1 << 20) + 10];
    check(raw(&big), 413, "larger than");
    check(s.get("/v1/nothing"), 404, "no such endpoint");
    check(
        s.request("POST", "/slots/0?action=fly", Some(b""), &[]),
        400,
        "action",
    );
    check(
        s.request("POST", "/slots/9?action=erase", Some(b""), &[]),
        404,
        "slot 9",
    );
    check(
        s.request("POST", "/slots/0?action=save", Some(b""), &[]),
        400,
        "--cache-dir",
    );
    // Still serving.
    let r = s.post(
        "/v1/chat/completions",
        &chat_body(&[("user", "hi")], 3, false),
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(s.get("/health").status, 200);
}

#[test]
fn api_key_is_required_when_set() {
    let s = Server::start(&["--api-key", "sekrit"]);
    let body = chat_body(&[("user", "hi")], 2, false).to_string();
    let r = s.request("POST", "/v1/chat/completions", Some(body.as_bytes()), &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    let r = s.request(
        "POST",
        "/v1/chat/completions",
        Some(body.as_bytes()),
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(r.status, 401);
    assert_eq!(s.get("/v1/models").status, 401);
    assert_eq!(s.get("/metrics").status, 401);
    let r = s.request(
        "POST",
        "/v1/chat/completions",
        Some(body.as_bytes()),
        &[("Authorization", "Bearer sekrit")],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    // The liveness probe and the static page stay open (as llama-server has them).
    assert_eq!(s.get("/health").status, 200);
    assert_eq!(s.get("/").status, 200);
}

/// The next turn of a chat reuses the cached prefix: `prompt_n` counts only the new
/// tokens, and the answer equals a fresh server's.
#[test]
fn prompt_cache_hit_is_proven_by_prompt_n_and_changes_nothing() {
    let s = Server::start(&[]);
    let turn1 = [("system", "You are terse."), ("user", "Name a colour.")];
    let v1 = s
        .post("/v1/chat/completions", &chat_body(&turn1, 16, false))
        .json();
    let reply = v1["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v1["timings"]["cache_n"], 0);
    let turn2 = [
        turn1[0],
        turn1[1],
        ("assistant", reply.as_str()),
        ("user", "Another one."),
    ];
    let v2 = s
        .post("/v1/chat/completions", &chat_body(&turn2, 16, false))
        .json();
    let t = &v2["timings"];
    let (cache_n, prompt_n) = (
        t["cache_n"].as_u64().unwrap(),
        t["prompt_n"].as_u64().unwrap(),
    );
    let prompt_tokens = v2["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(cache_n + prompt_n, prompt_tokens);
    let first_prompt = v1["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        cache_n >= first_prompt,
        "turn 2 should reuse at least turn 1's prompt: {t}"
    );
    assert!(prompt_n < prompt_tokens - first_prompt + 1, "{t}");
    // A fresh server computes everything and must answer the same.
    drop(s);
    let fresh = Server::start(&[]);
    let v3 = fresh
        .post("/v1/chat/completions", &chat_body(&turn2, 16, false))
        .json();
    assert_eq!(v3["timings"]["cache_n"], 0);
    assert_eq!(
        v3["choices"][0]["message"]["content"],
        v2["choices"][0]["message"]["content"]
    );
}

/// `--cache-dir`: SIGTERM saves the prompt cache to phext space; a restarted server
/// restores it, answers identically, and (when the engine restores KV by copying)
/// computes only the last prompt token. An engine that must recompute says so in
/// `prompt_n`: the test holds the server to an honest count either way.
#[test]
fn cache_dir_survives_a_restart_and_is_really_used() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let s = Server::start(&["--cache-dir", d]);
    let body = json!({"prompt": "The history of the vTPU begins with a page of phext", "max_tokens": 12, "temperature": 0});
    let v1 = s.post("/v1/completions", &body).json();
    let (st, log) = s.terminate();
    assert!(st.success(), "{log}");
    assert!(log.contains("prompt cache saved"), "{log}");
    assert!(dir.path().join("prompt-cache.phext").is_file());

    let s = Server::start(&["--cache-dir", d]);
    let restore = s.get("/v1/models").json()["data"][0]["meta"]["kv_restore"]
        .as_bool()
        .unwrap();
    let slots = s.get("/slots").json();
    assert!(
        slots[0]["prompt_cache"]["entries"].as_u64().unwrap() >= 1 || !restore,
        "{slots}"
    );
    let v2 = s.post("/v1/completions", &body).json();
    assert_eq!(v2["choices"][0]["text"], v1["choices"][0]["text"]);
    let t = &v2["timings"];
    let prompt_tokens = v2["usage"]["prompt_tokens"].as_u64().unwrap();
    if restore {
        assert_eq!(t["prompt_n"], 1, "the restored cache was not used: {t}");
        assert_eq!(t["cache_n"].as_u64(), Some(prompt_tokens - 1));
    } else {
        assert_eq!(t["prompt_n"].as_u64(), Some(prompt_tokens), "{t}");
    }
    // Explicit save / erase / restore through /slots, on the slot that holds it (with
    // several slots the scheduler picks one).
    let slot = s
        .get("/slots")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|x| x["n_cached"].as_u64().unwrap_or(0))
        .map(|x| x["id"].as_u64().unwrap())
        .unwrap();
    let r = s
        .request(
            "POST",
            &format!("/slots/{slot}?action=save"),
            Some(br#"{"filename": "manual"}"#),
            &[],
        )
        .json();
    assert!(r["n_saved"].as_u64().unwrap() >= prompt_tokens, "{r}");
    assert!(dir.path().join("manual.phext").is_file());
    let r = s
        .request("POST", &format!("/slots/{slot}?action=erase"), None, &[])
        .json();
    assert!(r["n_erased"].as_u64().unwrap() >= prompt_tokens, "{r}");
    assert_eq!(s.get("/slots").json()[slot as usize]["n_cached"], 0);
    let r = s.request(
        "POST",
        &format!("/slots/{slot}?action=restore"),
        Some(br#"{"filename": "manual.phext"}"#),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(r.json()["n_restored"].as_u64().unwrap() >= prompt_tokens);
    let v3 = s.post("/v1/completions", &body).json();
    assert_eq!(v3["choices"][0]["text"], v1["choices"][0]["text"]);
    if restore {
        assert_eq!(v3["timings"]["prompt_n"], 1);
    }
    let r = s.request(
        "POST",
        "/slots/0?action=restore",
        Some(br#"{"filename": "../etc"}"#),
        &[],
    );
    assert_eq!(r.status, 400);
}

/// Reads a streaming response until the first content chunk arrives.
fn open_stream(addr: &str, body: &Value) -> TcpStream {
    let mut st = connect(addr);
    send_request(
        &mut st,
        addr,
        "POST",
        "/v1/completions",
        Some(body.to_string().as_bytes()),
        &[],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"text\"") {
        let n = st.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    st
}

fn long_body() -> Value {
    json!({"prompt": "count", "max_tokens": 4000, "temperature": 0, "stream": true, "ignore_eos": true})
}

fn metric(s: &Server, name: &str) -> f64 {
    let t = s.get("/metrics").body_text();
    t.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn a_client_that_disconnects_frees_its_slot_at_once() {
    let s = Server::start(&["--ctx", "4096", "--parallel", "1"]);
    let st = open_stream(&s.addr, &long_body());
    drop(st);
    // The slot is free: a short request is answered long before 4000 tokens could be.
    let t0 = Instant::now();
    let r = s.post(
        "/v1/completions",
        &json!({"prompt": "hi", "max_tokens": 2, "temperature": 0}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(metric(&s, "vtpu_requests_cancelled_total"), 1.0);
    assert!(metric(&s, "vtpu_generated_tokens_total") < 3000.0);
    assert!(t0.elapsed() < Duration::from_secs(30));
    // The engine thread frees the finished sequence's slot right after its last chunk;
    // the gauge follows within a step.
    let until = Instant::now() + Duration::from_secs(5);
    while metric(&s, "vtpu_active_sequences") != 0.0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(metric(&s, "vtpu_active_sequences"), 0.0);
}

#[test]
fn a_full_queue_answers_503() {
    let s = Server::start(&["--ctx", "4096", "--parallel", "1", "--queue", "1"]);
    let a = open_stream(&s.addr, &long_body());
    // Queued behind `a` (it counts as waiting until a slot frees).
    let mut b = connect(&s.addr);
    send_request(
        &mut b,
        &s.addr,
        "POST",
        "/v1/completions",
        Some(long_body().to_string().as_bytes()),
        &[],
    );
    let t0 = Instant::now();
    while metric(&s, "vtpu_queue_length") < 1.0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "b never queued");
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = s.post("/v1/completions", &json!({"prompt": "hi", "max_tokens": 2}));
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("queue is full"));
    drop(a);
    drop(b);
    let t0 = Instant::now();
    loop {
        let r = s.post("/v1/completions", &json!({"prompt": "hi", "max_tokens": 2}));
        if r.status == 200 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM while a response streams: the stream gets its final chunk and [DONE], the
/// server exits 0 and its saved cache loads again.
#[test]
fn sigterm_ends_streams_cleanly_and_saves_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let s = Server::start(&["--ctx", "4096", "--cache-dir", d]);
    let mut st = open_stream(&s.addr, &long_body());
    let (status, log) = s.terminate();
    assert!(status.success(), "{log}");
    let mut rest = Vec::new();
    let _ = st.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    assert!(
        text.trim_end().ends_with("0") || text.contains("data: [DONE]"),
        "{text}"
    );
    assert!(text.contains("data: [DONE]"), "{text}");
    let s = Server::start(&["--ctx", "4096", "--cache-dir", d]);
    let (_, log) = s.terminate();
    assert!(log.contains("prompt cache restored"), "{log}");
}
