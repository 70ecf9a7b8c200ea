#!/usr/bin/env bash
# upload_vs_nginx.sh - upload throughput of mm-gateway's upload API (docs/gateway-api.md,
# "Uploads") against nginx's WebDAV PUT over loopback HTTPS, side by side in
# one run: the same file, the same client (curl), the same EC P-256 key and
# certificate, TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256 forced by curl, as
# bench/gateway_vs_nginx.sh does for downloads.
#
#   bench/upload_vs_nginx.sh [SIZE_MIB] [REPS]
#     SIZE_MIB  file size (default 1024 = 1 GiB)
#     REPS      rounds, each one upload to each server, alternating; medians reported (default 3)
# Env: MM_BUILD_DIR (default ./build), MM_UPLOAD_SETTLE (seconds of pause before
# each upload, default 2; see the loop below). Needs SIZE_MIB x REPS of disk
# for nginx's files, which stay until the end (see the loop for why).
#
# One upload to mm-gateway is POST /upload, then the whole file in one PATCH
# (what mmsend does with mmsend.gateway_chunk at least the file's size); its
# time is the PATCH's, which includes hashing (SHA-256 and segments), the fsync
# and the index row the last byte costs. nginx's PUT writes the file and
# renames it into place, without fsync; a second reference is that PUT followed
# by `sync FILE` (an fsync of it), timed together: the durability the gateway's
# answer promises, without the hashing. Needs nginx (with the dav module, as
# Debian's), curl, python3. Starts and stops its own servers.
set -euo pipefail

