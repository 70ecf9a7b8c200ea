#!/usr/bin/env bash
# wan.sh - the headline on a simulated internet: four hosts (network namespaces)
# joined by three shaped links, so that every byte a case moves between
# machines crosses a link of a real user's speed:
#
#   A sender's machine --uplink-- B sender's mail server --server link-- C receiver's MX --downlink-- D receiver's machine
#   swaks / mmsend(+gateway)      Postfix + mm-milter/filter + mm-gateway   Postfix + Dovecot        mm-fetcher + POP3 client
#
# B and C forward IP, so the receiver's fetcher reaches a gateway on B (or A)
# over the server link (and the uplink) and the downlink. Each link is shaped with
# tbf in both directions at its rate (no netem on these kernels, so no added
# delay: the links are bandwidth only). Postfix on B relays to C by IP
# (transport_maps), no DNS.
#
# Cases, side by side in one run, each with a video no cache has seen:
#   plain    swaks on A -> Postfix B (no milter) -> C -> curl on D straight from Dovecot
#   milter   as plain, with mm-milter on B's smtpd; D reads through mm-fetcher
#   filter   swaks on A -> B's submission smtpd with mm-milter's before-queue filter -> C -> mm-fetcher on D
#   mmsend   mmsend on A (its own store and mm-gateway on A) -> B -> C -> mm-fetcher on D
#   mmsend-gw  mmsend --gateway on A: uploads the video to B's mm-gateway (no store on
#            A), the small mail -> B -> C -> mm-fetcher on D, which fetches from B
#
# For each case: send -> readable (the mail read on D; its attachment is then
# extracted and checked, untimed),
# delivered -> readable (the receiver's phase), the bytes on each link (as the
# tbf shaper counted them, frame headers included; both directions), the bytes the two mail servers held (queue peaks
# and the Maildir), and the case's floor: for each link, the bytes that crossed
# it in its busier direction divided by its rate, summed along the path
# (store-and-forward, as the issue defines it).
#
#   bench/wan.sh [MIB] [UPLINK_MBIT] [SERVER_MBIT] [DOWNLINK_MBIT]   (defaults 100 50 1000 100)
# Env: MM_BUILD_DIR (default ./build), MM_WAN_ROUNDS (default 1), MM_WAN_CASES
# (default "plain milter filter mmsend mmsend-gw"). Root; needs ip netns and tc tbf.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MM_SOURCE_DIR=$here MM_BUILD_DIR=${MM_BUILD_DIR:-$here/build}
mib=${1:-100}
up=${2:-50}
mid=${3:-1000}
down=${4:-100}
rounds=${MM_WAN_ROUNDS:-1}
cases=${MM_WAN_CASES:-plain milter filter mmsend mmsend-gw}
out=${MM_BENCH_OUT:-/tmp/mm-wan.txt}
. "$here/tests/integration/lib/mailstack.sh"
. "$here/tests/integration/lib/mediamail.sh"
for c in $cases; do
  case $c in plain | milter | filter | mmsend | mmsend-gw) ;; *) echo "wan.sh: unknown case $c" >&2; exit 64 ;; esac
done

# --- the four hosts ------------------------------------------------------------
# Namespace names carry our pid, so that two runs never share one.
NS_A=mmwa$$ NS_B=mmwb$$ NS_C=mmwc$$ NS_D=mmwd$$
A_IP=10.201.1.1 B_UP=10.201.1.2 B_IP=10.201.2.1 C_IP=10.201.2.2 C_DOWN=10.201.3.1 D_IP=10.201.3.2

wan_cleanup() {
  [ -z "${MM_TMP:-}" ] || [ ! -d "$MM_TMP/b" ] || MM_TMP=$MM_TMP/b mm_stack_stop
  local ns
  for ns in $NS_A $NS_B $NS_C $NS_D; do ip netns del "$ns" 2>/dev/null || true; done
}
mm_tmpdir_init
trap 'wan_cleanup; mm__on_exit' EXIT
trap 'exit 143' INT TERM

