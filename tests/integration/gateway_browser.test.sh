#!/usr/bin/env bash
# gateway_browser.test.sh - the page mm-gateway shows a person who opens an
# item's link (Accept: text/html), checked in headless Chromium: screenshot,
# page text (escaped), the Download link, and an H.264 MP4 that loads and plays
# in the <video> element through Range requests. Also with curl: which requests
# get the page and which get the bytes, audio and non-media items.
set -euo pipefail
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

command -v chromium >/dev/null || mm_fail "chromium is not installed (scripts/install-deps.sh)"
mm_tmpdir_init
mm_write_conf
mm_start_program mm-gateway serve
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
PIN=$(awk '/pin sha256/{print $3; exit}' "$MM_TMP/mm-gateway.log")
C=(curl -sS --max-time 30 -k --pinnedpubkey "$PIN")

mm_make_video "$MM_TMP/clip.mp4" 3
mm_gateway_put "$MM_TMP/clip.mp4" --type video/mp4 --name 'Beach <2024> & "friends".mp4' \
  --title 'Our holiday <b>video</b>' --note $'Hi Bob,\nhere it is! <script>alert(1)</script>' \
  --date 'Mon, 25 Nov 2024 10:00:00 +0000' --recipient bob@example.test
URL=$MM_ITEM_URL
SHA=$MM_ITEM_SHA
ID=$MM_ITEM_ID

# One headless Chromium run; the profile and everything else stay under $MM_TMP.
chrome() {
  timeout -k 5 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-extensions \
    --ignore-certificate-errors --autoplay-policy=no-user-gesture-required --hide-scrollbars \
    --user-data-dir="$MM_TMP/chromium" "$@" 2>>"$MM_TMP/chromium.log"
}

echo "checking: curl decides page or bytes by Accept, Range and ?download=1"
html_headers() { "${C[@]}" -o "$MM_TMP/page.html" -D "$MM_TMP/page.h" -w '%{http_code} %{content_type}' "$@"; }
[ "$(html_headers -H 'Accept: text/html,application/xhtml+xml,*/*;q=0.8' "$URL")" = "200 text/html; charset=utf-8" ] ||
  mm_fail "Accept: text/html did not give the page"
grep -qi '^content-security-policy: default-src .none.' "$MM_TMP/page.h" || mm_fail "no CSP on the page"
grep -qi '^referrer-policy: no-referrer' "$MM_TMP/page.h" || mm_fail "no Referrer-Policy on the page"
mm_log "Accept: text/html -> the page, with CSP and no-referrer"
for args in "-H Accept:*/*" "-H Accept:text/html -r 0-" "-H Accept:text/html"; do
  u=$URL
  [ "$args" = "-H Accept:text/html" ] && u="$URL?download=1"
  # shellcheck disable=SC2086
  "${C[@]}" -o "$MM_TMP/got" $args "$u" || mm_fail "curl $args $u failed"
  [ "$(sha256sum <"$MM_TMP/got" | cut -d' ' -f1)" = "$SHA" ] || mm_fail "$args $u did not give the media"
done
mm_log "Accept: */*, a Range request, and ?download=1 -> the media bytes"

echo "checking: names and notes are escaped"
grep -q '<h1>Our holiday &lt;b&gt;video&lt;/b&gt;</h1>' "$MM_TMP/page.html" || mm_fail "title not escaped"
grep -q 'Beach &lt;2024&gt; &amp; &quot;friends&quot;.mp4' "$MM_TMP/page.html" || mm_fail "file name not escaped"
grep -q '&lt;script&gt;alert(1)&lt;/script&gt;' "$MM_TMP/page.html" || mm_fail "note not escaped"
if grep -q '<script>alert' "$MM_TMP/page.html"; then mm_fail "raw script from the note on the page"; fi
grep -q "<video id=\"player\" controls preload=\"metadata\" playsinline src=\"/m/$ID/$MM_ITEM_TOKEN\">" "$MM_TMP/page.html" ||
  mm_fail "no <video> with the item URL"
grep -q "href=\"/m/$ID/$MM_ITEM_TOKEN?download=1\" download>Download</a>" "$MM_TMP/page.html" || mm_fail "no Download link"
mm_log "title, file name and note HTML-escaped; <video src> and Download link point at the item"

