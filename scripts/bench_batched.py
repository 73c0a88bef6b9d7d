#!/usr/bin/env python3
"""Batched decoding: `vtpu bench --batch B1,B2,...` against `llama-batched-bench` of
llama.cpp and, when it is built, of ik_llama.cpp, on the same GGUF file, same threads,
same run.

Driven by scripts/bench_batched.sh (which builds everything and finds the file); not part
of any test run. Standard library only; the run/load/section helpers are
scripts/bench_models.py's.

What each side measures, per batch size B (B sequences, each with its own prompt of P
tokens and its own KV cache, then N decode steps that each take one token of every
sequence):
- vTPU: `vtpu bench -m M -t T -p P -n N -r 1 --batch B1,B2,... -o json`; for each B it
  prefills the B prompts (untimed), then times the N batched steps: aggregate = B * N /
  time. Each call does one untimed warm-up pass per test before the timed one. It also runs
  its plain pp P and tg N tests (kept in the raw JSON, not in the table).
- llama.cpp and ik_llama.cpp: `llama-batched-bench -m M -c C -b 2048 -ub 512 -npp P -ntg N
  -npl B1,B2,... -t T` (prompts not shared), S_TG = B * N / time of the N steps, the same
  definition. ik_llama.cpp adds --ik-args (default `-rtr`: run-time repacking, its fastest
  CPU layout; flash attention is already its default). C = max(4096, max B * (P + N)).

One round runs the three commands back to back, the order rotating from round to round;
--reps rounds; each figure is the median over the rounds. Load average, wall time and the
CPU time other processes used during every command are kept (as in bench_models.py).

Output: raw outputs and derived figures as JSON in --json-dir, and a markdown section
between the `bench-batched` markers of --markdown (created at the end of the file when
missing) or on stdout (--markdown -). `--from-json FILE` re-renders from an earlier run.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile

# No __pycache__ next to the scripts from importing bench_models.
sys.dont_write_bytecode = True
from bench_models import (ENGINES, NAMES, RunError, cpu_flags, git_rev, int_list, loadavg, log,  # noqa: E402
                          lscpu_model, parse_json_array, run, with_lib_path, write_section)

BEGIN = "<!-- BEGIN bench-batched -->"
END = "<!-- END bench-batched -->"
# ik_llama.cpp's common arguments: `-rtr` is a switch there (llama-bench's takes 0/1).
DEFAULT_IK_ARGS = "-rtr"

# A result row of llama-batched-bench's table (both forks print the same one):
# |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
_NUM = r"\s*([0-9.]+)\s*"
ROW = re.compile(r"^\|" + r"\|".join([_NUM] * 10) + r"\|\s*$", re.M)
ROW_FIELDS = ("pp", "tg", "b", "n_kv", "t_pp_s", "s_pp_ts", "t_tg_s", "s_tg_ts", "t_s", "s_ts")
# "main: n_kv_max = ..." (ik_llama.cpp) or "llama_batched_bench: n_kv_max = ..." (llama.cpp).
SETTINGS_LINE = re.compile(r"^\w+: (n_kv_max = .*)$", re.M)


def parse_batched_bench(text, what, batches, n_prompt, n_gen):
    """The table rows of a llama-batched-bench output, by batch size; every wanted batch
    must be there (the tool skips, with only a message, one that does not fit -c)."""
    rows = {}
    for m in ROW.finditer(text):
        r = {k: float(v) for k, v in zip(ROW_FIELDS, m.groups())}
        if int(r["pp"]) == n_prompt and int(r["tg"]) == n_gen:
            rows[int(r["b"])] = r
    missing = [b for b in batches if b not in rows]
    if missing:
        raise RunError(f"{what}: no result row for batch {', '.join(map(str, missing))}; output ends with:\n{text[-2000:]}")
    return rows


def parse_vtpu(text, what, batches):
    """vtpu bench's batched results (n_batch B, prompt and generation both set), by B."""
    out = {}
    for r in parse_json_array(text, what):
        if r.get("n_prompt") and r.get("n_gen") and r.get("n_batch") in batches and r.get("samples_ts"):
            out[r["n_batch"]] = r
    missing = [b for b in batches if b not in out]
    if missing:
        raise RunError(f"{what}: no batched result for batch {', '.join(map(str, missing))}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-json", metavar="FILE", help="re-render the section from an earlier run's raw JSON")
    ap.add_argument("--vtpu")
    ap.add_argument("--llama-bin", help="llama.cpp build/bin directory")
    ap.add_argument("--ik-bin", help="ik_llama.cpp build/bin directory (optional)")
    ap.add_argument("--ik-missing", default="no --ik-bin given", help="why ik_llama.cpp is not run, for the section")
    ap.add_argument("--ik-args", default=DEFAULT_IK_ARGS,
                    help=f"extra llama-batched-bench arguments for ik_llama.cpp (default: {DEFAULT_IK_ARGS!r})")
    ap.add_argument("--ik-commit", default="unknown")
    ap.add_argument("--model", metavar="LABEL=PATH")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-prompt", type=int, default=128)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--batch", default="1,4,16")
    ap.add_argument("--reps", type=int, default=3, help="rounds (each tool once per round)")
    ap.add_argument("--json-dir")
    ap.add_argument("--markdown", required=True, help="file with the markers, or - for stdout")
    ap.add_argument("--command", help="the command line, for the section")
    ap.add_argument("--llamacpp-commit", default="unknown")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            rep = json.load(f)
        rep["rows"] = derive(rep)
        emit(a.markdown, markdown(rep, a.from_json))
        return
    missing = [o for o in ("vtpu", "llama_bin", "model", "json_dir", "command") if not getattr(a, o)]
    if missing:
        raise SystemExit("error: missing " + ", ".join("--" + o.replace("_", "-") for o in missing))
    if a.reps < 1 or a.threads < 1 or a.n_prompt < 1 or a.n_gen < 1:
        raise SystemExit("error: --reps, --threads, --n-prompt and --n-gen must be at least 1")
    batches = int_list(a.batch, "--batch")
    label, sep, path = a.model.partition("=")
    if not sep or not os.path.isfile(path):
        raise SystemExit(f"error: --model {a.model}: expected LABEL=PATH of an existing file")
    for d, b in ((a.llama_bin, "llama-batched-bench"), (a.ik_bin, "llama-batched-bench")):
        if d and not os.access(os.path.join(d, b), os.X_OK):
            raise SystemExit(f"error: {d}: no executable {b} there")
    ctx = max(4096, max(batches) * (a.n_prompt + a.n_gen))
    engines = ["vtpu", "llama"] + (["ik"] if a.ik_bin else [])
    ik_args = shlex.split(a.ik_args)
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    started = datetime.datetime.now(datetime.timezone.utc)
    meta = dict(
        date_utc=started.strftime("%Y-%m-%d %H:%M UTC"), cpu=lscpu_model(), cpus=os.cpu_count(),
        cpu_flags=cpu_flags(), kernel=platform.release(), vtpu_git=git_rev(root),
        llamacpp_commit=a.llamacpp_commit, command=a.command, reps=a.reps, model=label, model_path=path,
        threads=a.threads, n_prompt=a.n_prompt, n_gen=a.n_gen, batches=batches, ctx=ctx, engines=engines,
        ik_commit=a.ik_commit if a.ik_bin else None, ik_args=a.ik_args if a.ik_bin else None,
        ik_missing=None if a.ik_bin else a.ik_missing, loadavg_before=loadavg(),
    )
    blist = ",".join(map(str, batches))
    bb = ["-m", path, "-c", str(ctx), "-b", "2048", "-ub", "512", "-npp", str(a.n_prompt), "-ntg", str(a.n_gen),
          "-npl", blist, "-t", str(a.threads)]
    cmds = {
        "vtpu": [a.vtpu, "bench", "-m", path, "-t", str(a.threads), "-p", str(a.n_prompt), "-n", str(a.n_gen),
                 "-r", "1", "--batch", blist, "-o", "json"],
        "llama": [os.path.join(a.llama_bin, "llama-batched-bench")] + bb,
    }
    envs = {"vtpu": dict(os.environ), "llama": with_lib_path(os.environ, a.llama_bin)}
    if a.ik_bin:
        cmds["ik"] = [os.path.join(a.ik_bin, "llama-batched-bench")] + bb + ik_args
        envs["ik"] = with_lib_path(os.environ, a.ik_bin)
    # For the section: the program's name rather than its (temporary, cache) path; the
    # versions line says which build it is.
    meta["commands"] = {e: " ".join(shlex.quote(x) for x in [os.path.basename(c[0])] + c[1:])
                        for e, c in cmds.items()}

    rounds = []
    # A scratch working directory: ik_llama.cpp's old logger may write llama.*.log files.
    with tempfile.TemporaryDirectory(prefix="bench_batched.") as scratch:
        for i in range(a.reps):
            k = i % len(engines)
            order = engines[k:] + engines[:k]
            runs = {}
            for e in order:
                log(f"round {i + 1}/{a.reps}: {e}")
                try:
                    r = run(cmds[e], env=envs[e], cwd=scratch)
                    if e == "vtpu":
                        res = parse_vtpu(r["stdout"], f"vtpu round {i + 1}", batches)
                        r["results"] = {str(b): dict(aggregate_ts=v["samples_ts"][0], raw=v) for b, v in res.items()}
                    else:
                        text = r["stdout"] + "\n" + r["stderr"]
                        res = parse_batched_bench(text, f"{e} round {i + 1}", batches, a.n_prompt, a.n_gen)
                        r["results"] = {str(b): dict(aggregate_ts=v["s_tg_ts"], raw=v) for b, v in res.items()}
                        s = SETTINGS_LINE.search(text)
                        r["settings"] = s.group(1) if s else None
                except RunError as err:
                    if e != "ik":
                        raise
                    log(f"  failed: {str(err)[-500:]}")
                    runs[e] = dict(cmd=cmds[e], error=str(err)[-4000:], results={}, others_cpus=None,
                                   loadavg_before=loadavg())
                    continue
                log("  " + ", ".join(f"B={b}: {v['aggregate_ts']:.1f} t/s" for b, v in r["results"].items())
                    + f" ({r['wall_s']:.0f} s, others used {r['others_cpus']} CPUs)")
                runs[e] = r
            rounds.append(dict(order=order, runs=runs))
    meta["loadavg_after"] = loadavg()
    meta["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rep = dict(meta=meta, rounds=rounds)
    rep["rows"] = derive(rep)
    os.makedirs(a.json_dir, exist_ok=True)
    jpath = os.path.join(a.json_dir, f"bench_batched-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    with open(jpath, "w") as f:
        json.dump(rep, f, indent=1)
    log(f"raw JSON: {jpath}")
    emit(a.markdown, markdown(rep, jpath))


def emit(target, md):
    if target == "-":
        print(md)
    else:
        write_section(target, md, BEGIN, END)
        print(f"wrote the bench-batched section of {target}", file=sys.stderr)


def derive(rep):
    """One row per batch size: each side's median aggregate over the rounds, and vTPU over
    the better of the two llama-batched-benches."""
    rows = []
    for b in rep["meta"]["batches"]:
        row = dict(batch=b)
        for e in ENGINES:
            samples = [r["runs"][e]["results"][str(b)]["aggregate_ts"] for r in rep["rounds"]
                       if e in r["runs"] and str(b) in r["runs"][e]["results"]]
            row[f"{e}_samples_ts"] = samples
            if samples:
                row[f"{e}_median_ts"] = statistics.median(samples)
                row[f"{e}_sd_ts"] = statistics.stdev(samples) if len(samples) > 1 else 0.0
        rivals = [(row[f"{e}_median_ts"], e) for e in ("llama", "ik") if f"{e}_median_ts" in row]
        if rivals and "vtpu_median_ts" in row:
            best, who = max(rivals)
            row["best_rival"] = who
            row["ratio_best"] = row["vtpu_median_ts"] / best
        rows.append(row)
    return rows


def observations(rep):
    out = []
    rows = {r["batch"]: r for r in rep["rows"]}
    for e in ENGINES:
        noisy = [f"B={b} ({100 * r[f'{e}_sd_ts'] / r[f'{e}_median_ts']:.0f}%)" for b, r in rows.items()
                 if r.get(f"{e}_median_ts") and r[f"{e}_sd_ts"] > 0.2 * r[f"{e}_median_ts"]]
        if noisy:
            out.append(f"{NAMES[e]}: sd over the rounds above 20% of the median at " + ", ".join(noisy) + ".")
    bs = sorted(rows)
    for e in ENGINES:
        falls = [f"{x} -> {y}" for x, y in zip(bs, bs[1:])
                 if rows[x].get(f"{e}_median_ts") and rows[y].get(f"{e}_median_ts")
                 and rows[y][f"{e}_median_ts"] < rows[x][f"{e}_median_ts"]]
        if falls:
            out.append(f"{NAMES[e]}'s aggregate falls from batch " + ", ".join(falls) + ".")
    for i, r in enumerate(rep["rounds"]):
        for e, run_ in r["runs"].items():
            if run_.get("error"):
                last = [x for x in run_["error"].strip().splitlines() if x.strip()][-1:] or ["?"]
                out.append(f"{NAMES[e]} failed in round {i + 1} (its last line: `{last[0][:200]}`).")
    return out


def markdown(rep, jpath):
    m = rep["meta"]
    ik_ran = any("ik" in r["runs"] for r in rep["rounds"])
    others = [r["runs"][e].get("others_cpus") for r in rep["rounds"] for e in r["runs"]]
    others = [x for x in others if x is not None]
    others_mean = statistics.mean(others) if others else 0.0
    # What other processes used during the commands decides "busy": the load average
    # at the start lags by a minute and mostly counts work that had just ended.
    busy = others_mean >= 0.25
    lagging_load = not busy and m["loadavg_before"][0] >= 0.5 * m["cpus"]
    settings = {}
    for r in rep["rounds"]:
        for e, run_ in r["runs"].items():
            if run_.get("settings"):
                settings.setdefault(e, run_["settings"])
    if ik_ran:
        ik_line = (f"ik_llama.cpp {m.get('ik_commit')} (scripts/build_ik_llamacpp.sh, GGML_NATIVE), with "
                   f"`{m.get('ik_args')}`.")
    else:
        ik_line = f"ik_llama.cpp: not run ({m.get('ik_missing') or 'not part of this run'})."
    lines = [
        "## Batched decoding: vTPU vs llama.cpp and ik_llama.cpp (llama-batched-bench)",
        "",
        f"Command: `{m['command']}`, {m['date_utc']} (finished {m['finished_utc']}).",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs ({', '.join(m['cpu_flags']) or 'no AVX2'}), Linux {m['kernel']}. "
        f"vtpu {m['vtpu_git']}; llama.cpp {m['llamacpp_commit']} (scripts/build_llamacpp.sh, GGML_NATIVE); "
        + ik_line,
        f"Load average (1/5/15 min) before: {' '.join(map(str, m['loadavg_before']))}, "
        f"after: {' '.join(map(str, m['loadavg_after']))} (the figure after includes this benchmark's own threads). "
        f"Other processes kept {others_mean:.2f} CPUs busy on average during the benchmark commands "
        "(from /proc/stat minus the benchmarks' own CPU time).",
    ]
    if busy:
        lines.append(
            f"**The machine was busy** (other processes used {others_mean:.2f} CPUs on average during the commands; "
            f"load average {m['loadavg_before'][0]} on {m['cpus']} CPUs at the start): "
            "the figures below are slowed and noisy. Nothing was filtered or re-run.")
    elif lagging_load:
        lines.append(
            f"The load average at the start ({m['loadavg_before'][0]}) counts work that had just ended: other "
            f"processes used {others_mean:.2f} CPUs during the commands.")
    lines += [
        "",
        f"{m['model']} (`{os.path.basename(m['model_path'])}`), {m['threads']} thread{'s' if m['threads'] != 1 else ''}. Each of B sequences gets "
        f"its own {m['n_prompt']}-token prompt and KV cache, then {m['n_gen']} decode steps each take one token of "
        f"every sequence; aggregate generation t/s = B x {m['n_gen']} / time of those steps (llama-batched-bench's "
        "S_TG; the prompts are not part of that time). "
        f"Median of {m['reps']} round{'s' if m['reps'] != 1 else ''}, ± sd over the rounds; in each round the "
        "tools run back to back, which goes first rotating. Commands (MODEL: that file):",
        "",
    ]
    for e in ENGINES:
        if e in m["commands"]:
            lines.append(f"- {NAMES[e]}: `{m['commands'][e].replace(m['model_path'], 'MODEL')}`"
                         + (f" (it reported: {settings[e]})" if e in settings else ""))
    lines += [
        "",
        "vTPU's `-r 1` times one pass per batch size after an untimed warm-up pass; llama-batched-bench warms up "
        "on 16 tokens, then times one pass per batch size. vTPU / best: over the better of llama.cpp and "
        "ik_llama.cpp at that batch size (> 1: the vTPU is faster).",
        "",
        "| sequences | vTPU aggregate t/s (per sequence) | llama.cpp S_TG t/s | ik_llama.cpp S_TG t/s | vTPU / best |",
        "|---|---|---|---|---|",
    ]

    def cell(r, e):
        if not any(e in x["runs"] for x in rep["rounds"]):
            return "not run"
        if r.get(f"{e}_median_ts") is None:
            return "failed"
        return f"{r[f'{e}_median_ts']:.1f} ± {r[f'{e}_sd_ts']:.1f}"

    for r in rep["rows"]:
        v = cell(r, "vtpu")
        if r.get("vtpu_median_ts") is not None:
            v += f" ({r['vtpu_median_ts'] / r['batch']:.1f})"
        best = (f"{r['ratio_best']:.2f}x (vs {NAMES[r['best_rival']]})" if r.get("ratio_best") is not None else "n/a")
        lines.append(f"| {r['batch']} | {v} | {cell(r, 'llama')} | {cell(r, 'ik')} | {best} |")
    notes = observations(rep)
    if notes:
        lines += ["", "Observations (computed from the numbers above):", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Raw outputs (every round, stdout/stderr, load per command): `{jpath}` "
              "(`$VTPU_CACHE/bench/`, not in the repository).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    except RunError as err:
        raise SystemExit(f"error: {err}") from None
