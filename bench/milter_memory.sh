#!/usr/bin/env bash
# milter_memory.sh - peak RSS of mm-milter while Postfix passes it one mail with a
# big video (default 2 GiB): the goal is < 64 MiB, whatever the size, because the
# message is spooled to a file and streamed (see docs/PERFORMANCE.md).
# usage: MM_BUILD_DIR=build bench/milter_memory.sh [MIB]   (needs ~4x MIB·1.4 of disk in /tmp)
# MILTER_FILTER=1: the mail goes to the submission smtpd whose before-queue filter
# is mm-milter (docs/postfix.md), instead of through the milter.
set -euo pipefail
MM_SOURCE_DIR=${MM_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MM_BUILD_DIR=${MM_BUILD_DIR:-$MM_SOURCE_DIR/build}
export MM_SOURCE_DIR MM_BUILD_DIR
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"
. "$MM_SOURCE_DIR/bench/milter_lib.sh"
MIB=${1:-2048}

mm_tmpdir_init
mm_write_conf
mkdir -p "$MM_STORE"
mm_start_program mm-milter
mm_wait_port "$MM_MILTER_PORT" 20 || mm_fail "mm-milter did not start"
MM_POSTFIX_EXTRA=$(mm_postfix_doc_lines "$MM_MILTER_PORT")
export MM_POSTFIX_EXTRA
if [ "${MILTER_FILTER:-0}" = 1 ]; then
  MM_PROXY_FILTER=127.0.0.1:$MM_FILTER_PORT MM_PROXY_NEXT=127.0.0.1:$MM_AFTER_PORT mm_postfix_start 2>/dev/null
  postconf -c "$MM_POSTFIX_DIR" -e "smtpd_milters =" "non_smtpd_milters ="
  postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
  sleep 1
  port=$MM_SUBMIT_PORT
else
  mm_postfix_start 2>/dev/null
  port=$MM_SMTP_PORT
fi

mb_make_video "$MM_TMP/big.mp4" "$MIB"
mb_make_mail "$MM_TMP/big.mp4" "$MM_TMP/big.eml"
sha=$(sha256sum "$MM_TMP/big.mp4" | cut -d' ' -f1)
rm -f "$MM_TMP/big.mp4"
pid=$(cat "$MM_TMP/mm-milter.pid")
echo "mail: $(stat -c %s "$MM_TMP/big.eml") bytes, a $MIB MiB video; mm-milter VmHWM before: $(mb_hwm_kib "$pid") KiB"
t0=$(mb_now)
python3 "$MM_SOURCE_DIR/tests/integration/lib/smtp_send_file.py" "127.0.0.1:$port" alice@example.test bob@example.test \
  "$MM_TMP/big.eml"
t1=$(mb_now)
hwm=$(mb_hwm_kib "$pid")
mm_wait_delivered bob 1 120 || mm_fail "not delivered"
grep 'detached' "$MM_TMP/mm-milter.log" | tail -1
[ "${MILTER_FILTER:-0}" = 1 ] && ! grep -q 'filter: detached' "$MM_TMP/mm-milter.log" && mm_fail "the filter did not detach"
[ -f "$MM_STORE/objects/${sha:0:2}/$sha" ] || mm_fail "video not in the store under its sha256"
echo "delivered mail: $(mm_maildir_bytes bob) bytes; store holds the video (sha256 $sha)"
label=""
[ "${MILTER_FILTER:-0}" = 1 ] && label=" (before-queue filter)"
echo "RESULT milter_memory$label: video ${MIB} MiB, send $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s, mm-milter peak RSS (VmHWM) $hwm KiB = $((hwm / 1024)) MiB (goal < 64 MiB)"
[ "$hwm" -lt 65536 ] || { echo "FAIL: over 64 MiB"; exit 1; }
