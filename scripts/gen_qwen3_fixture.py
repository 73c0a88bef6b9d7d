#!/usr/bin/env python3
"""Writes testdata/models/qwen3-tiny.gguf: a tiny qwen3-architecture GGUF with random weights.

It exists so that the Qwen3 code path (per-head q/k RMSNorm, head_dim != n_embd / n_head,
untied output, NEOX RoPE with theta 1e6, GQA) can be tested in `cargo test` without a
real Qwen3 download (none is on PyPI in a usable size). It is not a language model: the
weights are seeded Gaussian noise, scaled so that greedy decoding does not collapse onto
one token (checked by scripts/gen_llamacpp_goldens.py, which records llama.cpp's output).

Shapes (GGUF order, ne0 first):
  vocab 2003 = the first 2000 tokens of llama.cpp's ggml-vocab-qwen2.gguf (all 256
        byte-level symbols are among them) + <|endoftext|>, <|im_start|>, <|im_end|>
  n_embd 128, n_layer 3, n_head 4, n_head_kv 2, head_dim 48 (so n_head*head_dim = 192 != 128),
  n_ff 256, rope theta 1e6, rms eps 1e-6, context 4096
Tensor types: F32 for every norm, F16 for token_embd, Q8_0 for output, and a per-tensor mix
of F16 / Q8_0 for the matrices (see TYPES) so both matmul paths run in every layer.

Deterministic: the same gguf-py version and seed give the same bytes (the README records
the sha256). Usage:
  PY=$(bash scripts/setup_llamacpp_env.sh | tail -1)
  "$PY" scripts/gen_qwen3_fixture.py [--vocab PATH/ggml-vocab-qwen2.gguf] [--out PATH]
The vocabulary comes from scripts/fetch_test_data.sh ($VTPU_CACHE/llama-vocab/).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

SEED = 20261207
N_KEEP = 2000            # regular tokens kept from the qwen2 vocabulary
N_EMBD = 128
N_LAYER = 3
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = 48
N_FF = 256
N_CTX_TRAIN = 4096
ROPE_THETA = 1.0e6
RMS_EPS = 1.0e-6
# Standard deviations of the random weights. The matrices are ~N(0, 0.08): with
# unit-RMS inputs the projections come out O(0.5-1), attention scores O(1) after the
# q/k norms, and the logits spread over a few units so greedy decoding varies with context.
STD_MATRIX = 0.08
STD_EMBD = 0.5
STD_OUTPUT = 0.15
STD_NORM = 0.1           # norm weights are 1 + N(0, STD_NORM)

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen3-style ChatML template (simplified: no tools, no thinking blocks).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Per-layer matrix types: every layer has both F16 and Q8_0 matmuls, and the choice for
# attn_output / ffn_down differs between layers so a loader that assumes "one type per
# tensor name" fails.
TYPES = {
    "attn_q":      [QT.Q8_0, QT.Q8_0, QT.Q8_0],
    "attn_k":      [QT.F16,  QT.F16,  QT.F16],
    "attn_v":      [QT.Q8_0, QT.Q8_0, QT.Q8_0],
    "attn_output": [QT.F16,  QT.Q8_0, QT.Q8_0],
    "ffn_gate":    [QT.Q8_0, QT.Q8_0, QT.Q8_0],
    "ffn_up":      [QT.Q8_0, QT.Q8_0, QT.Q8_0],
    "ffn_down":    [QT.Q8_0, QT.F16,  QT.Q8_0],
}


def byte_level_symbols() -> list[str]:
    """The 256 single-character strings GPT-2 byte-level BPE uses for the 256 byte values."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def load_vocab(path: Path) -> tuple[list[str], list[str]]:
    r = gguf.GGUFReader(path)
    pre = r.fields["tokenizer.ggml.pre"].contents()
    if pre != "qwen2":
        sys.exit(f"{path}: tokenizer.ggml.pre is {pre!r}, expected 'qwen2'")
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    if len(tokens) < N_KEEP or any(t != 1 for t in types[:N_KEEP]):
        sys.exit(f"{path}: the first {N_KEEP} tokens are not all normal tokens")
    kept = list(tokens[:N_KEEP])
    have = set(kept)
    missing = [s for s in byte_level_symbols() if s not in have]
    if missing:
        sys.exit(f"{path}: byte-level symbols missing from the first {N_KEEP} tokens: {missing[:10]}")
    kept_merges = []
    for m in merges:
        a, sep, b = m.partition(" ")
        if sep and a in have and b in have and (a + b) in have:
            kept_merges.append(m)
    return kept, kept_merges


