#!/usr/bin/env bash
# fetcher_listen.test.sh - mm-fetcher refuses to start with a plain POP3 listener
# off loopback (USER and PASS would cross the network in clear) unless
# fetcher.allow_plain_listen = true says so; loopback stays fine. Exit 78 (EX_CONFIG)
# with an error naming the key and its value, as for every configuration error.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"
mm_tmpdir_init

bin=$(mm_bin mm-fetcher)
port=$(mm_free_port) || mm_fail "no free port"
tport=$(mm_free_port) || mm_fail "no free port"
printf 'x\n' >"$MM_TMP/c.pem"
printf 'x\n' >"$MM_TMP/k.pem"
common="--set fetcher.cache_dir=$MM_TMP/cache"

# Refused at start: arguments, and a text the error must contain.
while IFS='|' read -r args want; do
  rc=0
  # shellcheck disable=SC2086
  timeout 10 "$bin" $common $args >"$MM_TMP/err.out" 2>&1 || rc=$?
  [ $rc -eq 78 ] || mm_fail "mm-fetcher $args: exit status $rc, want 78 (EX_CONFIG): $(head -c 300 "$MM_TMP/err.out")"
  grep -qF -- "$want" "$MM_TMP/err.out" || mm_fail "mm-fetcher $args: error does not say '$want': $(head -c 300 "$MM_TMP/err.out")"
done <<EOF2
--set fetcher.listen=0.0.0.0:$port|bad value for fetcher.listen = '0.0.0.0:$port': not a loopback address
--set fetcher.listen=[::]:$port|fetcher.listen = '[::]:$port': not a loopback address
--set fetcher.listen=192.0.2.1:$port|fetcher.listen = '192.0.2.1:$port': not a loopback address
--set fetcher.listen=0.0.0.0:$port --set fetcher.allow_plain_listen=false|fetcher.allow_plain_listen = true
--set fetcher.listen=0.0.0.0:$port --set fetcher.tls_listen=0.0.0.0:$tport --set fetcher.tls_cert=$MM_TMP/c.pem --set fetcher.tls_key=$MM_TMP/k.pem|fetcher.listen = '0.0.0.0:$port': not a loopback address
EOF2
mm_log "a plain listener off loopback is refused at start (exit 78) naming key and value"

# Said explicitly: it starts and listens on every address (reached here on loopback).
"$bin" $common --set "fetcher.listen=0.0.0.0:$port" --set fetcher.allow_plain_listen=true \
  >"$MM_TMP/plain.log" 2>&1 &
pid=$!
mm_register_pid "$pid"
mm_wait_port "$port" 20 || mm_fail "mm-fetcher with allow_plain_listen did not start: $(tail -5 "$MM_TMP/plain.log")"
kill "$pid"
wait "$pid" 2>/dev/null || true
mm_log "fetcher.allow_plain_listen = true lets it listen on 0.0.0.0"

# Loopback needs nothing.
"$bin" $common --set "fetcher.listen=127.0.0.1:$port" >"$MM_TMP/loop.log" 2>&1 &
pid=$!
mm_register_pid "$pid"
mm_wait_port "$port" 20 || mm_fail "mm-fetcher on loopback did not start: $(tail -5 "$MM_TMP/loop.log")"
kill "$pid"
wait "$pid" 2>/dev/null || true
mm_log "a loopback listener starts as before"
echo "fetcher_listen: 1 passed, 0 failed"
