#!/usr/bin/env bash
# fetcher.test.sh - mm-fetcher in front of a private Dovecot (RFC 1939 POP3): messages
# byte-identical to direct RETR, LIST sizes, UIDL, DELE/RSET/QUIT, bad input, held-back
# media, with curl, fetchmail and python poplib as clients. Keys set: fetcher.* via --set.
set -u
: "${MM_BUILD_DIR:?set MM_BUILD_DIR}" "${MM_SOURCE_DIR:?set MM_SOURCE_DIR}"
FETCHER=$MM_BUILD_DIR/fetcher/mm-fetcher
CORPUS=${MM_CORPUS_DIR:-$MM_SOURCE_DIR/../shared/corpus/mime}
[ -x "$FETCHER" ] || { echo "FAIL: $FETCHER not built"; exit 1; }
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"

check() { echo "check: $*"; }

mm_tmpdir_init
mm_dovecot_start

# --- bob's mailbox: synthetic mails plus corpus files (single messages only) ---
MD=$MM_MAIL_DIR/bob/Maildir
mkdir -p "$MD/new" "$MD/cur" "$MD/tmp"
i=0
add_mail() {   # add_mail FILE
  i=$((i + 1))
  cp "$1" "$MD/new/$((1700000000 + i)).M$i.mmtest"
}
printf 'From: a@example.test\nTo: bob@example.test\nSubject: plain\n\nhello bob\n' >"$MM_TMP/m1"
# Lines that need dot-stuffing, a lone dot, and no final newline.
printf 'From: a@example.test\r\nSubject: dots\r\n\r\n.leading dot\r\n.\r\n..two\r\n.\rx\r\nend without newline' >"$MM_TMP/m2"
add_mail "$MM_TMP/m1"
add_mail "$MM_TMP/m2"
for f in cpython-email/msg_01.txt cpython-email/msg_07.txt cpython-email/msg_19.txt gmime/empty0.msg \
         gmime/empty2.msg enmime/low-quality/bad-final-boundary.raw enmime/low-quality/bad-header-wrap.raw \
         mime4j/mimetools-testmsgs/multi-2evil.msg php-mime-mail-parser/m0005 \
         thunderbird/mailnews-test-data/mime-torture stalwart-mail-parser/malformed/000.eml; do
  if [ -f "$CORPUS/$f" ]; then add_mail "$CORPUS/$f"; else mm_info "corpus file $f missing, skipped"; fi
done
chown -R "$MM_VMAIL_UID:$MM_VMAIL_GID" "$MM_MAIL_DIR/bob"
N=$i
mm_info "bob has $N messages"

# --- mm-fetcher ---
PORT=$(mm_free_port) || mm_fail "no free port"
start_fetcher() {
  "$FETCHER" --set fetcher.upstream="pop3://127.0.0.1:$MM_POP3_PORT" --set fetcher.upstream_tls=none \
    --set fetcher.listen="127.0.0.1:$PORT" --set fetcher.cache_dir="$MM_TMP/cache" \
    --set fetcher.timeout=20s --set log.level=debug "$@" 2>>"$MM_TMP/fetcher.log" &
  FPID=$!
  mm_register_pid "$FPID"
  mm_wait_port "$PORT" 10 || { cat "$MM_TMP/fetcher.log"; mm_fail "mm-fetcher not listening"; }
}

check "--help lists the keys; a bad key value exits 78"
"$FETCHER" --help | grep -q fetcher.upstream_tls || mm_fail "--help does not list keys"
"$FETCHER" --set fetcher.max_size=banana >/dev/null 2>&1
[ $? -eq 78 ] || mm_fail "bad config did not exit 78"
mm_log "usage and EX_CONFIG"

start_fetcher
P=pop3://127.0.0.1:$PORT
D=pop3://127.0.0.1:$MM_POP3_PORT

check "greeting"
python3 - "$PORT" <<'PY' || mm_fail "greeting"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
assert s.recv(100) == b"+OK MediaMail fetcher ready\r\n"
PY
mm_log "greeting"

