#!/usr/bin/env bash
# gateway.test.sh - mm-gateway end to end with real curl over pinned TLS: whole
# file, HEAD, byte ranges (RFC 9110), 416, uniform 404s, path tricks, wrong pin,
# expiry, clean stop. Needs MM_BUILD_DIR; starts and stops everything itself.
set -euo pipefail

BUILD=${MM_BUILD_DIR:?MM_BUILD_DIR must point at the build directory}
GW=$BUILD/gateway/mm-gateway
[ -x "$GW" ] || { echo "FAIL: $GW not built"; exit 1; }

T=$(mktemp -d /tmp/mm-gateway-test.XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*"
    [ -f "$T/gw.log" ] && { echo "--- gateway log"; tail -n 30 "$T/gw.log"; }
    exit 1
}
ok() { echo "ok: $*"; }

# --- the TLS identity is the same when two programs create it at once
echo "checking: two processes racing to create the TLS key agree on one pin"
head -c 1000 /dev/urandom >"$T/small.bin"
RACE=(--set "store.dir=$T/race" --set gateway.public_url=https://127.0.0.1:1)
"$GW" "${RACE[@]}" put "$T/small.bin" >"$T/race1.txt" &
R1=$!
"$GW" "${RACE[@]}" put "$T/small.bin" >"$T/race2.txt" &
R2=$!
wait $R1 || fail "racing put 1 failed"
wait $R2 || fail "racing put 2 failed"
P1=$(awk '/^pin:/{print $2}' "$T/race1.txt")
P2=$(awk '/^pin:/{print $2}' "$T/race2.txt")
[ -n "$P1" ] && [ "$P1" = "$P2" ] || fail "pins differ: $P1 vs $P2"
[ "$(ls "$T/race/tls")" = "$(printf 'cert.pem\nkey.pem')" ] || fail "stray files in tls/: $(ls "$T/race/tls")"
ok "one pin $P1"

# --- start the gateway on a free high port of 127.0.0.1
start_gateway() {
    local try
    for try in 1 2 3 4 5 6 7 8 9 10; do
        PORT=$((20000 + RANDOM % 40000))
        BASE=https://127.0.0.1:$PORT
        OPTS=(--set "store.dir=$T/store" --set "gateway.listen=127.0.0.1:$PORT" --set "gateway.public_url=$BASE"
              --set gateway.threads=4 --set gateway.timeout=10s)
        "$GW" "${OPTS[@]}" serve 2>"$T/gw.log" &
        PID=$!
        local i
        for i in $(seq 1 50); do
            if grep -q "listening on" "$T/gw.log"; then return 0; fi
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
        done
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=
    done
    fail "gateway did not start"
}
echo "checking: mm-gateway starts and prints its address and pin"
start_gateway
PIN=$(awk '/pin sha256/{print $3}' "$T/gw.log")
[ -n "$PIN" ] || fail "no pin printed"
ok "listening on 127.0.0.1:$PORT, pin $PIN"

# --- store a file bigger than the server's buffer, with a non-ASCII name
SIZE=3000017
head -c $SIZE /dev/urandom >"$T/media.bin"
WANT=$(sha256sum "$T/media.bin" | cut -d' ' -f1)
"$GW" "${OPTS[@]}" put "$T/media.bin" --type video/mp4 --name "Ferien Sommer ü.mp4" >"$T/put.txt" || fail "put failed"
URL=$(awk '/^url:/{print $2}' "$T/put.txt")
[ "$(awk '/^pin:/{print $2}' "$T/put.txt")" = "$PIN" ] || fail "put prints another pin than the server"
[ "$(awk '/^sha256:/{print $2}' "$T/put.txt")" = "$WANT" ] || fail "put reports a wrong sha256"
[[ "$URL" =~ ^$BASE/m/([0-9a-f]{32})/([0-9a-f]{32})$ ]] || fail "URL has the wrong form: $URL"
ID=${BASH_REMATCH[1]}
TOKEN=${BASH_REMATCH[2]}
ok "put gives $BASE/m/<id>/<token>"

C=(curl -sS --max-time 30 -k --pinnedpubkey "$PIN")
status() { "${C[@]}" -o "$T/body" -D "$T/headers" -w '%{http_code}' "$@"; }
header() { awk -v h="$1" 'BEGIN { h = tolower(h) ":" } tolower($1) == h && !done { sub(/^[^ ]* /, ""); sub(/\r$/, ""); print; done = 1 }' "$T/headers"; }

echo "checking: full GET"
[ "$(status "$URL")" = 200 ] || fail "GET not 200"
[ "$(sha256sum <"$T/body" | cut -d' ' -f1)" = "$WANT" ] || fail "GET body sha256 differs"
ok "200, sha256 matches"

echo "checking: GET with a trailing file name segment"
[ "$(status "$URL/Ferien.mp4")" = 200 ] && cmp -s "$T/body" "$T/media.bin" || fail "GET .../name failed"
ok "200, same bytes"

echo "checking: HEAD headers"
[ "$(status -I "$URL")" = 200 ] || fail "HEAD not 200"
# curl -I writes the header block as its output: anything more would be a body.
cmp -s "$T/body" "$T/headers" || fail "HEAD has a body"
[ "$(header Content-Length)" = $SIZE ] || fail "Content-Length $(header Content-Length)"
[ "$(header Content-Type)" = video/mp4 ] || fail "Content-Type $(header Content-Type)"
[ "$(header ETag)" = "\"$WANT\"" ] || fail "ETag $(header ETag)"
[ "$(header Accept-Ranges)" = bytes ] || fail "Accept-Ranges $(header Accept-Ranges)"
CD=$(header Content-Disposition)
[ "$CD" = "attachment; filename=\"Ferien Sommer __.mp4\"; filename*=UTF-8''Ferien%20Sommer%20%C3%BC.mp4" ] ||
    fail "Content-Disposition $CD"
ok "Content-Length, Content-Type, ETag, Accept-Ranges, Content-Disposition"

range_check() {   # range_check RANGE FIRST COUNT
    local code
    code=$(status -H "Range: bytes=$1" "$URL")
    [ "$code" = 206 ] || fail "Range $1: status $code"
    dd if="$T/media.bin" of="$T/want" bs=64K iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none
    cmp -s "$T/body" "$T/want" || fail "Range $1: wrong bytes"
    [ "$(header Content-Range)" = "bytes $2-$(($2 + $3 - 1))/$SIZE" ] || fail "Range $1: Content-Range $(header Content-Range)"
    [ "$(header Content-Length)" = "$3" ] || fail "Range $1: Content-Length $(header Content-Length)"
    ok "Range bytes=$1 -> 206, $3 bytes from $2"
}
echo "checking: byte ranges"
range_check 0-0 0 1
range_check 100-199 100 100
range_check 262100-800000 262100 537901
range_check "$((SIZE - 10))-" $((SIZE - 10)) 10
range_check "$((SIZE - 10))-99999999999" $((SIZE - 10)) 10
range_check -1000 $((SIZE - 1000)) 1000
range_check -99999999 0 $SIZE

echo "checking: unsatisfiable, multiple and malformed ranges"
[ "$(status -H "Range: bytes=$SIZE-" "$URL")" = 416 ] || fail "Range past the end not 416"
[ "$(header Content-Range)" = "bytes */$SIZE" ] || fail "416 Content-Range $(header Content-Range)"
ok "bytes=$SIZE- -> 416, Content-Range bytes */$SIZE"
[ "$(status -H "Range: bytes=-0" "$URL")" = 416 ] || fail "bytes=-0 not 416"
ok "bytes=-0 -> 416"
for r in "bytes=0-1,5-6" "bytes=x-y" "bytes=10-5" "items=0-1" "bytes=1-2-3"; do
    [ "$(status -H "Range: $r" "$URL")" = 200 ] && cmp -s "$T/body" "$T/media.bin" || fail "Range $r not a whole 200"
    ok "Range $r -> 200 whole file"
done
[ "$(status -H "Range: bytes=0-9" -H 'If-Range: "other"' "$URL")" = 200 ] || fail "If-Range mismatch not 200"
ok "If-Range with another ETag -> 200"

echo "checking: refusals look alike"
OTHER=$(printf '%s' "$TOKEN" | tr '0-9a-f' '1-9a-f0')
[ "$(status "$BASE/m/$ID/$OTHER")" = 404 ] || fail "wrong token not 404"
cp "$T/body" "$T/body.wrongtoken"
grep -iv '^date:' "$T/headers" >"$T/h.wrongtoken"
for path in "/m/00000000000000000000000000000000/$TOKEN" "/m/$ID" "/m/$ID/" "/m/$ID/${TOKEN:0:31}" \
    "/m/$ID/$TOKEN/a/b" "/" "/m/${ID^^}/$TOKEN" "/etc/passwd"; do
    [ "$(status "$BASE$path")" = 404 ] || fail "$path not 404"
    cmp -s "$T/body" "$T/body.wrongtoken" || fail "$path: 404 body differs from wrong-token 404"
    grep -iv '^date:' "$T/headers" | cmp -s - "$T/h.wrongtoken" || fail "$path: 404 headers differ"
done
ok "wrong token, unknown id, short/long/uppercase paths: identical 404s"

echo "checking: path traversal"
for path in "/m/../../etc/passwd" "/m/%2e%2e/%2e%2e/etc/passwd" "/m/$ID/../../../etc/passwd" \
    "/m/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd" "/m/$ID/$TOKEN/../../../../etc/passwd" "/m/$ID/%2e%2e/$TOKEN"; do
    [ "$(status --path-as-is "$BASE$path")" = 404 ] || fail "$path not 404"
    cmp -s "$T/body" "$T/body.wrongtoken" || fail "$path: body differs"
done
ok "traversal attempts -> 404"

echo "checking: other methods"
[ "$(status -X POST "$URL")" = 405 ] || fail "POST not 405"
[ "$(header Allow)" = "GET, HEAD" ] || fail "Allow: $(header Allow)"
[ "$(status -X DELETE "$BASE/anything")" = 405 ] || fail "DELETE not 405"
ok "POST, DELETE -> 405 with Allow: GET, HEAD"

echo "checking: TLS key pinning"
BADPIN="sha256//$(head -c 32 /dev/urandom | base64)"
if curl -sS --max-time 10 -k --pinnedpubkey "$BADPIN" -o /dev/null "$URL" 2>"$T/curl.err"; then
    fail "curl with a wrong pin succeeded"
fi
ok "wrong pin -> curl refuses ($(head -n1 "$T/curl.err"))"
curl -sS --max-time 30 --cacert "$T/store/tls/cert.pem" -o "$T/body" "$URL" || fail "--cacert cert.pem failed"
cmp -s "$T/body" "$T/media.bin" || fail "--cacert GET body differs"
ok "self-signed cert verifies with --cacert (IP subjectAltName)"
if curl -sS --max-time 10 -o /dev/null "$URL" 2>/dev/null; then
    fail "curl without -k or pin accepted the self-signed cert"
fi
ok "default CA verification refuses the self-signed cert"
if curl -sS --max-time 10 -k --tls-max 1.1 -o /dev/null "$URL" 2>/dev/null; then
    fail "TLS 1.1 accepted"
fi
ok "TLS 1.1 refused"

echo "checking: expired items"
"$GW" "${OPTS[@]}" --set gateway.retention=0s put "$T/small.bin" >"$T/put0.txt" || fail "put (retention 0s) failed"
URL0=$(awk '/^url:/{print $2}' "$T/put0.txt")
[ "$(status "$URL0")" = 404 ] || fail "expired item not 404"
cmp -s "$T/body" "$T/body.wrongtoken" || fail "expired 404 body differs"
ok "expired -> the same 404"

echo "checking: log lines"
grep -q "GET 206 bytes=100 id=${ID:0:8}" "$T/gw.log" || fail "no log line for the 206"
if grep -q "$TOKEN" "$T/gw.log"; then fail "token in the log"; fi
ok "one line per request, id prefix, no token"

echo "checking: SIGTERM stops the gateway"
kill -TERM "$PID"
for i in $(seq 1 50); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$PID" 2>/dev/null && fail "gateway still running 5 s after SIGTERM"
wait "$PID" && RC=0 || RC=$?
PID=
[ "$RC" = 0 ] || fail "gateway exited with $RC"
ok "stopped, exit status 0"

echo "PASS: gateway"
