#!/usr/bin/env bash
# mmsend.test.sh - mmsend against a real Postfix submission service (STARTTLS
# with a self-signed certificate, SASL AUTH through Dovecot), end to end through
# mm-gateway and mm-fetcher with the attachment byte-identical; -t fed by
# Python's email package (Bcc removed, Bcc recipient served); the sendmail
# pipe; --link; and each error path with its sysexits code.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
MMSEND=$(mm_bin mmsend)
mm_write_conf
mkdir -p "$MM_STORE"
mm_start_program mm-gateway
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
mm_dovecot_start

# The submission server: Postfix with STARTTLS (a certificate made here) and
# SASL through Dovecot's auth socket. TLS is offered, AUTH only after it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$MM_TMP/smtp.key" -out "$MM_TMP/smtp.crt" >"$MM_TMP/openssl.out" 2>&1 ||
  mm_fail "openssl: $(tail -3 "$MM_TMP/openssl.out")"
MM_POSTFIX_EXTRA="smtpd_tls_security_level = may
smtpd_tls_cert_file = $MM_TMP/smtp.crt
smtpd_tls_key_file = $MM_TMP/smtp.key
smtpd_tls_loglevel = 1
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $MM_DOVECOT_AUTH_SOCKET"
export MM_POSTFIX_EXTRA
mm_postfix_start ""
# smtpd's TLS needs the tlsmgr service, which the harness's master.cf lacks.
echo 'tlsmgr    unix  -       -       n       1000?   1       tlsmgr' >>"$MM_POSTFIX_DIR/master.cf"
postfix -c "$MM_POSTFIX_DIR" reload >>"$MM_TMP/postfix.start.out" 2>&1 || mm_fail "postfix reload failed"
sleep 1
mm_start_program mm-fetcher --set "fetcher.upstream=pop3://127.0.0.1:$MM_POP3_PORT"
mm_wait_port "$MM_FETCHER_PORT" 20 || mm_fail "mm-fetcher did not start: $(tail -5 "$MM_TMP/mm-fetcher.log")"

echo "$MM_POP3_PASS" >"$MM_TMP/smtp.pass"
chmod 600 "$MM_TMP/smtp.pass"
cat >>"$MM_CONF" <<EOF

[mmsend]
smtp = smtp://127.0.0.1:$MM_SMTP_PORT
user = alice
password_file = $MM_TMP/smtp.pass
ca_file = $MM_TMP/smtp.crt
spool_dir = $MM_TMP
EOF
mm_log "gateway, Dovecot (POP3 + SASL), Postfix (STARTTLS + AUTH) and fetcher up"

items() { sqlite3 "$MM_STORE/index.sqlite" "SELECT count(*) FROM items" 2>/dev/null || echo 0; }
# Expect exit CODE from mmsend ARGS...; stderr goes to $MM_TMP/err.
expect_exit() {
  local want=$1 rc=0
  shift
  "$MMSEND" "$@" >"$MM_TMP/out" 2>"$MM_TMP/err" </dev/null || rc=$?
  [ "$rc" -eq "$want" ] || mm_fail "mmsend $* exited $rc, expected $want: $(head -c 400 "$MM_TMP/err")"
}
# Fetch USER's mail through mm-fetcher until SUBJECT arrives (the fetcher may
# still be pulling the media); check attachment NAME equals FILE; set RECEIVED.
check_received() {
  local user=$1 subject=$2 name=$3 file=$4 got="" try
  for try in $(seq 1 30); do
    mm_fetchmail_via_fetcher "$user" "$MM_TMP/fetched-$user"
    got=$(mm_find_by_subject "$MM_TMP/fetched-$user" "$subject" || true)
    [ -z "$got" ] || break
    sleep 1
  done
  [ -n "$got" ] || mm_fail "$user did not get '$subject' through the fetcher: $(tail -5 "$MM_TMP/mm-fetcher.log")"
  mm_extract_attachment "$got" "$name" "$MM_TMP/received.bin"
  cmp -s "$file" "$MM_TMP/received.bin" || mm_fail "$name for $user is not byte-identical"
  RECEIVED=$got
}