check "LIST through the proxy has $N messages, sizes equal RETR octets, bodies byte-identical to Dovecot"
curl -s --max-time 60 -u bob:secret "$P/" >"$MM_TMP/list" || mm_fail "curl LIST via proxy"
[ "$(wc -l <"$MM_TMP/list")" -eq "$N" ] || mm_fail "proxy LIST has $(wc -l <"$MM_TMP/list") lines, want $N"
while read -r n size; do
  size=${size%$'\r'}
  curl -s --max-time 60 -u bob:secret "$P/$n" -o "$MM_TMP/p.$n" || mm_fail "RETR $n via proxy"
  curl -s --max-time 60 -u bob:secret "$D/$n" -o "$MM_TMP/d.$n" || mm_fail "RETR $n direct"
  cmp -s "$MM_TMP/p.$n" "$MM_TMP/d.$n" || mm_fail "message $n differs from Dovecot's"
  got=$(stat -c %s "$MM_TMP/p.$n")
  [ "$got" -eq "$size" ] || mm_fail "message $n: LIST says $size, RETR gave $got octets"
done <"$MM_TMP/list"
mm_log "$N messages identical, sizes exact"

check "UIDL equals Dovecot's"
curl -s -u bob:secret -X UIDL "$P/" | tr -d '\r' >"$MM_TMP/uidl.p"
curl -s -u bob:secret -X UIDL "$D/" | tr -d '\r' >"$MM_TMP/uidl.d"
[ -s "$MM_TMP/uidl.p" ] && cmp -s "$MM_TMP/uidl.p" "$MM_TMP/uidl.d" || mm_fail "UIDL differs"
mm_log "UIDL identical"

check "fetchmail (keep, uidl) gets through the proxy what it gets from Dovecot, and nothing new the second time"
FM=$MM_TMP/fetchmail
mkdir -p "$FM/out" "$FM/direct"
fm_rc() {   # fm_rc PORT OUTDIR RCFILE
  cat >"$FM/deliver-$1.sh" <<SH
#!/bin/sh
cat >"$2/\$(date +%s%N).\$\$"
SH
  chmod 755 "$FM/deliver-$1.sh"
  cat >"$3" <<RC
set no syslog
poll 127.0.0.1 service $1 protocol POP3 uidl bad-header accept
  user "bob" password "secret" is "root" here keep mda "$FM/deliver-$1.sh" sslproto ''
RC
  chmod 600 "$3"
}
fm_rc "$MM_POP3_PORT" "$FM/direct" "$FM/rc.direct"
fm_rc "$PORT" "$FM/out" "$FM/rc"
HOME=$FM fetchmail -f "$FM/rc.direct" -i "$FM/ids.direct" -v >"$FM/log0" 2>&1
want=$(find "$FM/direct" -type f | wc -l)
[ "$want" -eq "$N" ] || { cat "$FM/log0"; mm_fail "fetchmail direct from Dovecot got only $want of $N"; }
HOME=$FM fetchmail -f "$FM/rc" -i "$FM/ids" -v >"$FM/log1" 2>&1
rc=$?
[ $rc -eq 0 ] || { cat "$FM/log1"; mm_fail "fetchmail run 1 exit $rc"; }
got=$(find "$FM/out" -type f | wc -l)
[ "$got" -eq "$want" ] || { cat "$FM/log1"; mm_fail "fetchmail delivered $got via the proxy, $want directly"; }
[ "$(cat "$FM/out"/* | grep -v '^Received:\|^\s' | md5sum)" = "$(cat "$FM/direct"/* | grep -v '^Received:\|^\s' | md5sum)" ] ||
  mm_info "fetchmail output differs in more than Received: lines"
HOME=$FM fetchmail -f "$FM/rc" -i "$FM/ids" -v >"$FM/log2" 2>&1
rc=$?
[ $rc -eq 1 ] || { cat "$FM/log2"; mm_fail "fetchmail run 2 exit $rc, want 1 (no new mail)"; }
[ "$(find "$FM/out" -type f | wc -l)" -eq "$got" ] || mm_fail "fetchmail fetched again"
mm_log "fetchmail got $got via the proxy (as directly; of $N), UIDL stable on the second run"

check "protocol dialogue: bad commands, state table, RSET, TOP, python poplib"
python3 - "$PORT" "$N" <<'PY' || mm_fail "dialogue"
import poplib, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])

def raw(cmds):
    s = socket.create_connection(("127.0.0.1", port), 10)
    f = s.makefile("rb")
    out = [f.readline()]
    for c in cmds:
        s.sendall(c)
        out.append(f.readline())
    s.close()
    return out