# link NS1 DEV1 IP1 NS2 DEV2 IP2 MBIT: a veth pair shaped to MBIT both ways.
link() {
  local ns1=$1 d1=$2 ip1=$3 ns2=$4 d2=$5 ip2=$6 mbit=$7 burst
  ip link add "$d1" netns "$ns1" type veth peer name "$d2" netns "$ns2"
  ip -n "$ns1" addr add "$ip1/24" dev "$d1"
  ip -n "$ns2" addr add "$ip2/24" dev "$d2"
  ip -n "$ns1" link set "$d1" up
  ip -n "$ns2" link set "$d2" up
  # tbf needs a bucket of at least one timer tick at the rate (1/100 s here,
  # generous for HZ 250) and never less than a few full-size packets.
  burst=$((mbit * 1000000 / 8 / 100))
  [ "$burst" -ge 65536 ] || burst=65536
  tc -n "$ns1" qdisc add dev "$d1" root tbf rate "${mbit}mbit" burst "$burst" latency 100ms
  tc -n "$ns2" qdisc add dev "$d2" root tbf rate "${mbit}mbit" burst "$burst" latency 100ms
}
for ns in $NS_A $NS_B $NS_C $NS_D; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # A new namespace queues 10 datagrams per unix socket: Postfix's postlogd,
  # which logs its own warnings through its own socket, then blocks on itself
  # at the first burst of warnings (every process warns of the overridden
  # main.cf lines). The host's default is far larger.
  ip netns exec "$ns" sysctl -qw net.unix.max_dgram_qlen=512
done
link "$NS_A" up0 "$A_IP" "$NS_B" up1 "$B_UP" "$up"
link "$NS_B" srv0 "$B_IP" "$NS_C" srv1 "$C_IP" "$mid"
link "$NS_C" dn0 "$C_DOWN" "$NS_D" dn1 "$D_IP" "$down"
ip -n "$NS_A" route add default via "$B_UP"
ip -n "$NS_B" route add 10.201.3.0/24 via "$C_IP"
ip -n "$NS_C" route add 10.201.1.0/24 via "$B_IP"
ip -n "$NS_D" route add default via "$C_DOWN"
ip netns exec "$NS_B" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$NS_C" sysctl -qw net.ipv4.ip_forward=1
mm_info "hosts: A $A_IP -(${up} Mbit/s)- B $B_UP/$B_IP -(${mid} Mbit/s)- C $C_IP/$C_DOWN -(${down} Mbit/s)- D $D_IP"

# --- C: the receiver's MX and Dovecot -------------------------------------------
MM_NETNS=$NS_C MM_LISTEN_IP=$C_IP MM_POSTFIX_EXTRA="mynetworks = 127.0.0.0/8, 10.201.0.0/16" mm_postfix_start
C_SMTP=$MM_SMTP_PORT
C_QUEUE=$MM_TMP/postfix-queue
MM_NETNS=$NS_C MM_LISTEN_IP=$C_DOWN mm_dovecot_start

# --- B: the sender's mail server, mm-milter (milter and filter) and mm-gateway ----
mm_write_conf
B_CONF=$MM_CONF B_GW=$MM_GATEWAY_PORT B_MILTER=$MM_MILTER_PORT
B_SET=(--set "gateway.listen=0.0.0.0:$B_GW" --set "gateway.public_url=https://$B_IP:$B_GW"
  --set "milter.trusted_networks=127.0.0.0/8, 10.201.1.0/24")
mkdir -p "$MM_STORE"
ip netns exec "$NS_B" "$(mm_bin mm-gateway)" -c "$B_CONF" "${B_SET[@]}" >>"$MM_TMP/gateway-b.log" 2>&1 &
mm_register_pid $!
ip netns exec "$NS_B" "$(mm_bin mm-milter)" -c "$B_CONF" "${B_SET[@]}" >>"$MM_TMP/mm-milter.log" 2>&1 &
mm_register_pid $!
# B's Postfix lives in $MM_TMP/b (its own queue, pids, ports), stopped by wan_cleanup.
mkdir -p "$MM_TMP/b"
B_SMTP=$(
  export MM_TMP=$MM_TMP/b MM_NETNS=$NS_B MM_LISTEN_IP=$B_UP
  MM_PROXY_FILTER=127.0.0.1:$MM_FILTER_PORT MM_PROXY_NEXT=127.0.0.1:$MM_AFTER_PORT \
    MM_POSTFIX_EXTRA="mynetworks = 127.0.0.0/8, 10.201.0.0/16
virtual_mailbox_domains =
relay_domains = $MM_DOMAIN
relay_transport = relay
transport_maps = inline:{ $MM_DOMAIN=relay:[$C_IP]:$C_SMTP }" mm_postfix_start >&2
  echo "$MM_SMTP_PORT $MM_SUBMIT_PORT"
)
read -r B_SMTP B_SUBMIT <<<"$B_SMTP"
[ -n "${B_SUBMIT:-}" ] || mm_fail "B's Postfix did not start: $(tail -5 "$MM_TMP/b/postfix.start.out" 2>/dev/null)"
B_PFDIR=$MM_TMP/b/postfix B_QUEUE=$MM_TMP/b/postfix-queue

