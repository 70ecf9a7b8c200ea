#!/usr/bin/env bash
# fetcher_clients.test.sh - one mailbox (a video mail detached by the real milter,
# plain mails, malformed mails from the shared corpus) read through mm-fetcher by
# four real POP3 clients: curl, python poplib, fetchmail and neomutt (driven in tmux).
# Each must get every message with its attachments intact (same decoded bytes), the
# video byte-identical to what was sent; UIDL stable and upstream's over two sessions.
set -u
: "${MM_BUILD_DIR:?set MM_BUILD_DIR}" "${MM_SOURCE_DIR:?set MM_SOURCE_DIR}"
CORPUS=${MM_CORPUS_DIR:-$MM_SOURCE_DIR/../shared/corpus/mime}
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

check() { echo "check: $*"; }
command -v neomutt >/dev/null || { echo "FAIL: neomutt not installed (scripts/install-deps.sh)"; exit 1; }
command -v tmux >/dev/null || { echo "FAIL: tmux not installed"; exit 1; }

mm_tmpdir_init
mm_mediamail_start
P=pop3://127.0.0.1:$MM_FETCHER_PORT
TMUX_SOCK=mm-fetcher-clients-$$
trap_tmux() { tmux -L "$TMUX_SOCK" kill-server 2>/dev/null || true; }

# --- the mailbox ---
mm_make_video "$MM_TMP/holiday.mp4" 3
SENT=$(sha256sum "$MM_TMP/holiday.mp4" | cut -c1-64)
mm_swaks_send alice@example.test bob@example.test "Holiday" "the video" "$MM_TMP/holiday.mp4" video/mp4
mm_wait_delivered bob 1 60 || mm_fail "video mail not delivered"
MD=$MM_MAIL_DIR/bob/Maildir
i=0
add_mail() { i=$((i + 1)); cp "$1" "$MD/new/$((1700000000 + i)).M$i.mmclients"; }
printf 'From: carol@example.test\r\nTo: bob@example.test\r\nSubject: plain\r\n\r\nhello bob\r\n.dot\r\n' >"$MM_TMP/plain"
add_mail "$MM_TMP/plain"
for f in cpython-email/msg_07.txt cpython-email/msg_19.txt gmime/empty0.msg enmime/low-quality/bad-final-boundary.raw \
         mime4j/mimetools-testmsgs/multi-2evil.msg thunderbird/mailnews-test-data/mime-torture \
         stalwart-mail-parser/malformed/000.eml; do
  if [ -f "$CORPUS/$f" ]; then add_mail "$CORPUS/$f"; else mm_info "corpus file $f missing, skipped"; fi
done
chown -R "$MM_VMAIL_UID:$MM_VMAIL_GID" "$MM_MAIL_DIR/bob"
N=$(mm_count_messages bob)
mm_info "bob has $N messages (1 video mail, 1 plain, $((N - 2)) from the corpus)"

check "curl: all $N messages listed once the video is verified; the video byte-identical"
ok=0
for _ in $(seq 60); do
  [ "$(curl -s --max-time 60 -u "bob:$MM_POP3_PASS" "$P/" | grep -c '^[0-9]')" -eq "$N" ] && { ok=1; break; }
  sleep 1
done
[ $ok = 1 ] || mm_fail "mm-fetcher lists fewer than $N: $(tail -3 "$MM_TMP/mm-fetcher.log")"
mkdir -p "$MM_TMP/curl"
for n in $(seq "$N"); do
  curl -s --max-time 60 -u "bob:$MM_POP3_PASS" "$P/$n" -o "$MM_TMP/curl/$n.eml" || mm_fail "curl RETR $n"
