// relay.cpp - mm-gateway's SSH relay client (see relay.h): one thread owns one
// libssh session at a time (libssh sessions are not shared between threads),
// logs in with gateway.relay_key, checks the relay's host key against
// gateway.relay_known_hosts only (never trust on first use), asks for the
// forward of gateway.relay_port (RFC 4254 7.1) and bridges each forwarded
// channel to one end of a socketpair whose other end the HTTPS front end
// serves like an accepted socket (server_net.h, HttpFrontend::adopt).
//
// Why a socketpair and not TLS over the channel here: the front end then
// applies everything it applies to a TCP peer (the TLS handshake, the caps,
// gateway.header_timeout, min_rate, the send pump) with no second code path.
// A slow receiver fills the relay's window, then our bounded buffer, then the
// socketpair, and the front end sees a full socket, as with a slow TCP peer.
//
// Bytes held per channel: kBuf each way here, plus what libssh buffers: at
// most the window we advertise for data from the relay (libssh grows it only
// as we read) and, towards the relay, what the relay's window allows (2 MiB
// per channel with OpenSSH).
#include "gateway/relay.h"

#include "core/log.h"

#include <libssh/libssh.h>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <list>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <thread>
#include <unistd.h>

namespace mm {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kBuf = 64 * 1024;                        // per channel and direction
constexpr int kPollMs = 100;                              // how soon stop() is seen
constexpr std::chrono::seconds kLoginTimeout{30};         // TCP connect to forward granted
constexpr std::chrono::seconds kKeepalive{30};            // an SSH_MSG_IGNORE on an idle session
constexpr std::chrono::seconds kFirstWait{1};             // the backoff doubles from here

// The relay's [host]:port as known_hosts spells it, for log lines.
std::string relay_name(const SshUrl& u)
{
    return u.port == 22 ? u.host : "[" + u.host + "]:" + std::to_string(u.port);
}

// A session with the options every attempt and --check use: no ~/.ssh/config,
// no agent, no system known_hosts; only the files the configuration names.
ssh_session new_session(const RelaySettings& s)
{
    ssh_session ss = ssh_new();
    if (!ss)
        throw std::runtime_error("libssh: cannot make a session");
    int port = s.url.port;
    bool no = false;
    long timeout = static_cast<long>(kLoginTimeout.count());
    int nodelay = 1;
    ssh_options_set(ss, SSH_OPTIONS_PROCESS_CONFIG, &no);
    ssh_options_set(ss, SSH_OPTIONS_HOST, s.url.host.c_str());
    ssh_options_set(ss, SSH_OPTIONS_PORT, &port);
    ssh_options_set(ss, SSH_OPTIONS_USER, s.url.user.c_str());
    ssh_options_set(ss, SSH_OPTIONS_KNOWNHOSTS, s.known_hosts.c_str());
    ssh_options_set(ss, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, s.known_hosts.c_str());
    ssh_options_set(ss, SSH_OPTIONS_TIMEOUT, &timeout);
    ssh_options_set(ss, SSH_OPTIONS_NODELAY, &nodelay);
    return ss;
}

std::string fingerprint(ssh_session ss)
{
    ssh_key key = nullptr;
    if (ssh_get_server_publickey(ss, &key) != SSH_OK)
        return "";
    unsigned char* hash = nullptr;
    size_t len = 0;
    std::string out;
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &len) == SSH_OK) {
        char* fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len);
        if (fp)
            out = fp;
        ssh_string_free_char(fp);
        ssh_clean_pubkey_hash(&hash);
    }
    out = std::string(ssh_key_type_to_char(ssh_key_type(key))) + " " + out;
    ssh_key_free(key);
    return out;
}

// One forwarded channel and our end of its socketpair.
struct Bridge {
    ssh_channel ch = nullptr;
    int fd = -1;
    std::string peer;                  // the originator, for the log
    short polled = 0;                  // the events fd is registered with in the ssh_event
    std::unique_ptr<char[]> down{new char[kBuf]}, up{new char[kBuf]};
    size_t down_off = 0, down_len = 0;   // relay -> gateway
    size_t up_off = 0, up_len = 0;       // gateway -> relay
    bool fd_eof = false;    // the gateway closed (or reset) its end
    bool ch_eof = false;    // the relay sent EOF: no more request bytes
    bool eof_sent = false, shut_wr = false, dead = false;
};

