#!/usr/bin/env python3
"""Whole-model speed: `vtpu bench` against `llama-bench` on the same GGUF files, same
threads, same run, with the machine's measured read bandwidth as the decode ceiling.

Driven by scripts/bench_models.sh (which builds everything and finds the files); not part
of any test run. Standard library only.

For each model, threads 1 and 2: `vtpu bench` and `llama-bench`, each `-p P -n N -r R
-o json`, back to back (their order alternates from one case to the next, so a slow drift
of the machine does not always land on the same side). `examples/membw` runs at the start
and at the end. Each command's wall time, the load average before it and the CPU time
other processes used while it ran (from /proc/stat, minus our own children) are kept.

Derived figures:
- ratio = vTPU median t/s / llama.cpp median t/s (> 1: the vTPU is faster);
- for tg tests, fraction of the bandwidth ceiling = bytes read per token * t/s / read
  bandwidth at that thread count, where bytes per token = weight bytes (file size minus
  the GGUF header, metadata and tensor index: the tensor data section, alignment padding
  included; minus the token-embedding table when a separate output matrix exists, since
  then decode reads one row of it) + KV cache bytes read at the average position
  (2 * layers * kv heads * head width * bytes per element * (N + 1) / 2: step i reads i + 1
  positions). vTPU's cache is f16 (its default, as `vtpu bench` runs it); llama.cpp's
  type comes from its JSON (f16 by default). The bandwidth is the better of the two membw medians (interference only
  lowers it).

Output: all raw outputs and derived figures as JSON in --json-dir, and a markdown
section, either between the `bench-models` markers of --markdown (created at the end of
the file when missing) or on stdout (--markdown -). `--from-json FILE --markdown ...`
re-renders the section from an earlier run's raw JSON without running anything.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time

BEGIN = "<!-- BEGIN bench-models -->"
END = "<!-- END bench-models -->"
RUN_TIMEOUT_S = 3600

# --- GGUF header (metadata and tensor index only; no weights are read) --------------

# Caps on sizes read from the file, so a damaged header cannot make us allocate wildly.
MAX_STRING = 1 << 24
MAX_ARRAY = 1 << 26
MAX_TENSORS = 1 << 20
MAX_KV = 1 << 20
MAX_DIMS = 8

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}


class GgufError(Exception):
    pass


class _Reader:
    def __init__(self, f, path):
        self.f, self.path = f, path

    def take(self, n):
        b = self.f.read(n)
        if len(b) != n:
            raise GgufError(f"{self.path}: truncated header at byte {self.f.tell()}")
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise GgufError(f"{self.path}: string of {n} bytes at {self.f.tell()} (cap {MAX_STRING})")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype, keep):
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, n = self.unpack("<I"), self.unpack("<Q")
            if n > MAX_ARRAY:
                raise GgufError(f"{self.path}: array of {n} items (cap {MAX_ARRAY})")
            if etype in _SCALARS and not keep:
                self.f.seek(n * struct.calcsize(_SCALARS[etype]), os.SEEK_CUR)
                return None
            items = [self.value(etype, keep) for _ in range(n)]
            return items if keep else None
        raise GgufError(f"{self.path}: unknown metadata type {vtype} at {self.f.tell()}")


def gguf_summary(path):
    """Architecture numbers and byte counts of a GGUF file, from its header."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        r = _Reader(f, path)
        if r.take(4) != b"GGUF":
            raise GgufError(f"{path}: not a GGUF file")
        version = r.unpack("<I")
        if version not in (2, 3):
            raise GgufError(f"{path}: GGUF version {version} (expected 2 or 3)")
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
            raise GgufError(f"{path}: {n_tensors} tensors, {n_kv} metadata keys (caps {MAX_TENSORS}, {MAX_KV})")
        meta = {}
        for _ in range(n_kv):
            key = r.string()
            vtype = r.unpack("<I")
            # Only scalars are kept; the tokenizer's arrays are skipped.
            v = r.value(vtype, keep=False)
            if v is not None:
                meta[key] = v
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            nd = r.unpack("<I")
            if nd > MAX_DIMS:
                raise GgufError(f"{path}: tensor {name} has {nd} dimensions (cap {MAX_DIMS})")
            dims = [r.unpack("<Q") for _ in range(nd)]
            ttype, off = r.unpack("<I"), r.unpack("<Q")
            tensors.append((name, dims, ttype, off))
        align = int(meta.get("general.alignment", 32)) or 32
        data_start = (f.tell() + align - 1) // align * align
    if data_start > size:
        raise GgufError(f"{path}: tensor data would start at {data_start}, past the end ({size})")
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise GgufError(f"{path}: no general.architecture")

    def need(key):
        v = meta.get(f"{arch}.{key}")
        if not isinstance(v, int) or v <= 0:
            raise GgufError(f"{path}: missing or bad {arch}.{key}")
        return v

    n_layer, n_embd, n_head = need("block_count"), need("embedding_length"), need("attention.head_count")
    n_kv_head = meta.get(f"{arch}.attention.head_count_kv", n_head)
    head_dim = meta.get(f"{arch}.attention.key_length", n_embd // n_head)
    # Tensor sizes from the offsets (sorted), so no table of quantization block sizes is
    # needed: each tensor ends where the next begins (padding included).
    by_off = sorted(tensors, key=lambda t: t[3])
    sizes = {}
    for i, (name, _dims, _t, off) in enumerate(by_off):
        end = by_off[i + 1][3] if i + 1 < len(by_off) else size - data_start
        sizes[name] = end - off
    data_bytes = size - data_start
    names = {t[0] for t in tensors}
    untied = "output.weight" in names
    weight_bytes = data_bytes - (sizes.get("token_embd.weight", 0) if untied else 0)
    return dict(
        path=path, file_bytes=size, header_bytes=data_start, data_bytes=data_bytes,
        weight_bytes_per_token=weight_bytes, separate_output=untied,
        arch=arch, name=meta.get("general.name"), file_type=meta.get("general.file_type"),
        n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_kv_head=n_kv_head, head_dim=head_dim,
        n_tensors=n_tensors,
    )


KV_ELEM_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32}


