#!/usr/bin/env bash
# imap.test.sh - mm-fetcher --imap, the IMAP mailbox agent, against a real Dovecot
# IMAP server (STARTTLS, pinned key) with Postfix + mm-milter delivering and
# mm-gateway serving the media:
#  - a media mail delivered while the agent IDLEs is replaced in place within 10 s;
#    Python imaplib and fetchmail (IMAP) see one message with the same Message-ID,
#    X-Media-Restored instead of X-Media-Handles, the video byte-identical;
#  - \Seen and \Flagged set by the user while the media downloads are kept;
#  - a mail the user moves away while its media downloads is not re-appended;
#  - a hostile handle (a plain-http URL) leaves its mail untouched;
#  - SIGKILL between APPEND and the removal of the original (the test hook
#    MM_TEST_STOP_AFTER_APPEND=1), then a restart: exactly one copy.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
T0=$SECONDS
mm_log() { echo "  ok: $* [$((SECONDS - T0)) s]"; }
mm_mediamail_start_servers
mm_dovecot_tls_enable
mm_dovecot_imap_enable
mm_log "gateway, milter, Postfix, Dovecot with IMAP on $MM_IMAP_PORT"

PASSFILE=$MM_TMP/imap.pass
echo "$MM_POP3_PASS" >"$PASSFILE"
chmod 600 "$PASSFILE"
ALOG=$MM_TMP/mm-fetcher.log
CACHE=$MM_TMP/fetcher-cache
imapctl() { python3 "$MM_SOURCE_DIR/tests/integration/lib/imapctl.py" "$MM_IMAP_PORT" bob "$MM_POP3_PASS" "$@"; }

agent_start() {
  mm_start_program mm-fetcher --imap \
    --set "fetcher.imap=imap://127.0.0.1:$MM_IMAP_PORT" --set fetcher.upstream_tls=required \
    --set "fetcher.upstream_pin=$MM_DOVECOT_PIN" --set fetcher.imap_user=bob \
    --set "fetcher.imap_password_file=$PASSFILE" --set fetcher.imap_poll=5s --set fetcher.login_wait=2s
  local n=$1
  mm_wait_for 20 bash -c "[ \$(grep -c 'imap: logged in' '$ALOG') -ge $n ]" ||
    mm_fail "agent did not log in: $(tail -5 "$ALOG")"
}

# The lines of imapctl list for the mail with SUBJECT in INBOX.
lines_of() { imapctl list INBOX | awk -F'|' -v s="$1" '$6 == s'; }
count_of() { lines_of "$1" | grep -c . || true; }
restored() { [ "$(count_of "$1")" = 1 ] && lines_of "$1" | grep -q '|-|R|'; }
has_subject() { [ -n "$(lines_of "$1")" ]; }
raw_count() { find "$CACHE/msg" -name '*.raw' 2>/dev/null | wc -l; }
raws_at_least() { [ "$(raw_count)" -ge "$1" ]; }

# A real H.264 clip of about 1.5 MB (over milter.min_size = 1M, quick to mail).
ffmpeg -loglevel error -nostdin -y -f lavfi -i "testsrc2=size=640x360:rate=25" -t 2 -c:v libx264 -preset ultrafast \
  -b:v 6M -minrate 6M -maxrate 6M -bufsize 2M -x264-params nal-hrd=cbr -movflags +faststart "$MM_TMP/base.mp4" \
  >"$MM_TMP/ffmpeg.log" 2>&1 || mm_fail "ffmpeg failed: $(tail -3 "$MM_TMP/ffmpeg.log")"
[ "$(stat -c %s "$MM_TMP/base.mp4")" -gt 1100000 ] || mm_fail "ffmpeg made only $(stat -c %s "$MM_TMP/base.mp4") bytes"
for n in 1 2 3 4 5; do mm_unique_copy "$MM_TMP/base.mp4" "$MM_TMP/v$n.mp4"; done

