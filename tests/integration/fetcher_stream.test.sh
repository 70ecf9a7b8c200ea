#!/usr/bin/env bash
# fetcher_stream.test.sh - fetcher.stream = true with the real programs. The
# video travels through a relay that holds the download to 8 MB/s, so that it
# is still arriving when the client logs in:
# - the mail is listed at once with the size it will have, and the RETR that
#   follows the download gives the client the original attachment, byte for byte;
# - when the sender's gateway is killed in the middle of such a RETR, the RETR is
#   cut short: the client got the true beginning of the mail and nothing else,
#   nothing is deleted upstream, and once the gateway is back the next poll gets
#   the whole mail.
set -euo pipefail
: "${MM_BUILD_DIR:?set MM_BUILD_DIR}" "${MM_SOURCE_DIR:?set MM_SOURCE_DIR}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

check() { echo "check: $*"; }

mm_tmpdir_init
mm_mediamail_start_servers
# Handles name the relay: the gateway and the milter (which writes them)
# restart with gateway.public_url there.
RELAY_PORT=$(mm_free_port)
sed -i "s|^public_url = .*|public_url = https://127.0.0.1:$RELAY_PORT|" "$MM_CONF"
for prog in mm-gateway mm-milter; do
  pid=$(cat "$MM_TMP/$prog.pid")
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && mm_fail "$prog did not stop"
done
mm_start_program mm-gateway
mm_start_program mm-milter
for port in "$MM_GATEWAY_PORT" "$MM_MILTER_PORT" "$MM_FILTER_PORT"; do
  mm_wait_port "$port" 20 || mm_fail "port $port did not come back after the restart"
done
python3 - "$RELAY_PORT" "$MM_GATEWAY_PORT" >"$MM_TMP/relay.log" 2>&1 <<'EOF' &
# A TCP relay (TLS passes through untouched) sending at most 8 MB/s towards the client.
import socket, sys, threading, time
listen, target = int(sys.argv[1]), int(sys.argv[2])
RATE = 8_000_000
def pump(src, dst, limit):
    start, sent = time.monotonic(), 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            sent += len(data)
            if limit:
                ahead = sent / RATE - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen))
srv.listen(16)
while True:
    c, _ = srv.accept()
    try:
        g = socket.create_connection(("127.0.0.1", target))
    except OSError:
        c.close()
        continue
    threading.Thread(target=pump, args=(c, g, False), daemon=True).start()
    threading.Thread(target=pump, args=(g, c, True), daemon=True).start()
EOF
mm_register_pid $!
mm_wait_port "$RELAY_PORT" 20 || mm_fail "relay did not start: $(cat "$MM_TMP/relay.log")"
mm_fetcher_start --set fetcher.stream=true --set fetcher.login_wait=30s
P=pop3://127.0.0.1:$MM_FETCHER_PORT
CACHE=$MM_TMP/fetcher-cache/media

mm_make_video "$MM_TMP/clip.mp4" 40   # three segments: 16 + 16 + 8 MiB
mm_unique_copy "$MM_TMP/clip.mp4" "$MM_TMP/clip2.mp4"
size=$(stat -c %s "$MM_TMP/clip.mp4")

check "a mail whose video is still downloading is listed at once and arrives byte for byte"
sha=$(sha256sum "$MM_TMP/clip.mp4" | cut -c1-64)
mm_swaks_send alice@example.test bob@example.test "Clip one" "the clip" "$MM_TMP/clip.mp4" video/mp4
mm_wait_delivered bob 1 60 || mm_fail "media mail not delivered"
t0=$(date +%s%N)
curl -sS --max-time 60 -u "bob:$MM_POP3_PASS" "$P/" >"$MM_TMP/list1" || mm_fail "LIST failed"
list_ms=$((($(date +%s%N) - t0) / 1000000))
# 40 MiB at 8 MB/s take five seconds: the login did not wait for them.
[ -f "$CACHE/$sha.part" ] && [ ! -f "$CACHE/$sha" ] ||
  mm_fail "the download was over before the mail was listed: not streamed"
