# shellcheck shell=bash
# mailstack.sh - run real, private Postfix and Dovecot instances on loopback for tests.
#
# Source it from a test script (as root):
#   . "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
#   mm_tmpdir_init; mm_postfix_start [milter]; mm_dovecot_start
# Everything lives under $MM_TMP; an EXIT trap stops all of it and removes the dir.
#
# Exported: MM_TMP, MM_SMTP_PORT, MM_POP3_PORT, MM_POP3_PASS, MM_MAIL_DIR, MM_DOVECOT_AUTH_SOCKET,
#           MM_POSTFIX_DIR, MM_POSTFIX_LOG, MM_DOVECOT_CONF, MM_DOVECOT_LOG,
#           MM_VMAIL_USER, MM_VMAIL_UID, MM_VMAIL_GID.
# Mail domain: example.test, users bob, alice, carol (POP3 password "secret").

MM_DOMAIN=example.test
MM_USERS=(bob alice carol)
MM_VMAIL_USER=${MM_VMAIL_USER:-mmvmail}
MM_PORT_LOCKS=/tmp/mm-port-locks
MM_POSTFIX_GLOBAL_LOCK=/run/lock/mm-postfix-alt.lock

# Print "  ok: MSG".
mm_log() { echo "  ok: $*"; }

# Print an informational line to stderr.
mm_info() { echo "  .. $*" >&2; }

# Print "FAIL: MSG", dump the tails of the server logs, and exit 1 (trap cleans up).
mm_fail() {
  echo "FAIL: $*"
  local f
  for f in "${MM_TMP:-/nonexistent}/postfix.log" "${MM_TMP:-/nonexistent}/dovecot.log"; do
    if [ -s "$f" ]; then
      echo "---- tail of $f ----"
      tail -n 40 "$f"
    fi
  done
  exit 1
}

