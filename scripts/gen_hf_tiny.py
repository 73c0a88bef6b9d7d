#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints (llama, qwen2, qwen3) with transformers goldens.

Writes testdata/hf/<arch>/ for each architecture: what `save_pretrained` writes
(config.json, model.safetensors in float32, generation_config.json), a byte-level BPE
tokenizer.json trained here on a fixed paragraph with the `tokenizers` package,
a hand-written tokenizer_config.json (bos/eos, add_bos_token, chat template), and
golden.json: transformers' logits for a fixed token sequence, prefill then decode.

crates/llm/tests/model_hf.rs loads each directory through `HfSource`, runs it on the
vTPU and compares with golden.json. transformers is an independent implementation of
the same models, so agreement means the directory reader, the config mapping (RoPE
layout, GQA, biases, q/k norms, tied output) and the vTPU program read the checkpoint
as transformers does.

Run (from the repository root):
    PY=$(bash scripts/setup_python.sh | tail -1)
    "$PY" scripts/gen_hf_tiny.py            # (re)write testdata/hf/
    "$PY" scripts/gen_hf_tiny.py --check    # regenerate in a temporary dir, compare

The weights are random (seeded), not a language model. They are scaled so every stage
is O(1) (projections N(0, 1/fan_in), norm scales 0.5 + U(0, 1), biases N(0, 0.5^2),
embeddings N(0, 1)): attention is far from uniform and the logits spread over several
units, so a wrong RoPE layout, head grouping or norm changes them by O(1), not 1e-4.

golden.json holds, per architecture:
  * "prefill": 6 token ids, "decode": 3 more ids, fed one at a time;
  * "logits": 4 rows of [vocab_size] float32 values: the last position's logits after
    the prefill and after each decode step (transformers' DynamicCache path; the script
    asserts it matches one causal forward over all 9 tokens);
  * "tokenizer": texts with the ids the Python `tokenizers` package gives them
    (with and without special tokens);
  * "generator": script, seed and library versions.