int on_fd(socket_t, int, void*) { return 0; }   // the pump pass after each poll does the work

} // namespace

RelaySettings relay_settings(const Config& cfg)
{
    RelaySettings s;
    std::string why;
    if (!parse_ssh_url(cfg.str("gateway.relay"), s.url, why))
        throw cfg.invalid("gateway.relay", why);
    s.key_file = cfg.str("gateway.relay_key");
    s.known_hosts = cfg.str("gateway.relay_known_hosts");
    s.bind = cfg.str("gateway.relay_bind");
    s.port = static_cast<uint16_t>(cfg.integer("gateway.relay_port"));
    s.backoff_max = cfg.duration("gateway.relay_backoff_max");
    s.max_channels = static_cast<size_t>(cfg.integer("gateway.max_connections")) + 64;
    return s;
}

std::vector<std::string> relay_problems(const Config& cfg)
{
    std::vector<std::string> out;
    if (cfg.str("gateway.relay").empty())
        return out;
    RelaySettings s = relay_settings(cfg);
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_file(s.key_file.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK)
        out.push_back("gateway.relay_key = " + s.key_file +
                      ": not a private key this program can use (missing, unreadable, or protected by a passphrase)");
    ssh_key_free(key);
    ssh_session ss = new_session(s);
    if (ssh_session_has_known_hosts_entry(ss) != SSH_KNOWN_HOSTS_OK)
        out.push_back("gateway.relay_known_hosts = " + s.known_hosts + ": holds no host key for " + relay_name(s.url) +
                      " (ssh-keyscan -p " + std::to_string(s.url.port) + " " + s.url.host +
                      ", then check the fingerprint with the relay's admin; docs/relay.md)");
    ssh_free(ss);
    return out;
}

struct RelayImpl {
    RelaySettings set;
    AdoptConnection adopt;
    ssh_key key = nullptr;
    std::thread thread;
    std::atomic<bool> stopping{false};
    std::mutex mu;
    std::condition_variable cv;
    RelayState state = RelayState::off;   // the relay thread's own
    unsigned long long refused_channels = 0;   // since the last line about them
    Clock::time_point last_refused_log{};

    ~RelayImpl() { ssh_key_free(key); }

    void set_state(RelayState s, const std::string& fields = "")
    {
        state = s;
        gateway_metrics().set_relay_state(s);
        std::string line = "relay" + kv("state", relay_state_name(s)) + kv("relay", relay_name(set.url)) + fields;
        if (s == RelayState::refused)
            log_error(line);
        else if (s == RelayState::waiting)
            log_warning(line);
        else
            log_info(line);
    }

    // Sleeps `d` unless stop() comes first; false when stopping.
    bool wait(std::chrono::seconds d)
    {
        std::unique_lock<std::mutex> l(mu);
        return !cv.wait_for(l, d, [this] { return stopping.load(); });
    }

    void run()
    {
        std::chrono::seconds backoff = kFirstWait;
        bool first = true;
        while (!stopping) {
            if (!first)
                gateway_metrics().relay_reconnect();
            first = false;
            set_state(RelayState::connecting);
            std::string why;
            bool refused = false;
            Clock::time_point up_since{};
            bool was_up = session(why, refused, up_since);
            if (stopping)
                break;
            // A session that held for a while starts the waits over; one that
            // fails at once (or a relay that drops us right away) backs off.
            if (was_up && Clock::now() - up_since >= set.backoff_max)
                backoff = kFirstWait;
            set_state(refused ? RelayState::refused : RelayState::waiting,
                      kv("why", why, 300) + kv("retry_in", std::to_string(backoff.count()) + "s"));
            if (!wait(backoff))
                break;
            backoff = std::min(backoff * 2, set.backoff_max);
        }
        set_state(RelayState::stopped);
    }

    // Repeats a non-blocking libssh step until it is done, the login deadline
    // passes or stop() is called. Returns the step's last result (`again`:
    // SSH_AGAIN, or SSH_AUTH_AGAIN for the login functions).
    template <typename Step> int drive(ssh_session ss, Clock::time_point deadline, Step step, int again = SSH_AGAIN)
    {
        for (;;) {
            int rc = step();
            if (rc != again)
                return rc;
            if (stopping || Clock::now() > deadline)
                return again == SSH_AGAIN ? SSH_ERROR : SSH_AUTH_ERROR;
            pollfd p{ssh_get_fd(ss), POLLIN, 0};
            if (p.fd >= 0)
                poll(&p, 1, 20);
            else
                usleep(20000);
        }
    }

