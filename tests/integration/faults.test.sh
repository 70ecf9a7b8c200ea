#!/usr/bin/env bash
# faults.test.sh - "nothing lost, nothing altered" under faults, with the real
# programs: (a) a gateway serving corrupted bytes is never presented to the POP3
# client; (b) the upstream POP3 server dies mid-session: -ERR, nothing deleted;
# (c) the store's file system is full: the milter tempfails, nothing half-written.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init

# Random bytes mailed as video/mp4: the milter detaches by type, and no ffmpeg run
# is needed. SIZE in KiB.
make_media() { mm_random_mp4 "$1" $(($2 * 1024)); }

# The object file of the store holding SHA.
object_of() { echo "$MM_STORE/objects/${1:0:2}/$1"; }

mm_mediamail_start
mm_log "gateway, milter, Postfix, Dovecot and fetcher up"

# ---- (a) corrupted bytes from the gateway --------------------------------------
make_media "$MM_TMP/clip.mp4" 3072
sha=$(sha256sum "$MM_TMP/clip.mp4" | cut -d' ' -f1)
mm_swaks_send alice@example.test bob@example.test "Corrupt me" "see attached" "$MM_TMP/clip.mp4" video/mp4
mm_wait_delivered bob 1 120 || mm_fail "the media mail was not delivered"
obj=$(object_of "$sha")
[ -f "$obj" ] || mm_fail "no store object $obj for the sent clip"
# Flip one byte in the middle of the stored object: the gateway still serves it,
# but its SHA-256 no longer matches the handle in the mail.
python3 - "$obj" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0xFF]))
PY
# The fetcher downloads in the background and holds the mail back meanwhile;
# poll until it has tried the corrupt copy (log: SHA-256 mismatch).
mm_fetchmail_via_fetcher bob "$MM_TMP/fetched-a"
for _ in $(seq 1 60); do
  grep -q 'SHA-256 mismatch' "$MM_TMP/mm-fetcher.log" && break
  sleep 1
done
grep -q 'SHA-256 mismatch' "$MM_TMP/mm-fetcher.log" || mm_fail "fetcher never reported the corrupt download"
mm_fetchmail_via_fetcher bob "$MM_TMP/fetched-a"
n=$(find "$MM_TMP/fetched-a" -type f | wc -l)
[ "$n" -eq 0 ] || mm_fail "fetchmail got $n message(s) although the media was corrupt"
[ "$(mm_count_messages bob)" -eq 1 ] || mm_fail "the held-back mail is gone from the server"
[ -z "$(find "$MM_TMP/fetcher-cache" -name "$sha" -type f)" ] || mm_fail "the corrupt copy entered the fetcher's cache"
mm_log "(a) corrupt media: SHA-256 mismatch, nothing presented to fetchmail, mail kept upstream, nothing cached"
# Repair the object: the fetcher's retry (10-20 s backoff) brings the same mail through, intact.
python3 - "$obj" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0xFF]))
PY
got=
for _ in $(seq 1 40); do
  mm_fetchmail_via_fetcher bob "$MM_TMP/fetched-a2"
  got=$(mm_find_by_subject "$MM_TMP/fetched-a2" "Corrupt me") || got=
  [ -n "$got" ] && break
  sleep 3
done
[ -n "$got" ] || mm_fail "after repair the mail still did not arrive"
mm_extract_attachment "$got" clip.mp4 "$MM_TMP/clip.back"
[ "$(sha256sum "$MM_TMP/clip.back" | cut -d' ' -f1)" = "$sha" ] || mm_fail "repaired clip differs"
mm_log "(a) after repair the fetcher's retry delivers the same mail, clip byte-identical"

# ---- (b) upstream POP3 server dies mid-session ----------------------------------
for i in 1 2 3; do
  mm_swaks_send carol@example.test bob@example.test "Keep me $i" "plain mail $i"
done
mm_wait_delivered bob 3 60 || mm_fail "the plain mails were not delivered"
dovecot_master=$(cat "$MM_TMP/dovecot/run/master.pid")
python3 - "$MM_FETCHER_PORT" "$MM_POP3_PASS" "$dovecot_master" >"$MM_TMP/b.out" 2>&1 <<'PY' || mm_fail "case (b): $(cat "$MM_TMP/b.out")"
import os, poplib, signal, subprocess, sys, time
port, password, master = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
p = poplib.POP3("127.0.0.1", port, timeout=60)
p.user("bob"); p.pass_(password)
count, _ = p.stat()
assert count == 3, "STAT says %d" % count
# Kill Dovecot's master and every process under it, the session's pop3 included.
def tree(pid):
    kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [d for k in kids for d in tree(int(k))]
