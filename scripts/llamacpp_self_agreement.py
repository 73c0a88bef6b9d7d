#!/usr/bin/env python3
"""How far llama.cpp agrees with itself: the committed goldens (llama.cpp's defaults) against
llama.cpp run again with a setting that changes only its arithmetic (thread count, the
repacked weight layout, the flash-attention path, the KV cache type), teacher-forced on the
golden tokens. Prints, per variant, the largest |logit - golden| over the golden's top-5
and every step where the variant's argmax differs from the golden token with the golden's
top-2 gap. This is the noise floor any second implementation faces on that model.

Run through scripts/llamacpp_self_agreement.sh (sets LLAMA_CPP_LIB_PATH / PYTHONPATH).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_llamacpp_goldens as g  # noqa: E402
ll = g.ll

VARIANTS = {
    "threads1": dict(n_threads=1),
    "threads2": dict(),  # the golden's own settings: must reproduce it exactly
    "no_repack": dict(no_repack=True),
    "no_fa_f16": dict(fa=0),
    "no_fa_f32": dict(fa=0, kv=0),
}


def load(path: Path, no_repack: bool):
    mp = ll.llama_model_default_params()
    mp.n_gpu_layers = 0
    if no_repack:
        mp.use_extra_bufts = False
    m = ll.llama_model_load_from_file(str(path).encode(), mp)
    if not m:
        sys.exit(f"cannot load {path}")
    return m


def context(model, n_threads=g.N_THREADS, fa=None, kv=None):
    cp = ll.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = g.N_CTX
    cp.n_seq_max = 1
    cp.n_threads = cp.n_threads_batch = n_threads
    if fa is not None:
        cp.flash_attn_type = fa
    if kv is not None:
        cp.type_k = cp.type_v = kv
    return ll.llama_init_from_model(model, cp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=["smollm2-135m-instruct-q8_0"])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()
    lc = g.LlamaCpp()  # backend init + log capture (kept alive: it owns the log callback)
    for name in args.models:
        path, _ = g.MODELS[name]
        golden = json.loads((g.REPO / "testdata/llamacpp" / f"{name}.json").read_text())
        for var in args.variants:
            kw = dict(VARIANTS[var])
            model = load(path, kw.pop("no_repack", False))
            n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(model))
            worst, flips, steps = 0.0, [], 0
            for p in golden["prompts"]:
                ctx = context(model, **kw)
                logits = g.decode(ctx, p["prompt_tokens"], n_vocab)
                for i, s in enumerate(p["steps"]):
                    top5 = s["top5"]
                    for t, l in top5:
                        worst = max(worst, abs(float(logits[t]) - l))
                    got = int(np.argmax(logits))
                    if got != s["token"]:
                        flips.append((p["prompt"][:24], i, top5[0][1] - top5[1][1]))
                    steps += 1
                    if i + 1 < len(p["steps"]):
                        logits = g.decode(ctx, [s["token"]], n_vocab)
                ll.llama_free(ctx)
            ll.llama_model_free(model)
            fl = ", ".join(f"{pr!r} step {i} gap {gap:.4f}" for pr, i, gap in flips) or "none"
            print(f"{name} {var}: {steps} steps, max |logit - golden| over top-5 {worst:.4f}; "
                  f"argmax differs: {fl}", flush=True)


if __name__ == "__main__":
    main()
