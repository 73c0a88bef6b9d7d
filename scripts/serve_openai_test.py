#!/usr/bin/env python3
"""The `openai` client library against `vtpu serve`: chat and completions, streamed and
not, plus the error path. Starts the server itself on a free loopback port and stops it
with SIGTERM. Run through scripts/serve_openai_test.sh (which installs `openai`).

Prints one line per check and a closing 'N passed, N failed' line; exits non-zero on any
failure.
"""
import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import openai

ap = argparse.ArgumentParser()
ap.add_argument("--vtpu", default="target/debug/vtpu")
ap.add_argument("--model", default="testdata/models/qwen3-tiny.gguf")
args = ap.parse_args()

proc = subprocess.Popen(
    [args.vtpu, "serve", "-m", args.model, "--port", "0", "--ctx", "1024", "--api-key", "test-key"],
    stderr=subprocess.PIPE, text=True)
addr = None
log = []
for line in proc.stderr:
    log.append(line)
    m = re.search(r"listening on http://(\S+)", line)
    if m:
        addr = m.group(1)
        break
if not addr:
    sys.exit("the server did not start:\n" + "".join(log))
threading.Thread(target=lambda: [log.append(l) for l in proc.stderr], daemon=True).start()
deadline = time.time() + 120
while True:
    try:
        with urllib.request.urlopen(f"http://{addr}/health") as r:
            if json.load(r)["status"] == "ok":
                break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("the model did not load")
    time.sleep(0.05)

client = openai.OpenAI(base_url=f"http://{addr}/v1", api_key="test-key")
passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        print(f"ok   {name}")
        passed += 1
    except Exception as e:  # noqa: BLE001 - report every failure, keep going
        print(f"FAIL {name}: {e!r}")
        failed += 1


model_id = None


def models():
    global model_id
    ms = client.models.list()
    model_id = ms.data[0].id
    assert model_id


msgs = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Say hello."}]
result = {}


def chat():
    r = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=16, temperature=0)
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens >= 1 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    result["chat"] = c.message.content


def chat_stream():
    s = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=16, temperature=0, stream=True)
    text, finish, n = "", None, 0
    for ch in s:
        n += 1
        d = ch.choices[0].delta
        text += d.content or ""
        finish = ch.choices[0].finish_reason or finish
    assert n >= 2, n
    assert finish in ("stop", "length")
    assert text == result["chat"], (text, result["chat"])


def completion():
    r = client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=12, temperature=0, seed=3)
    assert r.choices[0].text
    assert r.usage.completion_tokens >= 1
    result["completion"] = r.choices[0].text


def completion_stream():
    s = client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=12, temperature=0,
                                  seed=3, stream=True)
    text = "".join(ch.choices[0].text for ch in s)
    assert text == result["completion"], (text, result["completion"])


def errors():
    try:
        client.chat.completions.create(model="no-such-model", messages=msgs, max_tokens=2)
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert "does not exist" in str(e)
    try:
        client.chat.completions.create(model=model_id, messages=[], max_tokens=2)
        raise AssertionError("empty messages were accepted")
    except openai.BadRequestError:
        pass
    bad = openai.OpenAI(base_url=f"http://{addr}/v1", api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError:
        pass


check("models.list", models)
check("chat.completions", chat)
check("chat.completions stream=True (same text)", chat_stream)
check("completions", completion)
check("completions stream=True (same text)", completion_stream)
check("errors: 404 unknown model, 400 empty messages, 401 wrong key", errors)

proc.send_signal(signal.SIGTERM)
try:
    code = proc.wait(timeout=60)
except subprocess.TimeoutExpired:
    proc.kill()
    code = "killed"
if code != 0:
    print(f"FAIL server exit status {code}\n" + "".join(log))
    failed += 1
print(f"openai {openai.__version__}: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