# --- A: mmsend's own store and gateway ----------------------------------------------
A_GW=$(mm_free_port)
A_CONF=$MM_TMP/a.conf
cat >"$A_CONF" <<EOF
[store]
dir = $MM_TMP/store-a
[gateway]
listen = 0.0.0.0:$A_GW
public_url = https://$A_IP:$A_GW
[mmsend]
smtp = smtp://$B_UP:$B_SMTP
EOF
mkdir -p "$MM_TMP/store-a"
# mmsend --gateway on A: no store there; an upload token of B's gateway, its pin.
"$(mm_bin mm-gateway)" -c "$B_CONF" token add alice >"$MM_TMP/alice.token" || mm_fail "token add failed"
A_LAPTOP=$MM_TMP/laptop.conf
cat >"$A_LAPTOP" <<EOF
[store]
dir = $MM_TMP/laptop-has-no-store
[mmsend]
smtp = smtp://$B_UP:$B_SMTP
gateway = https://$B_IP:$B_GW
gateway_token_file = $MM_TMP/alice.token
EOF
ip netns exec "$NS_A" "$(mm_bin mm-gateway)" -c "$A_CONF" >>"$MM_TMP/gateway-a.log" 2>&1 &
mm_register_pid $!

# --- D: the receiver's mm-fetcher -------------------------------------------------
D_FETCH=$(mm_free_port)
ip netns exec "$NS_D" "$(mm_bin mm-fetcher)" -c "$B_CONF" --set "fetcher.listen=127.0.0.1:$D_FETCH" \
  --set "fetcher.upstream=pop3://$C_DOWN:$MM_POP3_PORT" >>"$MM_TMP/mm-fetcher.log" 2>&1 &
