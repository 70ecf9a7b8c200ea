#!/usr/bin/env bash
# gateway_vs_nginx.sh - download throughput of mm-gateway against nginx over
# loopback HTTPS, side by side in one run: the same file, the same EC P-256 key
# and certificate, both servers in their default TLS configuration, and two
# client configurations (MODES, default both):
#   default  curl's default offer, as every real client: TLS 1.3, and the
#            cipher suite each server picks from that offer
#   tls12    TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256 forced by curl
#
#   bench/gateway_vs_nginx.sh [SIZE_MIB] [REPS] [PARALLEL]
#     SIZE_MIB  file size (default 1024 = 1 GiB)
#     REPS      repetitions per server and mode; the median is reported (default 5)
#     PARALLEL  clients in the parallel mode, each fetching the whole file (default 16)
# Env: MM_BUILD_DIR (default ./build), PAR_SIZE_MIB (size for the parallel mode,
# default SIZE_MIB/4 so that a run takes minutes, not an hour).
# Needs nginx (Debian package), curl, python3. Starts and stops its own servers.
set -euo pipefail

SIZE_MIB=${1:-1024}
REPS=${2:-5}
PAR=${3:-16}
PAR_SIZE_MIB=${PAR_SIZE_MIB:-$((SIZE_MIB / 4))}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${MM_BUILD_DIR:-$SRC/build}
GW=$BUILD/gateway/mm-gateway
CIPHER=ECDHE-ECDSA-AES128-GCM-SHA256
MODES=${MODES:-default tls12}
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

echo "making a ${SIZE_MIB} MiB file and a ${PAR_SIZE_MIB} MiB file (random bytes)"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$T/big.bin"
head -c $((PAR_SIZE_MIB * 1048576)) /dev/urandom >"$T/par.bin"

GW_PORT=$(free_port)
OPTS=(--set "store.dir=$T/store" --set "gateway.listen=127.0.0.1:$GW_PORT"
      --set "gateway.public_url=https://127.0.0.1:$GW_PORT" --set gateway.threads=$((PAR + 4))
      --set log.level=warning)
GW_URL=$("$GW" "${OPTS[@]}" put "$T/big.bin" | awk '/^url:/{print $2}')
GW_PAR_URL=$("$GW" "${OPTS[@]}" put "$T/par.bin" | awk '/^url:/{print $2}')
"$GW" "${OPTS[@]}" serve 2>"$T/gw.log" &
GW_PID=$!
wait_port "$GW_PORT"

# nginx with the gateway's own key and certificate (EC P-256, self-signed).
NG_PORT=$(free_port)
mkdir -p "$T/www" "$T/nginx"
chmod 644 "$T/big.bin" "$T/par.bin"
ln "$T/big.bin" "$T/www/big.bin"
ln "$T/par.bin" "$T/www/par.bin"
cat >"$T/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    client_body_temp_path $T/nginx;
    proxy_temp_path $T/nginx;
    fastcgi_temp_path $T/nginx;
    uwsgi_temp_path $T/nginx;
    scgi_temp_path $T/nginx;
    server {
        listen 127.0.0.1:$NG_PORT ssl;
        ssl_certificate $T/store/tls/cert.pem;
        ssl_certificate_key $T/store/tls/key.pem;
        # As Debian's /etc/nginx/nginx.conf: TLS 1.3 on (nginx 1.22's built-in default lacks it).
        ssl_protocols TLSv1.2 TLSv1.3;
        root $T/www;
    }
}
EOF
nginx -c "$T/nginx/nginx.conf" -p "$T/nginx" 2>"$T/nginx/stderr" &
NGINX_PID=$!
wait_port "$NG_PORT"
NG_URL=https://127.0.0.1:$NG_PORT/big.bin
NG_PAR_URL=https://127.0.0.1:$NG_PORT/par.bin

# curl's options for MODE.
curl_opts() {
    case $1 in
        tls12) echo "--tls-max 1.2 --ciphers $CIPHER" ;;
        default) echo "" ;;
        *) echo "unknown mode $1" >&2; exit 64 ;;
    esac
}
# Print what URL negotiates in the current mode ("TLSv1.3 / TLS_AES_128_GCM_SHA256").
negotiated() {
    curl -sS -k $(curl_opts "$MODE") -r 0-0 -o /dev/null -v "$1" 2>&1 | sed -n 's/.*SSL connection using //p' | tr -d '\r'
}

# CPU time (ms) used so far by the processes given, all their threads summed:
# a measure of the server's cost that other load on the machine hardly disturbs.
cpu_ms() {
    local p
    for p in "$@"; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{s += $1} END {print int(s / 1000000)}'
}
nginx_pids() { echo "$NGINX_PID" $(pgrep -P "$NGINX_PID"); }

one() {   # URL BYTES -> bytes per second; a short or failed download stops the run
    local out
    out=$("${CURL[@]}" -w '%{http_code} %{size_download} %{speed_download}' "$1")
    [ "${out% *}" = "200 $2" ] || { echo "download from $1 failed: $out" >&2; exit 1; }
    echo "${out##* }"
}

parallel() {   # URL BYTES -> aggregate bytes per second over PAR clients
    local url=$1 bytes=$2 i start end pids=()
    start=$(date +%s%N)
    for i in $(seq 1 "$PAR"); do
        "${CURL[@]}" -f "$url" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || { echo "a parallel download from $url failed" >&2; exit 1; }
    done
    end=$(date +%s%N)
    echo $((bytes * PAR * 1000000000 / (end - start)))
}

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
mbs() { awk -v b="$1" 'BEGIN {printf "%.0f", b / 1048576}'; }

