#!/usr/bin/env bash
# Proves the mail-stack harness: private Postfix + Dovecot on loopback, two mails with
# binary attachments sent with swaks, read back over POP3 with curl and fetchmail,
# attachments compared byte for byte. Starts and stops everything itself.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib/mailstack.sh
. "$HERE/lib/mailstack.sh"

for tool in postfix dovecot swaks fetchmail curl python3 ss; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing (run scripts/install-deps.sh)"; exit 1; }
done

echo "stack.test: private Postfix + Dovecot round trip"
mm_tmpdir_init
mm_postfix_start ""   # no milter
mm_log "postfix listening on 127.0.0.1:$MM_SMTP_PORT"
mm_dovecot_start
mm_log "dovecot pop3 listening on 127.0.0.1:$MM_POP3_PORT"

# Two attachments: random binary "video" and a text file with long lines and dots.
head -c 750000 /dev/urandom >"$MM_TMP/clip.mp4"
python3 - "$MM_TMP/notes.txt" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(2000):
        f.write(("." if i % 7 == 0 else "") + "line %d " % i + "x" * (i % 150) + "\n")
EOF

swaks --server "127.0.0.1:$MM_SMTP_PORT" --from alice@example.test --to bob@example.test \
  --header "Subject: stack test one" --body "first mail" \
  --attach-type video/mp4 --attach-name clip.mp4 --attach "@$MM_TMP/clip.mp4" \
  >"$MM_TMP/swaks1.out" 2>&1 || mm_fail "swaks #1 failed: $(tail -5 "$MM_TMP/swaks1.out")"
swaks --server "127.0.0.1:$MM_SMTP_PORT" --from carol@example.test --to bob@example.test \
  --header "Subject: stack test two" --body "second mail" \
  --attach-type text/plain --attach-name notes.txt --attach "@$MM_TMP/notes.txt" \
  >"$MM_TMP/swaks2.out" 2>&1 || mm_fail "swaks #2 failed: $(tail -5 "$MM_TMP/swaks2.out")"
mm_log "two mails accepted by smtpd"

# A recipient outside example.test must be refused, not relayed.
if swaks --server "127.0.0.1:$MM_SMTP_PORT" --from alice@example.test --to someone@elsewhere.test \
  --body x >"$MM_TMP/swaks3.out" 2>&1; then
  mm_fail "relay to elsewhere.test was accepted"
fi
mm_log "relay to an outside domain refused"

mm_wait_delivered bob 2 30 || mm_fail "bob has $(mm_count_messages bob) of 2 messages"
mm_log "both delivered to bob's Maildir"

# Check one RFC 822 message FILE: attachment NAME must equal file EXPECTED byte for byte.
check_attachment() {
  python3 - "$1" "$2" "$3" <<'EOF'
import email, email.policy, sys
path, name, expected = sys.argv[1:4]
with open(path, "rb") as f:
    msg = email.message_from_binary_file(f, policy=email.policy.default)
want = open(expected, "rb").read()
for part in msg.walk():
    if part.get_filename() == name:
        got = part.get_payload(decode=True)
        if got != want:
            sys.exit("attachment %s differs: %d bytes, expected %d" % (name, len(got), len(want)))
        sys.exit(0)
sys.exit("no attachment named %s in %s" % (name, path))
EOF
}

# POP3 via curl: listing, then both messages.
list=$(curl -sS --max-time 20 "pop3://127.0.0.1:$MM_POP3_PORT/" -u "bob:$MM_POP3_PASS") ||
  mm_fail "curl LIST failed"
[ "$(printf '%s\n' "$list" | grep -c .)" -eq 2 ] || mm_fail "curl LIST shows: $list"
for i in 1 2; do
  curl -sS --max-time 20 "pop3://127.0.0.1:$MM_POP3_PORT/$i" -u "bob:$MM_POP3_PASS" \
    -o "$MM_TMP/curl.$i.eml" || mm_fail "curl RETR $i failed"
