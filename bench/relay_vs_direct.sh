#!/usr/bin/env bash
# relay_vs_direct.sh - download throughput from mm-gateway through an SSH relay
# (gateway.relay, docs/relay.md) against the same gateway reached directly,
# side by side in one run: one gateway that both listens on loopback and keeps
# a forward on a private OpenSSH sshd (started here on a high port with its own
# host key and the restricted authorized_keys line of docs/relay.md), one item,
# the same curl with default TLS. Through the relay every byte also crosses
# sshd and libssh's channel (one more encryption each way), so it can only be
# slower; this measures by how much.
#
#   bench/relay_vs_direct.sh [SIZE_MIB] [REPS]
#     SIZE_MIB  file size (default 1024 = 1 GiB)
#     REPS      rounds, each one download each way, alternating; medians reported (default 3)
# Env: MM_BUILD_DIR (default ./build). Run as root (sshd). Needs openssh-server, curl, python3.
set -euo pipefail

SIZE_MIB=${1:-1024}
REPS=${2:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${MM_BUILD_DIR:-$SRC/build}
GW=$BUILD/gateway/mm-gateway
[ -x "$GW" ] || { echo "no $GW: build first (or set MM_BUILD_DIR)" >&2; exit 1; }
[ -x /usr/sbin/sshd ] || { echo "/usr/sbin/sshd missing (scripts/install-deps.sh)" >&2; exit 1; }

T=$(mktemp -d /tmp/mm-bench.XXXXXX)
GW_PID=
SSHD_PID=
cleanup() {
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    exit 1
}

# The relay: the sshd_config and authorized_keys line of docs/relay.md, on loopback.
mkdir -p "$T/relay" /run/sshd
chmod 700 "$T/relay"
ssh-keygen -q -t ed25519 -N '' -C relay-host -f "$T/relay/host_key"
ssh-keygen -q -t ed25519 -N '' -C mm-gateway -f "$T/relay/gw_key"
SSHD_PORT=$(free_port)
RELAY_PORT=$(free_port)
GW_PORT=$(free_port)
echo "restrict,port-forwarding,permitlisten=\"$RELAY_PORT\" $(cat "$T/relay/gw_key.pub")" >"$T/relay/authorized_keys"
cat >"$T/relay/sshd_config" <<CONF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $T/relay/host_key
PidFile none
AuthorizedKeysFile $T/relay/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
AllowTcpForwarding no
Match User root
    AllowTcpForwarding remote
    GatewayPorts clientspecified
CONF
/usr/sbin/sshd -D -e -f "$T/relay/sshd_config" 2>"$T/sshd.log" &
SSHD_PID=$!
wait_port "$SSHD_PORT"
ssh-keyscan -t ed25519 -p "$SSHD_PORT" 127.0.0.1 2>/dev/null >"$T/relay/known_hosts"

echo "making a ${SIZE_MIB} MiB file (random bytes)"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$T/big.bin"
BYTES=$((SIZE_MIB * 1048576))
mkdir -p "$T/store"
OPTS=(--set "store.dir=$T/store" --set "store.min_free=0" --set "gateway.listen=127.0.0.1:$GW_PORT"
      --set "gateway.public_url=https://127.0.0.1:$GW_PORT" --set log.level=warning
      --set "gateway.relay=ssh://root@127.0.0.1:$SSHD_PORT" --set "gateway.relay_key=$T/relay/gw_key"
      --set "gateway.relay_known_hosts=$T/relay/known_hosts" --set "gateway.relay_port=$RELAY_PORT"
      --set gateway.relay_bind=127.0.0.1)
URL=$("$GW" "${OPTS[@]}" put "$T/big.bin" | awk '/^url:/{print $2}')
[ -n "$URL" ] || { echo "mm-gateway put gave no url" >&2; exit 1; }
"$GW" "${OPTS[@]}" serve 2>"$T/gw.log" &
GW_PID=$!
wait_port "$GW_PORT"
wait_port "$RELAY_PORT"
DIRECT=$URL
RELAYED=${URL/:$GW_PORT\//:$RELAY_PORT/}

one() {   # URL -> bytes per second
    local out
    out=$(curl -sS -k -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' "$1")
    [ "${out% *}" = "200 $BYTES" ] || { echo "download from $1 failed: $out" >&2; exit 1; }
    echo "${out##* }"
}
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mbs() { awk -v b="$1" 'BEGIN {printf "%.0f", b / 1048576}'; }

: >"$T/direct"; : >"$T/relayed"; : >"$T/ratio"
echo "one client, ${SIZE_MIB} MiB down, $REPS rounds, alternating (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for r in $(seq 1 "$REPS"); do
    if [ $((r % 2)) -eq 1 ]; then d=$(one "$DIRECT"); v=$(one "$RELAYED"); else v=$(one "$RELAYED"); d=$(one "$DIRECT"); fi
    echo "$d" >>"$T/direct"; echo "$v" >>"$T/relayed"
    awk -v v="$v" -v d="$d" 'BEGIN {printf "%.3f\n", v / d}' >>"$T/ratio"
    printf '  round %d: direct %s MiB/s, through the relay %s MiB/s, ratio %s\n' \
        "$r" "$(mbs "$d")" "$(mbs "$v")" "$(tail -1 "$T/ratio")"
done
echo "median: direct $(mbs "$(median <"$T/direct")") MiB/s, relay $(mbs "$(median <"$T/relayed")") MiB/s; median ratio of rounds $(median <"$T/ratio") x"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