have=$(stat -c %s "$CACHE/$sha.part")
[ "$(grep -c '^[0-9]' "$MM_TMP/list1")" -eq 1 ] || mm_fail "LIST: $(cat "$MM_TMP/list1")"
listed_size=$(awk '$1 == 1 { print $2 }' "$MM_TMP/list1" | tr -d '\r')
curl -sS --max-time 120 -u "bob:$MM_POP3_PASS" "$P/1" -o "$MM_TMP/one.eml" || mm_fail "RETR failed"
got_size=$(stat -c %s "$MM_TMP/one.eml")
# curl strips the dot-stuffing and the final dot; the octets are the listed ones.
[ "$got_size" -eq "$listed_size" ] || mm_fail "RETR gave $got_size octets, LIST said $listed_size"
mm_extract_attachment "$MM_TMP/one.eml" clip.mp4 "$MM_TMP/one.mp4"
[ "$(sha256sum "$MM_TMP/one.mp4" | cut -c1-64)" = "$sha" ] || mm_fail "the streamed attachment differs"
grep -q "streaming .* while its media download" "$MM_TMP/mm-fetcher.log" || mm_fail "no streaming logged"
mm_log "listed after $list_ms ms with $have of $size bytes downloaded; RETR of $listed_size octets, attachment byte-identical"
# The presented file is kept: a second RETR is the same octets, from the cache.
curl -sS --max-time 60 -u "bob:$MM_POP3_PASS" "$P/1" -o "$MM_TMP/one-again.eml" || mm_fail "second RETR failed"
cmp -s "$MM_TMP/one.eml" "$MM_TMP/one-again.eml" || mm_fail "the second RETR differs"
mm_log "a second RETR gives the same octets"

check "the sender's gateway killed in the middle of a streamed RETR: cut short, nothing lost"
sha2=$(sha256sum "$MM_TMP/clip2.mp4" | cut -c1-64)
mm_swaks_send alice@example.test bob@example.test "Clip two" "the clip again" "$MM_TMP/clip2.mp4" video/mp4
mm_wait_delivered bob 2 60 || mm_fail "second media mail not delivered"
gw_pid=$(cat "$MM_TMP/mm-gateway.pid")
rc=0
( curl -sS --max-time 120 -u "bob:$MM_POP3_PASS" "$P/2" -o "$MM_TMP/two-cut.eml" 2>"$MM_TMP/curl-cut.err" ) &
curl_pid=$!
# Kill the gateway once the download is past its first segment (so the RETR
# is under way) and far enough from its end that socket buffers cannot hold the rest.
for _ in $(seq 1 600); do
  part=$(stat -c %s "$CACHE/$sha2.part" 2>/dev/null || echo 0)
  [ "$part" -ge $((20 * 1048576)) ] && break
  sleep 0.02
done
[ "$part" -ge $((20 * 1048576)) ] || mm_fail "the second download never got under way ($part bytes)"
kill -9 "$gw_pid"
# curl takes the hang-up for the end of the message (exit 0): that the answer
# is short, and of what, is checked below against the whole mail.
wait "$curl_pid" || rc=$?
grep -q "message 2 cut short" "$MM_TMP/mm-fetcher.log" || mm_fail "the RETR was not cut short"
[ "$(mm_count_messages bob)" -eq 2 ] || mm_fail "a message went upstream: $(mm_count_messages bob) left"
cut_size=$(stat -c %s "$MM_TMP/two-cut.eml" 2>/dev/null || echo 0)
mm_log "gateway killed at $part bytes: curl exit $rc with $cut_size octets, both mails still upstream"

mm_start_program mm-gateway
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not restart"
got=
for _ in $(seq 1 40); do
  if curl -sS --max-time 120 -u "bob:$MM_POP3_PASS" "$P/2" -o "$MM_TMP/two.eml" 2>/dev/null &&
    mm_extract_attachment "$MM_TMP/two.eml" clip2.mp4 "$MM_TMP/two.mp4" 2>/dev/null; then
    got=1
    break
  fi
  sleep 3
done
[ -n "$got" ] || mm_fail "the second mail never arrived whole: $(tail -5 "$MM_TMP/mm-fetcher.log")"
[ "$(sha256sum "$MM_TMP/two.mp4" | cut -c1-64)" = "$sha2" ] || mm_fail "the second attachment differs"
# What the cut RETR gave was the beginning of this very mail: no byte that is not its.
cmp -s -n "$cut_size" "$MM_TMP/two-cut.eml" "$MM_TMP/two.eml" || mm_fail "the cut RETR gave bytes the mail does not have"
[ "$cut_size" -lt "$(stat -c %s "$MM_TMP/two.eml")" ] || mm_fail "the cut RETR was not short"
mm_log "after the restart the whole mail arrived (attachment byte-identical); the cut one was its first $cut_size octets"
echo "fetcher_stream: 2 cases passed"
