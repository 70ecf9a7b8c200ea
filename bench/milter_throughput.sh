#!/usr/bin/env bash
# milter_throughput.sh - plain-mail throughput of one private Postfix without a
# milter and with each of several milters, side by side in one run, rounds
# alternating; smtp-source sends small messages without media.
#
# Cases (CASES, space-separated; default all):
#   none        smtpd_milters empty
#   mm-inet     mm-milter on inet:127.0.0.1:PORT (the TCP socket)
#   mm-unix     mm-milter on a unix socket (what docs/postfix.md recommends)
#   dkim-inet   OpenDKIM over TCP, verifying only (Mode v): another libmilter
#               milter with nothing to do for unsigned mail
#   dkim-unix   the same OpenDKIM on a unix socket
#   noop-inet   bench/noop_milter.c over TCP: libmilter and nothing else
#   noop-unix   the same on a unix socket
# Goal: mm-milter / none >= 0.95. Prints one line per round and case, then the
# median ratio of each case to "none".
# usage: MM_BUILD_DIR=build bench/milter_throughput.sh [MESSAGES] [SESSIONS] [ROUNDS]
set -euo pipefail
MM_SOURCE_DIR=${MM_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MM_BUILD_DIR=${MM_BUILD_DIR:-$MM_SOURCE_DIR/build}
export MM_SOURCE_DIR MM_BUILD_DIR
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"
. "$MM_SOURCE_DIR/bench/milter_lib.sh"
N=${1:-2000}
S=${2:-10}
ROUNDS=${3:-3}
CASES=${CASES:-none mm-inet mm-unix dkim-inet dkim-unix noop-inet noop-unix}

mm_tmpdir_init
mm_write_conf
mkdir -p "$MM_STORE"

# Wait until unix socket PATH exists and let Postfix (any user) write to it.
wait_socket() {
  local path=$1 _
  for _ in $(seq 100); do [ -S "$path" ] && break; sleep 0.1; done
  [ -S "$path" ] || mm_fail "no socket at $path"
  chmod 666 "$path"
}

declare -A MILTER
MILTER[none]=""
# mm-milter: one process on the TCP socket of the test config, one on a unix
# socket (its before-queue filter off, so that the two do not share a port).
mm_start_program mm-milter
mm_wait_port "$MM_MILTER_PORT" 20 || mm_fail "mm-milter did not start"
MILTER[mm-inet]="inet:127.0.0.1:$MM_MILTER_PORT"
"$(mm_bin mm-milter)" -c "$MM_CONF" --set "milter.socket=unix:$MM_TMP/mm.sock" --set milter.proxy_listen= \
  >>"$MM_TMP/mm-milter-unix.log" 2>&1 &
mm_register_pid $!
wait_socket "$MM_TMP/mm.sock"
MILTER[mm-unix]="unix:$MM_TMP/mm.sock"

case " $CASES " in *" dkim-"*)
  command -v opendkim >/dev/null || mm_fail "opendkim is not installed (scripts/install-deps.sh)"
  dkim_port=$(mm_free_port)
  for sock in "inet:$dkim_port@127.0.0.1" "local:$MM_TMP/dkim.sock"; do
    name=$([ "${sock%%:*}" = inet ] && echo inet || echo unix)
    # Verify-only: unsigned mail gets no DNS lookup and no header, so this is
    # libmilter plus OpenDKIM's per-message bookkeeping.
    cat >"$MM_TMP/opendkim-$name.conf" <<EOF
Syslog no
Mode v
Socket $sock
PidFile $MM_TMP/opendkim-$name.pid
UMask 000
EOF
    opendkim -f -x "$MM_TMP/opendkim-$name.conf" >"$MM_TMP/opendkim-$name.log" 2>&1 &
    mm_register_pid $!
  done
  mm_wait_port "$dkim_port" 20 || mm_fail "opendkim did not start: $(cat "$MM_TMP/opendkim-inet.log")"
  wait_socket "$MM_TMP/dkim.sock"
  MILTER[dkim-inet]="inet:127.0.0.1:$dkim_port"
  MILTER[dkim-unix]="unix:$MM_TMP/dkim.sock"
  ;;
esac

case " $CASES " in *" noop-"*)
  cc -O2 -o "$MM_TMP/noop_milter" "$MM_SOURCE_DIR/bench/noop_milter.c" -lmilter -lpthread ||
    mm_fail "cannot build noop_milter"
  noop_port=$(mm_free_port)
  "$MM_TMP/noop_milter" "inet:$noop_port@127.0.0.1" >"$MM_TMP/noop.log" 2>&1 &
  mm_register_pid $!
  mm_wait_port "$noop_port" 20 || mm_fail "noop_milter did not start"
  MILTER[noop-inet]="inet:127.0.0.1:$noop_port"
  "$MM_TMP/noop_milter" "unix:$MM_TMP/noop.sock" >"$MM_TMP/noop-unix.log" 2>&1 &
  mm_register_pid $!
  wait_socket "$MM_TMP/noop.sock"
  MILTER[noop-unix]="unix:$MM_TMP/noop.sock"
  ;;
esac

MM_POSTFIX_EXTRA=$(mm_postfix_doc_lines "$MM_MILTER_PORT")
[ -z "${EXTRA_MAIN_CF:-}" ] || MM_POSTFIX_EXTRA+=$'\n'"$EXTRA_MAIN_CF"
export MM_POSTFIX_EXTRA
mm_postfix_start 2>/dev/null

# Set smtpd_milters to $1 and reload Postfix; wait until the reload is done
# (new smtpd processes read the new value).
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

declare -A TIMES
for r in $(seq "$ROUNDS"); do
  for c in $CASES; do
    use_milter "${MILTER[$c]}"
    t=$(run)
    echo "round $r $(printf '%-10s' "$c"): $N messages in $t s ($(mb_ratio "$N" "$t") msg/s)"
    TIMES[$c]+="$t "
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
base=$(median <<<"${TIMES[none]}")
for c in $CASES; do
  m=$(median <<<"${TIMES[$c]}")
  echo "RESULT milter_throughput $c: median $m s for $N messages ($S sessions, $ROUNDS rounds), throughput / none = $(mb_ratio "$base" "$m")"
done
case " $CASES " in *" mm-inet "* | *" mm-unix "*)
  passed=$(cat "$MM_TMP"/mm-milter*.log | grep -c 'passed (no media' || true)
  want=0
  for c in mm-inet mm-unix; do case " $CASES " in *" $c "*) want=$((want + N * ROUNDS)) ;; esac; done
  [ "$passed" = "$want" ] || mm_fail "mm-milter saw $passed messages, expected $want"
  ;;
esac
echo "goal: mm-milter / none >= 0.95"