mm_register_pid $!
in_ns_port() { # NS HOST PORT: wait until it accepts
  local i
  for i in $(seq 200); do
    ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
in_ns_port "$NS_B" 127.0.0.1 "$B_GW" || mm_fail "B's gateway did not start: $(tail -3 "$MM_TMP/gateway-b.log")"
in_ns_port "$NS_B" 127.0.0.1 "$B_MILTER" || mm_fail "mm-milter did not start: $(tail -3 "$MM_TMP/mm-milter.log")"
in_ns_port "$NS_A" 127.0.0.1 "$A_GW" || mm_fail "A's gateway did not start: $(tail -3 "$MM_TMP/gateway-a.log")"
B_PIN=$(grep -o 'pin sha256//[A-Za-z0-9+/=]*' "$MM_TMP/gateway-b.log" | head -1 | cut -d' ' -f2)
[ -n "$B_PIN" ] || mm_fail "B's gateway printed no pin"
echo "gateway_pin = $B_PIN" >>"$A_LAPTOP"
in_ns_port "$NS_D" 127.0.0.1 "$D_FETCH" || mm_fail "mm-fetcher did not start: $(tail -3 "$MM_TMP/mm-fetcher.log")"

# --- measuring ------------------------------------------------------------------------
# Bytes sent by each link end: up0 (A->B), up1 (B->A), srv0 (B->C), srv1 (C->B), dn0 (C->D), dn1 (D->C).
# They are read from each end's tbf, not from the veth counters: with GSO a veth
# counts one header per 64 KiB super-packet, while tbf splits it into frames of
# the MTU and charges every frame's headers against the rate (about 4.5 % more
# bytes for a bulk TCP transfer). The floor is the bytes the shaper really
# carried, so it is computed from these.
counters() {
  local ns dev
  for ns_dev in "$NS_A:up0" "$NS_B:up1" "$NS_B:srv0" "$NS_C:srv1" "$NS_C:dn0" "$NS_D:dn1"; do
    ns=${ns_dev%%:*} dev=${ns_dev#*:}
    tc -n "$ns" -s -j qdisc show dev "$dev" root | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["bytes"])'
  done | tr '\n' ' '
}
pop3() { # PORT-SPEC USER [curl args...]: run curl for POP3 on D
  local url=$1
  shift
  ip netns exec "$NS_D" curl -sS --max-time 1800 -u "bob:$MM_POP3_PASS" "$@" "$url"
}

mm_info "making a ${mib} MiB video with ffmpeg"
mm_make_video "$MM_TMP/video.mp4" "$mib"
size=$(($(stat -c %s "$MM_TMP/video.mp4") + 32))

run_case() {
  local name=$1 round=$2 subject="WAN $1 round $2"
  local milter="" url="pop3://127.0.0.1:$D_FETCH"
  [ "$name" = milter ] && milter="inet:127.0.0.1:$B_MILTER"
  [ "$name" = plain ] && url="pop3://$C_DOWN:$MM_POP3_PORT"
  postconf -c "$B_PFDIR" -e "smtpd_milters = $milter"
  ip netns exec "$NS_B" postfix -c "$B_PFDIR" reload >/dev/null 2>&1
  mkdir -p "$MM_TMP/case"
  mm_unique_copy "$MM_TMP/video.mp4" "$MM_TMP/case/video.mp4"
  local sha
  sha=$(sha256sum "$MM_TMP/case/video.mp4" | cut -d' ' -f1)
  [ "${name#mmsend}" != "$name" ] || mm_make_media_mail "$MM_TMP/case/video.mp4" "$MM_TMP/case/mail.eml" video/mp4 "$subject"
  sync
  sleep 1
  local qb qc
  qb=$(du -sb "$B_QUEUE" | cut -f1) qc=$(du -sb "$C_QUEUE" | cut -f1)
  echo "$qb" >"$MM_TMP/peak-b" && echo "$qc" >"$MM_TMP/peak-c"
  mm_sample_peak "$B_QUEUE" "$MM_TMP/peak-b" &
  local s1=$!
  mm_sample_peak "$C_QUEUE" "$MM_TMP/peak-c" &
  local s2=$!
  local before c0 start delivered end
  before=$(mm_count_messages bob)
  c0=$(counters)
  start=$(date +%s%N)
  case $name in
    mmsend)
      ip netns exec "$NS_A" "$(mm_bin mmsend)" -c "$A_CONF" --insecure -q --from alice@example.test \
        --to bob@example.test --subject "$subject" --body "The video." --attach "$MM_TMP/case/video.mp4" \
        >"$MM_TMP/mmsend.out" 2>&1 || mm_fail "mmsend: $(tail -3 "$MM_TMP/mmsend.out")" ;;
    mmsend-gw)
      ip netns exec "$NS_A" "$(mm_bin mmsend)" -c "$A_LAPTOP" --insecure -q --from alice@example.test \
        --to bob@example.test --subject "$subject" --body "The video." --attach "$MM_TMP/case/video.mp4" \
        >"$MM_TMP/mmsend.out" 2>&1 || mm_fail "mmsend --gateway: $(tail -3 "$MM_TMP/mmsend.out")" ;;
    *)
      local port=$B_SMTP
      [ "$name" = filter ] && port=$B_SUBMIT
      ip netns exec "$NS_A" python3 "$here/tests/integration/lib/smtp_send_file.py" "$B_UP:$port" \
        alice@example.test bob@example.test "$MM_TMP/case/mail.eml" >"$MM_TMP/send.out" 2>&1 ||
        mm_fail "$name: sending failed: $(tail -3 "$MM_TMP/send.out")" ;;
  esac
  local sent listed retrieved
  sent=$(date +%s%N)
  mm_wait_delivered bob $((before + 1)) 1800 || mm_fail "$name: not delivered"
  delivered=$(date +%s%N)
  local maildir
  maildir=$(mm_maildir_bytes bob)
  # The receiver's client: poll the listing (the fetcher lists a media mail once
  # its media is downloaded and verified), then RETR it.
  local i
  for i in $(seq 18000); do
    pop3 "$url/" 2>/dev/null | grep -q '^1 ' && break
    sleep 0.1
  done
  listed=$(date +%s%N)
  pop3 "$url/1" -o "$MM_TMP/case/got.eml" || mm_fail "$name: RETR failed"
  retrieved=$(date +%s%N)
  mm_extract_attachment "$MM_TMP/case/got.eml" video.mp4 "$MM_TMP/case/back.mp4"
  [ "$(sha256sum "$MM_TMP/case/back.mp4" | cut -d' ' -f1)" = "$sha" ] || mm_fail "$name: video changed"
  end=$(date +%s%N)
  local c1
  c1=$(counters)
  kill "$s1" "$s2" 2>/dev/null
  wait "$s1" "$s2" 2>/dev/null || true
  pop3 "$url/1" -X DELE -I >/dev/null || mm_fail "$name: DELE failed"
  # Readable = the client has the whole mail (RETR done). Decoding the
  # attachment out of it (the check above, in Python) costs every case the same
  # and no mail server any work, so it is reported as a phase but not timed.
  echo "$round $name $(((retrieved - start) / 1000000)) $(((retrieved - delivered) / 1000000))" \
    "$(($(cat "$MM_TMP/peak-b") - qb)) $(($(cat "$MM_TMP/peak-c") - qc)) $maildir $c0 $c1" >>"$MM_TMP/results"
  local ms=1000000
  echo "$round $name $(((sent - start) / ms)) $(((delivered - sent) / ms)) $(((listed - delivered) / ms))" \
    "$(((retrieved - listed) / ms)) $(((end - retrieved) / ms))" >>"$MM_TMP/phases"
  mm_info "round $round $name: $(((retrieved - start) / ms)) ms to readable (+ $(((end - retrieved) / ms)) ms to check the video)"
  rm -rf "$MM_TMP/case"
}