    // One session from TCP connect to its end. True once the forward was open.
    bool session(std::string& why, bool& refused, Clock::time_point& up_since)
    {
        ssh_session ss = nullptr;
        try {
            ss = new_session(set);
        } catch (const std::exception& e) {
            why = e.what();
            return false;
        }
        struct Free {
            ssh_session s;
            ~Free()
            {
                ssh_disconnect(s);
                ssh_free(s);
            }
        } guard{ss};
        ssh_set_blocking(ss, 0);
        Clock::time_point deadline = Clock::now() + kLoginTimeout;
        if (drive(ss, deadline, [&] { return ssh_connect(ss); }) != SSH_OK) {
            why = stopping ? "stopping" : std::string("cannot connect: ") + ssh_get_error(ss);
            return false;
        }
        // The host key, before anything of ours is sent: only the one
        // gateway.relay_known_hosts holds is accepted.
        enum ssh_known_hosts_e known = ssh_session_is_known_server(ss);
        if (known != SSH_KNOWN_HOSTS_OK) {
            refused = true;
            std::string fp = fingerprint(ss);
            switch (known) {
            case SSH_KNOWN_HOSTS_CHANGED:
                why = "host key CHANGED: the relay's key is not the one gateway.relay_known_hosts holds for " +
                      relay_name(set.url) + " (a different server, or the relay was reinstalled); offered " + fp;
                break;
            case SSH_KNOWN_HOSTS_OTHER:
                why = "the relay offered a host key of a type gateway.relay_known_hosts has none of for " +
                      relay_name(set.url) + ": " + fp;
                break;
            case SSH_KNOWN_HOSTS_UNKNOWN:
                why = "host key unknown: gateway.relay_known_hosts has no entry for " + relay_name(set.url) +
                      " (never trusted on first use); offered " + fp;
                break;
            case SSH_KNOWN_HOSTS_NOT_FOUND:
                why = "gateway.relay_known_hosts = " + set.known_hosts + " cannot be read by this user";
                break;
            default:
                why = std::string("host key check failed: ") + ssh_get_error(ss);
                break;
            }
            return false;
        }
        int rc = drive(
            ss, deadline, [&] { return ssh_userauth_publickey(ss, nullptr, key); }, SSH_AUTH_AGAIN);
        if (rc != SSH_AUTH_SUCCESS) {
            refused = rc == SSH_AUTH_DENIED || rc == SSH_AUTH_PARTIAL;
            why = refused ? "the relay refused gateway.relay_key for user " + set.url.user +
                                " (its authorized_keys line?)"
                          : std::string("login failed: ") + (Clock::now() > deadline ? "timed out" : ssh_get_error(ss));
            return false;
        }
        int bound = 0;
        const char* bind = set.bind.empty() ? nullptr : set.bind.c_str();
        rc = drive(ss, deadline, [&] { return ssh_channel_listen_forward(ss, bind, set.port, &bound); });
        if (rc != SSH_OK) {
            refused = ssh_is_connected(ss) != 0;
            why = refused ? "the relay refused to open port " + std::to_string(set.port) +
                                (set.bind.empty() ? "" : " on " + set.bind) +
                                " (permitlisten in its authorized_keys, GatewayPorts in sshd_config, or the port is "
                                "in use there)"
                          : std::string("forward request failed: ") + ssh_get_error(ss);
            return false;
        }
        keepalive(ssh_get_fd(ss));
        up_since = Clock::now();
        set_state(RelayState::up, kv("port", static_cast<unsigned>(set.port)) +
                                      kv("bind", set.bind.empty() ? std::string("*") : set.bind) +
                                      kv("host_key", fingerprint(ss)));
        serve(ss, why);
        return true;
    }

    // TCP keepalive on the session's socket: a relay that vanished without a
    // FIN (a NAT mapping gone, a power cut) is noticed within about a minute.
    static void keepalive(int fd)
    {
        int on = 1, idle = 30, intvl = 10, cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }

