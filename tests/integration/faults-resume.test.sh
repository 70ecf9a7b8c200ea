#!/usr/bin/env bash
# faults-resume.test.sh - kill -9 of mm-gateway in the middle of a large transfer
# (MM_RESUME_MIB, default 300 MiB): after a restart, mm-fetcher resumes its .part
# file with a Range request (the gateway answers 206 for the rest only), and the
# attachment the client finally gets is byte-identical.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mib=${MM_RESUME_MIB:-300}
mm_tmpdir_init
mm_mediamail_start
mm_log "gateway, milter, Postfix, Dovecot and fetcher up"

mm_random_mp4 "$MM_TMP/big.mp4" $((mib * 1048576))
size=$(stat -c %s "$MM_TMP/big.mp4")
sha=$(sha256sum "$MM_TMP/big.mp4" | cut -d' ' -f1)
mm_make_media_mail "$MM_TMP/big.mp4" "$MM_TMP/big.eml" video/mp4 "Big one"
mm_smtp_send_big alice@example.test bob@example.test "$MM_TMP/big.eml"
rm -f "$MM_TMP/big.eml"
mm_wait_delivered bob 1 600 || mm_fail "the media mail was not delivered"
mm_log "$size bytes detached and stored; the mail is delivered"

# Watch the fetcher's .part file and kill the gateway once 10-90 % of it is there.
gw_pid=$(cat "$MM_TMP/mm-gateway.pid")
python3 - "$MM_TMP/fetcher-cache" "$sha.part" "$size" "$gw_pid" >"$MM_TMP/killer.out" 2>&1 <<'PY' &
import os, signal, sys, time
root, name, size, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
end = time.time() + 300
while time.time() < end:
    for d, _, files in os.walk(root):
        if name in files:
            try:
                have = os.stat(os.path.join(d, name)).st_size
            except FileNotFoundError:
                continue
            if size // 10 <= have < size * 9 // 10:   # really in the middle
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
                print(have, os.stat(os.path.join(d, name)).st_size)
                sys.exit(0)
    time.sleep(0.001)
print("never saw a partial .part")
sys.exit(1)
PY
killer=$!
mm_fetchmail_via_fetcher bob "$MM_TMP/fetched"   # starts the background download
wait "$killer" || mm_fail "could not catch the transfer midway: $(cat "$MM_TMP/killer.out")"
read -r seen kept <"$MM_TMP/killer.out"
kill -0 "$gw_pid" 2>/dev/null && mm_fail "gateway survived kill -9"
mm_log "mm-gateway killed with SIGKILL at .part = $seen bytes of $size ($kept kept)"
[ -z "$(mm_find_by_subject "$MM_TMP/fetched" "Big one" || true)" ] || mm_fail "the mail was presented before its media was complete"

restart_line=$(($(wc -l <"$MM_TMP/mm-gateway.log") + 1))
mm_start_program mm-gateway
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not restart: $(tail -5 "$MM_TMP/mm-gateway.log")"
mm_log "mm-gateway restarted on the same store and port"

got=
for _ in $(seq 1 60); do
  mm_fetchmail_via_fetcher bob "$MM_TMP/fetched"
  got=$(mm_find_by_subject "$MM_TMP/fetched" "Big one") || got=
  [ -n "$got" ] && break
  sleep 3
done
[ -n "$got" ] || mm_fail "the mail never arrived after the restart: $(tail -5 "$MM_TMP/mm-fetcher.log")"
after=$(tail -n +"$restart_line" "$MM_TMP/mm-gateway.log")
echo "$after" | grep -q 'GET 206 ' || mm_fail "no 206 answer after the restart: $(echo "$after" | grep GET | head -3)"
resumed=$(echo "$after" | grep -m1 'GET 206 ' | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
echo "$after" | grep -q 'GET 200 ' && mm_fail "the fetcher started over with a whole-file GET"
[ -n "$resumed" ] && [ "$resumed" -lt "$size" ] || mm_fail "the 206 carried $resumed bytes, not just the rest"
mm_log "fetcher resumed with a Range request: 206 with $resumed bytes (the rest), no whole-file GET"
mm_extract_attachment "$got" big.mp4 "$MM_TMP/big.back"
[ "$(sha256sum "$MM_TMP/big.back" | cut -d' ' -f1)" = "$sha" ] || mm_fail "the resumed file differs"
mm_log "the attachment presented to fetchmail is byte-identical (sha256 $sha)"
echo "faults-resume: 1 case passed"