# Commands out of state, unknown, overlong and malformed are refused (10 bad: the limit).
r = raw([b"STAT\r\n", b"RETR 1\r\n", b"FOO\r\n", b"X" * 600 + b"\r\n",
         b"USER bob\r\n", b"PASS wrong\r\n", b"USER bob\r\n", b"PASS secret\r\n",
         b"RETR 0\r\n", b"RETR -1\r\n", b"RETR 1a\r\n", b"LIST 99999999999999999999\r\n",
         b"USER bob\r\n", b"noop\r\n", b"QUIT\r\n"])
print(r)
assert r[0].startswith(b"+OK")
for i in (1, 2, 3, 4, 6, 9, 10, 11, 12, 13):
    assert r[i].startswith(b"-ERR"), (i, r[i])
for i in (5, 7, 8, 14, 15):
    assert r[i].startswith(b"+OK"), (i, r[i])
assert r[4] == b"-ERR line too long\r\n", r[4]
print("  bad commands refused, session stays in sync")

# More than 10 bad commands: the proxy hangs up.
r = raw([b"BAD\r\n"] * 11 + [b"NOOP\r\n"])
assert r[11] == b"-ERR too many bad commands\r\n", r[11]
assert r[12] == b"", r[12]
print("  too many bad commands -> closed")

p = poplib.POP3("127.0.0.1", port, timeout=30)
p.user("bob"); p.pass_("secret")
count, size = p.stat()
assert count == n, (count, n)
resp, lines, octets = p.retr(1)
assert b"hello bob" in b"\n".join(lines)
resp, lines, octets = p.top(2, 1)
assert lines[-1] == b".leading dot", lines
assert p.dele(1).startswith(b"+OK")
try:
    p.retr(1); assert False, "RETR of a deleted message succeeded"
except poplib.error_proto:
    pass
assert p.stat()[0] == n - 1
p.rset()
assert p.stat()[0] == n
p.retr(1)
caps = p.capa()
assert "UIDL" in caps and "TOP" in caps and "PIPELINING" not in caps, caps
p.quit()
print("  poplib: STAT, RETR, TOP, DELE, RSET, CAPA ok")
PY
[ "$(mm_count_messages bob)" -eq "$N" ] || mm_fail "RSET did not undo DELE upstream"
mm_log "dialogue ok; RSET kept all $N upstream"

check "DELE + QUIT removes the message upstream; no QUIT removes nothing"
python3 - "$PORT" <<'PY' || mm_fail "DELE session"
import poplib, socket, sys
port = int(sys.argv[1])
p = poplib.POP3("127.0.0.1", port, timeout=30)
p.user("bob"); p.pass_("secret")
p.dele(2)
p.sock.close()   # dropped without QUIT: no UPDATE
p = poplib.POP3("127.0.0.1", port, timeout=30)
p.user("bob"); p.pass_("secret")
p.dele(1)
p.quit()
PY
[ "$(mm_count_messages bob)" -eq $((N - 1)) ] || mm_fail "Maildir has $(mm_count_messages bob), want $((N - 1))"
curl -s -u bob:secret "$P/" | grep -c . | grep -qx $((N - 1)) || mm_fail "proxy LIST after DELE"
mm_log "one message deleted upstream"

check "a handle at a loopback address is not fetched (allow_private off): the mail is shown with its link"
sha=$(printf 'x%.0s' $(seq 1000) | sha256sum | cut -c1-64)
hdr=$(printf 'Content-Type: video/mp4; name="a.mp4"\r\nContent-Transfer-Encoding: base64\r\n\r\n' | base64 -w0)
pin="sha256//$(head -c 32 /dev/zero | base64 -w0)"
cat >"$MM_TMP/handle.eml" <<MAIL
From: alice@example.test
To: bob@example.test
Subject: media
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

see the video
--b1
Content-Type: text/plain; charset=utf-8
Content-Disposition: inline
X-Media-Handle: v=1; url="https://127.0.0.1:9/m/abc"; sha256=$sha; size=1000;
 type="video/mp4"; name="a.mp4"; pin="$pin"; expires="2030-01-01T00:00:00Z";
 hdr="$hdr"; enc=base64; linelen=76; eol=crlf; final=1; psize=1450

