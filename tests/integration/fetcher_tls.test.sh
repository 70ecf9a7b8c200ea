#!/usr/bin/env bash
# fetcher_tls.test.sh - mm-fetcher's POP3 edges against a real Dovecot with TLS and
# APOP: upstream pop3s:// and pop3:// + STLS (RFC 2595) trusted by fetcher.upstream_ca
# or fetcher.upstream_pin, refused without; APOP through the proxy with upstream's
# timestamp; AUTH PLAIN (initial response) and LOGIN (RFC 5034); CAPA; the client TLS
# listener (fetcher.tls_listen) and STLS towards clients.
set -u
: "${MM_BUILD_DIR:?set MM_BUILD_DIR}" "${MM_SOURCE_DIR:?set MM_SOURCE_DIR}"
FETCHER=$MM_BUILD_DIR/fetcher/mm-fetcher
[ -x "$FETCHER" ] || { echo "FAIL: $FETCHER not built"; exit 1; }
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"

check() { echo "check: $*"; }

mm_tmpdir_init
mm_dovecot_start
mm_dovecot_tls_enable
MD=$MM_MAIL_DIR/bob/Maildir
mkdir -p "$MD/new" "$MD/cur" "$MD/tmp"
printf 'From: a@example.test\r\nTo: bob@example.test\r\nSubject: one\r\n\r\nhello over TLS\r\n.dot line\r\n' \
  >"$MD/new/1700000001.M1.mmtest"
printf 'From: a@example.test\r\nTo: bob@example.test\r\nSubject: two\r\n\r\nsecond\r\n' >"$MD/new/1700000002.M2.mmtest"
chown -R "$MM_VMAIL_UID:$MM_VMAIL_GID" "$MM_MAIL_DIR/bob"

# Client-side certificate for the fetcher's own TLS listener.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$MM_TMP/fkey.pem" -out "$MM_TMP/fcert.pem" >/dev/null 2>&1 || mm_fail "openssl req"

N=0
start_fetcher() {   # start_fetcher NAME UPSTREAM [--set ...]
  local name=$1 up=$2
  shift 2
  N=$((N + 1))
  PORT=$(mm_free_port) || mm_fail "no free port"
  "$FETCHER" --set fetcher.upstream="$up" --set fetcher.listen="127.0.0.1:$PORT" \
    --set fetcher.cache_dir="$MM_TMP/cache-$name" --set fetcher.timeout=10s --set log.level=debug "$@" \
    >>"$MM_TMP/fetcher-$name.log" 2>&1 &
  FPID=$!
  mm_register_pid "$FPID"
  mm_wait_port "$PORT" 10 || { cat "$MM_TMP/fetcher-$name.log"; mm_fail "mm-fetcher $name not listening"; }
}
stop_fetcher() { kill -TERM "$FPID"; mm__wait_gone 10 "$FPID" || mm_fail "mm-fetcher did not stop"; }
retr1() { curl -s --max-time 30 -u bob:secret "pop3://127.0.0.1:$PORT/1"; }
direct1=$(curl -s --max-time 30 -u bob:secret "pop3://127.0.0.1:$MM_POP3_PORT/1" | md5sum)

check "pop3s:// upstream trusted through fetcher.upstream_ca"
start_fetcher ca "pop3s://127.0.0.1:$MM_POP3S_PORT" --set fetcher.upstream_ca="$MM_DOVECOT_CERT"
[ "$(retr1 | md5sum)" = "$direct1" ] || { tail -5 "$MM_TMP/fetcher-ca.log"; mm_fail "RETR over pop3s differs or failed"; }
grep -q "lip=127.0.0.1.*TLS" "$MM_DOVECOT_LOG" || mm_info "dovecot log does not mark TLS sessions"
stop_fetcher
mm_log "pop3s with the CA file: message identical to direct RETR"

check "pop3:// + STLS upstream trusted through fetcher.upstream_pin"
start_fetcher pin "pop3://127.0.0.1:$MM_POP3_PORT" --set fetcher.upstream_tls=required \
  --set fetcher.upstream_pin="$MM_DOVECOT_PIN"
[ "$(retr1 | md5sum)" = "$direct1" ] || { tail -5 "$MM_TMP/fetcher-pin.log"; mm_fail "RETR over STLS differs or failed"; }
stop_fetcher
mm_log "STLS with the key pin: message identical"

check "no CA and no pin: the self-signed server is refused; a wrong pin too"
start_fetcher noca "pop3s://127.0.0.1:$MM_POP3S_PORT"
out=$(python3 - "$PORT" <<'PY'
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
p.user("bob")
try:
    p.pass_("secret"); print("logged in")
except poplib.error_proto as e:
    print(e)
PY
)
case $out in *"[SYS/TEMP]"*) ;; *) mm_fail "unverified upstream accepted: $out" ;; esac
grep -q "certificate verify failed\|TLS handshake failed" "$MM_TMP/fetcher-noca.log" || mm_fail "no TLS failure logged"
stop_fetcher
start_fetcher badpin "pop3s://127.0.0.1:$MM_POP3S_PORT" \
  --set fetcher.upstream_pin="sha256//$(head -c 32 /dev/zero | base64 -w0)"
[ -z "$(retr1)" ] || mm_fail "wrong pin accepted"
grep -q "does not match fetcher.upstream_pin" "$MM_TMP/fetcher-badpin.log" || mm_fail "pin mismatch not logged"
stop_fetcher
! grep -q secret "$MM_TMP"/fetcher-*.log || mm_fail "a password reached a log"
mm_log "unverified and wrongly pinned servers refused, -ERR [SYS/TEMP] to the client"

