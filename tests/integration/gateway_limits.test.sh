#!/usr/bin/env bash
# gateway_limits.test.sh - mm-gateway under hostile or heavy clients: over-long
# request lines and header fields, too many and too large headers (4xx, server
# unharmed), slow-loris clients cut after gateway.header_timeout while a normal
# download still goes through, the gateway.max_connections cap, and 100
# concurrent downloads of one item, each verified by SHA-256.
set -euo pipefail
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
mm_write_conf
start_gateway() {
  mm_start_program mm-gateway "$@" serve
  mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
}
start_gateway --set gateway.threads=4 --set gateway.header_timeout=3s
PIN=$(awk '/pin sha256/{print $3; exit}' "$MM_TMP/mm-gateway.log")
C=(curl -sS --max-time 60 -k --pinnedpubkey "$PIN")
code() { "${C[@]}" -o "$MM_TMP/body" -w '%{http_code}' "$@"; }

head -c 3000000 /dev/urandom >"$MM_TMP/m.bin"
mm_gateway_put "$MM_TMP/m.bin" --type video/mp4
URL=$MM_ITEM_URL
SHA=$MM_ITEM_SHA
[ "$(code "$URL")" = 200 ] || mm_fail "plain GET not 200"

echo "checking: over-long and too many header fields -> 4xx, and the server carries on"
long() { head -c "$1" /dev/zero | tr '\0' a; }
H=()
for i in $(seq 1 120); do H+=(-H "X-Filler-$i: $i"); done
checks=(
  "URI of 20000 bytes|$URL/$(long 20000)"
  "header value of 9000 bytes|-H|X-Long: $(long 9000)|$URL"
  "header name of 300 bytes|-H|$(long 300): x|$URL"
  "5 header values of 4000 bytes (20 KB in all)|-H|X-A: $(long 4000)|-H|X-B: $(long 4000)|-H|X-C: $(long 4000)|-H|X-D: $(long 4000)|-H|X-E: $(long 4000)|$URL"
)
for c in "${checks[@]}"; do
  IFS='|' read -r -a parts <<<"$c"
  name=${parts[0]}
  got=$(code "${parts[@]:1}") || true
  [[ "$got" =~ ^4[0-9][0-9]$ ]] || mm_fail "$name: status $got, want 4xx"
  mm_log "$name -> $got"
done
got=$(code "${H[@]}" "$URL") || true
[[ "$got" =~ ^4[0-9][0-9]$ ]] || mm_fail "120 header fields: status $got, want 4xx"
mm_log "120 header fields -> $got"
[ "$(code "$URL")" = 200 ] && cmp -s "$MM_TMP/body" "$MM_TMP/m.bin" || mm_fail "server hurt by the bad requests"
mm_log "a normal GET still works"

echo "checking: slow-loris clients are cut, a normal download still goes through"
# 4 raw TCP clients trickling TLS bytes, 4 TLS clients trickling a request head
# and 4 trickling a receipt body, one byte per second each: three times more
# than the 4 worker threads.
python3 - "$MM_GATEWAY_PORT" 4 4 4 40 >"$MM_TMP/loris.out" 2>&1 <<'EOF' &
import socket, ssl, sys, threading, time
port, raw, tls, body, secs = (int(a) for a in sys.argv[1:])
results = []
def loris(kind):
    start = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if kind in ("tls", "body"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
            data = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
        if kind == "body":
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 4000\r\n\r\n")
            data = b"a" * 200
        else:
            data = b"\x16\x03\x01\x02\x00" + b"\x01" * 300   # the start of a ClientHello, never finished
        s.settimeout(2)
        for i in range(secs):
            s.sendall(data[i % len(data):i % len(data) + 1])
            time.sleep(1)
        results.append((kind, "survived", time.monotonic() - start))
    except (OSError, ssl.SSLError) as e:
        results.append((kind, "cut", time.monotonic() - start))
threads = [threading.Thread(target=loris, args=(k,)) for k in ["raw"] * raw + ["tls"] * tls + ["body"] * body]
for t in threads: t.start()
for t in threads: t.join()
for r in results: print("%s %s %.1f" % r)
EOF
LORIS=$!
sleep 1.5
START=$(date +%s%N)
[ "$(code "$URL")" = 200 ] && cmp -s "$MM_TMP/body" "$MM_TMP/m.bin" || mm_fail "download failed during the slow-loris attack"
MS=$((($(date +%s%N) - START) / 1000000))
[ "$MS" -lt 10000 ] || mm_fail "download took $MS ms during the slow-loris attack"
mm_log "download during 12 slow clients (4 workers): 200, same bytes, $MS ms"
wait "$LORIS" || mm_fail "slow-loris driver failed: $(cat "$MM_TMP/loris.out")"
CUT=$(grep -c ' cut ' "$MM_TMP/loris.out" || true)
[ "$CUT" = 12 ] || mm_fail "only $CUT of 12 slow clients were cut: $(cat "$MM_TMP/loris.out")"
MAXT=$(awk '$2 == "cut" && $3 > m {m = $3} END {print m + 0}' "$MM_TMP/loris.out")
awk -v t="$MAXT" 'BEGIN { exit !(t < 15) }' || mm_fail "slow clients held on for up to $MAXT s"
mm_log "all 12 slow clients cut, the last after $MAXT s (header_timeout 3 s)"

echo "checking: 100 concurrent downloads of the same item, each verified"
PIDS=()
for i in $(seq 1 100); do
  "${C[@]}" -o "$MM_TMP/c$i" "$URL" &
  PIDS+=($!)
done
FAILED=0
for p in "${PIDS[@]}"; do wait "$p" || FAILED=$((FAILED + 1)); done
[ "$FAILED" = 0 ] || mm_fail "$FAILED of 100 concurrent downloads failed"
BAD=$(for i in $(seq 1 100); do sha256sum <"$MM_TMP/c$i" | cut -d' ' -f1; done | grep -vc "^$SHA\$" || true)
[ "$BAD" = 0 ] || mm_fail "$BAD of 100 concurrent downloads had a wrong SHA-256"
rm -f "$MM_TMP"/c[0-9]*
mm_log "100 concurrent downloads: all 200, all SHA-256 $SHA"

echo "checking: gateway.max_connections caps connections served plus waiting"
mm_stop_program mm-gateway
start_gateway --set gateway.threads=2 --set gateway.max_connections=4 --set gateway.header_timeout=4s
python3 - "$MM_GATEWAY_PORT" 12 >"$MM_TMP/cap.out" <<'EOF' || mm_fail "connection cap check failed: $(cat "$MM_TMP/cap.out")"
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    time.sleep(0.05)
time.sleep(1)
closed = 0
for s in socks:
    s.settimeout(0.2)
    try:
        if s.recv(1) == b"":
            closed += 1
    except socket.timeout:
        pass
    except OSError:
        closed += 1
print("closed at once:", closed, "of", n)
# 2 served + 2 waiting may stay open; everything beyond the cap is closed.
sys.exit(0 if closed >= n - 4 and closed < n else 1)
EOF
mm_log "$(cat "$MM_TMP/cap.out") (cap 4)"
sleep 4.5
[ "$(code "$URL")" = 200 ] || mm_fail "GET after the cap test failed"
mm_log "once the idle connections are cut, downloads work again"

mm_stop_program mm-gateway
echo "PASS: gateway_limits"
