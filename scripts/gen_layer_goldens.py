#!/usr/bin/env python3
"""Golden outputs of ONE transformer decoder layer from Hugging Face transformers.

The Rust f64 reference (crates/llm/src/reference.rs) is checked against these files by
crates/llm/tests/hf_goldens.rs. transformers is an independent implementation of the same
layer, so agreement means both read the architecture the same way (RoPE layout, GQA
grouping, norm placement, bias, q/k norm, SwiGLU).

Run (from the repository root):
    PY=$(bash scripts/setup_python.sh | tail -1)
    "$PY" scripts/gen_layer_goldens.py           # (re)write testdata/goldens/*.safetensors
    "$PY" scripts/gen_layer_goldens.py --check   # regenerate in memory, compare with the files

Committed files were produced by: python 3.11.7, numpy 2.4.6, torch 2.15.0 (CPU),
transformers 5.24.0, safetensors 0.8.0 (the pins of scripts/setup_python.sh).

What each file holds (one per architecture: llama, qwen2, qwen3):
  * the layer weights as f32, named like the Rust `LayerWeights` fields, row-major
    [out, in] exactly as HF stores them (HF checkpoints use the half-split RoPE layout);
  * `x` [6, D]: the hidden states of 6 tokens at positions 0..5;
  * `expected_prefill` [5, D]: the layer output of a T=5 prefill at positions 0..4;
  * `expected_decode` [1, D]: the output of one decode step at position 5, reading the
    5 cached positions through transformers' DynamicCache;
  * metadata `config` (JSON, the Rust `LayerConfig` fields) and `generator` (versions).
The script also runs the 6 tokens as one causal forward and asserts it matches
prefill + decode, so the cache path and the mask path agree before anything is written.

Weights are scaled so that every stage is O(1) (projections N(0, 1/in), norm scales in
[0.5, 1.5], biases N(0, 0.5^2)): attention is then far from uniform and a wrong RoPE
layout, head grouping or norm changes the outputs by O(1), not by 1e-4.
"""

import argparse
import json
import os
import platform
import sys

import numpy as np
import safetensors
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers.cache_utils import DynamicCache

SEED = 20240607
PREFILL = 5  # prefill tokens at positions 0..4; one decode token at position 5
MAX_POS = 64

# Small shapes with GQA; qwen3 has H*Hd != D like the real Qwen3.
ARCHS = {
    "llama": dict(
        module="llama", prefix="Llama", hidden=64, heads=4, kv_heads=2, head_dim=16,
        ffn=128, theta=10000.0, eps=1e-5, qkv_bias=False, qk_norm=False,
    ),
    "qwen2": dict(
        module="qwen2", prefix="Qwen2", hidden=64, heads=4, kv_heads=2, head_dim=16,
        ffn=128, theta=1000000.0, eps=1e-6, qkv_bias=True, qk_norm=False,
    ),
    "qwen3": dict(
        module="qwen3", prefix="Qwen3", hidden=64, heads=4, kv_heads=2, head_dim=32,
        ffn=128, theta=1000000.0, eps=1e-6, qkv_bias=False, qk_norm=True,
    ),
}

# Rust LayerWeights field -> HF parameter name inside the decoder layer.
FIELD_TO_HF = {
    "attn_norm": "input_layernorm.weight",
    "wq": "self_attn.q_proj.weight",
    "wk": "self_attn.k_proj.weight",
    "wv": "self_attn.v_proj.weight",
    "bq": "self_attn.q_proj.bias",
    "bk": "self_attn.k_proj.bias",
    "bv": "self_attn.v_proj.bias",
    "q_norm": "self_attn.q_norm.weight",
    "k_norm": "self_attn.k_norm.weight",
    "wo": "self_attn.o_proj.weight",
    "ffn_norm": "post_attention_layernorm.weight",
    "w_gate": "mlp.gate_proj.weight",
    "w_up": "mlp.up_proj.weight",
    "w_down": "mlp.down_proj.weight",
}


def build_layer(spec):
    mod = __import__(f"transformers.models.{spec['module']}.modeling_{spec['module']}",
                     fromlist=["x"])
    cfg_mod = __import__(f"transformers.models.{spec['module']}.configuration_{spec['module']}",
                         fromlist=["x"])
    p = spec["prefix"]
    kwargs = dict(
        hidden_size=spec["hidden"], intermediate_size=spec["ffn"],
        num_attention_heads=spec["heads"], num_key_value_heads=spec["kv_heads"],
        head_dim=spec["head_dim"], rms_norm_eps=spec["eps"], max_position_embeddings=MAX_POS,
        rope_parameters={"rope_type": "default", "rope_theta": spec["theta"]},
        num_hidden_layers=1, hidden_act="silu",
    )
    if p == "Llama":
        kwargs["attention_bias"] = False
    config = getattr(cfg_mod, f"{p}Config")(**kwargs)
    config._attn_implementation = "eager"
    layer = getattr(mod, f"{p}DecoderLayer")(config, layer_idx=0).eval()
    rotary = getattr(mod, f"{p}RotaryEmbedding")(config)
    assert layer.self_attn.config._attn_implementation == "eager"
    return config, layer, rotary


