#!/usr/bin/env bash
# fetcher_clamd.test.sh - fetcher.clamd with the real ClamAV daemon (/usr/sbin/clamd),
# started here on a unix socket with its own clamd.conf and a one-signature
# database made here (no freshclam, nothing downloaded): a clean video arrives
# byte-identical; a video carrying the test pattern is shown with its location part
# and a note; with clamd stopped a media mail is held, then delivered once it is back.
set -u
: "${MM_BUILD_DIR:?set MM_BUILD_DIR}" "${MM_SOURCE_DIR:?set MM_SOURCE_DIR}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

check() { echo "check: $*"; }

CLAMD=/usr/sbin/clamd
[ -x "$CLAMD" ] || mm_fail "no $CLAMD (Debian clamav-daemon)"
mm_tmpdir_init

# clamd in the temp dir: a .ndb hex signature for a pattern no real file holds.
CL=$MM_TMP/clamd
mkdir -p "$CL/db"
PATTERN=MEDIAMAIL-FETCHER-TEST-PATTERN-5d1e08
printf 'MediaMail.Test.Pattern:0:*:%s\n' "$(printf '%s' "$PATTERN" | od -An -v -tx1 | tr -d ' \n')" >"$CL/db/mmtest.ndb"
cat >"$CL/clamd.conf" <<CONF
Foreground yes
DatabaseDirectory $CL/db
LocalSocket $CL/clamd.sock
PidFile $CL/clamd.pid
TemporaryDirectory $CL
LogFile $CL/clamd.log
Bytecode no
StreamMaxLength 64M
CONF
clamd_start() {
  rm -f "$CL/clamd.sock"
  "$CLAMD" -c "$CL/clamd.conf" >>"$CL/clamd.out" 2>&1 &
  CLAMD_PID=$!
  mm_register_pid "$CLAMD_PID"
  for _ in $(seq 100); do [ -S "$CL/clamd.sock" ] && return 0; sleep 0.2; done
  mm_fail "clamd did not start: $(tail -3 "$CL/clamd.log")"
}
clamd_stop() {
  kill -TERM "$CLAMD_PID"
  mm__wait_gone 20 "$CLAMD_PID" || mm_fail "clamd did not stop"
}
clamd_start

mm_mediamail_start_servers
mm_fetcher_start --set "fetcher.clamd=unix:$CL/clamd.sock" --set fetcher.clamd_timeout=5s --set fetcher.login_wait=2s
FLOG=$MM_TMP/mm-fetcher.log
P=pop3://127.0.0.1:$MM_FETCHER_PORT
listed() { curl -s --max-time 60 -u "bob:$MM_POP3_PASS" "$P/" | grep -c '^[0-9]'; }
wait_listed() {
  local n=$1 end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    [ "$(listed)" -ge "$n" ] && return 0
    sleep 1
  done
  return 1
}

mm_make_video "$MM_TMP/clean.mp4" 2
# The same video with the pattern appended: still an MP4 to the sniffer and to players.
cp "$MM_TMP/clean.mp4" "$MM_TMP/infected.mp4"
printf '%s' "$PATTERN" >>"$MM_TMP/infected.mp4"
mm_unique_copy "$MM_TMP/clean.mp4" "$MM_TMP/later.mp4"

check "a clean video is scanned and arrives byte-identical"
mm_swaks_send alice@example.test bob@example.test "Clean" "clean clip" "$MM_TMP/clean.mp4" video/mp4
mm_wait_delivered bob 1 60 || mm_fail "clean mail not delivered"
wait_listed 1 60 || { tail -5 "$FLOG"; mm_fail "clean mail not listed"; }
curl -s -u "bob:$MM_POP3_PASS" "$P/1" -o "$MM_TMP/one.eml" || mm_fail "RETR 1"
mm_extract_attachment "$MM_TMP/one.eml" clean.mp4 "$MM_TMP/got1.mp4"
cmp -s "$MM_TMP/clean.mp4" "$MM_TMP/got1.mp4" || mm_fail "clean video differs"
SHA1=$(sha256sum "$MM_TMP/clean.mp4" | cut -c1-64)
grep -qx OK "$MM_TMP/fetcher-cache/media/$SHA1.scan" || mm_fail "no clean verdict kept beside the media"
mm_log "clean video byte-identical, verdict kept in media/<sha256>.scan"

check "an infected video is shown with its location part and a note, never with its bytes"
mm_swaks_send alice@example.test bob@example.test "Infected" "bad clip" "$MM_TMP/infected.mp4" video/mp4
mm_wait_delivered bob 2 60 || mm_fail "infected mail not delivered"
wait_listed 2 60 || { tail -5 "$FLOG"; mm_fail "infected mail not listed"; }
curl -s -u "bob:$MM_POP3_PASS" "$P/2" -o "$MM_TMP/two.eml" || mm_fail "RETR 2"
grep -q '^Subject: Infected' "$MM_TMP/two.eml" || mm_fail "message 2 is not the infected mail"
grep -q '^X-Media-Handle:' "$MM_TMP/two.eml" || mm_fail "location part missing"
# The note's lines are wrapped at 72 columns: read it as one line.
flat=$(tr -d '\r' <"$MM_TMP/two.eml" | tr '\n' ' ')
grep -q '\[MediaMail\] The file named below was not put back into this mail: the virus scanner found malware in it' <<<"$flat" ||
  mm_fail "no note in the mail"
grep -q 'MediaMail.Test.Pattern' <<<"$flat" || mm_fail "note does not name the finding"
! grep -q "$(base64 -w0 "$MM_TMP/infected.mp4" | head -c 76)" "$MM_TMP/two.eml" || mm_fail "infected bytes in the mail"
grep -q 'infected (MediaMail.Test.Pattern' "$FLOG" || mm_fail "finding not logged"
mm_log "infected video kept out, note shown, finding logged"

check "clamd stopped: a media mail is held; delivered once clamd is back"
clamd_stop
mm_swaks_send alice@example.test bob@example.test "Later" "later clip" "$MM_TMP/later.mp4" video/mp4
mm_wait_delivered bob 3 60 || mm_fail "third mail not delivered"
SHA3=$(sha256sum "$MM_TMP/later.mp4" | cut -c1-64)
for _ in $(seq 60); do [ -f "$MM_TMP/fetcher-cache/media/$SHA3" ] && break; listed >/dev/null; sleep 1; done
[ -f "$MM_TMP/fetcher-cache/media/$SHA3" ] || mm_fail "third media not downloaded"
for _ in 1 2 3; do
  n=$(listed)
  [ "$n" -eq 2 ] || mm_fail "mail listed ($n) while clamd is down"
done
grep -q 'not scanned yet' "$FLOG" || mm_fail "no held-for-scan reason logged"
clamd_start
wait_listed 3 60 || { tail -5 "$FLOG"; mm_fail "mail not listed after clamd came back"; }
curl -s -u "bob:$MM_POP3_PASS" "$P/3" -o "$MM_TMP/three.eml" || mm_fail "RETR 3"
mm_extract_attachment "$MM_TMP/three.eml" later.mp4 "$MM_TMP/got3.mp4"
cmp -s "$MM_TMP/later.mp4" "$MM_TMP/got3.mp4" || mm_fail "third video differs"
mm_log "held while clamd was down, byte-identical once it was back"

clamd_stop
echo "PASS: fetcher_clamd"