mm_make_video "$MM_TMP/clip.mp4" 3
sha=$(sha256sum "$MM_TMP/clip.mp4" | cut -d' ' -f1)
printf 'just a small note\n' >"$MM_TMP/notes.txt"

# 1. Compose mode over STARTTLS + AUTH, with descriptive fields.
before=$(mm_count_messages bob)
"$MMSEND" -c "$MM_CONF" --from 'Alice <alice@example.test>' --to bob@example.test --subject "Compose video" \
  --body "Hi Bob, the clip." --attach "$MM_TMP/clip.mp4" --title "Beach clip" --note "Day one" \
  --copyright "CC-BY Alice" --attach "$MM_TMP/notes.txt" --json >"$MM_TMP/handles.json" 2>"$MM_TMP/err" ||
  mm_fail "mmsend compose failed: $(cat "$MM_TMP/err")"
python3 - "$MM_TMP/handles.json" "$sha" <<'PY' || mm_fail "--json output wrong: $(cat "$MM_TMP/handles.json")"
import json, sys
h = json.load(open(sys.argv[1]))
assert len(h) == 1 and h[0]["sha256"] == sys.argv[2] and h[0]["title"] == "Beach clip", h
assert h[0]["note"] == "Day one" and h[0]["copyright"] == "CC-BY Alice" and h[0]["name"] == "clip.mp4"
PY
mm_log "compose: --json printed one handle with title, note and copyright"
mm_wait_delivered bob $((before + 1)) 60 || mm_fail "compose mail not delivered: $(tail -5 "$MM_POSTFIX_LOG")"
grep -q 'sasl_username=alice' "$MM_POSTFIX_LOG" || mm_fail "Postfix did not log the AUTH: $(tail -5 "$MM_POSTFIX_LOG")"
grep -q 'TLS connection established from localhost' "$MM_POSTFIX_LOG" || mm_fail "no TLS in the Postfix log"
mm_log "submitted with STARTTLS (certificate verified against the test CA) and SASL AUTH as alice"
stored=$(mm_maildir_bytes bob)
[ "$stored" -lt 16384 ] || mm_fail "Dovecot stored $stored bytes for the compose mail"
check_received bob "Compose video" clip.mp4 "$MM_TMP/clip.mp4"
mm_extract_attachment "$RECEIVED" notes.txt "$MM_TMP/notes.got"
cmp -s "$MM_TMP/notes.txt" "$MM_TMP/notes.got" || mm_fail "the small attachment changed"
mm_log "compose: video ($(stat -c %s "$MM_TMP/clip.mp4") bytes) byte-identical through mm-fetcher; mail stored $stored bytes; small text attachment stayed ordinary"

# 2. -t with a message written by Python's email package; Bcc to carol.
python3 - "$MM_TMP/py.eml" "$MM_TMP/clip.mp4" <<'PY'
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
m = EmailMessage()
m["From"] = "Alice Example <alice@example.test>"
m["To"] = "Bob <bob@example.test>"
m["Bcc"] = "carol@example.test"
m["Subject"] = "Python video"
m["Date"] = formatdate(localtime=True)
m["Message-ID"] = make_msgid(domain="example.test")
m.set_content("Hello from Python's email package.\n")
m.add_attachment(open(sys.argv[2], "rb").read(), maintype="video", subtype="mp4", filename="python clip.mp4")
open(sys.argv[1], "wb").write(bytes(m))
PY
before=$(mm_count_messages bob)
before_c=$(mm_count_messages carol)
"$MMSEND" -c "$MM_CONF" -t -oi <"$MM_TMP/py.eml" 2>"$MM_TMP/err" || mm_fail "mmsend -t failed: $(cat "$MM_TMP/err")"
mm_wait_delivered bob $((before + 1)) 60 || mm_fail "-t mail not delivered to bob"
mm_wait_delivered carol $((before_c + 1)) 60 || mm_fail "-t mail not delivered to the Bcc recipient"
if find "$MM_MAIL_DIR/carol/Maildir/new" -type f -exec cat {} + | grep -qi '^Bcc:'; then
  mm_fail "the Bcc header was sent"
