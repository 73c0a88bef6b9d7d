#!/usr/bin/env python3
"""Baseline timings of ONE decoder layer: NumPy (f32) and PyTorch (CPU, eager; f32 and bf16).

This is the single-layer yardstick vtpu's layer is compared against (DESIGN.md section 8:
report ratios, same threads, same machine, same run). It is not part of any test run.

Run (from the repository root):
    PY=$(bash scripts/setup_python.sh | tail -1)
    "$PY" scripts/bench_layer_baseline.py --threads 2 > layer_baseline.json
If OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set on the machine (they are on some here,
for old OpenBLAS builds), unset both for this command only, they slow a current numpy:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" scripts/bench_layer_baseline.py
The JSON records both variables and the BLAS kernel numpy actually ran (threadpoolctl).

Shapes: the three presets of crates/llm/src/config.rs (smollm2_135m, qwen25_05b,
qwen3_style). Modes: decode of 1 token over a KV cache already holding kv_len positions
(kv_len in 0, 128, 512, 1024; the token attends to kv_len + 1 positions), and prefill
of 128 tokens at positions 0..127. Per case: warm-up, then the median of --runs runs.

The layer is the one of crates/llm/src/reference.rs (half-split RoPE, GQA, optional QKV
bias and per-head q/k RMSNorm, SwiGLU). Before any timing, both implementations are
checked against the Hugging Face goldens in testdata/goldens/ (prefill 5 + decode 1), and
at every benchmark shape NumPy and PyTorch must agree with each other.

dtypes (--dtypes f32,bf16): f32 runs NumPy and PyTorch in f32. bf16 runs PyTorch only
(NumPy has no bf16) the way a Hugging Face model loaded in bf16 runs on the CPU: weights,
activations, KV cache and rope tables in bf16, each matmul in bf16 with f32 accumulation
(oneDNN, AVX512_BF16 where the CPU has it), RMSNorm and softmax computed in f32 and cast
back (as transformers' LlamaRMSNorm and eager attention do). Its numpy_ms is null. It is
checked against the f32 NumPy layer on the same bf16-rounded weights, within a bf16
tolerance.

Cold (--cold): every case is also timed cycling through enough copies of the shape's
weights (total > 2x the last-level cache, read from sysfs) that each call reads its
weights from DRAM, as a whole model's layers do, each copy with its own KV cache (as
each layer has); rows carry "cold": true and the number of copies.

Output (stdout): JSON {"meta": {...}, "results": [{shape, dtype, cold, mode, kv_len,
tokens, numpy_ms, torch_ms (medians), numpy_min_ms, torch_min_ms, numpy_over_torch,
weight_mb, gflop, ...}]}. Times are host wall-clock milliseconds; GB/s and GFLOP/s derived from the
faster median are labelled host figures. The machine has 2 cores: meta records how much
CPU other processes used during the run (other_processes_cpu_s); with 2 threads, any
other load makes OpenBLAS's threaded GEMM with one row stall (seen: 16 ms instead of
0.4 ms for a 1x576 @ 576x1536 product), so only runs on a quiet machine are meaningful.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import load_file
from threadpoolctl import threadpool_info, threadpool_limits

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))

SHAPES = {
    "smollm2_135m": dict(dim=576, n_heads=9, n_kv_heads=3, head_dim=64, ffn_dim=1536,
                         rms_eps=1e-5, rope_theta=1e5, qkv_bias=False, qk_norm=False),
    "qwen25_05b": dict(dim=896, n_heads=14, n_kv_heads=2, head_dim=64, ffn_dim=4864,
                       rms_eps=1e-6, rope_theta=1e6, qkv_bias=True, qk_norm=False),
    "qwen3_style": dict(dim=1024, n_heads=16, n_kv_heads=8, head_dim=128, ffn_dim=3072,
                        rms_eps=1e-6, rope_theta=1e6, qkv_bias=False, qk_norm=True),
}
DECODE_KV = [0, 128, 512, 1024]
PREFILL_T = 128
MAX_SEQ = 1152  # >= 1024 + 1 and >= 128


def random_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    d, q, kv, hd, f = (cfg["dim"], cfg["n_heads"] * cfg["head_dim"],
                       cfg["n_kv_heads"] * cfg["head_dim"], cfg["head_dim"], cfg["ffn_dim"])
    mat = lambda o, i: (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
    vec = lambda n, s=0.5: (s * rng.standard_normal(n)).astype(np.float32)
    norm = lambda n: rng.uniform(0.5, 1.5, n).astype(np.float32)
    w = dict(attn_norm=norm(d), wq=mat(q, d), wk=mat(kv, d), wv=mat(kv, d), wo=mat(d, q),
             ffn_norm=norm(d), w_gate=mat(f, d), w_up=mat(f, d), w_down=mat(d, f))
    if cfg["qkv_bias"]:
        w.update(bq=vec(q), bk=vec(kv), bv=vec(kv))
    if cfg["qk_norm"]:
        w.update(q_norm=norm(hd), k_norm=norm(hd))
    return w


def rope_tables(cfg, max_seq):
    """cos, sin [max_seq, Hd/2] f32, angle pos * theta^(-2i/Hd) (HF computes it the same way)."""
    hd = cfg["head_dim"]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
    ang = np.arange(max_seq, dtype=np.float32)[:, None] * inv_freq.astype(np.float32)[None]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


# ---------------------------------------------------------------- NumPy layer
def np_rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps)) * w


def np_rope(x, cos, sin):
    """x [T, n, Hd], cos/sin [T, Hd/2]; half-split pairs (i, i + Hd/2)."""
    h = x.shape[-1] // 2
    c, s = cos[:, None, :], sin[:, None, :]
    x1, x2 = x[..., :h], x[..., h:]
    return np.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1)


def np_layer(cfg, w, x, start, kc, vc, cos, sin):
    """x [T, D] at positions start..; kc/vc [KV, MAX_SEQ, Hd] updated in place. -> [T, D]"""
    t, hd, kvh = x.shape[0], cfg["head_dim"], cfg["n_kv_heads"]
    g = cfg["n_heads"] // kvh
    eps = cfg["rms_eps"]
    xn = np_rms(x, w["attn_norm"], eps)
    q, k, v = xn @ w["wq"].T, xn @ w["wk"].T, xn @ w["wv"].T
    if "bq" in w:
        q, k, v = q + w["bq"], k + w["bk"], v + w["bv"]
    q, k, v = q.reshape(t, -1, hd), k.reshape(t, kvh, hd), v.reshape(t, kvh, hd)
    if "q_norm" in w:
        q, k = np_rms(q, w["q_norm"], eps), np_rms(k, w["k_norm"], eps)
    pc, ps = cos[start:start + t], sin[start:start + t]
    q, k = np_rope(q, pc, ps), np_rope(k, pc, ps)
    s_len = start + t
    kc[:, start:s_len] = k.transpose(1, 0, 2)
    vc[:, start:s_len] = v.transpose(1, 0, 2)
    # Head h = kv * G + j reads kv head h / G.
    qg = q.reshape(t, kvh, g, hd).transpose(1, 2, 0, 3).reshape(kvh, g * t, hd)
    scores = (qg @ kc[:, :s_len].transpose(0, 2, 1)).reshape(kvh, g, t, s_len)
    scores *= np.float32(1.0 / np.sqrt(hd))
    if t > 1:
        q_pos = np.arange(start, s_len)[:, None]
        scores = np.where(np.arange(s_len)[None, :] > q_pos, np.float32(-np.inf), scores)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = scores / scores.sum(axis=-1, keepdims=True)
    o = (probs.reshape(kvh, g * t, s_len) @ vc[:, :s_len]).reshape(kvh, g, t, hd)
    o = o.transpose(2, 0, 1, 3).reshape(t, -1)
    h = x + o @ w["wo"].T
    hn = np_rms(h, w["ffn_norm"], eps)
    gate, up = hn @ w["w_gate"].T, hn @ w["w_up"].T
    act = gate / (np.float32(1) + np.exp(-gate)) * up
    return h + act @ w["w_down"].T


# -------------------------------------------------------------- PyTorch layer
def t_rms(x, w, eps):
    # In f32 and cast back, as transformers' LlamaRMSNorm does (no-ops for f32 tensors).
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def t_rope(x, cos, sin):
    h = x.shape[-1] // 2
    c, s = cos[:, None, :], sin[:, None, :]
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)


def t_layer(cfg, w, x, start, kc, vc, cos, sin):
    """Same contract as np_layer, on torch tensors."""
    t, hd, kvh = x.shape[0], cfg["head_dim"], cfg["n_kv_heads"]
    g = cfg["n_heads"] // kvh
    eps = cfg["rms_eps"]
    xn = t_rms(x, w["attn_norm"], eps)
    q = F.linear(xn, w["wq"], w.get("bq")).view(t, -1, hd)
    k = F.linear(xn, w["wk"], w.get("bk")).view(t, kvh, hd)
    v = F.linear(xn, w["wv"], w.get("bv")).view(t, kvh, hd)
    if "q_norm" in w:
        q, k = t_rms(q, w["q_norm"], eps), t_rms(k, w["k_norm"], eps)
    pc, ps = cos[start:start + t], sin[start:start + t]
    q, k = t_rope(q, pc, ps), t_rope(k, pc, ps)
    s_len = start + t
    kc[:, start:s_len] = k.transpose(0, 1)
    vc[:, start:s_len] = v.transpose(0, 1)
    qg = q.view(t, kvh, g, hd).permute(1, 2, 0, 3).reshape(kvh, g * t, hd)
    scores = torch.bmm(qg, kc[:, :s_len].transpose(1, 2)).view(kvh, g, t, s_len) * (hd ** -0.5)
    if t > 1:
        q_pos = torch.arange(start, s_len)[:, None]
        scores = scores.masked_fill(torch.arange(s_len)[None, :] > q_pos, float("-inf"))
    # Softmax in f32, cast back (transformers' eager attention; no-op for f32).
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    o = torch.bmm(probs.view(kvh, g * t, s_len), vc[:, :s_len]).view(kvh, g, t, hd)
    o = o.permute(2, 0, 1, 3).reshape(t, -1)
    h = x + F.linear(o, w["wo"])
    hn = t_rms(h, w["ffn_norm"], eps)
    act = F.silu(F.linear(hn, w["w_gate"])) * F.linear(hn, w["w_up"])
    return h + F.linear(act, w["w_down"])


def to_torch(w, dtype=torch.float32):
    return {k: torch.from_numpy(v).to(dtype) for k, v in w.items()}


def round_bf16(w):
    """The f32 weights rounded to bf16 (nearest even, as torch's .to(bfloat16)), as f32."""
    return {k: torch.from_numpy(v).to(torch.bfloat16).float().numpy() for k, v in w.items()}


def llc_bytes():
    """Size of the largest cache level this CPU reports (sysfs), else 32 MiB."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in os.listdir(base):
            try:
                with open(os.path.join(base, idx, "size")) as f:
                    txt = f.read().strip()
            except OSError:
                continue
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(txt[-1:], 1)
            digits = txt.rstrip("KMG")
            if digits.isdigit():
                best = max(best, int(digits) * mult)
    except OSError:
        pass
    return best or 32 << 20


def cold_copies(weight_bytes):
    """Copies of a layer's weights whose total exceeds twice the last-level cache."""
    return max(2, -(-2 * llc_bytes() // weight_bytes) + 1)


# ---------------------------------------------------------------- checking
def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def check_against_hf_goldens():
    """Both layers vs the HF goldens (prefill 5 at 0.., decode 1 at 5). Returns errors."""
    out = {}
    for name in ["llama", "qwen2", "qwen3"]:
        path = os.path.join(ROOT, "testdata", "goldens", f"{name}_layer.safetensors")
        with safe_open(path, "np") as f:
            c = json.loads(f.metadata()["config"])
        t = load_file(path)
        assert c["rope_layout"] == "HalfSplit"
        cfg = {k: c[k] for k in SHAPES["smollm2_135m"]}
        w = {k: v for k, v in t.items() if not k.startswith("expected") and k != "x"}
        p = c["prefill_tokens"]
        cos, sin = rope_tables(cfg, c["max_seq"])
        kv_shape = (cfg["n_kv_heads"], c["max_seq"], cfg["head_dim"])
        kc, vc = np.zeros(kv_shape, np.float32), np.zeros(kv_shape, np.float32)
        np_pre = np_layer(cfg, w, t["x"][:p], 0, kc, vc, cos, sin)
        np_dec = np_layer(cfg, w, t["x"][p:], p, kc, vc, cos, sin)
        tw = to_torch(w)
        tkc, tvc = torch.zeros(kv_shape), torch.zeros(kv_shape)
        tcos, tsin = torch.from_numpy(cos), torch.from_numpy(sin)
        with torch.inference_mode():
            t_pre = t_layer(cfg, tw, torch.from_numpy(t["x"][:p]), 0, tkc, tvc, tcos, tsin).numpy()
            t_dec = t_layer(cfg, tw, torch.from_numpy(t["x"][p:]), p, tkc, tvc, tcos, tsin).numpy()
        errs = {
            "numpy_prefill": rel_err(np_pre, t["expected_prefill"]),
            "numpy_decode": rel_err(np_dec, t["expected_decode"]),
            "torch_prefill": rel_err(t_pre, t["expected_prefill"]),
            "torch_decode": rel_err(t_dec, t["expected_decode"]),
        }
        # Same f32 math as HF, so errors are f32 rounding (~1e-6), far from a bug (~1e-1).
        bad = {k: v for k, v in errs.items() if v > 1e-4}
        assert not bad, f"{name}: baseline layer disagrees with HF goldens: {bad}"
        out[name] = errs
    return out


# ---------------------------------------------------------------- timing
def busy_cpu_seconds():
    """CPU seconds spent by the whole machine (all processes) since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def time_ms(fn, warmup, runs):
    """(median, min) wall-clock ms over `runs` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def layer_cost(cfg, t, s_len, elem_bytes=4):
    """(weight bytes, flops with FMA = 2) of one call: T tokens attending to s_len positions."""
    d, q, kv, f = (cfg["dim"], cfg["n_heads"] * cfg["head_dim"],
                   cfg["n_kv_heads"] * cfg["head_dim"], cfg["ffn_dim"])
    params = q * d + 2 * kv * d + d * q + 3 * f * d
    attn = 2 * 2 * t * cfg["n_heads"] * cfg["head_dim"] * s_len  # scores + probs.V (upper bound for causal)
    return params * elem_bytes, 2 * t * params + attn


# bf16 PyTorch vs the f32 NumPy layer on the same bf16-rounded weights: bf16 keeps 8
# significant bits (unit roundoff 2^-8 = 3.9e-3) and every op of the bf16 layer rounds
# its output; 5e-2 of max|ref| passes that and fails a wrong op (errors of order 1).
BF16_TOL = 5e-2


def bench_case(name, cfg, ws, dtype, cold, mode, kv_len, args, rng):
    """Times one case; `ws` holds the weight copies (f32 NumPy dicts) to cycle through
    (one when warm)."""
    t = 1 if mode == "decode" else PREFILL_T
    start = kv_len if mode == "decode" else 0
    tdt = torch.bfloat16 if dtype == "bf16" else torch.float32
    if dtype == "bf16":
        ws = [round_bf16(w) for w in ws]
    tws = [to_torch(w, tdt) for w in ws]
    kv_shape = (cfg["n_kv_heads"], MAX_SEQ, cfg["head_dim"])
    # A cache already holding kv_len positions (random keys/values: their values do not
    # change the work done).
    kc = rng.standard_normal(kv_shape).astype(np.float32)
    vc = rng.standard_normal(kv_shape).astype(np.float32)
    tkc, tvc = torch.from_numpy(kc.copy()).to(tdt), torch.from_numpy(vc.copy()).to(tdt)
    if dtype == "bf16":
        # NumPy reads the same (bf16-rounded) cache as PyTorch.
        kc, vc = tkc.float().numpy().copy(), tvc.float().numpy().copy()
    # One KV cache per weight copy, as each layer of a model has its own (and each vTPU
    # copy is a whole layer with its own cache): cold rows read a cold cache too.
    kcs, vcs = [kc] + [kc.copy() for _ in ws[1:]], [vc] + [vc.copy() for _ in ws[1:]]
    tkcs, tvcs = [tkc] + [tkc.clone() for _ in ws[1:]], [tvc] + [tvc.clone() for _ in ws[1:]]
    x = rng.standard_normal((t, cfg["dim"])).astype(np.float32)
    tx = torch.from_numpy(x.copy()).to(tdt)
    if dtype == "bf16":
        x = tx.float().numpy().copy()
    cos, sin = rope_tables(cfg, MAX_SEQ)
    tcos, tsin = torch.from_numpy(cos).to(tdt), torch.from_numpy(sin).to(tdt)

    turn = {"np": 0, "t": 0}

    def run_np():
        i = turn["np"] = (turn["np"] + 1) % len(ws)
        return np_layer(cfg, ws[i], x, start, kcs[i], vcs[i], cos, sin)

    def run_t():
        i = turn["t"] = (turn["t"] + 1) % len(tws)
        return t_layer(cfg, tws[i], tx, start, tkcs[i], tvcs[i], tcos, tsin)

    with threadpool_limits(limits=args.threads, user_api="blas"), torch.inference_mode():
        # Validate before timing: same inputs (and the same weight copy), and the two
        # implementations agree.
        turn["np"], turn["t"] = -1, -1
        want, got = run_np(), run_t().float().numpy()
        err = rel_err(got, want)
        tol = BF16_TOL if dtype == "bf16" else 1e-4
        assert err < tol, f"{name} {dtype} {mode} kv {kv_len}: numpy vs torch rel err {err}"
        if dtype == "bf16":
            numpy_ms = numpy_min = None  # NumPy has no bf16
        else:
            numpy_ms, numpy_min = time_ms(run_np, args.warmup, args.runs)
        torch_ms, torch_min = time_ms(run_t, args.warmup, args.runs)
    wbytes, flops = layer_cost(cfg, t, start + t, 2 if dtype == "bf16" else 4)
    best = torch_ms if numpy_ms is None else min(numpy_ms, torch_ms)
    r4 = lambda v: None if v is None else round(v, 4)
    row = dict(shape=name, dtype=dtype, cold=cold, copies=len(ws), mode=mode, kv_len=kv_len,
               tokens=t, numpy_ms=r4(numpy_ms), torch_ms=r4(torch_ms), numpy_min_ms=r4(numpy_min),
               torch_min_ms=r4(torch_min),
               numpy_over_torch=None if numpy_ms is None else round(numpy_ms / torch_ms, 3),
               numpy_vs_torch_rel_err=float(f"{err:.2e}"), weight_mb=round(wbytes / 1e6, 2),
               gflop=round(flops / 1e9, 4))
    if mode == "decode":
        kv_bytes = 2 * cfg["n_kv_heads"] * cfg["head_dim"] * (start + 1) * (2 if dtype == "bf16" else 4)
        row["host_gb_per_s_best"] = round((wbytes + kv_bytes) / (best * 1e-3) / 1e9, 2)
    else:
        row["host_gflop_per_s_best"] = round(flops / (best * 1e-3) / 1e9, 2)
    np_txt = "     -  " if numpy_ms is None else f"{numpy_ms:8.3f}"
    print(f"{name:13} {dtype:4} {'cold' if cold else 'warm'} {mode:7} kv {kv_len:5}: "
          f"numpy {np_txt} ms  torch {torch_ms:8.3f} ms", file=sys.stderr)
    return row


def main():
    ap = argparse.ArgumentParser(description="NumPy / PyTorch single-layer baseline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--dtypes", default="f32", help="f32 and/or bf16 (PyTorch only)")
    ap.add_argument("--cold", action="store_true",
                    help="also time each case cycling through weight copies > 2x the LLC")
    ap.add_argument("--modes", default="decode,prefill", help="decode and/or prefill")
    args = ap.parse_args()
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        if d not in ("f32", "bf16"):
            ap.error(f"--dtypes: {d!r} is not f32 or bf16")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(12345)

    wall_start = time.perf_counter()
    load_before = os.getloadavg()
    busy_before, own_before = busy_cpu_seconds(), sum(os.times()[:2])
    golden_errs = check_against_hf_goldens()
    results = []
    for name in args.shapes.split(","):
        cfg = SHAPES[name]
        w = random_weights(cfg, seed=list(SHAPES).index(name))
        cases = ([("decode", kv) for kv in DECODE_KV] if "decode" in modes else []) + \
                ([("prefill", 0)] if "prefill" in modes else [])
        for dtype in dtypes:
            for cold in [False, True] if args.cold else [False]:
                ws = [w]
                if cold:
                    # Distinct copies (different seeds), f32 bytes counted: the bf16
                    # copies are half that, so the count doubles for them.
                    wbytes = layer_cost(cfg, 1, 1, 2 if dtype == "bf16" else 4)[0]
                    ws = [w] + [random_weights(cfg, seed=1000 * (i + 1) + list(SHAPES).index(name))
                                for i in range(cold_copies(wbytes) - 1)]
                for mode, kv_len in cases:
                    results.append(bench_case(name, cfg, ws, dtype, cold, mode, kv_len, args, rng))

    busy_after, own_after = busy_cpu_seconds(), sum(os.times()[:2])
    other_cpu = None
    if busy_before is not None and busy_after is not None:
        other_cpu = round((busy_after - busy_before) - (own_after - own_before), 1)
    blas = [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                     "threading_layer", "filepath")}
            for i in threadpool_info()]
    meta = dict(
        threads=args.threads, warmup=args.warmup, runs=args.runs, statistic="median",
        dtypes=dtypes, cold=args.cold, llc_bytes=llc_bytes(),
        units="host wall-clock ms per layer call; GB/s and GFLOP/s are host figures derived from it",
        python=platform.python_version(), numpy=np.__version__, torch=torch.__version__,
        torch_threads=torch.get_num_threads(), blas=blas,
        env={k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                             "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        cpu=platform.processor() or platform.machine(),
        # Other work on this 2-core machine skews every figure: see the load averages.
        loadavg_1_5_15_before=[round(v, 2) for v in load_before],
        loadavg_1_5_15_after=[round(v, 2) for v in os.getloadavg()],
        # CPU seconds other processes used while this ran (0 = a quiet machine).
        other_processes_cpu_s=other_cpu,
        wall_s=round(time.perf_counter() - wall_start, 1),
        check_vs_hf_goldens_rel_err=golden_errs,
    )
    json.dump({"meta": meta, "results": results}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