# 0. Configuration errors name the key.
out=$("$(mm_bin mm-fetcher)" -c "$MM_CONF" --imap --set fetcher.imap=pop3://x 2>&1) && mm_fail "bad fetcher.imap accepted"
grep -q "fetcher.imap" <<<"$out" || mm_fail "error does not name fetcher.imap: $out"
out=$("$(mm_bin mm-fetcher)" -c "$MM_CONF" --set fetcher.imap=imaps://x --set fetcher.imap_user=bob \
  --set fetcher.imap_password_file=/x --set fetcher.imap_originals=INBOX --check 2>&1) &&
  mm_fail "imap_originals = INBOX accepted"
grep -q "fetcher.imap_originals" <<<"$out" || mm_fail "error does not name fetcher.imap_originals: $out"
mm_log "bad fetcher.imap and fetcher.imap_originals refused, naming the key"

# 1. Replaced within 10 s while the agent idles.
agent_start 1
sleep 1   # INBOX is empty: the agent has gone into IDLE
mm_swaks_send alice@example.test bob@example.test "Video one" "first" "$MM_TMP/v1.mp4" video/mp4
mm_wait_delivered bob 1 30 || mm_fail "mail one not delivered"
t0=$SECONDS
mm_wait_for 10 restored "Video one" || mm_fail "mail one not replaced within 10 s: $(imapctl list INBOX; tail -5 "$ALOG")"
mm_log "media mail replaced in place $((SECONDS - t0)) s after delivery (agent idling)"
grep -q "idle=yes" "$ALOG" || mm_fail "agent did not see IDLE"
line=$(lines_of "Video one")
uid1=${line%%|*}
mid1=$(cut -d'|' -f3 <<<"$line")
imapctl body INBOX "$uid1" "$MM_TMP/one.eml"
mm_extract_attachment "$MM_TMP/one.eml" v1.mp4 "$MM_TMP/one.mp4"
cmp -s "$MM_TMP/v1.mp4" "$MM_TMP/one.mp4" || mm_fail "attachment of mail one differs from the video sent"
grep -q "^X-Media-Restored: 1; sha256=$(sha256sum "$MM_TMP/v1.mp4" | cut -c1-64)" "$MM_TMP/one.eml" ||
  mm_fail "no X-Media-Restored trace field: $(head -3 "$MM_TMP/one.eml")"
mm_log "imaplib: one message, Message-ID $mid1, video byte-identical, X-Media-Restored, no X-Media-Handles"

# 2 and 3. While the media download (gateway stopped): the user flags mail two
# and moves mail three to another folder.
mm_wait_for 10 bash -c "[ \$(find '$CACHE/msg' -name '*.raw' | wc -l) = 0 ]" || mm_fail "raw copy of mail one left behind"
gw=$(cat "$MM_TMP/mm-gateway.pid")
kill -STOP "$gw"
mm_swaks_send alice@example.test bob@example.test "Video two" "second" "$MM_TMP/v2.mp4" video/mp4
mm_swaks_send alice@example.test bob@example.test "Video three" "third" "$MM_TMP/v3.mp4" video/mp4
mm_wait_delivered bob 3 30 || { kill -CONT "$gw"; mm_fail "mails two and three not delivered"; }
mm_wait_for 20 raws_at_least 2 ||
  { kill -CONT "$gw"; mm_fail "the agent did not fetch mails two and three"; }
uid2=$(lines_of "Video two" | cut -d'|' -f1)
uid3=$(lines_of "Video three" | cut -d'|' -f1)
mid3=$(lines_of "Video three" | cut -d'|' -f3)
imapctl flag INBOX "$uid2" '\Seen \Flagged'
imapctl move INBOX "$uid3" Archive
kill -CONT "$gw"
mm_wait_for 30 restored "Video two" || mm_fail "mail two not replaced: $(tail -5 "$ALOG")"
flags=$(lines_of "Video two" | cut -d'|' -f2)
grep -q '\\Seen' <<<"$flags" && grep -q '\\Flagged' <<<"$flags" || mm_fail "flags of mail two lost: $flags"
mm_log "\\Seen and \\Flagged set during the download kept on the replaced mail ($flags)"
mm_wait_for 30 grep -q "moved or deleted meanwhile: not replaced.*uid=$uid3" "$ALOG" ||
  mm_fail "the agent did not notice mail three was moved: $(tail -5 "$ALOG")"
[ "$(count_of "Video three")" = 0 ] || mm_fail "mail three re-appended to INBOX"
arch=$(imapctl list Archive)
[ "$(grep -c . <<<"$arch")" = 1 ] && grep -q "|$mid3|H|-|Video three" <<<"$arch" ||
  mm_fail "Archive should hold mail three as the user moved it: $arch"
mm_log "a mail moved away during its download is left where the user put it, not re-appended"

# 4. A hostile handle: the handle of mail one pointed at a plain-http URL.
python3 - "$MM_MAIL_DIR" >"$MM_TMP/hostile.eml" <<'PY'
import glob, re, sys
for p in glob.glob(sys.argv[1] + "/bob/Maildir/*/*") + glob.glob(sys.argv[1] + "/bob/Maildir/.Archive/*/*"):
    d = open(p, "rb").read().decode("utf-8", "surrogateescape")
    if "X-Media-Handle: v=1;" in d:
        break
else:
    sys.exit("no stored location part")
d = re.sub(r"(?m)^Subject:.*$", "Subject: Hostile", d, count=1)
d = re.sub(r"(?m)^Message-ID:.*$", "Message-ID: <hostile@example.test>", d, count=1)
d = re.sub(r'url(\*[0-9]*\*?)?="[^"]*"', 'url="http://127.0.0.1:9/steal"', d)
sys.stdout.write(d)
PY
mm_swaks_send_file alice@example.test bob@example.test "$MM_TMP/hostile.eml"
mm_wait_for 30 has_subject Hostile || mm_fail "hostile mail not delivered"
uidh=$(lines_of Hostile | cut -d'|' -f1)
mm_wait_for 20 grep -q "left as it is.*uid=$uidh" "$ALOG" || mm_fail "hostile mail not looked at: $(tail -5 "$ALOG")"
lines_of Hostile | grep -q "^$uidh|.*|H|-|Hostile" || mm_fail "hostile mail changed: $(lines_of Hostile)"
mm_log "a mail whose handle points at plain http is left untouched (same UID, X-Media-Handles kept)"

# SIGHUP reopens the log and keeps the agent going; SIGTERM ends it with 0.
kill -HUP "$(cat "$MM_TMP/mm-fetcher.pid")"
mm_wait_for 10 grep -q "SIGHUP: log reopened" "$ALOG" || mm_fail "no log reopen on SIGHUP"

# 5. SIGKILL between APPEND and the removal of the original, then a restart.
mm_stop_program mm-fetcher
MM_TEST_STOP_AFTER_APPEND=1 agent_start 2
mm_swaks_send alice@example.test bob@example.test "Video four" "fourth" "$MM_TMP/v4.mp4" video/mp4
mm_wait_for 30 grep -q "test hook MM_TEST_STOP_AFTER_APPEND: stopped" "$ALOG" ||
  mm_fail "the agent did not stop after APPEND: $(tail -5 "$ALOG")"
kill -KILL "$(cat "$MM_TMP/mm-fetcher.pid")"
[ "$(count_of "Video four")" = 2 ] || mm_fail "after the kill both original and copy should be there: $(lines_of "Video four")"
agent_start 3
mm_wait_for 20 restored "Video four" || mm_fail "restart left $(count_of "Video four") copies: $(lines_of "Video four")"
grep -q "copy of an earlier run found" "$ALOG" || mm_fail "the restart did not recognise its copy"
[ "$(grep -c 'rebuilt mail appended' "$ALOG")" -eq 3 ] ||
  mm_fail "expected 3 APPENDs in all (one, two, four; none again after the restart): $(grep -c 'rebuilt mail appended' "$ALOG")"
mm_log "killed between APPEND and EXPUNGE, restarted: exactly one copy of mail four"

# 6. A server without UIDPLUS and MOVE, with APPENDLIMIT (Dovecot told to say so):
# the original goes to fetcher.imap_originals by COPY and \Deleted (no EXPUNGE at
# all), and a mail over the limit is left as it is, before any download.
mm_stop_program mm-fetcher
echo 'protocol imap {
  imap_capability = IMAP4rev1 LITERAL+ IDLE APPENDLIMIT=3000000
}' >>"$MM_DOVECOT_CONF"
doveadm -c "$MM_DOVECOT_CONF" reload >/dev/null 2>&1 || mm_fail "dovecot reload"
mm_random_mp4 "$MM_TMP/big.mp4" $((3 * 1048576))
mm_make_media_mail "$MM_TMP/big.mp4" "$MM_TMP/big.eml" video/mp4 "Too big"
agent_start 4
grep "imap: logged in" "$ALOG" | tail -n1 | grep -q "uidplus=no" || mm_fail "agent still sees UIDPLUS"
mm_swaks_send alice@example.test bob@example.test "Video five" "fifth" "$MM_TMP/v5.mp4" video/mp4
mm_smtp_send_big alice@example.test bob@example.test "$MM_TMP/big.eml"
mm_wait_for 30 bash -c "python3 '$MM_SOURCE_DIR/tests/integration/lib/imapctl.py' $MM_IMAP_PORT bob $MM_POP3_PASS list MediaMail.Originals 2>/dev/null | grep -q '|Video five\$'" ||
  mm_fail "original of mail five not moved to MediaMail.Originals: $(tail -5 "$ALOG")"