    // The forward is open: accept channels and move bytes until the session ends.
    void serve(ssh_session ss, std::string& why)
    {
        ssh_event ev = ssh_event_new();
        ssh_event_add_session(ev, ss);
        std::list<Bridge> bridges;
        Clock::time_point last_sent = Clock::now();
        while (!stopping) {
            for (Bridge& b : bridges)
                want(ev, b);
            if (ssh_event_dopoll(ev, kPollMs) == SSH_ERROR && !ssh_is_connected(ss))
                break;
            accept(ss, ev, bridges);
            for (auto it = bridges.begin(); it != bridges.end();) {
                pump(*it);
                if (it->dead) {
                    finish(ev, *it);
                    it = bridges.erase(it);
                } else {
                    ++it;
                }
            }
            if (!ssh_is_connected(ss) || (ssh_get_status(ss) & (SSH_CLOSED | SSH_CLOSED_ERROR)))
                break;
            if (Clock::now() - last_sent >= kKeepalive) {
                ssh_send_ignore(ss, "");
                last_sent = Clock::now();
            }
        }
        why = stopping ? "stopping" : std::string("session ended: ") + ssh_get_error(ss);
        size_t open = bridges.size();
        for (Bridge& b : bridges)
            finish(ev, b);
        ssh_event_remove_session(ev, ss);
        ssh_event_free(ev);
        if (open > 0)
            log_info("relay: channels closed with the session" + kv("count", static_cast<unsigned long>(open)));
    }

    // Takes every channel the relay opened since the last pass.
    void accept(ssh_session ss, ssh_event ev, std::list<Bridge>& bridges)
    {
        for (;;) {
            int dport = 0, oport = 0;
            char* orig = nullptr;
            ssh_channel ch = ssh_channel_open_forward_port(ss, 0, &dport, &orig, &oport);
            if (!ch)
                return;
            std::string origin = orig ? orig : "";
            ssh_string_free_char(orig);
            sockaddr_storage peer{};
            socklen_t len = peer_address(ss, origin, static_cast<uint16_t>(oport), peer);
            int sv[2] = {-1, -1};
            // Only the port we asked for, and no more channels than the
            // backstop: refused channels are closed before they cost anything.
            if (dport != set.port || bridges.size() >= set.max_channels ||
                socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
                // One line a minute at most: a flood must not flood the log.
                ++refused_channels;
                if (Clock::now() - last_refused_log >= std::chrono::seconds(60)) {
                    log_warning("relay: forwarded channel(s) refused" + kv("count", refused_channels) +
                                kv("peer", origin) + kv("port", static_cast<long>(dport)) +
                                kv("why", dport != set.port                    ? "not the port asked for"
                                          : bridges.size() >= set.max_channels ? "too many channels"
                                                                               : std::strerror(errno)));
                    refused_channels = 0;
                    last_refused_log = Clock::now();
                }
                ssh_channel_close(ch);
                ssh_channel_free(ch);
                continue;
            }
            Bridge& b = bridges.emplace_back();
            b.ch = ch;
            b.fd = sv[0];
            b.peer = origin + ":" + std::to_string(oport);
            gateway_metrics().relay_channel_opened();
            adopt(sv[1], peer, len);   // the front end owns sv[1] from here, and may close it at once (its caps)
            want(ev, b);
        }
    }

