#!/usr/bin/env bash
# Install everything MediaMail needs to build, test and demo (Debian 12, as root).
# Idempotent: when every package is already installed, apt is not touched.
# The system Postfix/Dovecot services are stopped if running: tests run their own
# private instances on loopback (tests/integration/lib/mailstack.sh).
set -euo pipefail

PACKAGES=(
  # build
  g++ cmake make pkg-config ccache
  libpoco-dev libgmime-3.0-dev libssl-dev libcurl4-openssl-dev
  libmilter-dev libsqlite3-dev doctest-dev
  # mm-gateway's relay client (gateway.relay) and the private sshd of its test
  libssh-dev openssh-server
  # mail stack for integration tests and the demo
  postfix dovecot-core dovecot-pop3d swaks fetchmail
  # tools used by tests, harness and demo
  ffmpeg curl python3 ca-certificates openssl sqlite3 procps iproute2
  util-linux passwd coreutils findutils
  # fuzzing (fuzz/run.sh): clang with the libFuzzer runtime
  clang libclang-rt-14-dev
  # mm-gateway browser-page test (headless) and benchmark reference server
  chromium chromium-driver nginx
  # mm-fetcher tests: a fourth POP3 client, driven in a detached terminal
  neomutt tmux
  # mm-fetcher virus scan test (fetcher.clamd): a private clamd with a signature the test writes
  clamav-daemon
  # the reference milter of bench/milter_detach.sh
  mimedefang libnet-dns-perl
  # the reference milter of bench/milter_throughput.sh (OpenDKIM, verify-only)
  opendkim
  # the Debian package (cpack -G DEB, tests/integration/package.test.sh):
  # dpkg-shlibdeps (and file), lintian, systemd-analyze, the man page checks, its postinst;
  # python3 above also writes mediamail.conf(5) at build time
  dpkg-dev file lintian systemd man-db groff-base adduser
  # the IMAP mailbox agent's tests (mm-fetcher --imap): Dovecot serving IMAP
  dovecot-imapd
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root" >&2
  exit 1
fi

# Print the packages that dpkg does not report as installed.
missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      echo "$p"
    fi
  done
}

mapfile -t MISSING < <(missing_packages)
if [ "${#MISSING[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
else
  echo "install-deps: installing ${MISSING[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix must install without asking questions and without a real config.
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string localhost" | debconf-set-selections
  apt-get update
  apt-get install -y --no-install-recommends "${MISSING[@]}"
fi

# postfix -c DIR needs a system main.cf listing alternate_config_directories.
if [ ! -s /etc/postfix/main.cf ]; then
  mkdir -p /etc/postfix
  printf 'compatibility_level = 3.6\n' >/etc/postfix/main.cf
fi

# Unprivileged owner of the test mailboxes, shared by Postfix virtual(8) and Dovecot.
if ! id mmvmail >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin mmvmail || id mmvmail >/dev/null
fi

# Do not leave the system instances running: they would only be a source of confusion.
if postfix status >/dev/null 2>&1; then
  echo "install-deps: stopping the system Postfix"
  postfix stop >/dev/null 2>&1 || true
fi
if [ -f /etc/dovecot/dovecot.conf ] && doveadm stop >/dev/null 2>&1; then
  echo "install-deps: stopped the system Dovecot"
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now postfix.service dovecot.service >/dev/null 2>&1 || true
fi

echo "install-deps: done"
