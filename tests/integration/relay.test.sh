#!/usr/bin/env bash
# relay.test.sh - mm-gateway behind NAT (gateway.relay): a private OpenSSH sshd
# on loopback is the relay; the gateway has no listening socket at all and
# serves through the relay's forwarded port. A media mail goes through
# Postfix + mm-milter, Dovecot and mm-fetcher, which reads it through the relay
# byte-identical with the gateway's own pin. Then the relay dies mid-transfer
# and stays away while the fetcher's attempts fail (a sender offline for a
# while); back again, the gateway reconnects (backoff) and the fetcher resumes
# within fetcher.retry_max. Abuse and failure: a changed or unknown host key
# (refused, logged, nothing served), a key the relay does not accept, a port
# permitlisten refuses, bad configuration, a flood of idle channels held under
# gateway.max_connections.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

[ -x /usr/sbin/sshd ] || mm_fail "/usr/sbin/sshd missing (Debian openssh-server, scripts/install-deps.sh)"
mib=${MM_RELAY_MIB:-80}
cases=0
mm_tmpdir_init
GW=$(mm_bin mm-gateway)

# ---- the relay: a private sshd with its own host key, one user (root: the
# test runs as root) whose authorized_keys line allows only the forward.
R=$MM_TMP/relay
mkdir -p "$R" /run/sshd   # /run/sshd: sshd's privilege separation directory
chmod 700 "$R"
ssh-keygen -q -t ed25519 -N '' -C relay-host -f "$R/host_key"
ssh-keygen -q -t ed25519 -N '' -C other-host -f "$R/other_host_key"
ssh-keygen -q -t ed25519 -N '' -C mm-gateway -f "$R/gw_key"
ssh-keygen -q -t ed25519 -N '' -C stranger -f "$R/stranger_key"
SSHD_PORT=$(mm_free_port)
RELAY_PORT=$(mm_free_port)   # the port receivers use; permitlisten allows only it
OTHER_PORT=$(mm_free_port)
ADMIN_PORT=$(mm_free_port)
echo "restrict,port-forwarding,permitlisten=\"$RELAY_PORT\" $(cat "$R/gw_key.pub")" >"$R/authorized_keys"
cat >"$R/sshd_config" <<EOF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $R/host_key
PidFile none
AuthorizedKeysFile $R/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
AllowTcpForwarding no
GatewayPorts no
Match User root
    AllowTcpForwarding remote
    GatewayPorts clientspecified
EOF
/usr/sbin/sshd -t -f "$R/sshd_config" || mm_fail "sshd refuses its config"
SSHD_PID=
start_sshd() {
  /usr/sbin/sshd -D -e -f "$R/sshd_config" >>"$MM_TMP/sshd.log" 2>&1 &
  SSHD_PID=$!
  mm_register_pid "$SSHD_PID"
  mm_wait_port "$SSHD_PORT" 20 || mm_fail "sshd did not start: $(tail -5 "$MM_TMP/sshd.log")"
}
start_sshd
# The known_hosts line as an admin gets it (and checks its fingerprint out of band).
ssh-keyscan -t ed25519 -p "$SSHD_PORT" 127.0.0.1 2>/dev/null >"$R/known_hosts"
grep -q "^\[127.0.0.1\]:$SSHD_PORT ssh-ed25519 " "$R/known_hosts" || mm_fail "ssh-keyscan gave no key"
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$R/other_host_key.pub")" >"$R/known_hosts.changed"
echo "[127.0.0.1]:1 $(cut -d' ' -f1,2 "$R/host_key.pub")" >"$R/known_hosts.unknown"
mm_log "relay sshd on 127.0.0.1:$SSHD_PORT, forward allowed for port $RELAY_PORT only"

# ---- the shared configuration: no gateway.listen; handles name the relay's port.
mm_write_conf
sed -i -e "s|^listen = 127.0.0.1:$MM_GATEWAY_PORT\$|listen =|" \
  -e "s|^public_url = .*|public_url = https://127.0.0.1:$RELAY_PORT|" "$MM_CONF"
