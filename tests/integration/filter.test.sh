#!/usr/bin/env bash
# filter.test.sh - mm-milter as Postfix's before-queue filter (smtpd_proxy_filter,
# docs/postfix.md), with the real programs: swaks -> Postfix submission smtpd ->
# mm-milter's filter -> after-filter smtpd -> Dovecot -> mm-fetcher -> fetchmail.
#  (a) a video mail: Postfix's queue never holds more than a few KiB while it is
#      sent, the mailbox gets the small mail, the reader gets the video back whole;
#  (b) plain mail passes byte for byte (dot lines, a long line, 8-bit text);
#  (c) a DKIM-signed mail with a video passes untouched;
#  (d) the store's file system full: the client gets a 4xx, nothing is queued,
#      nothing half-written stays in the store;
#  (e) the next hop down: 4xx, nothing lost;
#  (f) kill -9 of mm-milter in the middle of DATA: 4xx, nothing delivered; once it
#      is back the same mail goes through.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init

mm_mediamail_start
export MM_SEND_PORT=$MM_SUBMIT_PORT
queue=$MM_TMP/postfix-queue
mm_log "gateway, mm-milter (milter + filter), Postfix (submission via the filter), Dovecot, fetcher up"

# swaks, expected to fail with a 4xx: NAME then swaks arguments (server/from/to given).
expect_4xx() {
  local name=$1 rc=0
  shift
  swaks --server "127.0.0.1:$MM_SUBMIT_PORT" --from alice@example.test --to bob@example.test "$@" \
    >"$MM_TMP/swaks-$name.out" 2>&1 || rc=$?
  local reply
  reply=$(grep -E '^<\*\* +[0-9]{3}' "$MM_TMP/swaks-$name.out" | tail -n1 || true)
  [ $rc -ne 0 ] || mm_fail "$name: swaks succeeded"
  echo "$reply" | grep -qE '^<\*\* +4[0-9][0-9]' || mm_fail "$name: expected a 4xx, swaks saw: $reply"
  echo "${reply#<\*\* }"
}

# Restart mm-milter (filter only) with extra --set arguments, on the same filter port.
restart_filter() {
  mm_stop_program mm-milter
  mm_start_program mm-milter --set milter.socket= "$@"
  mm_wait_port "$MM_FILTER_PORT" 20 || mm_fail "mm-milter did not restart: $(tail -3 "$MM_TMP/mm-milter.log")"
}

# ---- (a) a video through the filter ---------------------------------------------
mm_make_video "$MM_TMP/clip.mp4" 20
sha=$(sha256sum "$MM_TMP/clip.mp4" | cut -d' ' -f1)
size=$(stat -c %s "$MM_TMP/clip.mp4")
mm_peak_growth "$queue" mm_swaks_send alice@example.test bob@example.test "Filter video" "The clip." \
  "$MM_TMP/clip.mp4" video/mp4
mm_wait_delivered bob 1 60 || mm_fail "the video mail was not delivered"
held=$MM_PEAK_GROWTH
[ "$held" -lt 65536 ] || mm_fail "Postfix's queue grew by $held bytes while a $size-byte video was sent"
grep -q "filter: detached 1" "$MM_TMP/mm-milter.log" || mm_fail "mm-milter did not log the detach"
box=$(mm_maildir_bytes bob)
[ "$box" -lt 16384 ] || mm_fail "the mailbox holds $box bytes"
mm_log "(a) $size-byte video sent: Postfix's queue grew by at most $held bytes, the mailbox holds $box"
mm_fetchmail_via_fetcher bob "$MM_TMP/fetched-a"
got=$(mm_find_by_subject "$MM_TMP/fetched-a" "Filter video")
mm_extract_attachment "$got" clip.mp4 "$MM_TMP/clip.back"
[ "$(sha256sum "$MM_TMP/clip.back" | cut -d' ' -f1)" = "$sha" ] || mm_fail "the video came back altered"
mm_log "(a) the reader got the video back, SHA-256 identical"

# ---- (b) plain mail passes byte for byte -----------------------------------------
n0=$(mm_count_messages bob)
# Sent with Python's smtplib, which adds nothing (swaks appends a blank line);
# Date and Message-ID are there so that Postfix adds none either.
python3 - "$MM_SUBMIT_PORT" "$MM_TMP/plain.eml" <<'PY' || mm_fail "(b) sending the plain mail failed"
import smtplib, sys
lines = [b"From: alice@example.test", b"To: bob@example.test", b"Subject: Filter plain",
         b"Date: Thu, 26 Nov 2026 10:00:00 +0000", b"Message-ID: <plain.1@example.test>",
         b"MIME-Version: 1.0", b"Content-Type: text/plain; charset=utf-8",
         b"Content-Transfer-Encoding: 8bit", b"",
         b"first line", b".a line that starts with a dot", b"..two dots", b".",  # a lone dot, stuffed on the wire
         "8-bit: gr\u00fc\u00dfe, \u00e7a va".encode(), b"x" * 1500, b"last line"]
data = b"\r\n".join(lines) + b"\r\n"
open(sys.argv[2], "wb").write(data)
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60) as s:
    s.sendmail("alice@example.test", ["bob@example.test"], data)