: >"$T/table"
for MODE in $MODES; do
    CURL=(curl -sS -k $(curl_opts "$MODE") -o /dev/null)
    GW_TLS=$(negotiated "$GW_URL"); NG_TLS=$(negotiated "$NG_URL")
    [ -n "$GW_TLS" ] && [ -n "$NG_TLS" ] || { echo "no TLS session in mode $MODE" >&2; exit 1; }
    if [ "$MODE" = tls12 ]; then
        for x in "$GW_TLS" "$NG_TLS"; do
            [ "$x" = "TLSv1.2 / $CIPHER" ] || { echo "cipher not negotiated: $x" >&2; exit 1; }
        done
    fi
    : >"$T/gw1"; : >"$T/ng1"; : >"$T/gwp"; : >"$T/ngp"; : >"$T/gw1cpu"; : >"$T/ng1cpu"; : >"$T/gwpcpu"; : >"$T/ngpcpu"
    echo "mode $MODE: mm-gateway $GW_TLS, nginx $NG_TLS"
    echo "single client, ${SIZE_MIB} MiB, $REPS reps, alternating servers"
    for r in $(seq 1 "$REPS"); do
        c0=$(cpu_ms "$GW_PID"); g=$(one "$GW_URL" $((SIZE_MIB * 1048576))); c1=$(cpu_ms "$GW_PID")
        d0=$(cpu_ms $(nginx_pids)); n=$(one "$NG_URL" $((SIZE_MIB * 1048576))); d1=$(cpu_ms $(nginx_pids))
        echo "$g" >>"$T/gw1"; echo "$n" >>"$T/ng1"
        echo $(((c1 - c0) * 1024 / SIZE_MIB)) >>"$T/gw1cpu"; echo $(((d1 - d0) * 1024 / SIZE_MIB)) >>"$T/ng1cpu"
        printf '  rep %d: mm-gateway %s MiB/s (%s ms CPU/GiB), nginx %s MiB/s (%s ms CPU/GiB)\n' "$r" "$(mbs "$g")" \
            $(((c1 - c0) * 1024 / SIZE_MIB)) "$(mbs "$n")" $(((d1 - d0) * 1024 / SIZE_MIB))
    done
    PAR_BYTES=$((PAR_SIZE_MIB * 1048576))
    echo "$PAR parallel clients, ${PAR_SIZE_MIB} MiB each, $REPS reps, alternating servers"
    for r in $(seq 1 "$REPS"); do
        c0=$(cpu_ms "$GW_PID"); g=$(parallel "$GW_PAR_URL" $PAR_BYTES); c1=$(cpu_ms "$GW_PID")
        d0=$(cpu_ms $(nginx_pids)); n=$(parallel "$NG_PAR_URL" $PAR_BYTES); d1=$(cpu_ms $(nginx_pids))
        echo "$g" >>"$T/gwp"; echo "$n" >>"$T/ngp"
        echo $(((c1 - c0) * 1024 / (PAR_SIZE_MIB * PAR))) >>"$T/gwpcpu"; echo $(((d1 - d0) * 1024 / (PAR_SIZE_MIB * PAR))) >>"$T/ngpcpu"
        printf '  rep %d: mm-gateway %s MiB/s (%s ms CPU/GiB), nginx %s MiB/s (%s ms CPU/GiB), aggregate\n' "$r" \
            "$(mbs "$g")" $(((c1 - c0) * 1024 / (PAR_SIZE_MIB * PAR))) "$(mbs "$n")" $(((d1 - d0) * 1024 / (PAR_SIZE_MIB * PAR)))
    done

    G1=$(median <"$T/gw1"); N1=$(median <"$T/ng1"); GP=$(median <"$T/gwp"); NP=$(median <"$T/ngp")
    G1C=$(median <"$T/gw1cpu"); N1C=$(median <"$T/ng1cpu"); GPC=$(median <"$T/gwpcpu"); NPC=$(median <"$T/ngpcpu")
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
    printf '| %s, 1 client, %d MiB | %s | %s | %s | %s | %s | %s |\n' "$MODE" "$SIZE_MIB" "$(mbs "$G1")" "$(mbs "$N1")" "$(ratio "$G1" "$N1")" \
        "$G1C" "$N1C" "$(ratio "$N1C" "$G1C")" | tee -a "$T/table"
    printf '| %s, %d clients, %d MiB each | %s | %s | %s | %s | %s | %s |\n' "$MODE" "$PAR" "$PAR_SIZE_MIB" "$(mbs "$GP")" "$(mbs "$NP")" \
        "$(ratio "$GP" "$NP")" "$GPC" "$NPC" "$(ratio "$NPC" "$GPC")" | tee -a "$T/table"
    echo "(medians of $REPS; mm-gateway $GW_TLS, nginx $NG_TLS)" >>"$T/table"
done
echo
echo "| mode | mm-gateway MiB/s | nginx MiB/s | throughput ratio | mm-gateway CPU ms/GiB | nginx CPU ms/GiB | CPU ratio (nginx/gw) |"
echo "|---|---|---|---|---|---|---|"
grep '^|' "$T/table"
grep '^(' "$T/table"
echo "(nginx $(nginx -v 2>&1 | sed 's/.*\///'), $(nproc) cores, loopback, EC P-256)"