victims = tree(master)
assert len(victims) > 1, "no Dovecot children under %d" % master
for pid in victims:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
time.sleep(1)
for n in (1, 2, 3):
    p.dele(n)   # marked by the proxy; only QUIT would remove them upstream
try:
    r = p.quit()
    print("QUIT answered", r)
    sys.exit(1)
except poplib.error_proto as e:
    assert str(e).startswith("b'-ERR"), str(e)
    print("QUIT:", e)
PY
mm_log "(b) Dovecot killed mid-session: DELE 1-3 then QUIT -> $(grep QUIT: "$MM_TMP/b.out" | cut -c7-)"
# The killed master can linger as a zombie when nobody reaps orphans (PID 1 of
# a container), and Dovecot would take its pid file for a live instance.
rm -f "$MM_TMP/dovecot.started" "$MM_TMP/dovecot/run/master.pid"
mm_dovecot_start
left=$(python3 - "$MM_POP3_PORT" "$MM_POP3_PASS" <<'PY'
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
p.user("bob"); p.pass_(sys.argv[2])
print(p.stat()[0]); p.quit()
PY
)
[ "$left" -eq 3 ] || mm_fail "after restart Dovecot has $left messages, expected 3"
mm_log "(b) Dovecot restarted: all 3 messages still there"

# ---- (c) the store's file system is full ----------------------------------------
# A second gateway + milter whose store is a 16 MiB tmpfs: the 10 MiB clip spools
# (13.5 MiB of base64 fits) but the store cannot hold a copy of it as well.
FULL_MNT=$MM_TMP/fullstore
mm_small_fs "$FULL_MNT" 16m
full_milter=$(mm_free_port)
full_gw=$(mm_free_port)
"$(mm_bin mm-gateway)" -c "$MM_CONF" --set "store.dir=$FULL_MNT" --set "gateway.listen=127.0.0.1:$full_gw" \
  --set "gateway.public_url=https://127.0.0.1:$full_gw" >>"$MM_TMP/full-gateway.log" 2>&1 &
mm_register_pid $!
mm_wait_port "$full_gw" 20 || mm_fail "second gateway did not start: $(tail -3 "$MM_TMP/full-gateway.log")"
"$(mm_bin mm-milter)" -c "$MM_CONF" --set "store.dir=$FULL_MNT" --set milter.proxy_listen= \
  --set "milter.socket=inet:$full_milter@127.0.0.1" >>"$MM_TMP/full-milter.log" 2>&1 &
mm_register_pid $!
mm_wait_port "$full_milter" 20 || mm_fail "second milter did not start: $(tail -3 "$MM_TMP/full-milter.log")"
postconf -c "$MM_POSTFIX_DIR" -e "smtpd_milters = inet:127.0.0.1:$full_milter"
postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
sleep 1
make_media "$MM_TMP/big.mp4" 10240
before=$(mm_count_messages bob)
rc=0
swaks --server "127.0.0.1:$MM_SMTP_PORT" --from alice@example.test --to bob@example.test \
  --header "Subject: Too big for the store" --attach-type video/mp4 --attach-name big.mp4 \
  --attach "@$MM_TMP/big.mp4" >"$MM_TMP/swaks-full.out" 2>&1 || rc=$?
reply=$(grep -E '^<\*\* +[0-9]{3}' "$MM_TMP/swaks-full.out" | tail -n1 || true)
[ $rc -ne 0 ] || mm_fail "swaks succeeded although the store is full"
echo "$reply" | grep -qE '^<\*\* +4[0-9][0-9]' || mm_fail "expected a 4xx, swaks saw: $reply"
mm_log "(c) store full: the milter tempfails, swaks sees: ${reply#<\*\* }"
sleep 1
[ "$(mm_count_messages bob)" -eq "$before" ] || mm_fail "the mail was delivered anyway"
objs=$(find "$FULL_MNT/objects" -type f 2>/dev/null | wc -l)
[ "$objs" -eq 0 ] || mm_fail "$objs object file(s) left in the full store"
rows=$(sqlite3 "$FULL_MNT/index.sqlite" 'SELECT count(*) FROM items' 2>/dev/null || echo 0)
[ "$rows" -eq 0 ] || mm_fail "$rows item row(s) for the refused mail"
mm_log "(c) nothing half-written: no object file, no item row, nothing delivered"
leftover=$(find "$FULL_MNT" -type f ! -name 'index.sqlite*' ! -path '*/tls/*' -printf '%P %s\n')
[ -z "$leftover" ] || mm_fail "temporary files left in the full store: $leftover"
mm_log "(c) no spool or temporary file left behind in the store"

echo "faults: 3 cases passed"