sed -i "/^public_url = /a\\
relay = ssh://root@127.0.0.1:$SSHD_PORT\\
relay_key = $R/gw_key\\
relay_known_hosts = $R/known_hosts\\
relay_port = $RELAY_PORT\\
relay_bind = 127.0.0.1\\
relay_backoff_max = 2s\\
max_connections = 16\\
admin_listen = 127.0.0.1:$ADMIN_PORT" "$MM_CONF"
sed -i "/^allow_private = true/a\\
retry_max = 10s" "$MM_CONF"
grep -q '^listen =$' "$MM_CONF" || mm_fail "could not empty gateway.listen in $MM_CONF"
mkdir -p "$MM_STORE"

# ---- configuration errors: each names its key (exit 78, EX_CONFIG)
expect_config_error() {   # KEY --set...
  local key=$1 rc=0
  shift
  "$GW" -c "$MM_CONF" "$@" --check >"$MM_TMP/check.out" 2>&1 || rc=$?
  [ $rc -eq 78 ] || mm_fail "--check $* exited $rc, not 78: $(cat "$MM_TMP/check.out")"
  grep -q "$key" "$MM_TMP/check.out" || mm_fail "--check $* did not name $key: $(cat "$MM_TMP/check.out")"
}
"$GW" -c "$MM_CONF" --check >"$MM_TMP/check.out" 2>&1 || mm_fail "--check of the good config: $(cat "$MM_TMP/check.out")"
grep -q "^gateway.relay = ssh://root@127.0.0.1:$SSHD_PORT" "$MM_TMP/check.out" || mm_fail "--check does not show gateway.relay"
expect_config_error gateway.relay_known_hosts --set gateway.relay_known_hosts=
expect_config_error gateway.relay_key --set gateway.relay_key=
expect_config_error gateway.relay_key --set "gateway.relay_key=$R/missing"
expect_config_error gateway.relay_key --set "gateway.relay_key=$R/gw_key.pub"   # a public key is no private key
expect_config_error gateway.relay_known_hosts --set "gateway.relay_known_hosts=$R/known_hosts.unknown"
expect_config_error gateway.relay --set "gateway.relay=ssh://127.0.0.1:$SSHD_PORT"          # no user
expect_config_error gateway.relay --set "gateway.relay=ssh://root:pw@127.0.0.1:$SSHD_PORT"  # a password
expect_config_error gateway.relay --set "gateway.relay=https://root@127.0.0.1"
expect_config_error gateway.listen --set gateway.relay=
mm_log "bad relay settings refused by --check, each naming its key"
cases=$((cases + 1))

# ---- refusals: the gateway logs why, serves nothing, and stops cleanly
refused_case() {   # NAME LOG-PATTERN PORT --set...
  local name=$1 pattern=$2 port=$3 log=$MM_TMP/gw-$1.log pid rc=0
  shift 3
  "$GW" -c "$MM_CONF" "$@" >"$log" 2>&1 &
  pid=$!
  mm_register_pid "$pid"
  mm_wait_for 20 grep -q "state=refused" "$log" || mm_fail "$name: no refusal logged: $(tail -5 "$log")"
  grep "state=refused" "$log" | head -1 | grep -q -- "$pattern" || mm_fail "$name: refusal does not say '$pattern': $(grep state=refused "$log" | head -1)"
  ss -Hltn "sport = :$port" | grep -q . && mm_fail "$name: something listens on port $port"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" = 503 ] ||
    mm_fail "$name: /healthz is not 503"
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ $rc -eq 0 ] || mm_fail "$name: mm-gateway exited $rc after SIGTERM"
  grep -q "state=stopped" "$log" || mm_fail "$name: no stop logged"
  mm_log "$name: refused ($(grep -m1 "state=refused" "$log" | grep -o 'why="[^"]*"' | cut -c1-110)...)"
  cases=$((cases + 1))
}
refused_case changed-host-key 'host key CHANGED' "$RELAY_PORT" --set "gateway.relay_known_hosts=$R/known_hosts.changed"
refused_case unknown-host-key 'host key unknown' "$RELAY_PORT" --set "gateway.relay_known_hosts=$R/known_hosts.unknown"
refused_case key-not-authorized 'refused gateway.relay_key' "$RELAY_PORT" --set "gateway.relay_key=$R/stranger_key"
refused_case port-not-permitted "refused to open port $OTHER_PORT" "$OTHER_PORT" --set "gateway.relay_port=$OTHER_PORT"

