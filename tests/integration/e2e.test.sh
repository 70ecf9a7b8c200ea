#!/usr/bin/env bash
# e2e.test.sh - the walking skeleton, asserted: a real MP4 mailed with swaks
# through Postfix + mm-milter, stored by Dovecot as a small mail, read by
# fetchmail through mm-fetcher, which pulls the video from mm-gateway over HTTPS
# and puts it back byte for byte. A mail without media passes both untouched.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
mm_mediamail_start
mm_log "gateway, milter, Postfix, Dovecot and fetcher up"

# 1. The video mail.
mm_make_video "$MM_TMP/beach.mp4" 21
video_size=$(stat -c %s "$MM_TMP/beach.mp4")
mm_video_loop "$MM_TMP/beach.mp4" "Our holiday video"
[ "$MM_SENT_SHA" = "$MM_RECV_SHA" ] || mm_fail "video changed: sent $MM_SENT_SHA, received $MM_RECV_SHA"
mm_log "video ($video_size bytes) arrived byte-identical: sha256 $MM_RECV_SHA"

[ "$MM_STORED_BYTES" -lt 16384 ] || mm_fail "Dovecot stored $MM_STORED_BYTES bytes for the media mail"
mm_log "the mail server stored $MM_STORED_BYTES bytes (< 16 KiB)"

stored=$MM_STORED_MAIL
grep -q '^X-Media-Handles: 1' "$stored" || mm_fail "stored mail lacks X-Media-Handles"
grep -q '^X-Media-Handle: v=1;' "$stored" || mm_fail "stored mail lacks the X-Media-Handle header"
grep -q '^X-Mozilla-Cloud-Part: cloudFile;' "$stored" || mm_fail "stored mail lacks X-Mozilla-Cloud-Part"
mm_log "stored mail carries the location part (X-Media-Handle, X-Mozilla-Cloud-Part)"

[ "$(mm_text_body "$MM_FETCHED")" = "$(printf 'Hi Bob, here is the video from the beach.\n')" ] ||
  [ "$(mm_text_body "$MM_FETCHED")" = "Hi Bob, here is the video from the beach." ] ||
  mm_fail "text part changed: $(mm_text_body "$MM_FETCHED" | head -c 200)"
mm_log "text part unchanged"

grep -q 'detached 1' "$MM_TMP/mm-milter.log" || mm_fail "milter did not log the detach"
items=$(find "$MM_STORE/objects" -type f | wc -l)
[ "$items" -eq 1 ] || mm_fail "store holds $items objects, expected 1"
mm_log "the store holds the one video"

# 2. A mail without media: body byte-identical through milter and fetcher.
python3 - "$MM_TMP/plain.eml" <<'PY'
import sys
body = "".join("Line %d of a plain mail, with a few words.\r\n" % i for i in range(200))
body += ".a line that starts with a dot\r\n..and two dots\r\n"
msg = ("From: carol@example.test\r\nTo: bob@example.test\r\nSubject: Plain mail\r\n"
       "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"sep\"\r\n\r\n"
       "--sep\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body +
       "--sep\r\nContent-Type: application/pdf; name=\"doc.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
       "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\n--sep--\r\n")
open(sys.argv[1], "w", newline="").write(msg)
PY
before=$(mm_count_messages bob)
mm_swaks_send_file carol@example.test bob@example.test "$MM_TMP/plain.eml"
mm_wait_delivered bob $((before + 1)) 60 || mm_fail "the plain mail was not delivered"
mm_fetchmail_via_fetcher bob "$MM_TMP/fetched"
plain=$(mm_find_by_subject "$MM_TMP/fetched" "Plain mail")
[ -n "$plain" ] || mm_fail "fetchmail did not deliver the plain mail"
# swaks ends the DATA it sends with an extra CRLF before the final dot, so that
# line is part of what the server received.
cp "$MM_TMP/plain.eml" "$MM_TMP/plain-as-sent.eml"
printf '\r\n' >>"$MM_TMP/plain-as-sent.eml"
cmp -s <(mm_body_of "$MM_TMP/plain-as-sent.eml") <(mm_body_of "$plain") || mm_fail "plain mail body changed"
mm_log "a mail without media passed milter and fetcher with a byte-identical body"

grep -q 'passed (no media' "$MM_TMP/mm-milter.log" || mm_fail "milter did not log the pass"
echo "e2e: 1 passed, 0 failed"