def init_weights(layer, gen):
    with torch.no_grad():
        for name, param in layer.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                param.copy_(0.5 + torch.rand(param.shape, generator=gen))
            elif name.endswith(".bias"):
                param.copy_(0.5 * torch.randn(param.shape, generator=gen))
            else:
                fan_in = param.shape[1]
                param.copy_(torch.randn(param.shape, generator=gen) / fan_in**0.5)


def causal_mask(q_len, kv_len, start):
    """Additive [1, 1, q_len, kv_len] mask: query i (position start+i) sees keys <= own."""
    q_pos = torch.arange(start, start + q_len)[:, None]
    k_pos = torch.arange(kv_len)[None, :]
    mask = torch.zeros(q_len, kv_len)
    mask[k_pos > q_pos] = torch.finfo(torch.float32).min
    return mask[None, None]


def run_layer(layer, rotary, x, start, cache):
    """x: [1, T, D] at positions start..start+T."""
    t = x.shape[1]
    pos = torch.arange(start, start + t)[None]
    cos_sin = rotary(x, pos)
    kv_len = start + t
    with torch.no_grad():
        out = layer(x, attention_mask=causal_mask(t, kv_len, start), position_ids=pos,
                    cache=cache, use_cache=cache is not None, position_embeddings=cos_sin)
    return out[0] if isinstance(out, tuple) else out


def make_golden(name, spec):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
    config, layer, rotary = build_layer(spec)
    init_weights(layer, gen)
    d = spec["hidden"]
    x = torch.randn(1, PREFILL + 1, d, generator=gen)

    full = run_layer(layer, rotary, x, 0, None)[0]  # [6, D], one causal forward
    cache = DynamicCache()
    prefill = run_layer(layer, rotary, x[:, :PREFILL], 0, cache)[0]  # [5, D]
    assert cache.get_seq_length() == PREFILL
    decode = run_layer(layer, rotary, x[:, PREFILL:], PREFILL, cache)[0]  # [1, D]
    assert cache.get_seq_length() == PREFILL + 1
    scale = full.abs().max().item()
    for got, want, what in [(prefill, full[:PREFILL], "prefill"), (decode, full[PREFILL:], "decode")]:
        err = (got - want).abs().max().item()
        assert err <= 1e-5 * scale, f"{name}: cache path vs full causal forward, {what}: {err}"

    hf_params = dict(layer.named_parameters())
    tensors = {}
    for field, hf_name in FIELD_TO_HF.items():
        if hf_name in hf_params:
            tensors[field] = hf_params[hf_name].detach().numpy().astype(np.float32).copy()
    expected = {"qkv_bias": spec["qkv_bias"], "qk_norm": spec["qk_norm"]}
    assert ("bq" in tensors) == expected["qkv_bias"], f"{name}: bias presence"
    assert ("q_norm" in tensors) == expected["qk_norm"], f"{name}: q/k norm presence"
    tensors["x"] = x[0].numpy().copy()
    tensors["expected_prefill"] = prefill.numpy().copy()
    tensors["expected_decode"] = decode.numpy().copy()

    layer_config = {
        "dim": d, "n_heads": spec["heads"], "n_kv_heads": spec["kv_heads"],
        "head_dim": spec["head_dim"], "ffn_dim": spec["ffn"], "rms_eps": spec["eps"],
        "rope_theta": spec["theta"], "rope_layout": "HalfSplit",
        "qkv_bias": spec["qkv_bias"], "qk_norm": spec["qk_norm"], "max_seq": MAX_POS,
        "prefill_tokens": PREFILL, "decode_pos": PREFILL,
    }
    generator = {
        "script": "scripts/gen_layer_goldens.py", "seed": SEED,
        "hf_layer": f"{spec['prefix']}DecoderLayer (eager attention, float32, DynamicCache)",
        "python": platform.python_version(), "numpy": np.__version__,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
    }
    metadata = {"config": json.dumps(layer_config), "generator": json.dumps(generator)}
    return tensors, metadata


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "testdata", "goldens"))
    ap.add_argument("--check", action="store_true",
                    help="compare a fresh run with the files instead of writing them")
    args = ap.parse_args()
    torch.set_num_threads(1)  # fewer reduction-order differences between machines
    os.makedirs(args.out, exist_ok=True)
    ok = True
    for name, spec in ARCHS.items():
        tensors, metadata = make_golden(name, spec)
        path = os.path.normpath(os.path.join(args.out, f"{name}_layer.safetensors"))
        if args.check:
            old = load_file(path)
            for k, v in tensors.items():
                same = k in old and old[k].shape == v.shape and np.allclose(old[k], v, rtol=0, atol=1e-6)
                if not same:
                    print(f"MISMATCH {path}: {k}", file=sys.stderr)
                    ok = False
            print(f"checked {path}")
        else:
            save_file(tensors, path, metadata=metadata)
            size = os.path.getsize(path)
            assert size < 300_000, f"{path} is {size} bytes"
            print(f"wrote {path} ({size} bytes, {len(tensors)} tensors)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