fi
check_received bob "Python video" "python clip.mp4" "$MM_TMP/clip.mp4"
check_received carol "Python video" "python clip.mp4" "$MM_TMP/clip.mp4"
mm_log "-t: Python-composed message detached, Bcc removed, bob and carol (Bcc) got the video byte-identical"

# 3. The sendmail pipe: Postfix's own sendmail into the private instance.
before=$(mm_count_messages bob)
MAIL_CONFIG=$MM_POSTFIX_DIR "$MMSEND" -c "$MM_CONF" --set mmsend.smtp=sendmail --from alice@example.test \
  --to bob@example.test --subject "Via sendmail" --attach "$MM_TMP/clip.mp4" 2>"$MM_TMP/err" ||
  mm_fail "mmsend via sendmail failed: $(cat "$MM_TMP/err")"
mm_wait_delivered bob $((before + 1)) 60 || mm_fail "sendmail-piped mail not delivered"
check_received bob "Via sendmail" clip.mp4 "$MM_TMP/clip.mp4"
mm_log "mmsend.smtp = sendmail: piped to /usr/sbin/sendmail, delivered, video byte-identical"

# 4. --link registers the file in place: no object copied.
objects_before=$(find "$MM_STORE/objects" -type f | wc -l)
cp "$MM_TMP/clip.mp4" "$MM_TMP/linked.mp4"
echo 'extra bytes' >>"$MM_TMP/linked.mp4"
"$MMSEND" -c "$MM_CONF" --from alice@example.test --to bob@example.test --subject "Linked" \
  --attach "$MM_TMP/linked.mp4" --link --json >"$MM_TMP/link.json" 2>"$MM_TMP/err" ||
  mm_fail "mmsend --link failed: $(cat "$MM_TMP/err")"
grep -q '"linked": true' "$MM_TMP/link.json" || mm_fail "--link did not link: $(cat "$MM_TMP/link.json")"
[ "$(find "$MM_STORE/objects" -type f | wc -l)" -eq "$objects_before" ] || mm_fail "--link copied the file"
row=$(sqlite3 "$MM_STORE/index.sqlite" "SELECT link_path || '|' || link_size FROM items WHERE link_path != ''")
[ "$row" = "$MM_TMP/linked.mp4|$(stat -c %s "$MM_TMP/linked.mp4")" ] || mm_fail "linked row wrong: $row"
mm_log "--link: the index records path and size, no object copied"
check_received bob "Linked" linked.mp4 "$MM_TMP/linked.mp4"
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["url"])' "$MM_TMP/link.json")
code=$(curl -sk -o /dev/null -w '%{http_code}' "$url")
[ "$code" = 200 ] || mm_fail "gateway answered $code for the intact linked file"
touch -d '2001-01-01' "$MM_TMP/linked.mp4"
code=$(curl -sk -o /dev/null -w '%{http_code}' "$url")
[ "$code" = 410 ] || mm_fail "gateway answered $code for a changed linked file, expected 410"
mm_log "--link: served in place, byte-identical through mm-fetcher; once the file changed the gateway refuses it (410)"

# 5. Error paths, each with its exit code; nothing stays in the store after a failed submission.
expect_exit 66 -c "$MM_CONF" --from alice@example.test --to bob@example.test --subject x --attach "$MM_TMP/nope.mp4"
grep -q "nope.mp4" "$MM_TMP/err" || mm_fail "missing-file error does not name the file"
mm_log "missing attachment: exit 66, names the file"
expect_exit 64 -c "$MM_CONF" --from alice@example.test --subject x --attach "$MM_TMP/clip.mp4"
expect_exit 64 -c "$MM_CONF" --title "no attach" --from alice@example.test --to bob@example.test --subject x
expect_exit 64 -c "$MM_CONF" --bogus
expect_exit 64 -c "$MM_CONF" -t --attach "$MM_TMP/clip.mp4"
mm_log "bad usage: exit 64 (no recipient, misplaced --title, unknown option, mixed modes)"
expect_exit 0 --help
grep -q -- '--attach' "$MM_TMP/out" || mm_fail "--help does not show the usage"
expect_exit 78 -c "$MM_CONF" --set mmsend.smtp=ftp://x --from alice@example.test --to bob@example.test --subject x
mm_log "--help exit 0; bad mmsend.smtp: exit 78"

