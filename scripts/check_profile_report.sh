#!/usr/bin/env bash
# Render a `vtpu profile` HTML report in headless Chromium and check that it rendered:
# the DOM after layout holds the three charts and the end-of-report marker, and the
# screenshot is a non-trivial PNG. Not part of `cargo test` (Chromium takes seconds and
# needs the Debian package: apt-get install -y chromium).
#
#   scripts/check_profile_report.sh REPORT.html [SCREENSHOT.png]
set -euo pipefail
report=${1:?usage: $0 REPORT.html [SCREENSHOT.png]}
shot=${2:-}
[ -f "$report" ] || { echo "error: $report: no such file" >&2; exit 1; }
chrome=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chrome" ] || { echo "error: $chrome not found (apt-get install -y chromium)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
url="file://$(realpath "$report")"
flags=(--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$work/profile")
# The DOM as Chromium built it (after parsing; SVG elements must have survived).
"$chrome" "${flags[@]}" --dump-dom "$url" >"$work/dom.html" 2>"$work/dump.log"
for want in 'id="roofline"' 'id="layers-decode"' 'id="timeline-decode"' 'id="rendered"' '<circle' '<polyline'; do
    grep -q "$want" "$work/dom.html" || { echo "error: $report: rendered DOM lacks $want" >&2; exit 1; }
done
png=${shot:-$work/shot.png}
"$chrome" "${flags[@]}" --window-size=1280,2400 --hide-scrollbars --screenshot="$png" "$url" >"$work/shot.log" 2>&1
[ -s "$png" ] || { echo "error: no screenshot written" >&2; cat "$work/shot.log" >&2; exit 1; }
# A PNG, and not a blank page: a blank 1280x2400 PNG compresses to a few kB.
head -c 8 "$png" | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a' || { echo "error: $png is not a PNG" >&2; exit 1; }
size=$(stat -c %s "$png")
[ "$size" -gt 30000 ] || { echo "error: $png is only $size bytes: blank page?" >&2; exit 1; }
echo "ok: $report rendered (DOM has the charts; screenshot $size bytes${shot:+ -> $shot})"