def put(w: gguf.GGUFWriter, name: str, data: np.ndarray, qtype: QT) -> None:
    """data is float32 in numpy (row-major) order: shape (ne1, ne0)."""
    if qtype == QT.F32:
        w.add_tensor(name, data.astype(np.float32))
    elif qtype == QT.F16:
        w.add_tensor(name, data.astype(np.float16))
    else:
        q = gguf.quants.quantize(data.astype(np.float32), qtype)
        w.add_tensor(name, q, raw_dtype=qtype)


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    cache = Path(os.environ.get("VTPU_CACHE", Path.home() / ".cache" / "vtpu"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=Path, default=cache / "llama-vocab" / "ggml-vocab-qwen2.gguf")
    ap.add_argument("--out", type=Path, default=repo / "testdata" / "models" / "qwen3-tiny.gguf")
    args = ap.parse_args()

    tokens, merges = load_vocab(args.vocab)
    tokens = tokens + SPECIAL
    token_types = [gguf.TokenType.NORMAL] * N_KEEP + [gguf.TokenType.CONTROL] * len(SPECIAL)
    n_vocab = len(tokens)
    eot_id, ims_id, ime_id = (N_KEEP + i for i in range(len(SPECIAL)))

    rng = np.random.default_rng(SEED)

    def mat(rows: int, cols: int, std: float = STD_MATRIX) -> np.ndarray:
        # numpy shape (rows=ne1=out, cols=ne0=in)
        return rng.normal(0.0, std, size=(rows, cols)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + rng.normal(0.0, STD_NORM, size=n)).astype(np.float32)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".gguf.tmp")
    w = gguf.GGUFWriter(tmp, "qwen3")
    w.add_name("vtpu qwen3-tiny test fixture (random weights)")
    w.add_type("model")
    w.add_block_count(N_LAYER)
    w.add_context_length(N_CTX_TRAIN)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(eot_id)
    w.add_eos_token_id(ime_id)
    w.add_pad_token_id(eot_id)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    # Tensors in a fixed order (the RNG stream depends on it).
    put(w, "token_embd.weight", mat(n_vocab, N_EMBD, STD_EMBD), QT.F16)
    put(w, "output_norm.weight", norm(N_EMBD), QT.F32)
    put(w, "output.weight", mat(n_vocab, N_EMBD, STD_OUTPUT), QT.Q8_0)
    q_dim = N_HEAD * HEAD_DIM
    kv_dim = N_HEAD_KV * HEAD_DIM
    for i in range(N_LAYER):
        p = f"blk.{i}."
        put(w, p + "attn_norm.weight", norm(N_EMBD), QT.F32)
        put(w, p + "attn_q.weight", mat(q_dim, N_EMBD), TYPES["attn_q"][i])
        put(w, p + "attn_k.weight", mat(kv_dim, N_EMBD), TYPES["attn_k"][i])
        put(w, p + "attn_v.weight", mat(kv_dim, N_EMBD), TYPES["attn_v"][i])
        put(w, p + "attn_q_norm.weight", norm(HEAD_DIM), QT.F32)
        put(w, p + "attn_k_norm.weight", norm(HEAD_DIM), QT.F32)
        put(w, p + "attn_output.weight", mat(N_EMBD, q_dim), TYPES["attn_output"][i])
        put(w, p + "ffn_norm.weight", norm(N_EMBD), QT.F32)
        put(w, p + "ffn_gate.weight", mat(N_FF, N_EMBD), TYPES["ffn_gate"][i])
        put(w, p + "ffn_up.weight", mat(N_FF, N_EMBD), TYPES["ffn_up"][i])
        put(w, p + "ffn_down.weight", mat(N_EMBD, N_FF), TYPES["ffn_down"][i])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): vocab {n_vocab} "
          f"({len(merges)} merges), {N_LAYER} layers, gguf-py {gguf_version()}", file=sys.stderr)


def gguf_version() -> str:
    from importlib.metadata import version
    return version("gguf")


if __name__ == "__main__":
    main()