"""

import argparse
import filecmp
import json
import os
import platform
import shutil
import sys
import tempfile

import numpy as np
import safetensors
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers.cache_utils import DynamicCache

SEED = 20260311
MAX_POS = 128
N_PREFILL = 6
N_DECODE = 3
# Every directory must stay small enough to commit (float32 weights).
MAX_DIR_BYTES = 1_000_000

# Shapes: GQA everywhere; qwen3 has head_dim 32 with hidden 64 / 4 heads (H*Hd != D).
# qwen2's embedding is padded beyond its tokenizer (vocab_size 320, 300 tokens), as
# Qwen2.5's is (151936 rows, 151665 tokens).
ARCHS = {
    "llama": dict(
        module="llama", prefix="Llama", hidden=64, heads=4, kv_heads=2, head_dim=16,
        ffn=128, layers=2, vocab=384, tokens=384, tied=True, theta=10000.0, eps=1e-5,
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
        bos="<|begin_of_text|>", eos="<|eot_id|>", add_bos=True,
        chat_template=(
            "{{- bos_token }}"
            "{%- for message in messages %}"
            "{{- '<|eot_id|>' if not loop.first else '' }}"
            "{{- message['role'] + ': ' + message['content'] }}"
            "{%- endfor %}"
            "{%- if add_generation_prompt %}{{- '<|eot_id|>assistant: ' }}{%- endif %}"
        ),
    ),
    "qwen2": dict(
        module="qwen2", prefix="Qwen2", hidden=64, heads=4, kv_heads=1, head_dim=16,
        ffn=96, layers=2, vocab=320, tokens=300, tied=False, theta=1000000.0, eps=1e-6,
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None, eos="<|im_end|>", add_bos=False,
        chat_template=(
            "{%- for message in messages %}"
            "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
            "{%- endfor %}"
            "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
        ),
    ),
    "qwen3": dict(
        module="qwen3", prefix="Qwen3", hidden=64, heads=4, kv_heads=2, head_dim=32,
        ffn=96, layers=2, vocab=384, tokens=384, tied=True, theta=1000000.0, eps=1e-6,
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None, eos="<|im_end|>", add_bos=False,
        chat_template=(
            "{%- for message in messages %}"
            "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
            "{%- endfor %}"
            "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
        ),
    ),
}

# The BPE training text: plain English with digits and punctuation, long enough for a
# few hundred merges. The golden token sequence is the encoding of PROMPT.
CORPUS = """\
Once upon a time, in a small village at the edge of a great forest, there lived a girl
who liked to count the stars. Every night she climbed the hill behind her house and
counted them, one by one, until she fell asleep in the tall grass. Her mother worried,
her father laughed, and her little brother asked her every morning how many there were.
"More than yesterday," she always said. The village baker, a tall man with flour in his
beard, baked 12 loaves of bread each day and sold them at the market for 3 coins each.
The river ran past the mill, the mill turned the stones, and the stones ground the wheat
into flour. In the winter the river froze and the children skated on it while the old
people told stories by the fire. The story of the girl who counted the stars was the one
they told most often, because nobody knew how it ended. Some said she counted them all
and became a star herself; others said she is still counting, up on the hill, tonight.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
How vexingly quick daft zebras jump! 0123456789 + - * / = ( ) [ ] { } < > ; : , . ? !
"""
PROMPT = "Once upon a time, the girl counted the stars"
TOKENIZER_CASES = [
    PROMPT,
    "The baker sold 12 loaves of bread.",
    "Unseen words: xylophone, quixotic, Zürich, 東京!",
    "  leading spaces and\ttabs\nnewlines  ",
]


def build_tokenizer(spec):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec["tokens"], special_tokens=spec["specials"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer)
    n = tok.get_vocab_size(with_added_tokens=True)
    assert n == spec["tokens"], f"tokenizer has {n} tokens, wanted {spec['tokens']} (corpus too short?)"
    if spec["add_bos"]:
        bos = spec["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def build_model(spec, tok):
    mod = __import__(f"transformers.models.{spec['module']}.modeling_{spec['module']}", fromlist=["x"])
    cfg_mod = __import__(f"transformers.models.{spec['module']}.configuration_{spec['module']}", fromlist=["x"])
    p = spec["prefix"]
    tid = lambda t: None if t is None else tok.token_to_id(t)
    kwargs = dict(
        vocab_size=spec["vocab"], hidden_size=spec["hidden"], intermediate_size=spec["ffn"],
        num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv_heads"], head_dim=spec["head_dim"],
        rms_norm_eps=spec["eps"], max_position_embeddings=MAX_POS,
        rope_parameters={"rope_type": "default", "rope_theta": spec["theta"]},
        tie_word_embeddings=spec["tied"], hidden_act="silu",
        bos_token_id=tid(spec["bos"]), eos_token_id=tid(spec["eos"]), pad_token_id=None,
    )
    if p == "Llama":
        kwargs["attention_bias"] = False
        kwargs["mlp_bias"] = False
    config = getattr(cfg_mod, f"{p}Config")(**kwargs)
    config._attn_implementation = "eager"
    model = getattr(mod, f"{p}ForCausalLM")(config).eval().to(torch.float32)
    return model


def init_weights(model, gen):
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(0.5 + torch.rand(param.shape, generator=gen))
            elif name.endswith(".bias"):
                param.copy_(0.5 * torch.randn(param.shape, generator=gen))
            elif name.endswith("embed_tokens.weight"):
                param.copy_(torch.randn(param.shape, generator=gen))
            else:
                fan_in = param.shape[1]
                param.copy_(torch.randn(param.shape, generator=gen) / fan_in**0.5)


def f32_list(t):
    # 9 significant digits round-trip a float32 exactly.
    return [float(f"{x:.9g}") for x in t.detach().to(torch.float32).numpy().tolist()]


def golden_logits(name, model, ids):
    assert len(ids) == N_PREFILL + N_DECODE
    with torch.no_grad():
        full = model(torch.tensor([ids])).logits[0]  # [9, V], one causal forward
        cache = DynamicCache()
        out = model(torch.tensor([ids[:N_PREFILL]]), cache=cache, use_cache=True)
        rows = [out.logits[0, -1]]
        for t in ids[N_PREFILL:]:
            out = model(torch.tensor([[t]]), cache=cache, use_cache=True)
            rows.append(out.logits[0, -1])
        assert cache.get_seq_length() == len(ids)
    for i, row in enumerate(rows):
        want = full[N_PREFILL - 1 + i]
        err = (row - want).abs().max().item()
        scale = want.abs().max().item()
        assert err <= 1e-5 * scale, f"{name}: cache path vs causal forward at row {i}: {err} (scale {scale})"
    return rows


def write_arch(name, spec, out_dir):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
    tok = build_tokenizer(spec)
    model = build_model(spec, tok)
    init_weights(model, gen)
    if spec["tied"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    tc = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "add_bos_token": spec["add_bos"],
        "model_max_length": MAX_POS,
        "chat_template": spec["chat_template"],
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
        f.write("\n")

    # A fresh load from the directory is what the goldens come from: what was saved is
    # what is tested (e.g. the tied lm_head is absent from the file and re-tied on load).
    loaded = type(model).from_pretrained(out_dir, attn_implementation="eager").eval()
    ids = tok.encode(PROMPT).ids[: N_PREFILL + N_DECODE]
    assert len(ids) == N_PREFILL + N_DECODE, f"{name}: prompt gives only {len(ids)} tokens"
    rows = golden_logits(name, loaded, ids)

    cases = []
    for text in TOKENIZER_CASES:
        cases.append({"text": text, "add_special": True, "ids": tok.encode(text, add_special_tokens=True).ids})
        cases.append({"text": text, "add_special": False, "ids": tok.encode(text, add_special_tokens=False).ids})
    chat = f"{spec['specials'][1]}user hi{spec['specials'][2]}"
    cases.append({"text": chat, "add_special": False, "ids": tok.encode(chat, add_special_tokens=False).ids})

    golden = {
        "arch": name,
        "prefill": ids[:N_PREFILL],
        "decode": ids[N_PREFILL:],
        "logits": [f32_list(r) for r in rows],
        "tokenizer": cases,
        "generator": {
            "script": "scripts/gen_hf_tiny.py", "seed": SEED,
            "hf_model": f"{spec['prefix']}ForCausalLM (eager attention, float32, DynamicCache)",
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
        },
    }
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(out_dir, n)) for n in os.listdir(out_dir))
    assert total < MAX_DIR_BYTES, f"{out_dir} is {total} bytes"
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "testdata", "hf"))
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary directory and compare with --out")
    args = ap.parse_args()
    torch.set_num_threads(1)  # fewer reduction-order differences between machines
    transformers.utils.logging.disable_progress_bar()
    out = os.path.normpath(args.out)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in ARCHS.items():
            target = os.path.join(tmp if args.check else out, name)
            size = write_arch(name, spec, target)
            if args.check:
                for fname in sorted(os.listdir(target)):
                    same = filecmp.cmp(os.path.join(target, fname), os.path.join(out, name, fname), shallow=False)
                    print(f"{'same' if same else 'DIFFERS'}: {name}/{fname}")
                    ok &= same
            else:
                print(f"wrote {target} ({size} bytes)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