done
found=0
for i in 1 2; do
  if grep -q '^Subject: stack test one' "$MM_TMP/curl.$i.eml"; then
    check_attachment "$MM_TMP/curl.$i.eml" clip.mp4 "$MM_TMP/clip.mp4" || mm_fail "curl: clip.mp4 damaged"
    found=$((found + 1))
  elif grep -q '^Subject: stack test two' "$MM_TMP/curl.$i.eml"; then
    check_attachment "$MM_TMP/curl.$i.eml" notes.txt "$MM_TMP/notes.txt" || mm_fail "curl: notes.txt damaged"
    found=$((found + 1))
  fi
done
[ $found -eq 2 ] || mm_fail "curl did not return both test mails"
mm_log "curl pop3 returned both mails with intact attachments"

# POP3 via fetchmail with a private rc file and home; messages go to files via an MDA.
mkdir -p "$MM_TMP/fetched" "$MM_TMP/fmhome"
cat >"$MM_TMP/mda.sh" <<EOF
#!/bin/sh
exec cat >"$MM_TMP/fetched/\$(date +%s%N).\$\$.eml"
EOF
chmod 755 "$MM_TMP/mda.sh"
cat >"$MM_TMP/fetchmailrc" <<EOF
set no syslog
set logfile "$MM_TMP/fetchmail.log"
poll 127.0.0.1 with proto POP3 port $MM_POP3_PORT auth password timeout 30
  user "bob" there with password "$MM_POP3_PASS" is "root" here
  options sslproto '' no sslcertck fetchall
  mda "$MM_TMP/mda.sh"
EOF
chmod 600 "$MM_TMP/fetchmailrc"
rc=0
HOME=$MM_TMP/fmhome FETCHMAILHOME=$MM_TMP/fmhome \
  fetchmail -f "$MM_TMP/fetchmailrc" --nodetach --pidfile "$MM_TMP/fmhome/fetchmail.pid" \
  >"$MM_TMP/fetchmail.out" 2>&1 || rc=$?
[ $rc -eq 0 ] || mm_fail "fetchmail exit $rc: $(tail -5 "$MM_TMP/fetchmail.out" "$MM_TMP/fetchmail.log" 2>/dev/null)"
n=$(find "$MM_TMP/fetched" -name '*.eml' | wc -l)
[ "$n" -eq 2 ] || mm_fail "fetchmail delivered $n messages, expected 2"
found=0
for f in "$MM_TMP"/fetched/*.eml; do
  if grep -q '^Subject: stack test one' "$f"; then
    check_attachment "$f" clip.mp4 "$MM_TMP/clip.mp4" || mm_fail "fetchmail: clip.mp4 damaged"
    found=$((found + 1))
  elif grep -q '^Subject: stack test two' "$f"; then
    check_attachment "$f" notes.txt "$MM_TMP/notes.txt" || mm_fail "fetchmail: notes.txt damaged"
    found=$((found + 1))
  fi
done
[ $found -eq 2 ] || mm_fail "fetchmail did not return both test mails"
mm_log "fetchmail retrieved both mails with intact attachments"

# fetchmail ran without --keep: the mailbox must now be empty.
[ "$(mm_count_messages bob)" -eq 0 ] || mm_fail "bob's Maildir still has $(mm_count_messages bob) messages"
mm_log "mailbox emptied by fetchmail"

# The harness must stop cleanly and leave nothing listening.
mm_stack_stop
mm_stack_stop
for port in "$MM_SMTP_PORT" "$MM_POP3_PORT"; do
  if ss -Hltn "sport = :$port" | grep -q .; then
    mm_fail "port $port still listening after mm_stack_stop"
  fi
done
if grep -q "$MM_TMP" <(postconf -h alternate_config_directories); then
  mm_fail "alternate_config_directories still lists $MM_TMP"
fi
mm_log "stack stopped, ports released, system main.cf restored"
echo "stack.test: PASS"