SIZE_MIB=${1:-1024}
REPS=${2:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${MM_BUILD_DIR:-$SRC/build}
GW=$BUILD/gateway/mm-gateway
CIPHER=ECDHE-ECDSA-AES128-GCM-SHA256
[ -x "$GW" ] || { echo "no $GW: build first (or set MM_BUILD_DIR)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is not installed (scripts/install-deps.sh)" >&2; exit 1; }

T=$(mktemp -d /tmp/mm-bench.XXXXXX)
chmod 755 "$T"   # nginx's workers run as an unprivileged user
GW_PID=
NGINX_PID=
cleanup() {
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
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

echo "making a ${SIZE_MIB} MiB file (random bytes)"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$T/big.bin"
BYTES=$((SIZE_MIB * 1048576))

GW_PORT=$(free_port)
OPTS=(--set "store.dir=$T/store" --set "store.min_free=0" --set "gateway.listen=127.0.0.1:$GW_PORT"
      --set "gateway.public_url=https://127.0.0.1:$GW_PORT" --set log.level=warning
      --set gateway.upload_max_open=1000)
mkdir -p "$T/store"
"$GW" "${OPTS[@]}" serve 2>"$T/gw.log" &
GW_PID=$!
wait_port "$GW_PORT"
TOKEN=$("$GW" "${OPTS[@]}" token add bench)

# nginx with the gateway's own key and certificate, WebDAV PUT into $T/www/dav.
NG_PORT=$(free_port)
mkdir -p "$T/www/dav" "$T/nginx/body"
chmod 777 "$T/www/dav" "$T/nginx/body"
cat >"$T/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx;
    fastcgi_temp_path $T/nginx;
    uwsgi_temp_path $T/nginx;
    scgi_temp_path $T/nginx;
    server {
        listen 127.0.0.1:$NG_PORT ssl;
        ssl_certificate $T/store/tls/cert.pem;
        ssl_certificate_key $T/store/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers $CIPHER;
        root $T/www;
        location /dav/ {
            dav_methods PUT;
            client_max_body_size 0;
            client_body_buffer_size 1m;
        }
    }
}
EOF
nginx -c "$T/nginx/nginx.conf" -p "$T/nginx" 2>"$T/nginx/stderr" &
NGINX_PID=$!
wait_port "$NG_PORT"

CURL=(curl -sS -k --tls-max 1.2 --ciphers "$CIPHER")
GW_BASE=https://127.0.0.1:$GW_PORT
NG_BASE=https://127.0.0.1:$NG_PORT
for u in "$GW_BASE/upload" "$NG_BASE/dav/"; do
    "${CURL[@]}" -o /dev/null -v -X OPTIONS "$u" 2>&1 | grep -q "using TLSv1.2 / $CIPHER" ||
        { echo "cipher not negotiated on $u" >&2; exit 1; }
done

gw_one() {   # -> bytes per second of the PATCH that carries the whole file
    local loc out
    loc=$("${CURL[@]}" -o /dev/null -D - -X POST -H "Authorization: Bearer $TOKEN" -H "Upload-Length: $BYTES" \
        -H "Upload-Metadata: filename $(printf big.bin | base64 -w0)" "$GW_BASE/upload" |
        tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
    [ -n "$loc" ] || { echo "POST /upload failed" >&2; exit 1; }
    out=$("${CURL[@]}" -o "$T/gw.reply" -w '%{http_code} %{size_upload} %{speed_upload}' -X PATCH -T "$T/big.bin" \
        -H "Authorization: Bearer $TOKEN" -H "Upload-Offset: 0" -H "Content-Type: application/offset+octet-stream" \
        "$GW_BASE$loc")
    [ "${out% *}" = "200 $BYTES" ] || { echo "upload to mm-gateway failed: $out $(head -c 200 "$T/gw.reply")" >&2; exit 1; }
    echo "${out##* }"
}

ng_one() {   # ROUND -> "PUT-rate durable-rate": bytes per second of the PUT, and of the PUT
             # followed by an fsync of the file it wrote (what the gateway's answer promises)
    local out t0 t1
    t0=$(date +%s.%N)
    out=$("${CURL[@]}" -o /dev/null -w '%{http_code} %{size_upload} %{speed_upload}' -T "$T/big.bin" \
        "$NG_BASE/dav/big-$1.bin")
    [ "${out% *}" = "201 $BYTES" ] || { echo "PUT to nginx failed: $out" >&2; exit 1; }
    sync "$T/www/dav/big-$1.bin"
    t1=$(date +%s.%N)
    echo "${out##* } $(awk -v b="$BYTES" -v a="$t0" -v z="$t1" 'BEGIN {printf "%.0f", b / (z - a)}')"
}

# CPU time (ms, 10 ms resolution) used so far by the processes given, user and
# system, threads that have ended included (the gateway's hashing thread lives
# only while a body streams).
cpu_ms() {
    local p
    for p in "$@"; do awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null; done |
        awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {print int(s * 1000 / hz)}'
}
nginx_pids() { echo "$NGINX_PID" $(pgrep -P "$NGINX_PID"); }

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
mbs() { awk -v b="$1" 'BEGIN {printf "%.0f", b / 1048576}'; }

: >"$T/gw"; : >"$T/ng"; : >"$T/ngd"; : >"$T/ratio"; : >"$T/ratio_durable"
echo "one client, ${SIZE_MIB} MiB up, $REPS rounds, alternating servers (load: $(cut -d' ' -f1-3 /proc/loadavg))"
# nginx's files are kept until the end, as the gateway keeps its objects. On a
# virtual machine with free page reporting (virtio-balloon, as the test
# machines have), memory freed a moment ago is still backed by the host and
# cheap to fill again, while memory freed longer ago has been handed back and
# must be faulted in anew: `dd` of 1 GiB into the page cache took 0.4 s 2 s
# after deleting the previous 1 GiB file, 0.8 s after 5 s, 1.2 s after 10 s and
# 1.7 s after 30 s. When the script deleted each PUT's file, nginx ran 2-3x
# faster whenever it followed its own previous round than when it followed the
# gateway's, and the ratio measured the order of the rounds. Keeping the files,
# every write, either server's, lands in memory nothing just freed, as on a
# server that is not deleting a 1 GiB file a moment before each upload. A short
# pause before each upload lets the previous one's writeback settle.
SETTLE=${MM_UPLOAD_SETTLE:-2}
for r in $(seq 1 "$REPS"); do
    c0=$(cpu_ms "$GW_PID"); d0=$(cpu_ms $(nginx_pids))
    if [ $((r % 2)) -eq 1 ]; then sleep "$SETTLE"; g=$(gw_one); sleep "$SETTLE"; read -r n nd <<<"$(ng_one "$r")"
    else sleep "$SETTLE"; read -r n nd <<<"$(ng_one "$r")"; sleep "$SETTLE"; g=$(gw_one); fi
    c1=$(cpu_ms "$GW_PID"); d1=$(cpu_ms $(nginx_pids))
    gc=$(((c1 - c0) * 1024 / SIZE_MIB)); nc=$(((d1 - d0) * 1024 / SIZE_MIB))
    echo "$g" >>"$T/gw"; echo "$n" >>"$T/ng"; echo "$nd" >>"$T/ngd"
    awk -v g="$g" -v n="$n" 'BEGIN {printf "%.3f\n", g / n}' >>"$T/ratio"
    awk -v g="$g" -v n="$nd" 'BEGIN {printf "%.3f\n", g / n}' >>"$T/ratio_durable"
    printf '  round %d: mm-gateway %s MiB/s (%s ms CPU/GiB), nginx WebDAV PUT %s MiB/s (%s ms CPU/GiB), ratio %s; PUT + fsync %s MiB/s, ratio %s\n' \
        "$r" "$(mbs "$g")" "$gc" "$(mbs "$n")" "$nc" "$(tail -1 "$T/ratio")" "$(mbs "$nd")" "$(tail -1 "$T/ratio_durable")"
done
fmedian() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
G=$(median <"$T/gw"); N=$(median <"$T/ng"); ND=$(median <"$T/ngd")
R=$(fmedian <"$T/ratio"); RD=$(fmedian <"$T/ratio_durable")
echo "median: mm-gateway $(mbs "$G") MiB/s, nginx $(mbs "$N") MiB/s; median ratio of rounds $R x (goal >= 0.9)"
echo "        nginx PUT followed by an fsync of its file $(mbs "$ND") MiB/s; median ratio $RD x"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
