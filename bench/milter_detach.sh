#!/usr/bin/env bash
# milter_detach.sh - one mail with a big video (default 1 GiB) through one private
# Postfix, side by side in one run: no milter; mm-milter (main.cf lines of
# docs/postfix.md); mm-milter's before-queue filter (Postfix submission smtpd
# with smtpd_proxy_filter, smtpd_milters empty); a no-op milter
# (bench/noop_milter.c: what handing the message to any milter costs);
# MIMEDefang 3 doing action_replace_with_url on video parts.
# The floor is `base64 -d | sha256sum` of the same base64 body. Reports, per
# row, end of data -> 250 and the whole SMTP transaction (connect -> final 250;
# a before-queue filter works while DATA streams, so end of data alone would
# flatter it), ratios on both, and peak RSS (VmHWM, reset before each mm-milter
# row). Goals: mm-milter <= 1.3 x floor, >= 5 x faster than MIMEDefang.
# usage: MM_BUILD_DIR=build bench/milter_detach.sh [MIB]
set -euo pipefail
MM_SOURCE_DIR=${MM_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
MM_BUILD_DIR=${MM_BUILD_DIR:-$MM_SOURCE_DIR/build}
export MM_SOURCE_DIR MM_BUILD_DIR
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"
. "$MM_SOURCE_DIR/bench/milter_lib.sh"
MIB=${1:-1024}
command -v mimedefang >/dev/null || mm_fail "mimedefang not installed (scripts/install-deps.sh)"

mm_tmpdir_init
mm_write_conf
mkdir -p "$MM_STORE"
mm_start_program mm-milter
mm_wait_port "$MM_MILTER_PORT" 20 || mm_fail "mm-milter did not start"
mm_wait_port "$MM_FILTER_PORT" 20 || mm_fail "mm-milter's filter did not start"
MM_POSTFIX_EXTRA=$(mm_postfix_doc_lines "$MM_MILTER_PORT")
export MM_POSTFIX_EXTRA
# Also a submission smtpd (MM_SUBMIT_PORT) whose smtpd_proxy_filter is mm-milter's
# before-queue filter, and the after-filter smtpd the filter hands mail on to.
MM_PROXY_FILTER=127.0.0.1:$MM_FILTER_PORT MM_PROXY_NEXT=127.0.0.1:$MM_AFTER_PORT mm_postfix_start 2>/dev/null
milters=$(postconf -c "$MM_POSTFIX_DIR" -h smtpd_milters 2>/dev/null)

# MIMEDefang: multiplexor + milter on unix sockets, as user defang, with a filter
# that replaces each video/* part by a URL (the files go to $MD/www).
MD=$MM_TMP/mimedefang
mkdir -p "$MD/spool" "$MD/www"
cat >"$MD/filter" <<PERL
sub filter_begin { }
sub filter {
    my(\$entity, \$fname, \$ext, \$type) = @_;
    if (\$type =~ m{^video/}i) {
        # Its return value is the part's verdict (replaced); action_accept would undo it.
        return action_replace_with_url(\$entity, "$MD/www", "https://gw.example.test/md",
                                       "The video is at _URL_\n");
    }
    return action_accept();
}
sub filter_end { }
1;
PERL
printf '#!/bin/sh\nexec /usr/bin/mimedefang.pl -f %s "$@"\n' "$MD/filter" >"$MD/run-filter"
chmod 755 "$MD/run-filter" "$MD"
chmod 644 "$MD/filter"
chown -R defang:defang "$MD/spool" "$MD/www"
mimedefang-multiplexor -D -U defang -z "$MD/spool" -s "$MD/spool/mx.sock" -f "$MD/run-filter" -m 1 -x 2 \
  >"$MM_TMP/md-mx.log" 2>&1 &
mm_register_pid $!
mx_pid=$!
for _ in $(seq 100); do [ -S "$MD/spool/mx.sock" ] && break; sleep 0.1; done
mimedefang -D -U defang -z "$MD/spool" -m "$MD/spool/mx.sock" -p "$MD/spool/md.sock" -X >"$MM_TMP/md.log" 2>&1 &
mm_register_pid $!
md_pid=$!
for _ in $(seq 100); do [ -S "$MD/spool/md.sock" ] && break; sleep 0.1; done
[ -S "$MD/spool/md.sock" ] || mm_fail "mimedefang did not start: $(cat "$MM_TMP/md.log" "$MM_TMP/md-mx.log")"
# Postfix's smtpd and cleanup run as user postfix: let them reach the milter socket.
chmod 755 "$MD/spool"
chmod 666 "$MD/spool/md.sock"

mb_make_video "$MM_TMP/big.mp4" "$MIB"
mb_make_mail "$MM_TMP/big.mp4" "$MM_TMP/big.eml"
base64 -w 76 "$MM_TMP/big.mp4" >"$MM_TMP/body.b64"
rm -f "$MM_TMP/big.mp4"
echo "mail: $(stat -c %s "$MM_TMP/big.eml") bytes with a $MIB MiB video (base64, 76 columns)"

# The floor: decode and hash the same base64 body once (cache warm: read it twice).
cat "$MM_TMP/body.b64" >/dev/null
/usr/bin/time -f '%e %M' -o "$MM_TMP/floor.time" bash -c "base64 -d <'$MM_TMP/body.b64' | sha256sum >/dev/null"
read -r floor_s floor_kib <"$MM_TMP/floor.time"
echo "floor  base64 -d | sha256sum: $floor_s s (peak RSS of the larger process $floor_kib KiB)"
rm -f "$MM_TMP/body.b64"

# Set smtpd_milters to $1 and reload Postfix.
use_milter() {
  postconf -c "$MM_POSTFIX_DIR" -e "smtpd_milters = $1" "non_smtpd_milters = $1" 2>/dev/null
  postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
  sleep 2
}
# Send the mail to port $1 (default: the smtpd with smtpd_milters); print
# "total eom data body" seconds (see smtp_send_file.py).
send() {
  local out port=${1:-$MM_SMTP_PORT}
  cat "$MM_TMP/big.eml" >/dev/null
  out=$(python3 "$MM_SOURCE_DIR/tests/integration/lib/smtp_send_file.py" "127.0.0.1:$port" alice@example.test \
    bob@example.test "$MM_TMP/big.eml") || { echo "send failed: $out" >&2; return 1; }
  echo "$(echo "$out" | sed -n 's/^total=\([0-9.]*\) eom=\([0-9.]*\)$/\1 \2/p')" \
    "$(echo "$out" | sed -n 's/^data=\([0-9.]*\) body=\([0-9.]*\)$/\1 \2/p')"
}
# Reset the peak RSS (VmHWM) of PID to its current RSS.
reset_hwm() { echo 5 >"/proc/$1/clear_refs"; }
mm_pid=$(cat "$MM_TMP/mm-milter.pid")
drain() {
  local n=$1
  mm_wait_delivered bob "$n" 600 || mm_fail "mail $n not delivered"
}

use_milter ""
r=$(send) || mm_fail "send failed"
read -r none_total none_eom none_data none_body <<<"$r"
drain 1
echo "Postfix, no milter:  total $none_total s, end of data -> 250: $none_eom s (DATA -> 250 $none_data s, body sent in $none_body s)"

# The floor under any milter: Postfix handing the message to one that does nothing.
cc -O2 -o "$MM_TMP/noop_milter" "$MM_SOURCE_DIR/bench/noop_milter.c" -lmilter -lpthread || mm_fail "cannot build noop_milter"
noop_port=$(mm_free_port)
"$MM_TMP/noop_milter" "inet:$noop_port@127.0.0.1" >"$MM_TMP/noop.log" 2>&1 &
mm_register_pid $!
mm_wait_port "$noop_port" 20 || mm_fail "noop_milter did not start"
use_milter "inet:127.0.0.1:$noop_port"
r=$(send) || mm_fail "send failed"
read -r noop_total noop_eom noop_data noop_body <<<"$r"
drain 2
echo "no-op milter:        total $noop_total s, end of data -> 250: $noop_eom s (DATA -> 250 $noop_data s, body sent in $noop_body s)"

use_milter "$milters"
reset_hwm "$mm_pid"
r=$(send) || mm_fail "send failed"
read -r mm_total mm_eom mm_data mm_body <<<"$r"
drain 3
mm_kib=$(mb_hwm_kib "$mm_pid")
echo "mm-milter:           total $mm_total s, end of data -> 250: $mm_eom s (DATA -> 250 $mm_data s, body sent in $mm_body s), peak RSS $mm_kib KiB"
grep 'detached' "$MM_TMP/mm-milter.log" | tail -1

# mm-milter's before-queue filter: the submission smtpd, no milter anywhere.
use_milter ""
reset_hwm "$mm_pid"
r=$(send "$MM_SUBMIT_PORT") || mm_fail "send failed"
read -r fl_total fl_eom fl_data fl_body <<<"$r"
drain 4
fl_kib=$(mb_hwm_kib "$mm_pid")
echo "mm-milter filter:    total $fl_total s, end of data -> 250: $fl_eom s (DATA -> 250 $fl_data s, body sent in $fl_body s), peak RSS $fl_kib KiB"
grep -q 'filter: detached' "$MM_TMP/mm-milter.log" || mm_fail "the filter did not detach the video"
grep 'filter: detached' "$MM_TMP/mm-milter.log" | tail -1
last=$(ls -t "$MM_MAIL_DIR/bob/Maildir/new/" | head -1)
echo "filter: the delivered mail is $(stat -c %s "$MM_MAIL_DIR/bob/Maildir/new/$last") bytes"

use_milter "unix:$MD/spool/md.sock"
r=$(send) || mm_fail "send failed"
read -r md_total md_eom md_data md_body <<<"$r"
drain 5
md_kib=$(mb_hwm_kib "$md_pid")
w_kib=0
for p in $(ps -o pid= --ppid "$mx_pid"); do
  k=$(mb_hwm_kib "$p" 2>/dev/null || echo 0)
  [ "$k" -gt "$w_kib" ] && w_kib=$k
done
echo "MIMEDefang:          total $md_total s, end of data -> 250: $md_eom s (DATA -> 250 $md_data s, body sent in $md_body s), peak RSS milter $md_kib KiB, perl worker $w_kib KiB"
last=$(ls -t "$MM_MAIL_DIR/bob/Maildir/new/" | head -1)
grep -q 'gw.example.test/md' "$MM_MAIL_DIR/bob/Maildir/new/$last" || mm_fail "MIMEDefang did not replace the video"
echo "MIMEDefang stored $(du -sb "$MD/www" | cut -f1) bytes under www/, the mail now $(stat -c %s "$MM_MAIL_DIR/bob/Maildir/new/$last") bytes"

echo "RESULT milter_detach: $MIB MiB video; floor $floor_s s; mm-milter end-of-data work $mm_eom s = $(mb_ratio "$mm_eom" "$floor_s") x floor (goal <= 1.3);" \
  "MIMEDefang $md_eom s = $(mb_ratio "$md_eom" "$mm_eom") x mm-milter (goal >= 5); no-op milter $noop_eom s (MIMEDefang = $(mb_ratio "$md_eom" "$noop_eom") x it);" \
  "whole SMTP transaction: none $none_total s, no-op $noop_total s, mm-milter $mm_total s, filter $fl_total s, MIMEDefang $md_total s;" \
  "peak RSS: mm-milter $((mm_kib / 1024)) MiB, mm-milter filter $((fl_kib / 1024)) MiB, MIMEDefang worker $((w_kib / 1024)) MiB, floor $((floor_kib / 1024)) MiB"
# Both measures for every row, and the ratios: the row / the floor, MIMEDefang / the row.
{
  printf '%-18s %9s %9s %10s %9s %9s %10s %9s %9s\n' row eom_s x_floor md/row total_s x_floor md/row data_s body_s
  for row in none:"no milter" noop:"no-op milter" mm:"mm-milter" fl:"mm-milter filter" md:"MIMEDefang"; do
    k=${row%%:*}
    v=${k}_eom; e=${!v}; v=${k}_total; t=${!v}; v=${k}_data; d=${!v}; v=${k}_body; b=${!v}
    printf '%-18s %9s %9s %10s %9s %9s %10s %9s %9s\n' "${row#*:}" "$e" "$(mb_ratio "$e" "$floor_s")" \
      "$(mb_ratio "$md_eom" "$e")" "$t" "$(mb_ratio "$t" "$floor_s")" "$(mb_ratio "$md_total" "$t")" "$d" "$b"
  done
  echo "eom = end of data -> 250; total = connect -> final 250 (the whole transaction); data = DATA sent -> final 250;"
  echo "body = 354 -> last byte handed to the socket; floor = $floor_s s; md/row = MIMEDefang's time / the row's"
} | sed 's/^/TABLE /'
