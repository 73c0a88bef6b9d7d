#!/usr/bin/env python3
"""Whole-model speed: `vtpu bench` against `llama-bench` of llama.cpp and, when it is
built, of ik_llama.cpp, on the same GGUF files, same threads, same run, with the machine's
measured read bandwidth as the decode ceiling.

Driven by scripts/bench_models.sh (which builds everything and finds the files); not part
of any test run. Standard library only. scripts/bench_batched.py reuses its helpers.

For each model and thread count: `vtpu bench`, llama.cpp's `llama-bench` and ik_llama.cpp's
`llama-bench` (plus --ik-args, by default `-fa 1 -rtr 1`: flash attention, its default
anyway, and run-time repacking of the weights into its row-interleaved layouts), each
`-t T -p P1,P2 -n N -r R -o json`, back to back. Their order rotates from one case to the
next (with two tools it alternates), so a slow drift of the machine does not always land
on the same side. `examples/membw` runs at the start and at the end. Each command's wall
time, the load average before it and the CPU time other processes used while it ran (from
/proc/stat, minus our own children) are kept. A failing ik_llama.cpp run (a file it cannot
load, say) is recorded and its cells say so; a failing vTPU or llama.cpp run stops the
benchmark.

Derived figures:
- ratios = vTPU median t/s / llama.cpp's (or ik_llama.cpp's) median t/s (> 1: the vTPU is
  faster);
- for tg tests, fraction of the bandwidth ceiling = bytes read per token * t/s / read
  bandwidth at that thread count, where bytes per token = weight bytes (file size minus
  the GGUF header, metadata and tensor index: the tensor data section, alignment padding
  included; minus the token-embedding table when a separate output matrix exists, since
  then decode reads one row of it) + KV cache bytes read at the average position
  (2 * layers * kv heads * head width * bytes per element * (N + 1) / 2: step i reads i + 1
  positions). vTPU's cache is f16 (its default, as `vtpu bench` runs it); the llama-benches'
  type comes from their JSON (f16 by default). ik_llama.cpp is charged the same weight
  bytes: its repacking interleaves rows of blocks, it does not change their size. The
  bandwidth is the better of the two membw medians (interference only lowers it).

Output: all raw outputs and derived figures as JSON in --json-dir, and a markdown
section, either between the `bench-models` markers of --markdown (created at the end of
the file when missing) or on stdout (--markdown -). `--from-json FILE --markdown ...`
re-renders the section from an earlier run's raw JSON without running anything (runs from
before ik_llama.cpp and pp512 were added render with those cells empty).
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
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


class RunError(Exception):
    """A benchmark command failed, or printed something other than what we parse."""


def run(cmd, env=None, cwd=None):
    """Runs cmd; returns stdout, stderr and how busy the machine was meanwhile. Raises
    RunError, with the end of its stderr, when it cannot start or exits non-zero."""
    la = loadavg()
    busy0, steal0 = machine_busy_s()
    own0 = children_cpu_s()
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=RUN_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RunError(f"{' '.join(cmd)}: {e}") from e
    wall = time.monotonic() - t0
    busy1, steal1 = machine_busy_s()
    own = children_cpu_s() - own0
    if p.returncode != 0:
        raise RunError(f"{' '.join(cmd)} exited with {p.returncode}; its stderr ends with:\n{p.stderr[-4000:]}")
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
        raise RunError(f"{what}: stdout is not JSON ({e}): {text[:300]!r}") from e
    if not isinstance(v, list):
        raise RunError(f"{what}: expected a JSON array")
    return v


def by_test(results, what):
    out = {}
    for r in results:
        n_p, n_g = r.get("n_prompt", 0), r.get("n_gen", 0)
        key = f"pp{n_p}" if n_p and not n_g else f"tg{n_g}" if n_g and not n_p else None
        if key is None or not r.get("samples_ts"):
            raise RunError(f"{what}: unexpected result {json.dumps(r)[:300]}")
        out[key] = r
    return out


def test_order(name):
    """Sort key: pp before tg, then by size (pp128 before pp512)."""
    m = re.fullmatch(r"(pp|tg)(\d+)", name)
    return (name[:2] != "pp", int(m.group(2)) if m else 0, name)


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
        raise RunError(f"membw printed no usable JSON ({e}): {r['stdout'][:300]!r}") from e
    r["result"] = v
    return r


ENGINES = ("vtpu", "llama", "ik")
NAMES = {"vtpu": "vTPU", "llama": "llama.cpp", "ik": "ik_llama.cpp"}
# ik_llama.cpp's fastest CPU settings for these dense models, per its docs
# (docs/parameters.md): flash attention (already its default; said explicitly so the
# command shows it) and run-time repacking of the weights into row-interleaved layouts
# (off by default; it also turns mmap off, since the repacked copy lives in RAM).
DEFAULT_IK_ARGS = "-fa 1 -rtr 1"


def int_list(text, what):
    try:
        v = [int(x) for x in text.split(",")]
    except ValueError:
        raise SystemExit(f"error: {what}: expected comma-separated numbers, got {text!r}") from None
    if not v or any(x <= 0 for x in v):
        raise SystemExit(f"error: {what}: every value must be at least 1, got {text!r}")
    return v


def log(s):
    print(f"[{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True)


def with_lib_path(env, d):
    env = dict(env)
    env["LD_LIBRARY_PATH"] = d + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-json", metavar="FILE",
                    help="re-render the section from a raw JSON of an earlier run (runs nothing)")
    ap.add_argument("--vtpu")
    ap.add_argument("--membw")
    ap.add_argument("--llama-bin", help="llama.cpp build/bin directory")
    ap.add_argument("--ik-bin", help="ik_llama.cpp build/bin directory (optional: without it that column is empty)")
    ap.add_argument("--ik-missing", default="no --ik-bin given",
                    help="why ik_llama.cpp is not run, for the section (when there is no --ik-bin)")
    ap.add_argument("--ik-args", default=DEFAULT_IK_ARGS,
                    help=f"extra llama-bench arguments for ik_llama.cpp (default: {DEFAULT_IK_ARGS!r})")
    ap.add_argument("--ik-commit", default="unknown")
    ap.add_argument("--model", action="append", metavar="LABEL=PATH")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--n-prompt", default="128,512", help="prompt sizes, comma separated")
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
        # Derived again rather than read, so older raw files render in today's format.
        bw = {int(k.rstrip("t")): v for k, v in rep["membw"]["ceiling_gbs"].items()}
        rep["rows"] = derive(rep["cases"], bw)
        emit(a.markdown, markdown(rep, a.from_json))
        return
    missing = [o for o in ("vtpu", "membw", "llama_bin", "model", "json_dir", "command") if not getattr(a, o)]
    if missing:
        raise SystemExit("error: missing " + ", ".join("--" + o.replace("_", "-") for o in missing))
    if a.reps < 3:
        raise SystemExit("error: --reps must be at least 3")
    threads = int_list(a.threads, "--threads")
    n_prompt = int_list(a.n_prompt, "--n-prompt")
    if a.n_gen < 1:
        raise SystemExit("error: --n-gen must be at least 1")
    if a.ik_bin and not os.access(os.path.join(a.ik_bin, "llama-bench"), os.X_OK):
        raise SystemExit(f"error: --ik-bin {a.ik_bin}: no executable llama-bench there")
    ik_args = shlex.split(a.ik_args)
    models = []
    for m in a.model:
        label, sep, path = m.partition("=")
        if not sep or not os.path.isfile(path):
            raise SystemExit(f"error: --model {m}: expected LABEL=PATH of an existing file")
        models.append((label, path, gguf_summary(path)))

    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    started = datetime.datetime.now(datetime.timezone.utc)
    engines = ["vtpu", "llama"] + (["ik"] if a.ik_bin else [])
    meta = dict(
        date_utc=started.strftime("%Y-%m-%d %H:%M UTC"), cpu=lscpu_model(), cpus=os.cpu_count(),
        cpu_flags=cpu_flags(), kernel=platform.release(), vtpu_git=git_rev(root),
        llamacpp_commit=a.llamacpp_commit, command=a.command, reps=a.reps,
        n_prompt=n_prompt, n_gen=a.n_gen, threads=threads, loadavg_before=loadavg(), engines=engines,
        ik_commit=a.ik_commit if a.ik_bin else None, ik_args=a.ik_args if a.ik_bin else None,
        ik_missing=None if a.ik_bin else a.ik_missing,
    )
    common = ["-p", ",".join(map(str, n_prompt)), "-n", str(a.n_gen), "-r", str(a.reps), "-o", "json"]
    envs = {"vtpu": dict(os.environ), "llama": with_lib_path(os.environ, a.llama_bin)}
    if a.ik_bin:
        envs["ik"] = with_lib_path(os.environ, a.ik_bin)

    def command(e, path, t):
        if e == "vtpu":
            return [a.vtpu, "bench", "-m", path, "-t", str(t)] + common
        if e == "llama":
            return [os.path.join(a.llama_bin, "llama-bench"), "-m", path, "-t", str(t)] + common
        return [os.path.join(a.ik_bin, "llama-bench"), "-m", path, "-t", str(t)] + common + ik_args

    log(f"membw (start), load {meta['loadavg_before']}")
    bw_start = membw(a.membw)
    log(f"  {bw_start['result']}")
    cases = []
    # The tools run in a scratch directory: whatever log files one of them may drop
    # there stay out of the tree.
    with tempfile.TemporaryDirectory(prefix="bench_models.") as scratch:
        for label, path, g in models:
            for t in threads:
                k = len(cases) % len(engines)
                order = engines[k:] + engines[:k]
                runs = {}
                for e in order:
                    cmd = command(e, path, t)
                    log(f"{label} t={t}: {e}")
                    try:
                        r = run(cmd, env=envs[e], cwd=scratch)
                        r["results"] = by_test(parse_json_array(r["stdout"], f"{e} {label} t={t}"), f"{e} {label}")
                    except RunError as err:
                        if e != "ik":
                            raise
                        # ik_llama.cpp is an optional bar; its failure on one file should
                        # not throw away the rest of the run.
                        log(f"  failed: {str(err)[-500:]}")
                        r = dict(cmd=cmd, error=str(err)[-4000:], results={}, others_cpus=None,
                                 loadavg_before=loadavg())
                        runs[e] = r
                        continue
                    log("  " + ", ".join(f"{k} {statistics.median(v['samples_ts']):.1f} t/s"
                                         for k, v in r["results"].items())
                        + f" ({r['wall_s']:.0f} s, others used {r['others_cpus']} CPUs)")
                    runs[e] = r
                cases.append(dict(label=label, path=path, gguf=g, threads=t, order=order, runs=runs))
    log("membw (end)")
    bw_end = membw(a.membw)
    log(f"  {bw_end['result']}")
    meta["loadavg_after"] = loadavg()
    meta["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    bw = {t: max(bw_start["result"][f"read_gbs_{t}t"], bw_end["result"][f"read_gbs_{t}t"]) for t in (1, 2)}
    rows = derive(cases, bw)
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


def derive(cases, bw):
    """One row per (model, threads, test) with every side's median, sd, ratio and ceiling
    fraction. bw: read bandwidth in GB/s by thread count."""
    rows = []
    for c in cases:
        g, t, runs = c["gguf"], c["threads"], c["runs"]
        sides = [e for e in ENGINES if e in runs]
        vstat = LOAD_LINE.search(runs.get("vtpu", {}).get("stderr", ""))
        tests = {k for e in sides for k in runs[e].get("results", {})}
        for test in sorted(tests, key=test_order):
            res = {e: runs[e]["results"].get(test) for e in sides}
            row = dict(model=c["label"], threads=t, test=test,
                       failed=[e for e in sides if runs[e].get("error")],
                       others_cpus={e: runs[e].get("others_cpus") for e in sides},
                       loadavg_1m={e: runs[e]["loadavg_before"][0] for e in sides})
            for side, r in res.items():
                if r:
                    row[f"{side}_median_ts"] = statistics.median(r["samples_ts"])
                    row[f"{side}_sd_ts"] = statistics.stdev(r["samples_ts"]) if len(r["samples_ts"]) > 1 else 0.0
                    row[f"{side}_samples_ts"] = r["samples_ts"]
            for other in ("llama", "ik"):
                if res.get("vtpu") and res.get(other):
                    row[f"ratio_{other}"] = row["vtpu_median_ts"] / row[f"{other}_median_ts"]
            if test.startswith("tg"):
                n = int(test[2:])
                for side, r in res.items():
                    kv_elem = 2.0 if side == "vtpu" else KV_ELEM_BYTES.get(str(r.get("type_k"))) if r else None
                    if r and kv_elem is not None and bw.get(t):
                        per_tok = g["weight_bytes_per_token"] + kv_bytes_read_per_token(g, n, kv_elem)
                        row[f"{side}_bytes_per_token"] = per_tok
                        row[f"{side}_ceiling_fraction"] = per_tok * row[f"{side}_median_ts"] / (bw[t] * 1e9)
                if res.get("vtpu"):
                    row["vtpu_gathered_bytes_per_token"] = res["vtpu"]["vtpu_counters"]["bytes_gathered"] / n
            if res.get("vtpu"):
                row["ops_per_siw"] = res["vtpu"]["vtpu_counters"]["ops_per_siw"]
                row["ops_per_siw_without_scli"] = res["vtpu"]["vtpu_counters"].get("ops_per_siw_without_scli")
                row["ppt_hit_rate"] = res["vtpu"]["vtpu_counters"]["ppt_hit_rate"]
            if vstat:
                row["vtpu_mapped_mb"], row["vtpu_copied_mb"] = float(vstat.group(1)), float(vstat.group(2))
            rows.append(row)
    return rows


def fmt(x, spec, missing="n/a"):
    return missing if x is None else format(x, spec)


# The settings each llama-bench reports in its JSON that matter on a CPU.
SETTING_KEYS = {
    "llama": ("type_k", "type_v", "flash_attn", "repack", "n_batch", "n_ubatch", "poll", "cpu_mask"),
    "ik": ("type_k", "type_v", "flash_attn", "repack", "use_mmap", "reuse", "rcache", "mqkv", "use_thp",
           "n_batch", "n_ubatch"),
}


def tool_settings(rep, side):
    for c in rep["cases"]:
        for r in c["runs"].get(side, {}).get("results", {}).values():
            return ", ".join(f"{k} {r.get(k)}" for k in SETTING_KEYS[side])
    return "n/a"


def observations(rep):
    """Plain statements about noise and anomalies in the data, so a reader sees them
    next to the table instead of having to dig them out of the raw JSON."""
    out = []
    rows = rep["rows"]
    noisy = []
    for r in rows:
        for side in ENGINES:
            med, sd = r.get(f"{side}_median_ts"), r.get(f"{side}_sd_ts")
            if med and sd is not None and sd > 0.2 * med:
                noisy.append(f"{NAMES[side]} {r['model']} t={r['threads']} {r['test']} ({100 * sd / med:.0f}%)")
    if noisy:
        out.append("Sample sd above 20% of the median: " + "; ".join(noisy) + ".")
    failed = [(e, c["label"], c["threads"], c["runs"][e]["error"]) for c in rep["cases"] for e in ENGINES
              if e in c["runs"] and c["runs"][e].get("error")]
    for e, label, t, err in failed:
        last = [x for x in err.strip().splitlines() if x.strip()][-1:] or ["?"]
        out.append(f"{NAMES[e]} failed on {label} t={t} (its last line: `{last[0][:200]}`); the raw JSON has "
                   "its stderr.")
    slower = []
    for r in rows:
        if r["threads"] != 2:
            continue
        one = next((x for x in rows if x["model"] == r["model"] and x["test"] == r["test"] and x["threads"] == 1), None)
        for side in ("llama", "ik"):
            k = f"{side}_median_ts"
            if one and r.get(k) and one.get(k) and r[k] < one[k]:
                slower.append(f"{NAMES[side]} {r['model']} {r['test']} ({one[k]:.1f} -> {r[k]:.1f} t/s)")
    if slower:
        out.append(
            "Slower with 2 threads than with 1: " + "; ".join(slower) + ". The llama-benches' threads (OpenMP, "
            "libgomp, as scripts/build_llamacpp.sh builds llama.cpp) meet at a barrier after every graph node, "
            "hundreds per token, and spin there; with another process on one of the 2 CPUs, a barrier can wait "
            "for a scheduler time slice (milliseconds). On this machine that makes the 2-thread "
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
    n_prompt = m["n_prompt"] if isinstance(m["n_prompt"], list) else [m["n_prompt"]]
    ik_ran = any("ik" in c["runs"] for c in rep["cases"])
    # The load average before is other people's; the one after includes our own threads.
    others = [x for r in rep["rows"] for x in r["others_cpus"].values() if x is not None]
    others_mean = statistics.mean(others) if others else 0.0
    # What other processes used during the commands decides "busy": the load average
    # at the start lags by a minute and mostly counts work that had just ended.
    busy = others_mean >= 0.25
    lagging_load = not busy and m["loadavg_before"][0] >= 0.5 * m["cpus"]
    untied = sorted({c["label"] for c in rep["cases"] if c["gguf"]["separate_output"]})
    tied_note = ("where the embedding table doubles as the output matrix it is counted whole"
                 + (f"; {', '.join(untied)} ha{'s' if len(untied) == 1 else 've'} a separate output matrix, so "
                    "its embedding table is left out: decode reads one row of it" if untied else ""))
    if ik_ran:
        ik_line = (f"ik_llama.cpp {m.get('ik_commit')} (scripts/build_ik_llamacpp.sh, GGML_NATIVE), run with "
                   f"`{m.get('ik_args')}`.")
    else:
        ik_line = f"ik_llama.cpp: not run ({m.get('ik_missing') or 'not part of this run'})."
    lines = [
        "## Whole models: vTPU vs llama.cpp and ik_llama.cpp (llama-bench)",
        "",
        f"Command: `{m['command']}`, {m['date_utc']} (finished {m['finished_utc']}).",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs ({', '.join(m['cpu_flags']) or 'no AVX2'}), Linux {m['kernel']}. "
        f"vtpu {m['vtpu_git']}; llama.cpp {m['llamacpp_commit']} (scripts/build_llamacpp.sh, GGML_NATIVE); "
        + ik_line,
        f"Load average (1/5/15 min) before: {' '.join(map(str, m['loadavg_before']))}, "
        f"after: {' '.join(map(str, m['loadavg_after']))} (the figure after includes this benchmark's own threads). "
        f"Other processes kept {others_mean:.2f} CPUs busy on average during the benchmark commands "
        "(from /proc/stat minus the benchmarks' own CPU time; last column of the table).",
    ]
    if busy:
        lines.append(
            f"**The machine was busy** (other processes used {others_mean:.2f} CPUs on average during the commands; "
            f"load average {m['loadavg_before'][0]} on {m['cpus']} CPUs at the start): the figures below are slowed "
            "and noisy, by amounts that differ from row to row, and 2-thread runs suffer most since every core is "
            "taken. Nothing was filtered or re-run.")
    elif lagging_load:
        lines.append(
            f"The load average at the start ({m['loadavg_before'][0]}) counts work that had just ended: other "
            f"processes used {others_mean:.2f} CPUs during the commands. Memory traffic from outside this VM is not "
            "visible to it; the read bandwidth measured in this run (below) shows what it left.")
    settings = f"llama.cpp's llama-bench settings as it reported them: {tool_settings(rep, 'llama')} (flash_attn -1 = auto)."
    if ik_ran:
        settings += (f" ik_llama.cpp's: {tool_settings(rep, 'ik')} (its JSON says use_mmap 1 even with -rtr, "
                     "but its loader turns mmap off when repacking: the repacked weights are a copy in RAM).")
    lines += [
        "",
        f"Each tool runs the same file with `-t T -p {','.join(map(str, n_prompt))} -n {m['n_gen']} -r {m['reps']} "
        "-o json`, back to back per model and thread count (which tool goes first rotates from one case to the "
        "next), each after its own warm-up run. t/s = tokens per second (host wall clock), median of the "
        "repetitions ± sample sd. vTPU threads are pinned one per core; the llama-benches' are not (their "
        f"default). {settings} Ratio > 1: the vTPU is faster.",
        "",
        f"Memory read bandwidth (`examples/membw`, 1 GiB buffer, median of {s['runs']}, GB = 1e9 B): "
        f"1 thread {s['read_gbs_1t']} GB/s at the start, {e['read_gbs_1t']} at the end; "
        f"2 threads {s['read_gbs_2t']} / {e['read_gbs_2t']} GB/s. "
        f"Ceiling used: the better of each pair, {bw['ceiling_gbs']['1t']} and {bw['ceiling_gbs']['2t']} GB/s.",
        "Fraction of the ceiling (tg only) = bytes read per token x t/s / that bandwidth. Bytes per token = "
        "weight bytes (GGUF file size minus its header, metadata and tensor index, i.e. the tensor data "
        f"incl. alignment padding; {tied_note}) + the KV cache read at the average position of the test, "
        "2 x layers x kv heads x head width x (vTPU f16: 2 B; the llama-benches: their cache type, f16: 2 B) x "
        f"({m['n_gen']} + 1) / 2. ik_llama.cpp is charged the same weight bytes: its repacking interleaves "
        "rows without changing their size. 100% would mean decode runs at memory speed. "
        "ops/SIW and PPT hit: the vTPU's virtual counters of the last repetition (warm translation "
        "caches; the warm-up run is not counted); in parentheses, ops per SIW not counting the "
        "coordinate loads (SCLI).",
        "",
        "| model | threads | test | vTPU t/s | llama.cpp t/s | ik_llama.cpp t/s | vTPU / llama.cpp | vTPU / ik "
        "| ceiling: vTPU | ceiling: llama.cpp | ceiling: ik | ops/SIW (without SCLI) | PPT hit "
        "| other CPUs busy (vTPU / llama.cpp / ik runs) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pct = lambda x: fmt(None if x is None else 100 * x, ".0f") + ("%" if x is not None else "")

    def ts(r, side):
        if side in r.get("failed", []):
            return "failed"
        if side not in r["others_cpus"]:
            return "not run"
        return f"{fmt(r.get(f'{side}_median_ts'), '.1f')} ± {fmt(r.get(f'{side}_sd_ts'), '.1f')}"

    def ceiling(r, side):
        if not r["test"].startswith("tg"):
            return "-"
        return pct(r.get(f"{side}_ceiling_fraction")) if side in r["others_cpus"] else "-"

    for r in rep["rows"]:
        ratio = lambda o: ("-" if o not in r["others_cpus"] else
                           fmt(r.get(f"ratio_{o}"), ".2f") + ("x" if r.get(f"ratio_{o}") is not None else ""))
        busy_cells = " / ".join(fmt(r["others_cpus"].get(e), "", "-") for e in ENGINES)
        lines.append(
            f"| {r['model']} | {r['threads']} | {r['test']} "
            f"| {ts(r, 'vtpu')} | {ts(r, 'llama')} | {ts(r, 'ik')} "
            f"| {ratio('llama')} | {ratio('ik')} "
            f"| {ceiling(r, 'vtpu')} | {ceiling(r, 'llama')} | {ceiling(r, 'ik')} "
            f"| {fmt(r.get('ops_per_siw'), '.2f')} ({fmt(r.get('ops_per_siw_without_scli'), '.2f')}) "
            f"| {pct(r.get('ppt_hit_rate'))} "
            f"| {busy_cells} |")
    lines += ["", "Models (bytes per tg token as used above; vTPU load: bytes mapped zero-copy / copied at load; "
              "vTPU gathered: the virtual counter of bytes its gathers moved per tg token, a cross-check):", "",
              "| model | file | weight MB | layers x kv heads x head width | KV MB read per tg token (f16) "
              "| vTPU load: mapped / copied MB | vTPU gathered MB per tg token (threads) |",
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
            f"| {fmt(None if 'vtpu_gathered_bytes_per_token' not in tg else tg['vtpu_gathered_bytes_per_token'] / 1e6, '.1f')}"
            f"{' (t=%d)' % tg['threads'] if tg else ''} |")
    notes = observations(rep)
    if notes:
        lines += ["", "Observations (computed from the numbers above):", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Raw outputs (every sample, stderr, load per command): `{jpath}` "
              "(`$VTPU_CACHE/bench/`, not in the repository).", ""]
    return "\n".join(lines)


def write_section(path, md, begin=BEGIN, end=END):
    """Replaces the text between the begin and end markers of path with md (the markers
    are added at the end of the file when both are missing)."""
    with open(path) as f:
        text = f.read()
    block = f"{begin}\n{md}{end}"
    if begin in text and end in text and text.index(begin) < text.index(end):
        i, j = text.index(begin), text.index(end) + len(end)
        text = text[:i] + block + text[j:]
    elif begin in text or end in text:
        raise SystemExit(f"error: {path}: only one of the markers {begin} / {end} is present; fix it by hand")
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    # Write next to the file and rename, so a reader never sees half a file.
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".bench_section.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)


if __name__ == "__main__":
    try:
        main()
    except (RunError, GgufError) as err:
        raise SystemExit(f"error: {err}") from None