five=$(lines_of "Video five")
grep -q '|-|R|Video five' <<<"$five" || mm_fail "no rebuilt mail five in INBOX: $five"
grep '|H|-|Video five' <<<"$five" | grep -q 'Deleted' || mm_fail "the original of mail five in INBOX should be \\Deleted, not expunged: $five"
mm_wait_for 30 grep -q "over the server's APPENDLIMIT 3000000: left as it is" "$ALOG" ||
  mm_fail "APPENDLIMIT not respected: $(tail -5 "$ALOG")"
lines_of "Too big" | grep -q '|H|-|Too big' || mm_fail "the mail over APPENDLIMIT changed: $(lines_of "Too big")"
grep -q "verified, $(stat -c %s "$MM_TMP/big.mp4") bytes" "$ALOG" && mm_fail "media over APPENDLIMIT was downloaded"
mm_log "without UIDPLUS: copy appended, original copied to MediaMail.Originals (COPY + \\Deleted, no EXPUNGE); over APPENDLIMIT: untouched, not downloaded"

# 7. Another real client: fetchmail over IMAP (keep) sees each mail once with its video.
mkdir -p "$MM_TMP/fm" "$MM_TMP/fmhome"
cat >"$MM_TMP/mda.sh" <<EOF
#!/bin/sh
exec cat >"$MM_TMP/fm/\$(date +%s%N).\$\$.eml"
EOF
chmod 755 "$MM_TMP/mda.sh"
cat >"$MM_TMP/fetchmailrc" <<EOF
set no syslog
set logfile "$MM_TMP/fetchmail.log"
poll 127.0.0.1 with proto IMAP port $MM_IMAP_PORT auth password timeout 60
  user "bob" there with password "$MM_POP3_PASS" is "root" here
  options sslproto '' no sslcertck fetchall keep
  mda "$MM_TMP/mda.sh"