PY
mm_wait_delivered bob $((n0 + 1)) 60 || mm_fail "the plain mail was not delivered"
delivered=$(grep -l "Subject: Filter plain" "$MM_MAIL_DIR"/bob/Maildir/new/* | head -n1)
python3 - "$MM_TMP/plain.eml" "$delivered" <<'PY' || mm_fail "the plain mail was altered on its way"
import sys
sent = open(sys.argv[1], "rb").read().replace(b"\r\n", b"\n")
got = open(sys.argv[2], "rb").read()
# Postfix adds its Received lines on top; everything from the sender's first header on is as sent.
sys.exit(0 if got.endswith(sent) else 1)
PY
mm_log "(b) plain mail with dot lines, a 1500-byte line and 8-bit text delivered byte for byte"

# ---- (c) a DKIM-signed mail passes untouched --------------------------------------
mm_make_media_mail "$MM_TMP/clip.mp4" "$MM_TMP/signed.eml" video/mp4 "Filter signed"
{ printf 'DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=s1; bh=x; b=y\r\n'; cat "$MM_TMP/signed.eml"; } \
  >"$MM_TMP/signed2.eml"
n0=$(mm_count_messages bob)
mm_swaks_send_file alice@example.test bob@example.test "$MM_TMP/signed2.eml"
mm_wait_delivered bob $((n0 + 1)) 60 || mm_fail "the signed mail was not delivered"
delivered=$(grep -l "Subject: Filter signed" "$MM_MAIL_DIR"/bob/Maildir/new/* | head -n1)
grep -q "X-Media-Handle" "$delivered" && mm_fail "the DKIM-signed mail was rewritten"
[ "$(stat -c %s "$delivered")" -gt "$size" ] || mm_fail "the DKIM-signed mail lost its video"
grep -q "filter: passed (DKIM-signed" "$MM_TMP/mm-milter.log" || mm_fail "no log line for the signed mail"
mm_log "(c) DKIM-signed mail with a video delivered untouched"

# ---- (d) the store's file system is full ------------------------------------------
FULL_MNT=$MM_TMP/fullstore
mm_small_fs "$FULL_MNT" 16m
restart_filter --set "store.dir=$FULL_MNT"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$MM_TMP/big.mp4"
before=$(mm_count_messages bob)
qbefore=$(find "$queue" -type f -path '*/incoming/*' -o -type f -path '*/active/*' | wc -l)
reply=$(expect_4xx full --header "Subject: Too big for the store" --attach-type video/mp4 --attach-name big.mp4 \
  --attach "@$MM_TMP/big.mp4")
sleep 1
[ "$(mm_count_messages bob)" -eq "$before" ] || mm_fail "(d) the mail was delivered anyway"
qafter=$(find "$queue" -type f -path '*/incoming/*' -o -type f -path '*/active/*' | wc -l)
[ "$qafter" -eq "$qbefore" ] || mm_fail "(d) Postfix queued something ($qbefore -> $qafter files)"
leftover=$(find "$FULL_MNT" -type f ! -name 'index.sqlite*' ! -path '*/tls/*' -printf '%P %s\n')
[ -z "$leftover" ] || mm_fail "(d) files left in the full store: $leftover"
mm_log "(d) store full: swaks sees $reply; nothing queued, nothing left in the store"

# ---- (e) the next hop is down ------------------------------------------------------
restart_filter --set "milter.proxy_next=127.0.0.1:$(mm_free_port)"
reply=$(expect_4xx nexthop --header "Subject: No next hop" --body "hello")
sleep 1
[ "$(mm_count_messages bob)" -eq "$before" ] || mm_fail "(e) a mail was delivered"
mm_log "(e) next hop down: swaks sees $reply"

# ---- (f) kill -9 in the middle of DATA ------------------------------------------
restart_filter
mm_make_media_mail "$MM_TMP/clip.mp4" "$MM_TMP/killed.eml" video/mp4 "Filter killed"
# A slow sender (the file in 64 KiB pieces with pauses) so the kill lands mid-DATA.
python3 - "$MM_SUBMIT_PORT" "$MM_TMP/killed.eml" >"$MM_TMP/slow.out" 2>&1 <<'PY' &
import smtplib, socket, sys, time
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=120)
s.ehlo("slow.example.test")
s.mail("alice@example.test")
s.rcpt("bob@example.test")
code, _ = s.docmd("DATA")
assert code == 354, code
with open(sys.argv[2], "rb") as f:
    while True:
        b = f.read(65536)
        if not b:
            break
        s.sock.sendall(b)
        time.sleep(0.02)
s.sock.sendall(b".\r\n")
code, text = s.getreply()
print(code, text.decode(errors="replace"))
PY
sender=$!
for _ in $(seq 1 100); do
  [ -n "$(find "$MM_STORE/spool" -type f -size +1M 2>/dev/null)" ] && break
  sleep 0.1
done
kill -9 "$(cat "$MM_TMP/mm-milter.pid")"
wait "$sender" || true
code=$(awk 'NR==1 {print $1}' "$MM_TMP/slow.out")
case $code in 4??) ;; *) mm_fail "(f) after kill -9 the sender got: $(cat "$MM_TMP/slow.out")" ;; esac
sleep 1
[ "$(mm_count_messages bob)" -eq "$before" ] || mm_fail "(f) a mail was delivered after the kill"
mm_start_program mm-milter
mm_wait_port "$MM_FILTER_PORT" 20 || mm_fail "mm-milter did not restart"
mm_swaks_send_file alice@example.test bob@example.test "$MM_TMP/killed.eml"
mm_wait_delivered bob $((before + 1)) 60 || mm_fail "(f) the retried mail was not delivered"
delivered=$(grep -l "Subject: Filter killed" "$MM_MAIL_DIR"/bob/Maildir/new/* | head -n1)
grep -q "X-Media-Handle:" "$delivered" || mm_fail "(f) the retried mail was not detached"
mm_log "(f) kill -9 mid-DATA: the sender got $(cut -c1-60 "$MM_TMP/slow.out"); nothing delivered; the retry went through"

echo "filter: 6 cases passed"
