#!/usr/bin/env bash
# milter_throughput.sh - plain-mail throughput of one private Postfix with and
# without mm-milter (smtpd_milters of docs/postfix.md, then empty), side by side
# in one run, rounds alternating; smtp-source sends small messages without media.
# Goal: with / without >= 0.95. usage: MM_BUILD_DIR=build bench/milter_throughput.sh [MESSAGES] [SESSIONS] [ROUNDS]
set -euo pipefail
MM_SOURCE_DIR=${MM_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MM_BUILD_DIR=${MM_BUILD_DIR:-$MM_SOURCE_DIR/build}
export MM_SOURCE_DIR MM_BUILD_DIR
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"
. "$MM_SOURCE_DIR/bench/milter_lib.sh"
N=${1:-2000}
S=${2:-10}
ROUNDS=${3:-2}

mm_tmpdir_init
mm_write_conf
mkdir -p "$MM_STORE"
if [ "${MILTER_UNIX:-0}" = 1 ]; then
  # Variant: the milter on a unix socket instead of the documented inet one.
  mm_start_program mm-milter --set "milter.socket=unix:$MM_TMP/milter.sock"
  for _ in $(seq 100); do [ -S "$MM_TMP/milter.sock" ] && break; sleep 0.1; done
  chmod 666 "$MM_TMP/milter.sock"
  MM_POSTFIX_EXTRA=$(mm_postfix_doc_lines "$MM_MILTER_PORT" | sed "s|inet:127.0.0.1:$MM_MILTER_PORT|unix:$MM_TMP/milter.sock|")
else
  mm_start_program mm-milter
  mm_wait_port "$MM_MILTER_PORT" 20 || mm_fail "mm-milter did not start"
  MM_POSTFIX_EXTRA=$(mm_postfix_doc_lines "$MM_MILTER_PORT")
fi
[ -z "${EXTRA_MAIN_CF:-}" ] || MM_POSTFIX_EXTRA+=$'\n'"$EXTRA_MAIN_CF"
export MM_POSTFIX_EXTRA
mm_postfix_start 2>/dev/null
milters=$(postconf -c "$MM_POSTFIX_DIR" -h smtpd_milters 2>/dev/null)

# Set smtpd_milters to $1 and reload Postfix.
use_milter() {
  postconf -c "$MM_POSTFIX_DIR" -e "smtpd_milters = $1" 2>/dev/null
  postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
  sleep 2
}
# Run smtp-source once; print the seconds it took.
run() {
  local t0 t1
  t0=$(mb_now)
  smtp-source -s "$S" -m "$N" -l 2000 -f alice@example.test -t bob@example.test "127.0.0.1:$MM_SMTP_PORT" ||
    mm_fail "smtp-source failed"
  t1=$(mb_now)
  # Let Postfix deliver before the next round, so rounds do not overlap.
  local end=$((SECONDS + 300))
  until postqueue -c "$MM_POSTFIX_DIR" -p 2>/dev/null | grep -q 'Mail queue is empty'; do
    [ $SECONDS -lt $end ] || mm_fail "queue did not drain"
    sleep 0.5
  done
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
tot_with=0
tot_without=0
for r in $(seq "$ROUNDS"); do
  use_milter ""
  t=$(run)
  echo "round $r without milter: $N messages in $t s ($(mb_ratio "$N" "$t") msg/s)"
  tot_without=$(awk -v a="$tot_without" -v b="$t" 'BEGIN { print a + b }')
  use_milter "$milters"
  t=$(run)
  echo "round $r with mm-milter:  $N messages in $t s ($(mb_ratio "$N" "$t") msg/s)"
  tot_with=$(awk -v a="$tot_with" -v b="$t" 'BEGIN { print a + b }')
done
passed=$(grep -c 'passed (no media' "$MM_TMP/mm-milter.log" || true)
[ "$passed" = $((N * ROUNDS)) ] || mm_fail "mm-milter saw $passed messages, expected $((N * ROUNDS))"
echo "RESULT milter_throughput: $N messages x $ROUNDS rounds, $S sessions: with mm-milter / without = $(mb_ratio "$tot_without" "$tot_with") (throughput ratio, goal >= 0.95)"