EOF
chmod 600 "$MM_TMP/fetchmailrc"
rc=0
HOME=$MM_TMP/fmhome FETCHMAILHOME=$MM_TMP/fmhome fetchmail -f "$MM_TMP/fetchmailrc" --nodetach \
  --pidfile "$MM_TMP/fmhome/fetchmail.pid" >"$MM_TMP/fetchmail.out" 2>&1 || rc=$?
[ $rc -eq 0 ] || mm_fail "fetchmail exit $rc: $(tail -5 "$MM_TMP/fetchmail.out")"
for n in one two four; do
  f=$(grep -l "^Subject: Video $n" "$MM_TMP"/fm/*.eml)
  [ "$(grep -c . <<<"$f")" = 1 ] || mm_fail "fetchmail got $(grep -c . <<<"$f") copies of mail $n"
  v=$(case $n in one) echo v1 ;; two) echo v2 ;; four) echo v4 ;; esac)
  mm_extract_attachment "$f" "$v.mp4" "$MM_TMP/fm-$n.mp4"
  cmp -s "$MM_TMP/$v.mp4" "$MM_TMP/fm-$n.mp4" || mm_fail "fetchmail: video of mail $n differs"
done
grep -qiF "Message-ID: $mid1" "$(grep -l '^Subject: Video one' "$MM_TMP"/fm/*.eml)" ||
  mm_fail "fetchmail: Message-ID of mail one changed"
mm_log "fetchmail (IMAP): mails one, two, four once each, videos byte-identical, Message-ID kept"

mm_stop_program mm-fetcher
echo "imap: 1 passed, 0 failed"