: >"$MM_TMP/results"
: >"$MM_TMP/phases"
for round in $(seq 1 "$rounds"); do
  order=$cases
  [ $((round % 2)) -eq 1 ] || order=$(echo "$cases" | tr ' ' '\n' | tac | tr '\n' ' ')
  for c in $order; do run_case "$c" "$round"; done
done

{
  echo "wan: video $size bytes; links uplink $up, server $mid, downlink $down Mbit/s (tbf, no delay);" \
    "$rounds round(s); $(nproc) cores; $(date -u +%FT%TZ)"
  python3 - "$MM_TMP/results" "$up" "$mid" "$down" <<'PY'
import statistics, sys
path, rates = sys.argv[1], [float(x) * 1e6 / 8 for x in sys.argv[2:5]]
rows = {}
for line in open(path):
    f = line.split()
    r, name, ms, rx_ms, qb, qc, md = int(f[0]), f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6])
    c0, c1 = [int(x) for x in f[7:13]], [int(x) for x in f[13:19]]
    d = [b - a for a, b in zip(c0, c1)]
    links = [d[0] + d[1], d[2] + d[3], d[4] + d[5]]   # uplink, server link, downlink: both directions
    # Each link is full duplex (a tbf each way), so what bounds it is its busier
    # direction; the ACKs coming back do not take from the data's rate.
    busy = [max(d[0], d[1]), max(d[2], d[3]), max(d[4], d[5])]
    floor = sum(b / rate for b, rate in zip(busy, rates)) * 1000
    rows.setdefault(name, []).append((ms, rx_ms, links, qb + qc + md, floor))
cols = "%-7s %9s %13s %14s %14s %14s %13s %9s %10s"
print(cols % ("case", "wall_ms", "receiver_ms", "uplink_B", "server_B", "downlink_B", "servers_B", "floor_ms",
              "vs_floor"))
med = {}
for name, rs in rows.items():
    m = lambda k: statistics.median(x[k] for x in rs)
    links = [statistics.median(x[2][i] for x in rs) for i in range(3)]
    med[name] = (m(0), m(1), links, m(3), m(4))
    print(cols % (name, "%d" % m(0), "%d" % m(1), "%d" % links[0], "%d" % links[1], "%d" % links[2], "%d" % m(3),
                  "%d" % m(4), "%.2f" % (m(0) / m(4))))
print("wall_ms: send start on A to the mail read on D (RETR done; its attachment is checked after, untimed); receiver_ms: delivered in C's "
      "Maildir to that; link bytes: both directions, frames as the tbf shaper counted them (headers included); servers_B: B's and C's queue peaks "
      "plus C's Maildir; floor_ms: for each link, the bytes of its busier direction over its rate, summed along the path; medians over rounds.")
if "plain" in med:
    p = med["plain"]
    for name, v in med.items():
        if name == "plain":
            continue
        print("%s: time %.2f x plain (floor %.2f x), receiver's phase %.2f x (goal <= 0.8), downlink bytes "
              "%.2f x (goal <= 0.75), own floor %.2f x (goal <= 1.1)" % (name, v[0] / p[0], v[4] / p[4],
              v[1] / p[1], v[2][2] / p[2][2], v[0] / v[4]))
    print("plain: own floor %.2f x (goal <= 1.1)" % (p[0] / p[4]))
PY
  echo "phases (ms): round case send deliver list retr extract+verify"
  sed 's/^/  /' "$MM_TMP/phases"
} | tee "$out"