# Create the private temp dir, export MM_TMP and install the cleanup trap.
mm_tmpdir_init() {
  mkdir -p /run/lock
  MM_TMP=$(mktemp -d /tmp/mm.XXXXXXXX) || { echo "FAIL: mktemp" >&2; exit 1; }
  chmod 755 "$MM_TMP"
  export MM_TMP
  : >"$MM_TMP/pids"
  : >"$MM_TMP/ports"
  trap mm__on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# EXIT trap: stop everything, then remove $MM_TMP unless MM_KEEP_TMP=1.
MM_MOUNTS=()

# Mounts a tmpfs of SIZE (e.g. 16m) at DIR (created), unmounted at exit: a store
# that fills up. Needs root.
mm_small_fs() {
  local dir=$1 size=$2
  mkdir -p "$dir"
  mount -t tmpfs -o "size=$size,mode=0755" tmpfs "$dir" || mm_fail "cannot mount a tmpfs at $dir (needs root)"
  MM_MOUNTS+=("$dir")
}

mm__on_exit() {
  local rc=$?
  mm_stack_stop
  # Small file systems of mm_small_fs go before $MM_TMP, which holds their mount points.
  local m
  for m in "${MM_MOUNTS[@]}"; do
    mountpoint -q "$m" && { umount "$m" || umount -l "$m" || true; }
  done
  if [ -n "${MM_TMP:-}" ] && [ -d "$MM_TMP" ]; then
    if [ "${MM_KEEP_TMP:-0}" = 1 ]; then
      echo "  .. kept $MM_TMP" >&2
    else
      rm -rf -- "$MM_TMP"
    fi
  fi
  exit "$rc"
}

# Succeed when nothing listens on 127.0.0.1:PORT and it can be bound.
mm__port_is_free() {
  local port=$1
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    return 1
  fi
  python3 - "$port" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# Print a free TCP port in 20000..32767 (below the ephemeral range), reserved for this run.
mm_free_port() {
  local port tries=0 lock
  mkdir -p "$MM_PORT_LOCKS" 2>/dev/null || true
  # Forget reservations older than an hour (left by crashed runs).
  find "$MM_PORT_LOCKS" -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {} + 2>/dev/null || true
  while [ $tries -lt 200 ]; do
    tries=$((tries + 1))
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
    lock="$MM_PORT_LOCKS/$port"
    mkdir "$lock" 2>/dev/null || continue
    if mm__port_is_free "$port"; then
      [ -z "${MM_TMP:-}" ] || echo "$port" >>"$MM_TMP/ports"
      echo "$port"
      return 0
    fi
    rmdir "$lock" 2>/dev/null || true
  done
  echo "mm_free_port: no free port found" >&2
  return 1
}

# Wait until something accepts TCP connections on 127.0.0.1:PORT (default 20 s).
mm_wait_port() {
  local port=$1 timeout=${2:-20} end
  end=$((SECONDS + timeout))
  while [ $SECONDS -lt $end ]; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# Print the first line HOST:PORT greets with, after sending QUIT; fail when none.
mm__banner_once() {
  (
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    IFS= read -r -t 5 l <&3 || exit 1
    printf 'QUIT\r\n' >&3
    IFS= read -r -t 2 _ <&3
    printf '%s' "$l"
  ) 2>/dev/null
}

# Run a command in the network namespace MM_NETNS when set (bench/wan.sh puts each
# server on a host of its own), else here.
mm__ns() {
  if [ -n "${MM_NETNS:-}" ]; then
    ip netns exec "$MM_NETNS" "$@"
  else
    "$@"
  fi
}

# Wait until MM_LISTEN_IP (default 127.0.0.1):PORT greets with a line starting
# with PREFIX, then send QUIT. Looks from inside MM_NETNS when set.
mm__wait_banner() {
  local port=$1 prefix=$2 timeout=${3:-20} end line
  end=$((SECONDS + timeout))
  while [ $SECONDS -lt $end ]; do
    line=$(mm__ns bash -c "$(declare -f mm__banner_once); mm__banner_once '${MM_LISTEN_IP:-127.0.0.1}' '$port'") || line=
    case "$line" in
      "$prefix"*) return 0 ;;
    esac
    sleep 0.2
  done
  return 1
}

# Remember PID so that mm_stack_stop terminates it (gateway, milter, fetcher...).
mm_register_pid() {
  [ -n "${MM_TMP:-}" ] || { echo "mm_register_pid: call mm_tmpdir_init first" >&2; return 1; }
  echo "$1" >>"$MM_TMP/pids"
}

# Print PID and all its descendants (children first is not guaranteed).
mm__descendants() {
  local pid=$1 child
  echo "$pid"
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    mm__descendants "$child"
  done
}

# Wait up to TIMEOUT seconds for all PIDS to be gone; succeed when they are.
mm__wait_gone() {
  local timeout=$1; shift
  local end=$((SECONDS + timeout)) p alive
  while :; do
    alive=0
    for p in "$@"; do
      if kill -0 "$p" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then
        alive=1
      fi
    done
    [ $alive = 0 ] && return 0
    [ $SECONDS -ge $end ] && return 1
    sleep 0.1
  done
}

# TERM the given pids (and their descendants), escalate to KILL after TIMEOUT seconds.
mm__terminate() {
  local timeout=$1; shift
  local all=() p
  for p in "$@"; do
    [ -n "$p" ] || continue
    kill -0 "$p" 2>/dev/null || continue
    mapfile -t -O "${#all[@]}" all < <(mm__descendants "$p")
  done
  [ ${#all[@]} -gt 0 ] || return 0
  kill -TERM "${all[@]}" 2>/dev/null || true
  if ! mm__wait_gone "$timeout" "${all[@]}"; then
    kill -KILL "${all[@]}" 2>/dev/null || true
    mm__wait_gone 5 "${all[@]}" || true
  fi
  # Reap our own children so that no zombie stays behind.
  for p in "${all[@]}"; do wait "$p" 2>/dev/null || true; done
  return 0
}

# Ensure the unprivileged mailbox owner exists; export its uid/gid.
mm__vmail_user() {
  if ! id "$MM_VMAIL_USER" >/dev/null 2>&1; then
    (
      flock 9
      id "$MM_VMAIL_USER" >/dev/null 2>&1 ||
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
          --shell /usr/sbin/nologin "$MM_VMAIL_USER"
    ) 9>/run/lock/mm-vmail-user.lock
  fi
  MM_VMAIL_UID=$(id -u "$MM_VMAIL_USER") || return 1
  MM_VMAIL_GID=$(id -g "$MM_VMAIL_USER") || return 1
  export MM_VMAIL_USER MM_VMAIL_UID MM_VMAIL_GID
}

# Create the shared mailbox base $MM_TMP/mail owned by the mailbox user.
mm__mail_dir() {
  mm__vmail_user || return 1
  MM_MAIL_DIR=$MM_TMP/mail
  export MM_MAIL_DIR
  mkdir -p "$MM_MAIL_DIR"
  chown "$MM_VMAIL_UID:$MM_VMAIL_GID" "$MM_MAIL_DIR"
  chmod 770 "$MM_MAIL_DIR"
}

# Add (op=add) or remove (op=del) DIR in the system main.cf alternate_config_directories.
mm__postfix_altdir() {
  local op=$1 dir=$2
  (
    flock 9
    [ -s /etc/postfix/main.cf ] || printf 'compatibility_level = 3.6\n' >>/etc/postfix/main.cf
    local cur entry new=()
    cur=$(postconf -c /etc/postfix -h alternate_config_directories 2>/dev/null)
    for entry in ${cur//,/ }; do
      [ "$entry" = "$dir" ] && continue
      # Drop entries of earlier runs whose directory is gone.
      case "$entry" in /tmp/mm.*) [ -d "$entry" ] || continue ;; esac
      new+=("$entry")
    done
    [ "$op" = add ] && new+=("$dir")
    postconf -c /etc/postfix -e "alternate_config_directories = ${new[*]}"
  ) 9>"$MM_POSTFIX_GLOBAL_LOCK"
}

# Start a private Postfix on a free loopback port (export MM_SMTP_PORT); $1 = optional milter;
# MM_POSTFIX_EXTRA = more main.cf lines, appended last (they win). MM_NETNS and
# MM_LISTEN_IP (bench/wan.sh): start it in that network namespace, its smtpd
# services on that address.
mm_postfix_start() {
  local milter=${1:-} lip=${MM_LISTEN_IP:-127.0.0.1}
  [ -n "${MM_TMP:-}" ] || mm_tmpdir_init
  command -v postfix >/dev/null || mm_fail "postfix not installed (run scripts/install-deps.sh)"
  mm__mail_dir || mm_fail "cannot create mailbox user/dir"
  MM_POSTFIX_DIR=$MM_TMP/postfix
  MM_POSTFIX_LOG=$MM_TMP/postfix.log
  MM_SMTP_PORT=$(mm_free_port) || mm_fail "no free port for smtpd"
  export MM_POSTFIX_DIR MM_POSTFIX_LOG MM_SMTP_PORT
  local q=$MM_TMP/postfix-queue d=$MM_TMP/postfix-data
  mkdir -p "$MM_POSTFIX_DIR" "$q" "$d"
  chown root:root "$q"
  chmod 755 "$q"
  chown postfix:postfix "$d"
  chmod 700 "$d"
  # The queue's subdirectories as Postfix's own postfix-files makes them, so that
  # "postfix start" can skip its integrity checks (the quick-start file below):
  # those run find over /usr/lib/postfix and /etc/postfix and a dozen postconf
  # processes, 10-20 s per start on a loaded 2-core machine, for a queue this
  # function has just made.
  local sub
  for sub in active bounce corrupt defer deferred flush hold incoming private saved trace; do
    install -d -o postfix -g root -m 700 "$q/$sub"
  done
  install -d -o postfix -g postdrop -m 730 "$q/maildrop"
  install -d -o postfix -g postdrop -m 710 "$q/public"
  install -d -o root -g root -m 755 "$q/pid"
  : >"$MM_POSTFIX_LOG"

  local maps="" u
  for u in "${MM_USERS[@]}"; do
    maps+="${maps:+, }$u@$MM_DOMAIN=$u/Maildir/"
  done

  cat >"$MM_POSTFIX_DIR/main.cf" <<EOF
# Private MediaMail test instance - written by tests/integration/lib/mailstack.sh
compatibility_level = 3.6
queue_directory = $q
data_directory = $d
syslog_name = postfix-mm-$MM_SMTP_PORT
maillog_file = $MM_POSTFIX_LOG
maillog_file_prefixes = $MM_TMP
myhostname = mx.$MM_DOMAIN
mydomain = $MM_DOMAIN
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1${MM_LISTEN_IP:+, $MM_LISTEN_IP}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = $MM_DOMAIN
virtual_mailbox_base = $MM_MAIL_DIR
virtual_mailbox_maps = inline:{ $maps }
virtual_uid_maps = static:$MM_VMAIL_UID
virtual_gid_maps = static:$MM_VMAIL_GID
virtual_minimum_uid = $MM_VMAIL_UID
virtual_mailbox_limit = 0
message_size_limit = 0
mailbox_size_limit = 0
# Never deliver or bounce to the outside world.
default_transport = error:outside delivery disabled in tests
relay_transport = error:outside delivery disabled in tests
notify_classes =
biff = no
smtputf8_enable = no
smtpd_banner = \$myhostname ESMTP MediaMail-test
# Retry deferred mail quickly (tests exercise milter tempfail).
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 15s
delay_warning_time = 0
EOF
  if [ -n "$milter" ]; then
    cat >>"$MM_POSTFIX_DIR/main.cf" <<EOF
smtpd_milters = $milter
non_smtpd_milters = $milter
milter_default_action = tempfail
milter_protocol = 6
EOF
  fi
  # Extra main.cf lines from the test (e.g. the milter lines of docs/postfix.md, SASL).
  [ -z "${MM_POSTFIX_EXTRA:-}" ] || printf '%s\n' "$MM_POSTFIX_EXTRA" >>"$MM_POSTFIX_DIR/main.cf"

  cat >"$MM_POSTFIX_DIR/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
$lip:$MM_SMTP_PORT inet n - n - - smtpd
EOF
  if [ -n "${MM_PROXY_FILTER:-}" ]; then
    # A submission service whose mail goes through mm-milter's before-queue
    # filter, and the after-filter smtpd it hands mail on to (docs/postfix.md).
    MM_SUBMIT_PORT=$(mm_free_port) || mm_fail "no free port for the submission smtpd"
    export MM_SUBMIT_PORT
    # The master.cf lines of docs/postfix.md as written there, with our ports.
    sed -n '/^# mm-milter: begin master.cf$/,/^# mm-milter: end master.cf$/p' "$MM_SOURCE_DIR/docs/postfix.md" |
      grep -v '^#' |
      sed -e "s/^submission /$lip:$MM_SUBMIT_PORT /" -e "s/127\.0\.0\.1:10025/$MM_PROXY_FILTER/" \
        -e "s/^127\.0\.0\.1:10026 /$MM_PROXY_NEXT /" >>"$MM_POSTFIX_DIR/master.cf"
    grep -q "smtpd_proxy_filter=$MM_PROXY_FILTER" "$MM_POSTFIX_DIR/master.cf" ||
      mm_fail "no master.cf lines for the filter in docs/postfix.md"
  fi
  cat >>"$MM_POSTFIX_DIR/master.cf" <<EOF
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

  mm__postfix_altdir add "$MM_POSTFIX_DIR" || mm_fail "cannot register $MM_POSTFIX_DIR in /etc/postfix/main.cf"
  echo "$MM_POSTFIX_DIR" >"$MM_TMP/postfix.started"
  echo "${MM_NETNS:-}" >"$MM_TMP/postfix.netns"
  # A configuration error still stops the start: master reads main.cf and
  # master.cf itself, and "postfix start" fails with the reason.
  touch "$q/quick-start"
  mm__ns postfix -c "$MM_POSTFIX_DIR" start >>"$MM_TMP/postfix.start.out" 2>&1 ||
    mm_fail "postfix start failed: $(cat "$MM_TMP/postfix.start.out")"
  mm__wait_banner "$MM_SMTP_PORT" 220 30 || mm_fail "postfix smtpd not answering on $MM_SMTP_PORT"
  if [ -n "${MM_PROXY_FILTER:-}" ]; then
    MM_LISTEN_IP=${MM_PROXY_NEXT%:*} mm__wait_banner "${MM_PROXY_NEXT##*:}" 220 30 || mm_fail "after-filter smtpd not answering on $MM_PROXY_NEXT"
  fi
  mm_info "postfix up on $lip:$MM_SMTP_PORT (config $MM_POSTFIX_DIR)"
}

# Start a private Dovecot POP3 server on a free loopback port (export MM_POP3_PORT).
mm_dovecot_start() {
  [ -n "${MM_TMP:-}" ] || mm_tmpdir_init
  command -v dovecot >/dev/null || mm_fail "dovecot not installed (run scripts/install-deps.sh)"
  [ -n "${MM_MAIL_DIR:-}" ] || mm__mail_dir || mm_fail "cannot create mailbox user/dir"
  local dir=$MM_TMP/dovecot
  MM_DOVECOT_CONF=$dir/dovecot.conf
  MM_DOVECOT_LOG=$MM_TMP/dovecot.log
  MM_POP3_PORT=$(mm_free_port) || mm_fail "no free port for pop3"
  MM_POP3_PASS=secret
  # Postfix's SASL (smtpd_sasl_type = dovecot, smtpd_sasl_path) asks Dovecot here.
  MM_DOVECOT_AUTH_SOCKET=$dir/run/auth-postfix
  export MM_DOVECOT_CONF MM_DOVECOT_LOG MM_POP3_PORT MM_POP3_PASS MM_DOVECOT_AUTH_SOCKET
  mkdir -p "$dir/run" "$dir/state"
  chmod 755 "$dir" "$dir/run"
  : >"$MM_DOVECOT_LOG"

  local u
  : >"$dir/passwd"
  for u in "${MM_USERS[@]}"; do
    echo "$u:{PLAIN}$MM_POP3_PASS" >>"$dir/passwd"
  done
  chown root:dovecot "$dir/passwd"
  chmod 640 "$dir/passwd"

  cat >"$MM_DOVECOT_CONF" <<EOF
# Private MediaMail test instance - written by tests/integration/lib/mailstack.sh
instance_name = mm-dovecot-$MM_POP3_PORT
base_dir = $dir/run
state_dir = $dir/state
log_path = $MM_DOVECOT_LOG
info_log_path = $MM_DOVECOT_LOG
protocols = pop3
listen = ${MM_LISTEN_IP:-127.0.0.1}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = $MM_VMAIL_UID
last_valid_uid = 0
first_valid_gid = $MM_VMAIL_GID
mail_location = maildir:$MM_MAIL_DIR/%n/Maildir
pop3_uidl_format = %08Xu%08Xv
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/passwd
}
userdb {
  driver = static
  args = uid=$MM_VMAIL_UID gid=$MM_VMAIL_GID home=$MM_MAIL_DIR/%n
}
service pop3-login {
  inet_listener pop3 {
    address = ${MM_LISTEN_IP:-127.0.0.1}
    port = $MM_POP3_PORT
  }
  inet_listener pop3s {
    port = 0
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
  echo "$MM_DOVECOT_CONF" >"$MM_TMP/dovecot.started"
  mm__ns dovecot -c "$MM_DOVECOT_CONF" >>"$MM_TMP/dovecot.start.out" 2>&1 ||
    mm_fail "dovecot start failed: $(cat "$MM_TMP/dovecot.start.out")"
  mm__wait_banner "$MM_POP3_PORT" "+OK" 30 || mm_fail "dovecot not answering on $MM_POP3_PORT"
  mm_info "dovecot up on ${MM_LISTEN_IP:-127.0.0.1}:$MM_POP3_PORT (config $MM_DOVECOT_CONF)"
}

# Print the pid in FILE when that process is alive.
mm__pidfile() {
  local pid
  [ -r "$1" ] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# Stop registered pids, Postfix and Dovecot; release ports. Idempotent.
mm_stack_stop() {
  [ -n "${MM_TMP:-}" ] && [ -d "$MM_TMP" ] || return 0
  local pids=() pid

  # 1. Processes registered by the test (gateway, milter, fetcher...).
  if [ -s "$MM_TMP/pids" ]; then
    mapfile -t pids <"$MM_TMP/pids"
    mm__terminate 10 "${pids[@]}"
    : >"$MM_TMP/pids"
  fi

  # 2. Postfix.
  if [ -f "$MM_TMP/postfix.started" ]; then
    local pfdir master
    pfdir=$(cat "$MM_TMP/postfix.started")
    master=$(mm__pidfile "$MM_TMP/postfix-queue/pid/master.pid") || master=
    if [ -n "$master" ]; then
      local tree=()
      mapfile -t tree < <(mm__descendants "$master")
      MM_NETNS=$(cat "$MM_TMP/postfix.netns" 2>/dev/null) mm__ns postfix -c "$pfdir" stop >/dev/null 2>&1 || true
      mm__wait_gone 15 "${tree[@]}" || mm__terminate 5 "${tree[@]}"
    fi
    mm__postfix_altdir del "$pfdir" || true
    rm -f "$MM_TMP/postfix.started"
  fi

  # 3. Dovecot.
  if [ -f "$MM_TMP/dovecot.started" ]; then
    local conf master
    conf=$(cat "$MM_TMP/dovecot.started")
    master=$(mm__pidfile "$MM_TMP/dovecot/run/master.pid") || master=
    if [ -n "$master" ]; then
      local tree=()
      mapfile -t tree < <(mm__descendants "$master")
      doveadm -c "$conf" stop >/dev/null 2>&1 || kill -TERM "$master" 2>/dev/null || true
      mm__wait_gone 15 "${tree[@]}" || mm__terminate 5 "${tree[@]}"
    fi
    rm -f "$MM_TMP/dovecot.started"
  fi

  # 4. Port reservations.
  if [ -s "$MM_TMP/ports" ]; then
    local port
    while read -r port; do
      [ -z "$port" ] || rmdir "$MM_PORT_LOCKS/$port" 2>/dev/null || true
    done <"$MM_TMP/ports"
    : >"$MM_TMP/ports"
  fi
  return 0
}

# Count the messages in USER's Maildir (new/ and cur/).
mm_count_messages() {
  local md=$MM_TMP/mail/$1/Maildir
  { find "$md/new" "$md/cur" -maxdepth 1 -type f 2>/dev/null || true; } | wc -l
}

# Wait until USER's Maildir holds at least N messages (default timeout 30 s).
mm_wait_delivered() {
  local user=$1 n=$2 timeout=${3:-30} end
  end=$((SECONDS + timeout))
  while [ $SECONDS -lt $end ]; do
    [ "$(mm_count_messages "$user")" -ge "$n" ] && return 0
    sleep 0.2
  done
  return 1
}

# Opt-in, after mm_dovecot_start: TLS (STLS on the pop3 port, a pop3s listener) with a
# self-signed cert for 127.0.0.1, and APOP. Exports MM_POP3S_PORT, MM_DOVECOT_CERT, MM_DOVECOT_PIN.
mm_dovecot_tls_enable() {
  local dir=$MM_TMP/dovecot
  MM_POP3S_PORT=$(mm_free_port) || mm_fail "no free port for pop3s"
  MM_DOVECOT_CERT=$dir/cert.pem
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$dir/key.pem" -out "$MM_DOVECOT_CERT" >/dev/null 2>&1 || mm_fail "openssl req for dovecot"
  chmod 644 "$MM_DOVECOT_CERT"
  chmod 600 "$dir/key.pem"
  MM_DOVECOT_PIN="sha256//$(openssl x509 -in "$MM_DOVECOT_CERT" -pubkey -noout | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64 -w0)"
  export MM_POP3S_PORT MM_DOVECOT_CERT MM_DOVECOT_PIN
  sed -i -e "s|^ssl = no$|ssl = yes\nssl_cert = <$MM_DOVECOT_CERT\nssl_key = <$dir/key.pem|" \
    -e "s|^auth_mechanisms = plain login$|auth_mechanisms = plain login apop|" \
    -e "/inet_listener pop3s {/,/}/ s|port = 0|address = 127.0.0.1\n    port = $MM_POP3S_PORT|" "$MM_DOVECOT_CONF"
  doveadm -c "$MM_DOVECOT_CONF" reload >>"$MM_TMP/dovecot.start.out" 2>&1 || mm_fail "dovecot reload failed"
  mm_wait_port "$MM_POP3S_PORT" 20 || mm_fail "dovecot pop3s not listening on $MM_POP3S_PORT"
}

# Opt-in, after mm_dovecot_start (and mm_dovecot_tls_enable for STARTTLS): Dovecot
# serves IMAP too, on a free loopback port, for the same users and Maildirs.
# Exports MM_IMAP_PORT.
mm_dovecot_imap_enable() {
  MM_IMAP_PORT=$(mm_free_port) || mm_fail "no free port for imap"
  export MM_IMAP_PORT
  sed -i -e "s|^protocols = pop3$|protocols = pop3 imap|" \
    -e "/inet_listener imap {/,/}/ s|port = 0|address = ${MM_LISTEN_IP:-127.0.0.1}\n    port = $MM_IMAP_PORT|" "$MM_DOVECOT_CONF"
  doveadm -c "$MM_DOVECOT_CONF" reload >>"$MM_TMP/dovecot.start.out" 2>&1 || mm_fail "dovecot reload failed"
  mm__wait_banner "$MM_IMAP_PORT" "* OK" 30 || mm_fail "dovecot imap not answering on $MM_IMAP_PORT"
}