def kv_bytes_read_per_token(g, n_gen, elem_bytes):
    """K and V bytes one decode step reads at the average position of a tg test from 0."""
    avg_positions = (n_gen + 1) / 2
    return 2 * g["n_layer"] * g["n_kv_head"] * g["head_dim"] * elem_bytes * avg_positions


# --- running commands ---------------------------------------------------------------


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine_busy_s():
    """CPU seconds all processes spent busy since boot (/proc/stat), and steal seconds."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    v = [int(x) for x in parts[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal ...
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    steal = v[7] if len(v) > 7 else 0
    return busy / tick, steal / tick


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, env=None):
    """Runs cmd; returns stdout, stderr and how busy the machine was meanwhile."""
    la = loadavg()
    busy0, steal0 = machine_busy_s()
    own0 = children_cpu_s()
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S)
    wall = time.monotonic() - t0
    busy1, steal1 = machine_busy_s()
    own = children_cpu_s() - own0
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"error: {' '.join(cmd)} exited with {p.returncode}")
    others = max(0.0, (busy1 - busy0) - own)
    return dict(
        cmd=cmd, stdout=p.stdout, stderr=p.stderr, wall_s=round(wall, 3), loadavg_before=la,
        own_cpu_s=round(own, 2), others_cpu_s=round(others, 2),
        # Average number of CPUs other processes kept busy while this ran.
        others_cpus=round(others / wall, 2) if wall > 0 else None,
        steal_s=round(steal1 - steal0, 2),
    )


def parse_json_array(text, what):
    # llama-bench and vtpu print only JSON on stdout with -o json; be strict about it.
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {what}: stdout is not JSON ({e}): {text[:300]!r}")
    if not isinstance(v, list):
        raise SystemExit(f"error: {what}: expected a JSON array")
    return v


def by_test(results, what):
    out = {}
    for r in results:
        n_p, n_g = r.get("n_prompt", 0), r.get("n_gen", 0)
        key = f"pp{n_p}" if n_p and not n_g else f"tg{n_g}" if n_g and not n_p else None
        if key is None or not r.get("samples_ts"):
            raise SystemExit(f"error: {what}: unexpected result {json.dumps(r)[:300]}")
        out[key] = r
    return out


LOAD_LINE = re.compile(r"([\d.]+) MB mapped zero-copy, ([\d.]+) MB copied")


# --- the run ------------------------------------------------------------------------


def lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    fl = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16") if x in fl]
    except OSError:
        pass
    return []


def git_rev(root):
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def membw(binary):
    r = run([binary])
    try:
        v = json.loads(r["stdout"])
        float(v["read_gbs_1t"]), float(v["read_gbs_2t"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"error: membw printed no usable JSON ({e}): {r['stdout'][:300]!r}")
    r["result"] = v
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-json", metavar="FILE",
                    help="re-render the section from a raw JSON of an earlier run (runs nothing)")
    ap.add_argument("--vtpu")
    ap.add_argument("--membw")
    ap.add_argument("--llama-bin", help="llama.cpp build/bin directory")
    ap.add_argument("--model", action="append", metavar="LABEL=PATH")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--n-prompt", type=int, default=128)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json-dir")
    ap.add_argument("--markdown", required=True, help="file with the markers, or - for stdout")
    ap.add_argument("--command", help="the command line, for the section")
    ap.add_argument("--llamacpp-commit", default="unknown")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            rep = json.load(f)
        emit(a.markdown, markdown(rep, a.from_json))
        return
    missing = [o for o in ("vtpu", "membw", "llama_bin", "model", "json_dir", "command") if not getattr(a, o)]
    if missing:
        raise SystemExit("error: missing " + ", ".join("--" + o.replace("_", "-") for o in missing))
    if a.reps < 3:
        raise SystemExit("error: --reps must be at least 3")
    threads = [int(t) for t in a.threads.split(",")]
    models = []
    for m in a.model:
        label, sep, path = m.partition("=")
        if not sep or not os.path.isfile(path):
            raise SystemExit(f"error: --model {m}: expected LABEL=PATH of an existing file")
        models.append((label, path, gguf_summary(path)))

    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    started = datetime.datetime.now(datetime.timezone.utc)
    meta = dict(
        date_utc=started.strftime("%Y-%m-%d %H:%M UTC"), cpu=lscpu_model(), cpus=os.cpu_count(),
        cpu_flags=cpu_flags(), kernel=platform.release(), vtpu_git=git_rev(root),
        llamacpp_commit=a.llamacpp_commit, command=a.command, reps=a.reps,
        n_prompt=a.n_prompt, n_gen=a.n_gen, threads=threads, loadavg_before=loadavg(),
    )
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = a.llama_bin + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    common = ["-p", str(a.n_prompt), "-n", str(a.n_gen), "-r", str(a.reps), "-o", "json"]

    log = lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True)
    log(f"membw (start), load {meta['loadavg_before']}")
    bw_start = membw(a.membw)
    log(f"  {bw_start['result']}")
    cases = []
    order_flip = False
    for label, path, g in models:
        for t in threads:
            runs = {}
            engines = ["vtpu", "llama"] if not order_flip else ["llama", "vtpu"]
            order_flip = not order_flip
            for e in engines:
                if e == "vtpu":
                    cmd = [a.vtpu, "bench", "-m", path, "-t", str(t)] + common
                else:
                    cmd = [os.path.join(a.llama_bin, "llama-bench"), "-m", path, "-t", str(t)] + common
                log(f"{label} t={t}: {e}")
                r = run(cmd, env=env)
                r["results"] = by_test(parse_json_array(r["stdout"], f"{e} {label} t={t}"), f"{e} {label}")
                log("  " + ", ".join(f"{k} {statistics.median(v['samples_ts']):.1f} t/s"
                                     for k, v in r["results"].items())
                    + f" ({r['wall_s']:.0f} s, others used {r['others_cpus']} CPUs)")
                runs[e] = r
            cases.append(dict(label=label, path=path, gguf=g, threads=t, order=engines, runs=runs))
    log("membw (end)")
    bw_end = membw(a.membw)
    log(f"  {bw_end['result']}")
    meta["loadavg_after"] = loadavg()
    meta["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    bw = {t: max(bw_start["result"][f"read_gbs_{t}t"], bw_end["result"][f"read_gbs_{t}t"]) for t in (1, 2)}
    rows = derive(cases, bw, a.n_gen)
    report = dict(meta=meta, membw=dict(start=bw_start, end=bw_end, ceiling_gbs={f"{t}t": v for t, v in bw.items()}), cases=cases, rows=rows)
    os.makedirs(a.json_dir, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    jpath = os.path.join(a.json_dir, f"bench_models-{stamp}.json")
    with open(jpath, "w") as f:
        json.dump(report, f, indent=1)
    log(f"raw JSON: {jpath}")
    emit(a.markdown, markdown(report, jpath))


def emit(target, md):
    if target == "-":
        print(md)
    else:
        write_section(target, md)
        print(f"wrote the bench-models section of {target}", file=sys.stderr)


def derive(cases, bw, n_gen):
    rows = []
    for c in cases:
        g, t = c["gguf"], c["threads"]
        v, l = c["runs"]["vtpu"], c["runs"]["llama"]
        vstat = LOAD_LINE.search(v["stderr"])
        for test in sorted(set(v["results"]) | set(l["results"]), key=lambda k: (k[:2] != "pp", k)):
            vr, lr = v["results"].get(test), l["results"].get(test)
            row = dict(model=c["label"], threads=t, test=test)
            for side, r in (("vtpu", vr), ("llama", lr)):
                if r:
                    row[f"{side}_median_ts"] = statistics.median(r["samples_ts"])
                    row[f"{side}_sd_ts"] = statistics.stdev(r["samples_ts"]) if len(r["samples_ts"]) > 1 else 0.0
                    row[f"{side}_samples_ts"] = r["samples_ts"]
            if vr and lr:
                row["ratio"] = row["vtpu_median_ts"] / row["llama_median_ts"]
            if test.startswith("tg"):
                n = int(test[2:])
                kv_elem = {"vtpu": 2.0, "llama": KV_ELEM_BYTES.get(str(lr.get("type_k")) if lr else "", None)}
                for side in ("vtpu", "llama"):
                    if f"{side}_median_ts" in row and kv_elem[side] is not None:
                        per_tok = g["weight_bytes_per_token"] + kv_bytes_read_per_token(g, n, kv_elem[side])
                        row[f"{side}_bytes_per_token"] = per_tok
                        row[f"{side}_ceiling_fraction"] = per_tok * row[f"{side}_median_ts"] / (bw[t] * 1e9)
                if vr:
                    row["vtpu_gathered_bytes_per_token"] = vr["vtpu_counters"]["bytes_gathered"] / n
            if vr:
                row["ops_per_siw"] = vr["vtpu_counters"]["ops_per_siw"]
                row["ppt_hit_rate"] = vr["vtpu_counters"]["ppt_hit_rate"]
            row["others_cpus"] = [v["others_cpus"], l["others_cpus"]]
            row["loadavg_1m"] = [v["loadavg_before"][0], l["loadavg_before"][0]]
            if vstat:
                row["vtpu_mapped_mb"], row["vtpu_copied_mb"] = float(vstat.group(1)), float(vstat.group(2))
            rows.append(row)
    return rows


def fmt(x, spec, missing="n/a"):
    return missing if x is None else format(x, spec)


def llama_settings(rep):
    for c in rep["cases"]:
        for r in c["runs"]["llama"]["results"].values():
            keys = ("type_k", "type_v", "flash_attn", "repack", "n_batch", "n_ubatch", "poll", "cpu_mask")
            return ", ".join(f"{k} {r.get(k)}" for k in keys) + " (flash_attn -1 = auto)"
    return "n/a"


def observations(rep):
    """Plain statements about noise and anomalies in the data, so a reader sees them
    next to the table instead of having to dig them out of the raw JSON."""
    out = []
    rows = rep["rows"]
    noisy = []
    for r in rows:
        for side, name in (("vtpu", "vTPU"), ("llama", "llama.cpp")):
            med, sd = r.get(f"{side}_median_ts"), r.get(f"{side}_sd_ts")
            if med and sd is not None and sd > 0.2 * med:
                noisy.append(f"{name} {r['model']} t={r['threads']} {r['test']} ({100 * sd / med:.0f}%)")
    if noisy:
        out.append("Sample sd above 20% of the median: " + "; ".join(noisy) + ".")
    slower = []
    for r in rows:
        if r["threads"] != 2:
            continue
        one = next((x for x in rows if x["model"] == r["model"] and x["test"] == r["test"] and x["threads"] == 1), None)
        if one and r.get("llama_median_ts") and one.get("llama_median_ts") and r["llama_median_ts"] < one["llama_median_ts"]:
            slower.append(f"{r['model']} {r['test']} ({one['llama_median_ts']:.1f} -> {r['llama_median_ts']:.1f} t/s)")
    if slower:
        out.append(
            "llama.cpp is slower with 2 threads than with 1 in: " + "; ".join(slower) + ". Its threads (OpenMP, "
            "libgomp, as scripts/build_llamacpp.sh builds it) meet at a barrier after every graph node, hundreds "
            "per token, and spin there; with another process on one of the 2 CPUs, a barrier can wait for a "
            "scheduler time slice (milliseconds). On this machine that makes the 2-thread "
            "ratios a measure of contention as much as of the implementations; the 1-thread rows, where each "
            "side had a CPU to itself most of the time, are the fairer comparison.")
    bw = rep["membw"]
    for t in ("1t", "2t"):
        a, b = bw["start"]["result"][f"read_gbs_{t}"], bw["end"]["result"][f"read_gbs_{t}"]
        if min(a, b) < 0.8 * max(a, b):
            out.append(
                f"membw {t[0]} thread(s) moved from {a} to {b} GB/s between start and end: the bandwidth "
                "itself was disturbed, so the ceiling fractions are uncertain by about as much (a depressed "
                "bandwidth overstates them).")
    return out


def markdown(rep, jpath):
    m, bw = rep["meta"], rep["membw"]
    s, e = bw["start"]["result"], bw["end"]["result"]
    # The load average before is other people's; the one after includes our own threads.
    others = [x for r in rep["rows"] for x in r["others_cpus"] if x is not None]
    others_mean = statistics.mean(others) if others else 0.0
    busy = m["loadavg_before"][0] >= 0.5 * m["cpus"] or others_mean >= 0.25
    untied = sorted({c["label"] for c in rep["cases"] if c["gguf"]["separate_output"]})
    tied_note = ("where the embedding table doubles as the output matrix it is counted whole"
                 + (f"; {', '.join(untied)} ha{'s' if len(untied) == 1 else 've'} a separate output matrix, so "
                    "its embedding table is left out: decode reads one row of it" if untied else ""))
    lines = [
        "## Whole models: vTPU vs llama.cpp (llama-bench)",
        "",
        f"Command: `{m['command']}`, {m['date_utc']} (finished {m['finished_utc']}).",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs ({', '.join(m['cpu_flags']) or 'no AVX2'}), Linux {m['kernel']}. "
        f"vtpu {m['vtpu_git']}; llama.cpp {m['llamacpp_commit']} (scripts/build_llamacpp.sh, GGML_NATIVE).",
        f"Load average (1/5/15 min) before: {' '.join(map(str, m['loadavg_before']))}, "
        f"after: {' '.join(map(str, m['loadavg_after']))} (the figure after includes this benchmark's own threads). "
        f"Other processes kept {others_mean:.2f} CPUs busy on average during the benchmark commands "
        "(from /proc/stat minus the benchmarks' own CPU time; last column of the table).",
    ]
    if busy:
        lines.append(
            f"**The machine was busy** (shared with other engineers' builds; load average {m['loadavg_before'][0]} "
            f"on {m['cpus']} CPUs at the start): the figures below are slowed and noisy, by amounts that differ "
            "from row to row, and 2-thread runs suffer most since every core is taken. "
            "Nothing was filtered or re-run.")
    lines += [
        "",
        f"Both tools run the same file with `-t T -p {m['n_prompt']} -n {m['n_gen']} -r {m['reps']} -o json`, "
        "back to back per model and thread count (the side that goes first alternates), each after its own "
        "warm-up run. t/s = tokens per second (host wall clock), median of the repetitions ± sample sd. "
        "vTPU threads are pinned one per core; llama-bench's are not (its default). "
        f"llama-bench settings as it reported them: {llama_settings(rep)}. "
        "Ratio > 1: the vTPU is faster.",
        "",
        f"Memory read bandwidth (`examples/membw`, 1 GiB buffer, median of {s['runs']}, GB = 1e9 B): "
        f"1 thread {s['read_gbs_1t']} GB/s at the start, {e['read_gbs_1t']} at the end; "
        f"2 threads {s['read_gbs_2t']} / {e['read_gbs_2t']} GB/s. "
        f"Ceiling used: the better of each pair, {bw['ceiling_gbs']['1t']} and {bw['ceiling_gbs']['2t']} GB/s.",
        "Fraction of the ceiling (tg only) = bytes read per token x t/s / that bandwidth. Bytes per token = "
        "weight bytes (GGUF file size minus its header, metadata and tensor index, i.e. the tensor data "
        f"incl. alignment padding; {tied_note}) + the KV cache read at the average position of the test, "
        "2 x layers x kv heads x head width x (vTPU f16: 2 B; llama.cpp: its cache type, f16: 2 B) x "
        f"({m['n_gen']} + 1) / 2. 100% would mean decode runs at memory speed.",
        "",
        "| model | threads | test | vTPU t/s | llama.cpp t/s | vTPU / llama.cpp | ceiling: vTPU | ceiling: llama.cpp "
        "| ops/SIW | PPT hit | other CPUs busy (vTPU / llama.cpp runs) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pct = lambda x: fmt(None if x is None else 100 * x, ".0f") + ("%" if x is not None else "")
    for r in rep["rows"]:
        lines.append(
            f"| {r['model']} | {r['threads']} | {r['test']} "
            f"| {fmt(r.get('vtpu_median_ts'), '.1f')} ± {fmt(r.get('vtpu_sd_ts'), '.1f')} "
            f"| {fmt(r.get('llama_median_ts'), '.1f')} ± {fmt(r.get('llama_sd_ts'), '.1f')} "
            f"| {fmt(r.get('ratio'), '.2f')}x "
            f"| {pct(r.get('vtpu_ceiling_fraction')) if r['test'].startswith('tg') else '-'} "
            f"| {pct(r.get('llama_ceiling_fraction')) if r['test'].startswith('tg') else '-'} "
            f"| {fmt(r.get('ops_per_siw'), '.2f')} | {pct(r.get('ppt_hit_rate'))} "
            f"| {r['others_cpus'][0]} / {r['others_cpus'][1]} |")
    lines += ["", "Models (bytes per tg token as used above; vTPU load: bytes mapped zero-copy / copied at load; "
              "vTPU gathered: the virtual counter of bytes its gathers moved per tg token, a cross-check):", "",
              "| model | file | weight MB | layers x kv heads x head width | KV MB read per tg token (f16) "
              "| vTPU load: mapped / copied MB | vTPU gathered MB per token (t=1) |",
              "|---|---|---|---|---|---|---|"]
    seen = set()
    for c in rep["cases"]:
        if c["label"] in seen:
            continue
        seen.add(c["label"])
        g = c["gguf"]
        tg = next((r for r in rep["rows"] if r["model"] == c["label"] and r["test"].startswith("tg")), {})
        kv = kv_bytes_read_per_token(g, m["n_gen"], 2.0)
        lines.append(
            f"| {c['label']} | `{os.path.basename(g['path'])}` | {g['weight_bytes_per_token'] / 1e6:.1f} "
            f"| {g['n_layer']} x {g['n_kv_head']} x {g['head_dim']} | {kv / 1e6:.2f} "
            f"| {fmt(tg.get('vtpu_mapped_mb'), '.1f')} / {fmt(tg.get('vtpu_copied_mb'), '.1f')} "
            f"| {fmt(None if 'vtpu_gathered_bytes_per_token' not in tg else tg['vtpu_gathered_bytes_per_token'] / 1e6, '.1f')} |")
    notes = observations(rep)
    if notes:
        lines += ["", "Observations (computed from the numbers above):", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Raw outputs (every sample, stderr, load per command): `{jpath}` "
              "(`$VTPU_CACHE/bench/`, not in the repository).", ""]
    return "\n".join(lines)


def write_section(path, md):
    with open(path) as f:
        text = f.read()
    block = f"{BEGIN}\n{md}{END}"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        i, j = text.index(BEGIN), text.index(END) + len(END)
        text = text[:i] + block + text[j:]
    elif BEGIN in text or END in text:
        raise SystemExit(f"error: {path}: only one of the bench-models markers is present; fix it by hand")
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    # Write next to the file and rename, so a reader never sees half a file.
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".bench_models.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