    // The receiver's address as the relay saw it (the forwarded-tcpip
    // originator): the front end's per-address caps and logs use it. The
    // relay is authenticated by its host key, so its word is taken; an
    // address it does not give falls back to the relay's own.
    static socklen_t peer_address(ssh_session ss, const std::string& origin, uint16_t port, sockaddr_storage& out)
    {
        auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
        if (inet_pton(AF_INET, origin.c_str(), &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(port);
            return sizeof *v4;
        }
        if (inet_pton(AF_INET6, origin.c_str(), &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(port);
            return sizeof *v6;
        }
        socklen_t len = sizeof out;
        if (getpeername(ssh_get_fd(ss), reinterpret_cast<sockaddr*>(&out), &len) == 0)
            return len;
        out = {};
        v4->sin_family = AF_INET;
        return sizeof *v4;
    }

    // Registers b.fd for what it is waiting on: room to write what came from
    // the relay, or bytes from the gateway while our buffer has room.
    static void want(ssh_event ev, Bridge& b)
    {
        short events = 0;
        if (b.down_off < b.down_len)
            events |= POLLOUT;
        if (!b.fd_eof && b.up_len < kBuf)
            events |= POLLIN;
        if (events == b.polled)
            return;
        if (b.polled)
            ssh_event_remove_fd(ev, b.fd);
        if (events)
            ssh_event_add_fd(ev, b.fd, events, on_fd, nullptr);
        b.polled = events;
    }

    // Moves what can move without waiting, both ways; marks the bridge dead when done.
    static void pump(Bridge& b)
    {
        if (ssh_channel_is_closed(b.ch)) {   // the relay closed the channel: the receiver is gone
            b.dead = true;
            return;
        }
        // relay -> gateway
        while (!b.ch_eof && b.down_len < kBuf) {
            int n = ssh_channel_read_nonblocking(b.ch, b.down.get() + b.down_len,
                                                 static_cast<uint32_t>(kBuf - b.down_len), 0);
            if (n == SSH_ERROR) {
                b.dead = true;
                return;
            }
            if (n > 0) {
                b.down_len += static_cast<size_t>(n);
                continue;
            }
            if (ssh_channel_is_eof(b.ch))
                b.ch_eof = true;
            break;
        }
        while (b.down_off < b.down_len) {
            ssize_t n = ::write(b.fd, b.down.get() + b.down_off, b.down_len - b.down_off);
            if (n > 0) {
                b.down_off += static_cast<size_t>(n);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            b.dead = true;   // the front end closed the connection
            return;
        }
        if (b.down_off == b.down_len)
            b.down_off = b.down_len = 0;
        if (b.ch_eof && b.down_len == 0 && !b.shut_wr) {
            ::shutdown(b.fd, SHUT_WR);   // the front end reads EOF, as from a TCP peer's FIN
            b.shut_wr = true;
        }
        // gateway -> relay
        while (!b.fd_eof && b.up_len < kBuf) {
            ssize_t n = ::read(b.fd, b.up.get() + b.up_len, kBuf - b.up_len);
            if (n > 0) {
                b.up_len += static_cast<size_t>(n);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            b.fd_eof = true;   // closed (or reset): what is buffered still goes out
        }
        while (b.up_off < b.up_len) {
            // Never more than the relay's window: ssh_channel_write would otherwise wait for it.
            uint32_t room = ssh_channel_window_size(b.ch);
            if (room == 0)
                break;
            uint32_t len = static_cast<uint32_t>(std::min<size_t>(room, b.up_len - b.up_off));
            int n = ssh_channel_write(b.ch, b.up.get() + b.up_off, len);
            if (n == SSH_ERROR) {
                b.dead = true;
                return;
            }
            if (n <= 0)
                break;
            b.up_off += static_cast<size_t>(n);
        }
        if (b.up_off == b.up_len)
            b.up_off = b.up_len = 0;
        if (b.fd_eof && b.up_len == 0)
            b.dead = true;   // the gateway's answer is all with the relay: EOF and close follow
    }

    static void finish(ssh_event ev, Bridge& b)
    {
        if (b.polled)
            ssh_event_remove_fd(ev, b.fd);
        b.polled = 0;
        ::close(b.fd);
        b.fd = -1;
        if (!ssh_channel_is_closed(b.ch)) {
            ssh_channel_send_eof(b.ch);
            ssh_channel_close(b.ch);
        }
        ssh_channel_free(b.ch);
        b.ch = nullptr;
        gateway_metrics().relay_channel_closed();
    }
};

Relay::Relay(const Config& cfg, AdoptConnection adopt) : impl_(std::make_unique<RelayImpl>())
{
    ssh_init();
    impl_->set = relay_settings(cfg);
    impl_->adopt = std::move(adopt);
    // Read now, while the files are still ours to read (before gateway.user).
    if (ssh_pki_import_privkey_file(impl_->set.key_file.c_str(), nullptr, nullptr, nullptr, &impl_->key) != SSH_OK)
        throw cfg.invalid("gateway.relay_key",
                          "not a private key this program can use (missing, unreadable, or protected by a passphrase)");
    if (access(impl_->set.known_hosts.c_str(), R_OK) != 0)
        throw cfg.invalid("gateway.relay_known_hosts", std::string("cannot be read: ") + std::strerror(errno));
}

Relay::~Relay() { stop(); }

void Relay::start()
{
    gateway_metrics().set_relay_state(RelayState::connecting);
    impl_->thread = std::thread([this] { impl_->run(); });
}

void Relay::stop()
{
    {
        std::lock_guard<std::mutex> l(impl_->mu);
        impl_->stopping = true;
    }
    impl_->cv.notify_all();
    if (impl_->thread.joinable())
        impl_->thread.join();
}

} // namespace mm