echo "checking: audio and other types"
head -c 5000 /dev/urandom >"$MM_TMP/song.mp3"
mm_gateway_put "$MM_TMP/song.mp3" --type audio/mpeg --name song.mp3
"${C[@]}" -H 'Accept: text/html' -o "$MM_TMP/audio.html" "$MM_ITEM_URL"
grep -q '<audio id="player" controls' "$MM_TMP/audio.html" || mm_fail "no <audio> for audio/mpeg"
head -c 5000 /dev/urandom >"$MM_TMP/doc.pdf"
mm_gateway_put "$MM_TMP/doc.pdf" --type application/pdf --name doc.pdf
"${C[@]}" -H 'Accept: text/html' -o "$MM_TMP/pdf.html" "$MM_ITEM_URL"
if grep -q -e '<video' -e '<audio' "$MM_TMP/pdf.html"; then mm_fail "a player for application/pdf"; fi
grep -q '5000 bytes' "$MM_TMP/pdf.html" || mm_fail "no size on the pdf page"
mm_log "audio/mpeg -> <audio>; application/pdf -> no player, size shown"

echo "checking: the page in headless Chromium"
chrome --window-size=1000,1100 --virtual-time-budget=3000 --screenshot="$MM_TMP/page.png" "$URL" >/dev/null ||
  mm_fail "chromium --screenshot failed: $(tail -3 "$MM_TMP/chromium.log")"
python3 - "$MM_TMP/page.png" <<'EOF' || mm_fail "the screenshot is not a plausible 1000x1100 PNG"
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", data[16:24])
assert (w, h) == (1000, 1100), (w, h)
assert len(data) > 10000, len(data)   # a blank page compresses to almost nothing
EOF
mm_log "screenshot: $(stat -c %s "$MM_TMP/page.png") byte PNG, 1000x1100"
[ -n "${MM_SCREENSHOT_COPY:-}" ] && cp "$MM_TMP/page.png" "$MM_SCREENSHOT_COPY"

chrome --virtual-time-budget=10000 --dump-dom "$URL#selftest" >"$MM_TMP/dom.html" ||
  mm_fail "chromium --dump-dom failed: $(tail -3 "$MM_TMP/chromium.log")"
grep -q '<h1>Our holiday &lt;b&gt;video&lt;/b&gt;</h1>' "$MM_TMP/dom.html" || mm_fail "rendered page lacks the escaped title"
grep -q 'Hi Bob,' "$MM_TMP/dom.html" || mm_fail "rendered page lacks the note"
grep -q '>Download</a>' "$MM_TMP/dom.html" || mm_fail "rendered page lacks the Download button"
grep -q 'Available until' "$MM_TMP/dom.html" || mm_fail "rendered page lacks the expiry"
if grep -q '<script>alert' "$MM_TMP/dom.html"; then mm_fail "the note's script made it into the DOM"; fi
mm_log "rendered DOM: title, note, expiry, Download button; no injected script"
TITLE=$(sed -n 's:.*<title>\(selftest[^<]*\)</title>.*:\1:p' "$MM_TMP/dom.html")
[[ "$TITLE" =~ ^selftest\ played\ readyState=([0-9])\ currentTime=([0-9.]+)$ ]] ||
  mm_fail "the video did not play: title '$TITLE'"
RS=${BASH_REMATCH[1]}
CT=${BASH_REMATCH[2]}
[ "$RS" -ge 2 ] || mm_fail "video readyState $RS < 2"
awk -v t="$CT" 'BEGIN { exit !(t > 0) }' || mm_fail "video currentTime did not advance ($CT)"
mm_log "the <video> loaded and played: readyState=$RS, currentTime=$CT"
grep -q "GET 206 .* id=${ID:0:8}" "$MM_TMP/mm-gateway.log" || mm_fail "the browser made no Range request"
mm_log "the browser streamed with Range requests ($(grep -c "GET 206 .* id=${ID:0:8}" "$MM_TMP/mm-gateway.log") x 206)"

echo "checking: opening the page is no receipt"
"$(mm_bin mm-gateway)" -c "$MM_CONF" show "$ID" --json >"$MM_TMP/show.json"
grep -q '"state":"active"' "$MM_TMP/show.json" && grep -q '"receipts":0' "$MM_TMP/show.json" ||
  mm_fail "browsing changed the item: $(cat "$MM_TMP/show.json")"
mm_log "item still active, 0 receipts"

mm_stop_program mm-gateway
echo "PASS: gateway_browser"
