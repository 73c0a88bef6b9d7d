#!/usr/bin/env python3
"""Compares this crate's token ids (JSON lines from examples/tokenize_jsonl.rs) with
llama.cpp's own, for the same GGUF vocabulary.

llama.cpp is reached through llama-cpp-python's ctypes bindings loading the libllama.so
that scripts/build_llamacpp.sh builds (see scripts/gen_llamacpp_goldens.sh for the
environment). Usage:

  LLAMA_CPP_LIB_PATH=$VTPU_CACHE/llama.cpp/build/bin \
  PYTHONPATH=$VTPU_CACHE/llamacpp/src/llama_cpp_python-0.3.36 \
  $VTPU_CACHE/venv-llamacpp/bin/python crates/tokenizer/scripts/compare_llamacpp.py MODEL.gguf IDS.jsonl

Prints the number of texts compared and each difference (first 20); exits 1 on any.
"""
import ctypes
import json
import sys

import llama_cpp.llama_cpp as ll


def main() -> None:
    model_path, jsonl = sys.argv[1], sys.argv[2]

    @ll.llama_log_callback
    def quiet(level, text, user_data):  # noqa: ARG001
        pass

    ll.llama_log_set(quiet, ctypes.c_void_p(0))
    ll.llama_backend_init()
    mp = ll.llama_model_default_params()
    mp.vocab_only = True
    model = ll.llama_model_load_from_file(model_path.encode(), mp)
    if not model:
        sys.exit(f"llama.cpp could not load {model_path}")
    vocab = ll.llama_model_get_vocab(model)

    def tokenize(text: str, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            sys.exit(f"llama_tokenize: buffer too small for {text!r}")
        return list(buf[:n])

    def detokenize(ids: list[int], remove_special: bool, unparse_special: bool) -> bytes:
        arr = (ll.llama_token * max(1, len(ids)))(*ids)
        cap = 64 + 16 * len(ids)
        for _ in range(2):
            out = ctypes.create_string_buffer(cap)
            n = ll.llama_detokenize(vocab, arr, len(ids), out, cap, remove_special, unparse_special)
            if n >= 0:
                return out.raw[:n]
            cap = -n  # too small: llama.cpp says how much it needs
        sys.exit("llama_detokenize: buffer too small after retry")

    n = bad = 0
    with open(jsonl, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            n += 1
            for key, add, parse in (("plain", False, False), ("special", True, True)):
                want = tokenize(rec["text"], add, parse)
                if want != rec[key]:
                    bad += 1
                    if bad <= 20:
                        print(f"DIFF ({key}) text={rec['text']!r}\n  llama.cpp {want}\n  vtpu      {rec[key]}")
            if "detok_plain" not in rec:
                continue
            for key, ids, rs, us in (("detok_plain", rec["plain"], False, False), ("detok_special", rec["special"], True, True)):
                want = detokenize(ids, rs, us)
                got = bytes.fromhex(rec[key])
                if want != got:
                    bad += 1
                    if bad <= 20:
                        print(f"DIFF ({key}) text={rec['text']!r}\n  llama.cpp {want!r}\n  vtpu      {got!r}")
    print(f"{model_path}: {n} texts, {bad} differences")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