n=$(items)
down=$(mm_free_port)
expect_exit 69 -c "$MM_CONF" --set "mmsend.smtp=smtp://127.0.0.1:$down" --from alice@example.test \
  --to bob@example.test --subject x --attach "$MM_TMP/clip.mp4"
grep -q "127.0.0.1:$down" "$MM_TMP/err" || mm_fail "server-down error does not name the server"
[ "$(items)" -eq "$n" ] || mm_fail "media stayed in the store after a failed submission"
mm_log "server down: exit 69, names the server; the stored media was removed again"

echo wrong >"$MM_TMP/bad.pass"
expect_exit 77 -c "$MM_CONF" --set "mmsend.password_file=$MM_TMP/bad.pass" --from alice@example.test \
  --to bob@example.test --subject x --attach "$MM_TMP/clip.mp4"
grep -q "535" "$MM_TMP/err" || mm_fail "auth failure does not quote the server: $(cat "$MM_TMP/err")"
[ "$(items)" -eq "$n" ] || mm_fail "media stayed in the store after an auth failure"
mm_log "wrong password: exit 77 with the server's 535 reply; media removed again"

expect_exit 69 -c "$MM_CONF" --set mmsend.ca_file= --from alice@example.test --to bob@example.test --subject x \
  --body x
mm_log "certificate not trusted: exit 69 (verification is on)"

# A server that does not offer STARTTLS (a scripted peer): refused unless --insecure.
plain=$(mm_free_port)
python3 - "$plain" >"$MM_TMP/plain-smtp.log" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4); s.settimeout(60)
def serve(c):
    f = c.makefile("rb"); c.sendall(b"220 plain ESMTP\r\n")
    data = False
    for line in f:
        if data:
            if line == b".\r\n": data = False; c.sendall(b"250 queued\r\n")
            continue
        cmd = line[:4].upper()
        if cmd == b"EHLO": c.sendall(b"250-plain\r\n250 8BITMIME\r\n")
        elif cmd == b"DATA": data = True; c.sendall(b"354 go\r\n")
        elif cmd == b"QUIT": c.sendall(b"221 bye\r\n"); break
        else: c.sendall(b"250 ok\r\n")
for _ in range(4):   # the port probe, the refused attempt, the --insecure one
    try:
        c, _ = s.accept()
    except OSError:
        break
    try:
        serve(c)
    except OSError:
        pass   # a client that hangs up early (the probe, a refusal) is fine
    c.close()
PY
mm_register_pid $!
mm_wait_port "$plain" 20 || mm_fail "scripted SMTP peer did not start"
expect_exit 69 -c "$MM_CONF" --set "mmsend.smtp=smtp://127.0.0.1:$plain" --set mmsend.user= \
  --from alice@example.test --to bob@example.test --subject x --body x
grep -q "STARTTLS" "$MM_TMP/err" || mm_fail "no-STARTTLS refusal does not say so: $(cat "$MM_TMP/err")"
expect_exit 0 -c "$MM_CONF" --set "mmsend.smtp=smtp://127.0.0.1:$plain" --set mmsend.user= --insecure \
  --from alice@example.test --to bob@example.test --subject x --body x
mm_log "server without STARTTLS: refused (exit 69) unless --insecure (then sent)"

printf 'From: alice@example.test\nTo: bob@example.test\nnot a header line\n\nbody\n' >"$MM_TMP/bad.eml"
rc=0
"$MMSEND" -c "$MM_CONF" -t <"$MM_TMP/bad.eml" 2>"$MM_TMP/err" || rc=$?
[ "$rc" -eq 65 ] || mm_fail "malformed message: exit $rc, expected 65"
rc=0
"$MMSEND" -c "$MM_CONF" -t </dev/null 2>"$MM_TMP/err" || rc=$?
[ "$rc" -eq 66 ] || mm_fail "empty input: exit $rc, expected 66"
mm_log "-t: malformed header exit 65, empty input exit 66"

[ -z "$(find "$MM_TMP" -maxdepth 1 -name 'mmsend.*' -print -quit)" ] || mm_fail "mmsend left a spool directory"
mm_log "no spool directory left behind"
echo "mmsend: all passed"
