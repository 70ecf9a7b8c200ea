#!/usr/bin/env bash
# gateway_abuse.test.sh - mm-gateway facing the internet's idle and slow clients:
# 1,000 idle TCP sockets plus 200 stalled in the TLS handshake (from 64 source
# addresses, reopened when closed), then 64 TLS clients reading 2 KB every 5 s;
# meanwhile a small GET must start within 2 s and a 64 MiB download must arrive
# whole. Slow readers are cut after gateway.min_rate_window, one address gets
# gateway.max_transfers_per_ip transfers, and afterwards threads and file
# descriptors are back where they were. Attackers: lib/gateway_attack.py.
set -euo pipefail
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

ATTACK=$MM_SOURCE_DIR/tests/integration/lib/gateway_attack.py
WINDOW=3          # gateway.min_rate_window for this run, seconds
PER_ADDR=16       # gateway.max_transfers_per_ip for this run
SLOW=64           # slow readers, from SLOW / PER_ADDR addresses

mm_tmpdir_init
mm_write_conf
# Every other key keeps its default (gateway.threads 16, header_timeout 10s, ...).
mm_start_program mm-gateway --set gateway.min_rate_window=${WINDOW}s \
  --set gateway.max_transfers_per_ip=$PER_ADDR serve
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
GW=$(cat "$MM_TMP/mm-gateway.pid")
PIN=$(awk '/pin sha256/{print $3; exit}' "$MM_TMP/mm-gateway.log")
C=(curl -sS --max-time 30 -k --pinnedpubkey "$PIN")

head -c 1000 /dev/urandom >"$MM_TMP/small.bin"
mm_gateway_put "$MM_TMP/small.bin" --type video/mp4
SMALL=$MM_ITEM_URL
head -c $((64 * 1024 * 1024)) /dev/urandom >"$MM_TMP/big.bin"
mm_gateway_put "$MM_TMP/big.bin" --type video/mp4
BIG=$MM_ITEM_URL
BIG_SHA=$MM_ITEM_SHA

threads() { awk '/^Threads:/{print $2}' "/proc/$GW/status"; }
fds() { find "/proc/$GW/fd" -mindepth 1 | wc -l; }
rss_kb() { awk '/^RssAnon:/{print $2}' "/proc/$GW/status"; }

# The service as a normal client sees it: first byte of a small item under 2 s,
# and a 64 MiB item whole.
service_ok() {
  local what=$1 ttfb got
  ttfb=$("${C[@]}" -o /dev/null -w '%{http_code} %{time_starttransfer}' "$SMALL") || ttfb="failed $ttfb"
  awk -v t="$ttfb" 'BEGIN { split(t, a, " "); exit !(a[1] == 200 && a[2] < 2) }' ||
    mm_fail "$what: small GET: status and first byte after $ttfb s, want 200 within 2 s"
  got=$("${C[@]}" -o "$MM_TMP/big.out" -w '%{http_code} %{time_total}' "$BIG") || mm_fail "$what: 64 MiB GET failed ($got)"
  [ "$(sha256sum <"$MM_TMP/big.out" | cut -d' ' -f1)" = "$BIG_SHA" ] || mm_fail "$what: 64 MiB GET: wrong SHA-256"
  rm -f "$MM_TMP/big.out"
  mm_log "$what: small GET first byte after ${ttfb#* } s; 64 MiB whole, SHA-256 equal, ${got#* } s"
}

# Wait up to 30 s for file $1 (the attacker's "ready").
wait_file() {
  local i
  for i in $(seq 1 300); do
    [ -e "$1" ] && return 0
    sleep 0.1
  done
  mm_fail "attacker not ready after 30 s: $(cat "$2" 2>/dev/null)"
}

service_ok "before any attack"
BASE_T=$(threads)
BASE_F=$(fds)
BASE_M=$(rss_kb)
mm_log "baseline: $BASE_T threads, $BASE_F fds, RssAnon $BASE_M kB"

echo "checking: 1,000 idle TCP sockets and 200 stalled TLS handshakes"
python3 "$ATTACK" idle "$MM_GATEWAY_PORT" 1000 200 64 "$MM_TMP/idle.ready" "$MM_TMP/idle.stop" 60 \
  >"$MM_TMP/idle.out" 2>&1 &
IDLE=$!
wait_file "$MM_TMP/idle.ready" "$MM_TMP/idle.out"
sleep 0.5
HELD=$(fds)
[ "$HELD" -ge $((BASE_F + 1000)) ] || mm_fail "the gateway holds only $HELD fds: the attack is not running"
mm_log "the gateway holds $HELD fds, $(threads) threads"
service_ok "under 1,200 idle connections"
touch "$MM_TMP/idle.stop"
wait "$IDLE" || mm_fail "idle attacker failed: $(cat "$MM_TMP/idle.out")"
mm_log "idle attacker: $(cat "$MM_TMP/idle.out")"

echo "checking: $SLOW slow TLS readers of the 64 MiB item"
START=$(date +%s%N)
python3 "$ATTACK" slow "$MM_GATEWAY_PORT" "$BIG" "$SLOW" $((SLOW / PER_ADDR)) "$PER_ADDR" \
  "$MM_TMP/slow.ready" "$MM_TMP/slow.stop" 40 >"$MM_TMP/slow.out" 2>&1 &
SLOWPID=$!
wait_file "$MM_TMP/slow.ready" "$MM_TMP/slow.out"
service_ok "under $SLOW slow readers"
wait "$SLOWPID" || mm_fail "slow attacker failed: $(cat "$MM_TMP/slow.out")"
OUT=$(cat "$MM_TMP/slow.out")
SECS=$((($(date +%s%N) - START) / 1000000000))
read -r _ started _ refused _ cut _ last <<<"$OUT"
[ "$started" = "$SLOW" ] || mm_fail "only $started of $SLOW slow readers got their 200: $OUT"
[ "$refused" = yes ] || mm_fail "transfer $((PER_ADDR + 1)) from one address was not refused with 503: $OUT"
[ "$cut" = "$SLOW" ] || mm_fail "only $cut of $SLOW slow readers were cut: $OUT"
# Cut at the end of the first window they fall short in: the first may still
# count the bytes the socket buffers took.
awk -v t="$last" -v w="$WINDOW" 'BEGIN { exit !(t < 3 * w + 5) }' || mm_fail "slow readers held on for $last s"
mm_log "$SLOW slow readers: $started started, the $((PER_ADDR + 1))th from one address refused (503), all cut, the last after $last s (window $WINDOW s); $SECS s in all"

echo "checking: the attack leaves nothing behind"
for i in $(seq 1 100); do
  [ "$(fds)" -le $((BASE_F + 2)) ] && [ "$(threads)" -le "$BASE_T" ] && break
  sleep 0.1
done
T=$(threads)
F=$(fds)
M=$(rss_kb)
[ "$F" -le $((BASE_F + 2)) ] || mm_fail "$F fds after the attack, $BASE_F before"
[ "$T" -le "$BASE_T" ] || mm_fail "$T threads after the attack, $BASE_T before"
# malloc keeps some freed memory; a leak of the attack's size would be far more.
[ "$M" -le $((BASE_M + 64 * 1024)) ] || mm_fail "RssAnon $M kB after the attack, $BASE_M kB before"
mm_log "after: $T threads, $F fds, RssAnon $M kB"
service_ok "after the attacks"

mm_stop_program mm-gateway
echo "PASS: gateway_abuse"
