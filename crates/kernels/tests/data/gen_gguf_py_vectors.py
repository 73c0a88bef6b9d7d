#!/usr/bin/env python3
"""Regenerates gguf_py_vectors.bin (the "bless" step of tests/quant.rs
`quantizers_and_dequantizers_match_gguf_py`).

gguf-py (PyPI `gguf`, the numpy port of ggml's reference quantizers that ships with
llama.cpp) is an implementation independent of ours: its outputs pin our
`quantize_row` / `dequantize_row` to ggml's bytes and values.

    pip install --target /tmp/pyg gguf==0.19.0 && PYTHONPATH=/tmp/pyg python3 gen_gguf_py_vectors.py

Record format, repeated: 8-byte name (`Q` = quantize / `D` = dequantize, then the
type name, NUL padded), u64 LE input length, input bytes, u64 LE output length, output
bytes. Quantize records map f32 LE inputs to block bytes; dequantize records map block
bytes to f32 LE values.
"""
import numpy as np
from gguf import quants
from gguf.constants import GGMLQuantizationType as T

rng = np.random.default_rng(1)
out = open("gguf_py_vectors.bin", "wb")


def put(name, arr_in, arr_out):
    b_in, b_out = arr_in.tobytes(), arr_out.tobytes()
    out.write(name.encode().ljust(8, b"\0"))
    out.write(len(b_in).to_bytes(8, "little") + b_in)
    out.write(len(b_out).to_bytes(8, "little") + b_out)


for name, t in [("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1), ("q5_0", T.Q5_0), ("q5_1", T.Q5_1)]:
    for scale in [1e-3, 1.0, 100.0]:
        x = (rng.standard_normal(8 * 32) * scale).astype(np.float32)
        x[:32] = 0.0  # an all-zero block
        q = quants.quantize(x.reshape(1, -1), t)
        put("Q" + name, x, np.asarray(q).reshape(-1).view(np.uint8))

block_bytes = {"q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24, "q8_0": 34, "q4_k": 144, "q5_k": 176, "q6_k": 210}
types = {"q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0, "q5_1": T.Q5_1, "q8_0": T.Q8_0,
         "q4_k": T.Q4_K, "q5_k": T.Q5_K, "q6_k": T.Q6_K}
for name, bb in block_bytes.items():
    nb = 8 if bb < 100 else 3
    raw = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
    d = (rng.uniform(0.001, 0.1, size=(nb, 2)) * rng.choice([-1, 1], size=(nb, 2))).astype(np.float16)
    if name == "q6_k":
        raw[:, 208:210] = d[:, :1].view(np.uint8)
    else:
        raw[:, 0:4] = d.view(np.uint8).reshape(nb, 4)
    y = quants.dequantize(raw, types[name]).astype(np.float32)
    put("D" + name, raw.reshape(-1), y.reshape(-1))
out.close()