The video is stored elsewhere.
--b1--
MAIL
add_mail "$MM_TMP/handle.eml"
chown -R "$MM_VMAIL_UID:$MM_VMAIL_GID" "$MM_MAIL_DIR/bob"
curl -s -u bob:secret "$P/" >"$MM_TMP/list2"
shown=$(grep -c '^[0-9]' "$MM_TMP/list2")
[ "$shown" -eq "$N" ] || mm_fail "handle mail not shown ($shown listed, want $N)"
grep -q "address refused" "$MM_TMP/fetcher.log" || mm_fail "no refused address logged"
curl -s -u bob:secret "$P/$N" | grep -q '^X-Media-Handle: v=1' || mm_fail "shown mail lacks its location part"
mm_log "loopback handle refused at connect; mail shown as it is, $shown listed"

check "one log line per session without the password; SIGTERM stops cleanly"
grep -q "session user=bob" "$MM_TMP/fetcher.log" || mm_fail "no session log line"
! grep -q secret "$MM_TMP/fetcher.log" || mm_fail "password in the log"
kill -TERM "$FPID"
for _ in $(seq 50); do kill -0 "$FPID" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$FPID" 2>/dev/null || mm_fail "mm-fetcher still running after SIGTERM"
wait "$FPID"; rc=$?
[ $rc -eq 0 ] || mm_fail "mm-fetcher exit $rc after SIGTERM"
mm_log "stopped cleanly"

check "fetcher.max_sessions caps concurrent clients"
start_fetcher --set fetcher.max_sessions=1
python3 - "$PORT" <<'PY' || mm_fail "max_sessions"
import socket, sys
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port), 5)
assert a.recv(100).startswith(b"+OK")
b = socket.create_connection(("127.0.0.1", port), 5)
assert b.recv(100).startswith(b"-ERR"), "second session accepted"
a.sendall(b"QUIT\r\n"); a.recv(100); a.close()
PY
mm_log "second concurrent session refused"

check "a message over fetcher.max_size is shown as it is (location part and link), at every login"
kill -TERM "$FPID"; wait "$FPID" 2>/dev/null
DD=$MM_MAIL_DIR/carol/Maildir
mkdir -p "$DD/new" "$DD/cur" "$DD/tmp"
{ cat "$MM_TMP/handle.eml"; for n in $(seq 200); do echo "padding line $n to take the mail over max_size"; done; } \
  >"$DD/new/1700000001.M1.mmtest"
cp "$MM_TMP/m1" "$DD/new/1700000002.M2.mmtest"
chown -R "$MM_VMAIL_UID:$MM_VMAIL_GID" "$DD"
start_fetcher --set fetcher.max_size=4k
python3 - "$PORT" "$MM_POP3_PORT" <<'PY' || mm_fail "over max_size"
import poplib, sys
def read(port):
    p = poplib.POP3("127.0.0.1", int(port), timeout=30)
    p.user("carol"); p.pass_("secret")
    listing = [l.split()[1] for l in p.list()[1]]
    msgs = [b"\r\n".join(p.retr(i)[1]) for i in range(1, len(listing) + 1)]
    top = p.top(1, 0)[1]
    p.quit()
    return listing, msgs, top
direct = read(sys.argv[2])
for login in (1, 2):
    got = read(sys.argv[1])
    assert got[0] == direct[0], ("LIST differs", login, got[0], direct[0])
    assert got[1] == direct[1], ("messages differ", login)
    assert got[2] == direct[2], ("TOP differs", login)
assert len(direct[0]) == 2 and int(direct[0][0]) > 4096 and b"X-Media-Handle: v=1" in direct[1][0]
PY
! grep -q "held back uidl=.*larger than" "$MM_TMP/fetcher.log" || mm_fail "big message held back"
mm_log "over max_size: listed, RETR and TOP byte-identical to Dovecot's at two logins"

check "a cache copy a crash cut short is fetched again from upstream at RETR, never served"
for f in "$MM_TMP"/cache/msg/*.pack; do truncate -s 100 "$f"; done
python3 - "$PORT" "$MM_POP3_PORT" <<'PY' || mm_fail "damaged copy"
import poplib, sys
def read(port):
    p = poplib.POP3("127.0.0.1", int(port), timeout=30)
    p.user("carol"); p.pass_("secret")
    msgs = [b"\r\n".join(p.retr(i)[1]) for i in range(1, len(p.list()[1]) + 1)]
    p.quit()
    return msgs
assert read(sys.argv[1]) == read(sys.argv[2]), "messages differ"
PY
grep -q "unusable (.*): fetched again" "$MM_TMP/fetcher.log" || mm_fail "damage not noticed"
mm_log "damaged copy noticed at RETR, message fetched again and served whole"

echo "PASS: fetcher"