# ---- the gateway through the relay, with no listening socket of its own
mm_start_program mm-gateway
GW_PID=$(cat "$MM_TMP/mm-gateway.pid")
mm_wait_for 20 grep -q "state=up" "$MM_TMP/mm-gateway.log" || mm_fail "relay not up: $(tail -5 "$MM_TMP/mm-gateway.log")"
# Its one listening socket is the loopback admin_listen (/healthz, /metrics); no HTTPS port.
own=$(ss -Hltnp | grep "pid=$GW_PID," | grep -v "127.0.0.1:$ADMIN_PORT " || true)
[ -z "$own" ] || mm_fail "mm-gateway listens for HTTPS itself: $own"
ss -Hltnp "sport = :$RELAY_PORT" | grep -q sshd || mm_fail "the relay's sshd does not listen on $RELAY_PORT"
mm_wait_port "$ADMIN_PORT" 10 || mm_fail "no admin listener"
[ "$(curl -s "http://127.0.0.1:$ADMIN_PORT/healthz")" = ok ] || mm_fail "/healthz not ok with the relay up"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -q '^mm_gateway_relay_up 1$' || mm_fail "mm_gateway_relay_up is not 1"
mm_log "mm-gateway up through the relay; ss: no HTTPS listening socket (only admin_listen on loopback)"

# A stored item fetched with curl through the relay port, pinned to the gateway's key.
mm_make_video "$MM_TMP/clip.mp4" 3
mm_gateway_put "$MM_TMP/clip.mp4" --type video/mp4
pin=$(awk '/^pin:/{print $2}' <<<"$MM_PUT_OUT")
[[ "$MM_ITEM_URL" == https://127.0.0.1:$RELAY_PORT/m/* ]] || mm_fail "the handle does not name the relay: $MM_ITEM_URL"
curl -sS --fail -k --pinnedpubkey "$pin" -o "$MM_TMP/clip.back" "$MM_ITEM_URL" || mm_fail "curl through the relay failed"
cmp -s "$MM_TMP/clip.mp4" "$MM_TMP/clip.back" || mm_fail "curl through the relay: bytes differ"
other_pin="sha256//$(head -c 32 /dev/urandom | base64)"
curl -s -k --pinnedpubkey "$other_pin" -o /dev/null "$MM_ITEM_URL" && mm_fail "a wrong pin was accepted: TLS is not end to end"
grep -q "GET 200 .* client=127.0.0.1 " "$MM_TMP/mm-gateway.log" || mm_fail "no access log line with the originator address"
mm_log "curl through the relay: byte-identical with the gateway's pin; a wrong pin fails (TLS ends at the gateway)"
cases=$((cases + 1))

# SIGHUP reloads (log, TLS pair, configuration) without touching the relay's session.
kill -HUP "$GW_PID"
mm_wait_for 10 grep -q "reloaded configuration" "$MM_TMP/mm-gateway.log" || mm_fail "no reload logged after SIGHUP"
[ "$(grep -c "state=up" "$MM_TMP/mm-gateway.log")" = 1 ] || mm_fail "the relay session was taken down by SIGHUP"
curl -sS --fail -k --pinnedpubkey "$pin" -o "$MM_TMP/clip.back1" "$MM_ITEM_URL" || mm_fail "curl after SIGHUP failed"
cmp -s "$MM_TMP/clip.mp4" "$MM_TMP/clip.back1" || mm_fail "curl after SIGHUP: bytes differ"
mm_log "SIGHUP: configuration reloaded, the relay session kept, still served"
cases=$((cases + 1))

# A flood of idle channels from 127.0.0.1: each is a connection under the
# front end's caps, counted against the address the relay reports as the
# channel's originator (max_connections_per_ip = max_connections = 16 here).
# A receiver at another address (127.0.0.2) still gets through: the oldest
# idle connection makes room for it, and its log line names its own address.
python3 - "$RELAY_PORT" 60 >"$MM_TMP/flood.out" 2>&1 <<'PY' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(n):
    held.append(socket.create_connection(("127.0.0.1", port)))
print("open", len(held), flush=True)
time.sleep(30)
PY
flood=$!
mm_wait_for 20 grep -q "^open 60" "$MM_TMP/flood.out" || mm_fail "flood did not open: $(cat "$MM_TMP/flood.out")"
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
metric_is() { [ "$(metric "$1")" "$2" "$3" ]; }   # NAME -ge N: for mm_wait_for, which runs it again each time
mm_wait_for 10 metric_is mm_gateway_relay_channels_total -ge 61 || mm_fail "channels not seen: $(metric mm_gateway_relay_channels_total)"
sleep 0.5
chan=$(metric mm_gateway_relay_channels)
[ "$chan" -le 16 ] || mm_fail "$chan relayed channels open, over gateway.max_connections = 16"
curl -sS --fail -k --interface 127.0.0.2 --pinnedpubkey "$pin" -o "$MM_TMP/clip.back2" "$MM_ITEM_URL" ||
  mm_fail "curl from 127.0.0.2 during the flood failed"
cmp -s "$MM_TMP/clip.mp4" "$MM_TMP/clip.back2" || mm_fail "curl during the flood: bytes differ"
grep -q "GET 200 .* client=127.0.0.2 " "$MM_TMP/mm-gateway.log" || mm_fail "the access log does not name the originator 127.0.0.2"
refused_ip=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 == "mm_gateway_refused_total{limit=\"max_connections_per_ip\"}" {print $2}')
kill "$flood" 2>/dev/null || true
wait "$flood" 2>/dev/null || true
mm_wait_for 10 metric_is mm_gateway_relay_channels -eq 0 || mm_fail "channels left open after the flood: $(metric mm_gateway_relay_channels)"
mm_log "60 idle channels from one address: at most $chan open at once (cap 16; $refused_ip refused by max_connections_per_ip), a download from another address served, all closed after"
cases=$((cases + 1))

# ---- a media mail through Postfix, the fetcher reads it through the relay
mm_start_program mm-milter
mm_wait_port "$MM_MILTER_PORT" 20 || mm_fail "mm-milter did not start: $(tail -5 "$MM_TMP/mm-milter.log")"
mm_wait_port "$MM_FILTER_PORT" 20 || mm_fail "mm-milter's filter did not start"
MM_PROXY_FILTER=127.0.0.1:$MM_FILTER_PORT MM_PROXY_NEXT=127.0.0.1:$MM_AFTER_PORT \
  mm_postfix_start "inet:127.0.0.1:$MM_MILTER_PORT"
mm_dovecot_start
mm_fetcher_start

mm_random_mp4 "$MM_TMP/big.mp4" $((mib * 1048576))
size=$(stat -c %s "$MM_TMP/big.mp4")
sha=$(sha256sum "$MM_TMP/big.mp4" | cut -d' ' -f1)
mm_make_media_mail "$MM_TMP/big.mp4" "$MM_TMP/big.eml" video/mp4 "Through the relay"
mm_smtp_send_big alice@example.test bob@example.test "$MM_TMP/big.eml"
rm -f "$MM_TMP/big.eml"
mm_wait_delivered bob 1 300 || mm_fail "the media mail was not delivered"
mm_log "$size bytes detached into the store; the small mail is delivered"

# Kill the whole relay (listener and session processes: the forwarded port
# belongs to the session's process) in the middle of the download: a watcher
# does it as soon as the fetcher's .part file holds some but not all of the
# media. The fetchmail run that starts the download is waiting for it then.
nice -n -5 python3 - "$MM_TMP/fetcher-cache" "$sha.part" "$size" "$SSHD_PID" >"$MM_TMP/watch.out" 2>&1 <<'PY' &
import os, signal, sys, time
root, name, size, sshd = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

parent = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            with open(f"/proc/{p}/stat") as f:
                parent[int(p)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
pids = [sshd]
for pid in pids:
    pids.extend(c for c, pp in parent.items() if pp == pid)

part = None
end = time.time() + 60
while time.time() < end:
    if part is None:
        for d, _, files in os.walk(root):
            if name in files:
                part = os.path.join(d, name)
    if part is not None:
        try:
            have = os.stat(part).st_size
        except FileNotFoundError:
            break   # renamed: complete before it was seen partial
        if 0 < have < size:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            print("killed at", have, flush=True)
            sys.exit(0)
    time.sleep(0.001)
print("never saw a partial .part")
sys.exit(1)
PY
watch=$!
mm_fetchmail_via_fetcher bob "$MM_TMP/fetched"   # the login starts the background download
wait "$watch" || mm_fail "could not catch the transfer midway: $(cat "$MM_TMP/watch.out")"
wait "$SSHD_PID" 2>/dev/null || true
seen=$(sed -n 's/^killed at //p' "$MM_TMP/watch.out")
mm_wait_for 10 grep -q "state=waiting" "$MM_TMP/mm-gateway.log" || mm_fail "the gateway did not notice the relay's death"
mm_log "relay sshd killed mid-transfer ($seen of $size bytes in the fetcher's .part)"
[ -z "$(mm_find_by_subject "$MM_TMP/fetched" "Through the relay" || true)" ] || mm_fail "mail presented before its media was complete"

# The sender stays offline while the fetcher's attempts fail (two of them).
attempts() { grep -c "media ${sha:0:16} .*attempt" "$MM_TMP/mm-fetcher.log" || true; }
two_attempts() { [ "$(attempts)" -ge 2 ]; }
mm_wait_for 40 two_attempts || mm_fail "the fetcher did not retry: $(tail -3 "$MM_TMP/mm-fetcher.log")"
mm_wait_for 5 metric_is mm_gateway_relay_reconnects_total -ge 2 || mm_fail "no reconnect attempts counted"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" = 503 ] || mm_fail "/healthz not 503 with the relay away"
mm_log "sender offline: $(attempts) failed fetch attempts, $(metric mm_gateway_relay_reconnects_total) reconnect attempts by the gateway, /healthz 503"

# Back: the gateway reconnects within relay_backoff_max, the fetcher resumes
# within fetcher.retry_max (10s here) and the download completes.
back_line=$(($(wc -l <"$MM_TMP/mm-gateway.log") + 1))
start_sshd
t0=$SECONDS
mm_wait_for 10 bash -c "tail -n +$back_line '$MM_TMP/mm-gateway.log' | grep -q state=up" || mm_fail "the gateway did not reconnect"
t_up=$((SECONDS - t0))
done_file() { find "$MM_TMP/fetcher-cache" -name "$sha" -type f | grep -q .; }
mm_wait_for 40 done_file || mm_fail "the media never completed: $(tail -5 "$MM_TMP/mm-fetcher.log")"
t_done=$((SECONDS - t0))
[ "$t_done" -le $((10 + 2 + 5)) ] || mm_fail "fetched ${t_done}s after the relay came back: more than retry_max + backoff"
after=$(tail -n +"$back_line" "$MM_TMP/mm-gateway.log")
echo "$after" | grep -q 'GET 206 ' || mm_fail "no Range resume (206) after the relay came back"
echo "$after" | grep -q 'GET 200 bytes=[1-9]' && mm_fail "the fetcher started over with a whole-file GET"
mm_log "relay back: gateway up after ${t_up}s, media complete ${t_done}s after (retry_max 10s), resumed with 206"
got=
for _ in $(seq 1 20); do
  mm_fetchmail_via_fetcher bob "$MM_TMP/fetched"
  got=$(mm_find_by_subject "$MM_TMP/fetched" "Through the relay") || got=
  [ -n "$got" ] && break
  sleep 0.5
done
[ -n "$got" ] || mm_fail "the mail was not presented: $(tail -5 "$MM_TMP/mm-fetcher.log")"
mm_extract_attachment "$got" big.mp4 "$MM_TMP/big.back"
[ "$(sha256sum "$MM_TMP/big.back" | cut -d' ' -f1)" = "$sha" ] || mm_fail "the attachment differs"
mm_log "fetchmail through mm-fetcher: the attachment is byte-identical (sha256 ${sha:0:16}...)"
cases=$((cases + 2))

# ---- a clean stop with the relay up
mm_stop_program mm-gateway
grep -q "state=stopped" "$MM_TMP/mm-gateway.log" || mm_fail "no stop logged"
mm_wait_for 5 bash -c "! ss -Hltn 'sport = :$RELAY_PORT' | grep -q ." || mm_fail "the relay port stayed open after the gateway stopped"
mm_log "SIGTERM: exit 0, the relay's port closed with the session"
cases=$((cases + 1))
echo "relay: $cases cases passed"