check "APOP, AUTH PLAIN (initial response and continuation), AUTH LOGIN, CAPA, through the proxy"
start_fetcher auth "pop3s://127.0.0.1:$MM_POP3S_PORT" --set fetcher.upstream_ca="$MM_DOVECOT_CERT" \
  --set fetcher.tls_cert="$MM_TMP/fcert.pem" --set fetcher.tls_key="$MM_TMP/fkey.pem"
python3 - "$PORT" <<'PY' || mm_fail "APOP/AUTH dialogue"
import base64, poplib, socket, sys
port = int(sys.argv[1])

p = poplib.POP3("127.0.0.1", port, timeout=30)
assert b"<" in p.getwelcome() and b"@" in p.getwelcome(), p.getwelcome()
caps = p.capa()
assert "SASL" in caps and set(caps["SASL"]) == {"PLAIN", "LOGIN"}, caps
assert "STLS" in caps and "USER" in caps and "PIPELINING" not in caps, caps
p.apop("bob", "secret")
assert p.stat()[0] == 2
p.quit()
print("  APOP ok, CAPA:", sorted(caps))

p = poplib.POP3("127.0.0.1", port, timeout=30)
try:
    p.apop("bob", "wrong")
    raise SystemExit("APOP with a wrong secret succeeded")
except poplib.error_proto as e:
    assert b"[AUTH]" in e.args[0], e
p.quit()

def dialogue(lines):
    s = socket.create_connection(("127.0.0.1", port), 30)
    f = s.makefile("rb")
    out = [f.readline()]
    for l in lines:
        s.sendall(l + b"\r\n")
        out.append(f.readline())
    s.close()
    return out

plain = base64.b64encode(b"\0bob\0secret")
r = dialogue([b"AUTH PLAIN " + plain, b"STAT", b"QUIT"])
assert r[1].startswith(b"+OK") and r[2].startswith(b"+OK 2 "), r
r = dialogue([b"AUTH PLAIN", plain, b"STAT", b"QUIT"])
assert r[1].startswith(b"+ ") and r[2].startswith(b"+OK") and r[3].startswith(b"+OK 2 "), r
r = dialogue([b"AUTH LOGIN", base64.b64encode(b"bob"), base64.b64encode(b"secret"), b"STAT", b"QUIT"])
assert r[1].startswith(b"+ ") and r[2].startswith(b"+ ") and r[3].startswith(b"+OK"), r
assert r[4].startswith(b"+OK 2 "), r
r = dialogue([b"AUTH PLAIN " + base64.b64encode(b"\0bob\0nope"), b"AUTH PLAIN", b"*", b"AUTH CRAM-MD5", b"QUIT"])
assert r[1].startswith(b"-ERR [AUTH]"), r
assert r[2].startswith(b"+ ") and r[3].startswith(b"-ERR"), r
assert r[4].startswith(b"-ERR"), r
assert r[5].startswith(b"+OK"), r
print("  AUTH PLAIN/LOGIN ok, bad password and cancel refused")
PY
mm_log "APOP digest over upstream's timestamp, SASL PLAIN and LOGIN passed through"

check "client TLS: STLS on the plain listener and the implicit-TLS listener"
stop_fetcher
TLSPORT=$(mm_free_port) || mm_fail "no free port"
start_fetcher tlsl "pop3s://127.0.0.1:$MM_POP3S_PORT" --set fetcher.upstream_ca="$MM_DOVECOT_CERT" \
  --set fetcher.tls_cert="$MM_TMP/fcert.pem" --set fetcher.tls_key="$MM_TMP/fkey.pem" \
  --set fetcher.tls_listen="127.0.0.1:$TLSPORT"
mm_wait_port "$TLSPORT" 10 || mm_fail "TLS listener not up"
python3 - "$PORT" "$TLSPORT" "$MM_TMP/fcert.pem" <<'PY' || mm_fail "client TLS"
import poplib, ssl, sys
port, tlsport, cert = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cert)
p = poplib.POP3("127.0.0.1", port, timeout=30)
p.stls(context=ctx)
assert "STLS" not in p.capa()
p.user("bob"); p.pass_("secret")
one = p.retr(1)[1]
p.quit()
q = poplib.POP3_SSL("127.0.0.1", tlsport, context=ctx, timeout=30)
q.user("bob"); q.pass_("secret")
assert q.retr(1)[1] == one
assert q.stat()[0] == 2
q.quit()
print("  STLS and POP3S both verified against the fetcher's certificate")
PY
curl -s --max-time 30 --cacert "$MM_TMP/fcert.pem" -u bob:secret "pop3s://127.0.0.1:$TLSPORT/1" | md5sum |
  grep -q "${direct1%% *}" || mm_fail "curl over the TLS listener"
stop_fetcher
mm_log "STLS and implicit TLS towards clients; curl pop3s:// identical"

check "config errors: a TLS listener without a certificate, a malformed pin"
"$FETCHER" --set fetcher.tls_listen=127.0.0.1:1 >/dev/null 2>&1
[ $? -eq 78 ] || mm_fail "tls_listen without cert did not exit 78"
"$FETCHER" --set fetcher.upstream_pin=sha256//short >/dev/null 2>&1
[ $? -eq 78 ] || mm_fail "bad pin did not exit 78"
mm_log "refused with EX_CONFIG"

echo "PASS: fetcher_tls"