done
video=$(grep -l -m1 $'^Subject: Holiday\r$' "$MM_TMP/curl"/*.eml | head -n1)   # CRLF as POP3 sends it
[ -n "$video" ] || mm_fail "no Holiday message"
mm_extract_attachment "$video" holiday.mp4 "$MM_TMP/got.mp4"
[ "$(sha256sum "$MM_TMP/got.mp4" | cut -c1-64)" = "$SENT" ] || mm_fail "video differs"
mm_log "curl: $N messages, video sha256 $SENT"

# The attachments of a set of messages: one line "sha256-of-decoded-payload filename" each, sorted.
attachments() {   # attachments mbox FILE | attachments dir DIR
  python3 - "$1" "$2" <<'PY'
import email, email.policy, glob, hashlib, mailbox, sys
kind, where = sys.argv[1], sys.argv[2]
if kind == "mbox":
    msgs = [m.as_bytes() for m in mailbox.mbox(where)]
else:
    msgs = [open(f, "rb").read() for f in sorted(glob.glob(where + "/*"))]
out = []
for raw in msgs:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in msg.walk():
        name = part.get_filename()
        if name and not part.is_multipart():
            data = part.get_payload(decode=True) or b""
            # Whitespace in names is folding, which a client may redo when it stores mail.
            out.append("%s %s" % (hashlib.sha256(data).hexdigest(), " ".join(str(name).split())))
print("\n".join(sorted(out)))
PY
}
attachments dir "$MM_TMP/curl" >"$MM_TMP/att.curl"
[ "$(grep -c holiday.mp4 "$MM_TMP/att.curl")" -eq 1 ] || mm_fail "curl's attachments lack the video"
mm_info "$(wc -l <"$MM_TMP/att.curl") attachments in the mailbox"

check "python poplib: the same bytes as curl; UIDL stable over two sessions and equal to Dovecot's"
python3 - "$MM_FETCHER_PORT" "$MM_POP3_PORT" "$MM_TMP/curl" "$N" <<'PY' || mm_fail "poplib"
import poplib, sys
port, dport, ref, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
uidls = []
for session in range(2):
    p = poplib.POP3("127.0.0.1", port, timeout=60)
    p.user("bob"); p.pass_("secret")
    for i in range(1, n + 1):
        got = b"\r\n".join(p.retr(i)[1]) + b"\r\n"
        want = open("%s/%d.eml" % (ref, i), "rb").read()
        assert got == want, ("message", i, "differs from curl's")
    uidls.append(p.uidl()[1])
    p.quit()
assert uidls[0] == uidls[1], "UIDL changed between sessions"
d = poplib.POP3("127.0.0.1", dport, timeout=60)
d.user("bob"); d.pass_("secret")
assert sorted(uidls[0]) == sorted(d.uidl()[1]), "UIDL differs from Dovecot's"
d.quit()
PY
mm_log "poplib: $N messages identical to curl's; UIDL stable and upstream's"

check "fetchmail (keep): every attachment intact"
FM=$MM_TMP/fm
mkdir -p "$FM/out"
cat >"$FM/mda.sh" <<EOF
#!/bin/sh
cat >"$FM/out/\$(date +%s%N).\$\$"
EOF
chmod 755 "$FM/mda.sh"
cat >"$FM/rc" <<EOF
set no syslog
poll 127.0.0.1 service $MM_FETCHER_PORT protocol POP3 uidl bad-header accept timeout 120
  user "bob" password "$MM_POP3_PASS" is "root" here keep fetchall mda "$FM/mda.sh" sslproto ''
EOF
chmod 600 "$FM/rc"
HOME=$FM fetchmail -f "$FM/rc" -i "$FM/ids" --pidfile "$FM/pid" >"$FM/log" 2>&1
rc=$?
[ $rc -eq 0 ] || { tail -5 "$FM/log"; mm_fail "fetchmail exit $rc"; }
[ "$(find "$FM/out" -type f | wc -l)" -eq "$N" ] || mm_fail "fetchmail delivered $(find "$FM/out" -type f | wc -l) of $N"
attachments dir "$FM/out" >"$MM_TMP/att.fetchmail"
cmp -s "$MM_TMP/att.curl" "$MM_TMP/att.fetchmail" || { diff "$MM_TMP/att.curl" "$MM_TMP/att.fetchmail" | head; mm_fail "fetchmail's attachments differ"; }
mm_log "fetchmail: $N messages, attachments identical"

check "neomutt (fetch-mail into an mbox, driven in tmux): every attachment intact"
NM=$MM_TMP/nm
mkdir -p "$NM"
: >"$NM/spool.mbox"
cat >"$NM/rc" <<EOF
set pop_host="pop://bob@127.0.0.1:$MM_FETCHER_PORT"
set pop_pass="$MM_POP3_PASS"
set pop_delete=no
set pop_last=no
set spool_file="$NM/spool.mbox"
set mbox_type=mbox
set folder="$NM"
set ssl_starttls=no
set ssl_force_tls=no
set pop_authenticators="user"
set header_cache=""
set message_cachedir=""
EOF
chmod 600 "$NM/rc"
tmux -L "$TMUX_SOCK" new-session -d -x 200 -y 50 \
  "TERM=xterm HOME=$NM neomutt -n -F $NM/rc -e 'push <fetch-mail><quit>' 2>$NM/err; echo \$? >$NM/rc.exit"
for _ in $(seq 120); do [ -f "$NM/rc.exit" ] && break; sleep 0.5; done
trap_tmux
[ -f "$NM/rc.exit" ] || mm_fail "neomutt did not finish within 60 s"
[ "$(cat "$NM/rc.exit")" = 0 ] || mm_fail "neomutt exit $(cat "$NM/rc.exit"): $(cat "$NM/err")"
got=$(python3 -c "import mailbox, sys; print(len(mailbox.mbox(sys.argv[1])))" "$NM/spool.mbox")
[ "$got" -eq "$N" ] || mm_fail "neomutt fetched $got of $N"
attachments mbox "$NM/spool.mbox" >"$MM_TMP/att.neomutt"
cmp -s "$MM_TMP/att.curl" "$MM_TMP/att.neomutt" || { diff "$MM_TMP/att.curl" "$MM_TMP/att.neomutt" | head; mm_fail "neomutt's attachments differ"; }
mm_log "neomutt: $N messages, attachments identical"

[ "$(mm_count_messages bob)" -eq "$N" ] || mm_fail "a client deleted mail upstream (keep was set)"
echo "PASS: fetcher_clients"
