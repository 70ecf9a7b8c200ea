// server_net.cpp - mm-gateway's connection front end (HTTP/1.1 over TLS 1.2+,
// RFC 9112): epoll loop, non-blocking OpenSSL, deadlines, per-address caps and
// the send pump. Limits come from server.cpp (gateway.* keys, see server_net.h).
//
// Why an event loop of our own and not Poco's TCPServer: Poco hands every
// accepted socket to a worker thread, which then runs the TLS handshake and
// reads the request head with blocking calls. Connections waiting in its queue
// have no deadline at all, and each idle or stalled peer holds a worker; 100
// idle TCP sockets delayed a normal GET by a minute. Here one thread owns every
// connection until it has a whole request: accept, handshake, head and small
// body all run non-blocking under one deadline (gateway.header_timeout) that
// starts at accept, so an idle socket costs a file descriptor and a few
// hundred bytes, never a thread. Workers only see complete requests.
//
// Sending is non-blocking too: a worker writes until the socket is full, then
// gives the connection back to the loop, which hands it to a worker again when
// the peer has read. A peer that reads slowly therefore holds no worker; it is
// cut when it averages less than gateway.min_rate over gateway.min_rate_window
// (nginx's send_timeout and Apache's mod_reqtimeout MinRate in one rule) or
// makes no progress for gateway.timeout.
#include "gateway/server_net.h"

#include "gateway/metrics.h"
#include "core/program.h"

#include "core/log.h"

#include <Poco/Exception.h>
#include <Poco/Timestamp.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <malloc.h>
#include <mutex>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace mm {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHead = 32 * 1024;         // request line + fields; Poco's own caps apply inside it
constexpr size_t kReadChunk = 16 * 1024;       // one TLS record
constexpr size_t kBodyBuffer = 1024 * 1024;    // an upload's bytes handed to its sink at once
constexpr uint64_t kBodyWake = 256 * 1024;     // socket bytes that wake a body's reader (SO_RCVLOWAT)
// Below what is left of the body by more than OpenSSL may hold read ahead (a
// record and a bit): the last bytes must always wake the reader.
constexpr uint64_t kBodySlack = 64 * 1024;
// A body is read with pread into this per-thread buffer, then SSL_write: two
// full 16 KiB records. Small on purpose: the buffer stays in the CPU cache, so
// OpenSSL's copy into its record and the encryption read it hot. Larger chunks
// (512 KiB) or mapping the file cost 1.2-2.0 s of CPU per GiB against 0.94
// (bench/gateway_vs_nginx.sh, PERFORMANCE.md "TLS 1.3 with default settings").
constexpr size_t kWriteChunk = 32 * 1024;
constexpr uint64_t kTurn = 8 * 1024 * 1024;    // bytes a worker sends before serving the next in line
constexpr int kMaxRequestsPerConnection = 100;
constexpr int kEvents = 256;

enum class Phase {
    handshake,   // loop: TLS handshake
    head,        // loop: reading the request head
    body,        // loop: reading a small request body
    worker,      // a worker runs the handler, takes an upload's body or sends
    recv_wait,   // loop: waiting for more of an upload's body (BodySink)
    send_wait,   // loop: waiting for the peer to read what was sent
    closed,      // freed after the current batch of events
};

// What a worker wants done with a connection it gives back.
enum class Next { read_next, wait_read, wait_write, requeue, close };

void reset_on_close(int fd)
{
    linger l{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

// IPv4 address, or the /64 of an IPv6 address: one host (or one NAT) for the caps.
std::string address_key(const sockaddr_storage& ss)
{
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
        return buf;
    }
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
        inet_ntop(AF_INET, a.s6_addr + 12, buf, sizeof buf);
        return buf;
    }
    in6_addr prefix{};
    std::memcpy(prefix.s6_addr, a.s6_addr, 8);
    inet_ntop(AF_INET6, &prefix, buf, sizeof buf);
    return std::string(buf) + "/64";
}

int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = static_cast<char>(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

enum class Chunked { more, done, too_big, bad };

// Decodes a chunked body (RFC 9112 7.1) from the start of `raw` into `out`,
// keeping at most max + 1 bytes. `consumed` is set when done. Parsed again
// from the start as bytes arrive: the raw body is capped, so that stays cheap.
Chunked dechunk(std::string_view raw, size_t max, std::string& out, size_t& consumed)
{
    out.clear();
    size_t pos = 0;
    for (;;) {
        size_t eol = raw.find("\r\n", pos);
        if (eol == std::string_view::npos)
            return raw.size() - pos > 256 ? Chunked::bad : Chunked::more;
        uint64_t n = 0;
        size_t i = pos;
        for (; i < eol && hex_digit(raw[i]) >= 0; ++i) {
            if (n > (uint64_t{1} << 40))
                return Chunked::bad;
            n = n * 16 + static_cast<uint64_t>(hex_digit(raw[i]));
        }
        if (i == pos || (i < eol && raw[i] != ';' && raw[i] != ' ' && raw[i] != '\t'))
            return Chunked::bad;
        pos = eol + 2;
        if (n == 0) {   // trailer fields up to an empty line
            for (;;) {
                size_t e = raw.find("\r\n", pos);
                if (e == std::string_view::npos)
                    return Chunked::more;
                if (e == pos) {
                    consumed = e + 2;
                    return Chunked::done;
                }
                pos = e + 2;
            }
        }
        uint64_t have = std::min<uint64_t>(n, raw.size() - pos);
        out.append(raw.substr(pos, std::min<uint64_t>(have, max + 1 - out.size())));
        if (out.size() > max)
            return Chunked::too_big;
        if (have < n || raw.size() - pos - n < 2)
            return Chunked::more;
        if (raw.compare(pos + n, 2, "\r\n") != 0)
            return Chunked::bad;
        pos += n + 2;
    }
}

} // namespace

struct Conn {
    int fd = -1;
    SSL* ssl = nullptr;
    Poco::Net::SocketAddress peer;
    std::string addr;   // address_key()
    Phase phase = Phase::handshake;
    uint32_t events = 0;    // epoll interest; 0 = not registered
    Clock::time_point since;   // start of the current request deadline
    bool in_unready = false;
    std::list<Conn*>::iterator unready;

    // The request being read: head_len bytes of head, then body_len of body.
    std::string in;
    size_t head_len = 0, body_len = 0;
    size_t scanned = 0;   // bytes of `in` already searched for the end of the head
    bool bad_request = false, body_unread = false, sent_continue = false, chunked = false;
    std::string body;   // the request body, decoded
    std::unique_ptr<Request> req;
    int requests = 0;

    // A body taken by a BodySink (an upload): recv_left bytes still to come.
    std::unique_ptr<BodySink> sink;
    uint64_t recv_left = 0, received = 0;
    bool peer_keep_alive = true;   // the request's own wish, for the answer after the body
    int rcvlowat = 1;              // SO_RCVLOWAT now (receive())
    uint64_t credited = 0;         // socket bytes the sweep counted as progress, not read yet

    // The answer being sent: `out` (head and small body), then the file.
    bool responding = false, keep_alive = false, transfer = false;
    std::string out;
    size_t out_off = 0;
    UniqueFd file;
    uint64_t file_off = 0, file_left = 0;
    uint64_t sent = 0;   // body bytes of the file, for the log
    std::string method, log_id;
    int status = 0;
    Clock::time_point window_start, last_progress;
    uint64_t window_bytes = 0;
};

struct PerAddress {
    int connections = 0;
    int transfers = 0;
};

struct Frontend {
    NetLimits lim;
    RequestHandler handler;
    std::mutex tls_mu;   // ctx is swapped by a reload while the loop accepts
    SSL_CTX* ctx;        // one reference owned here; each SSL holds its own
    int lfd = -1, ep = -1, wake = -1;
    std::thread loop_thread;
    std::vector<std::thread> workers;
    std::atomic<bool> stopping{false};
    bool started = false, stopped = false;

    // Owned by the loop thread (and by stop() once the loop has ended).
    std::unordered_set<Conn*> all;
    std::list<Conn*> unready;   // before their request, oldest first: evicted first when full
    std::vector<Conn*> graveyard;
    Clock::time_point accept_paused_until{};
    bool accept_paused = false;
    bool trim_pending = false;
    uint64_t cut_head = 0, cut_rate = 0, cut_stall = 0, refused_addr = 0, evicted = 0;
    Clock::time_point last_log{};

    std::mutex qmu;   // workers' queue
    std::condition_variable qcv;
    std::deque<Conn*> queue;
    bool qstop = false;

    std::mutex rmu;   // connections given back by workers, and sockets handed in by adopt()
    std::vector<std::pair<Conn*, Next>> returns;
    struct Adopted {
        int fd;
        sockaddr_storage peer;
        socklen_t len;
    };
    std::vector<Adopted> adopted;

    std::mutex amu;   // per-address counts (the loop and workers)
    std::unordered_map<std::string, PerAddress> addrs;

    Frontend(const Poco::Net::SocketAddress* listen_at, SSL_CTX* tls, const NetLimits& l, RequestHandler h)
        : lim(l), handler(std::move(h)), ctx(tls)
    {
        SSL_CTX_up_ref(ctx);
        raise_fd_limit();
        if (listen_at)
            bind_listener(*listen_at);
        ep = epoll_create1(EPOLL_CLOEXEC);
        wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (ep < 0 || wake < 0)
            throw Poco::IOException(std::string("epoll: ") + std::strerror(errno));
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = nullptr;   // the listening socket
        if (lfd >= 0)
            epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
        ev.data.ptr = &wake;
        epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev);
    }

    void bind_listener(const Poco::Net::SocketAddress& listen)
    {
        lfd = socket(listen.family() == Poco::Net::SocketAddress::IPv6 ? AF_INET6 : AF_INET,
                     SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0)
            throw Poco::IOException(std::string("socket: ") + std::strerror(errno));
        // SO_REUSEADDR only (binding over TIME_WAIT after a restart); never
        // SO_REUSEPORT: a second gateway on the port must fail, not share it
        // with another TLS key.
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(lfd, listen.addr(), listen.length()) != 0 || ::listen(lfd, SOMAXCONN) != 0) {
            int e = errno;
            ::close(lfd);
            SSL_CTX_free(ctx);
            throw BindError(listen.toString(), e);
        }
    }

    ~Frontend()
    {
        stop();
        if (lfd >= 0)
            ::close(lfd);
        if (ep >= 0)
            ::close(ep);
        if (wake >= 0)
            ::close(wake);
        SSL_CTX_free(ctx);
    }

    void set_tls(SSL_CTX* tls)
    {
        SSL_CTX_up_ref(tls);
        SSL_CTX* old;
        {
            std::lock_guard<std::mutex> l(tls_mu);
            old = ctx;
            ctx = tls;
        }
        SSL_CTX_free(old);
    }

    // Every connection is a file descriptor: take what the hard limit allows,
    // and keep gateway.max_connections below it so that accept() and open()
    // of media never fail for want of one.
    void raise_fd_limit()
    {
        rlimit rl{};
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rlimit want = rl;
            want.rlim_cur = rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &want) == 0)
                rl = want;
        }
        // Per connection a socket and, while sending, a media file; plus the process's own.
        rlim_t reserve = 64 + static_cast<rlim_t>(lim.threads);
        if (rl.rlim_cur != RLIM_INFINITY && static_cast<rlim_t>(lim.max_connections) * 2 + reserve > rl.rlim_cur) {
            int fit = rl.rlim_cur > reserve + 2 ? static_cast<int>((rl.rlim_cur - reserve) / 2) : 1;
            log_warning("RLIMIT_NOFILE is " + std::to_string(rl.rlim_cur) + ": gateway.max_connections lowered from " +
                        std::to_string(lim.max_connections) + " to " + std::to_string(fit));
            lim.max_connections = fit;
        }
    }

    void start()
    {
        started = true;
        for (int i = 0; i < lim.threads; ++i)
            workers.emplace_back([this] { work(); });
        loop_thread = std::thread([this] { loop(); });
    }

    void stop()
    {
        if (!started || stopped)
            return;
        stopped = true;
        stopping = true;
        uint64_t one = 1;
        (void)!write(wake, &one, sizeof one);
        loop_thread.join();
        // Abort every transfer: a worker's next write fails at once.
        for (Conn* c : all)
            ::shutdown(c->fd, SHUT_RDWR);
        {
            std::lock_guard<std::mutex> l(qmu);
            qstop = true;
        }
        qcv.notify_all();
        for (auto& t : workers)
            t.join();
        for (Conn* c : all)
            destroy(c);
        all.clear();
        for (Conn* c : graveyard)
            delete c;
        graveyard.clear();
        std::lock_guard<std::mutex> l(rmu);
        for (const Adopted& a : adopted)
            ::close(a.fd);
        adopted.clear();
    }

    // A connected socket from elsewhere (gateway/relay.cpp); any thread.
    void adopt(int fd, const sockaddr_storage& peer, socklen_t len)
    {
        {
            std::lock_guard<std::mutex> l(rmu);
            if (stopping) {   // stop() closes what is queued before this is seen
                ::close(fd);
                return;
            }
            adopted.push_back(Adopted{fd, peer, len});
        }
        uint64_t one = 1;
        (void)!write(wake, &one, sizeof one);
    }

    // ---- the loop ------------------------------------------------------

    void loop()
    {
        epoll_event evs[kEvents];
        Clock::time_point last_sweep = Clock::now();
        while (!stopping) {
            int n = epoll_wait(ep, evs, kEvents, 250);
            if (n < 0 && errno != EINTR) {
                log_error(std::string("epoll_wait: ") + std::strerror(errno));
                break;
            }
            for (int i = 0; i < n; ++i) {
                void* p = evs[i].data.ptr;
                if (p == nullptr)
                    accept_some();
                else if (p == &wake)
                    take_returns();
                else
                    on_event(static_cast<Conn*>(p));
            }
            Clock::time_point now = Clock::now();
            if (now - last_sweep >= std::chrono::milliseconds(250)) {
                sweep(now);
                last_sweep = now;
            }
            for (Conn* c : graveyard)
                delete c;
            graveyard.clear();
        }
    }

    void set_events(Conn* c, uint32_t events)
    {
        if (c->events == events)
            return;
        epoll_event ev{};
        ev.events = events;
        ev.data.ptr = c;
        if (events == 0)
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, &ev);
        else
            epoll_ctl(ep, c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
        c->events = events;
    }

    void accept_some()
    {
        for (int i = 0; i < kEvents; ++i) {
            sockaddr_storage ss{};
            socklen_t len = sizeof ss;
            int fd = accept4(lfd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    // Out of descriptors: make room if an idle one exists, else
                    // stop accepting for a moment instead of spinning on a readable socket.
                    if (!evict_oldest()) {
                        epoll_event ev{};
                        ev.data.ptr = nullptr;
                        epoll_ctl(ep, EPOLL_CTL_MOD, lfd, &ev);
                        accept_paused = true;
                        accept_paused_until = Clock::now() + std::chrono::milliseconds(100);
                    }
                }
                return;   // EAGAIN, ECONNABORTED, ...
            }
            admit(fd, ss, len);
        }
    }

    // One new connection, accepted here or adopted: the caps first, then the
    // TLS handshake under gateway.header_timeout like any other.
    void admit(int fd, const sockaddr_storage& ss, socklen_t len)
    {
        std::string key = address_key(ss);
        {
            std::lock_guard<std::mutex> l(amu);
            PerAddress& a = addrs[key];
            if (a.connections >= lim.max_connections_per_ip) {
                ::close(fd);
                ++refused_addr;
                gateway_metrics().refused(Limit::connections_per_ip);
                return;
            }
            ++a.connections;
        }
        // At the global cap the oldest connection still without a request
        // makes room: a new client always gets its chance, and an attacker
        // holding idle sockets loses them first.
        if (static_cast<int>(all.size()) >= lim.max_connections && !evict_oldest()) {
            gateway_metrics().refused(Limit::connections);
            release_address(key);
            ::close(fd);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto* c = new Conn;
        c->fd = fd;
        c->addr = std::move(key);
        c->peer = Poco::Net::SocketAddress(reinterpret_cast<const sockaddr*>(&ss), len);
        {
            std::lock_guard<std::mutex> l(tls_mu);
            c->ssl = SSL_new(ctx);
        }
        if (!c->ssl) {
            release_address(c->addr);
            ::close(fd);
            delete c;
            return;
        }
        SSL_set_fd(c->ssl, fd);
        SSL_set_accept_state(c->ssl);
        SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
        SSL_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION);
        c->since = Clock::now();
        all.insert(c);
        mark_unready(c);
        set_events(c, EPOLLIN);
    }

    void release_address(const std::string& key)
    {
        std::lock_guard<std::mutex> l(amu);
        auto it = addrs.find(key);
        if (it != addrs.end() && --it->second.connections <= 0 && it->second.transfers <= 0)
            addrs.erase(it);
    }

    void mark_unready(Conn* c)
    {
        if (!c->in_unready) {
            unready.push_back(c);
            c->unready = std::prev(unready.end());
            c->in_unready = true;
        }
    }
    void mark_ready(Conn* c)
    {
        if (c->in_unready) {
            unready.erase(c->unready);
            c->in_unready = false;
        }
    }

    bool evict_oldest()
    {
        if (unready.empty())
            return false;
        ++evicted;
        close_conn(unready.front(), false);
        return true;
    }

    // Loop side only: the connection must not be in a worker's hands.
    void close_conn(Conn* c, bool graceful)
    {
        if (c->phase == Phase::closed)
            return;
        if (graceful && c->ssl)
            SSL_shutdown(c->ssl);   // one try at close_notify; never waits
        set_events(c, 0);
        mark_ready(c);
        all.erase(c);
        destroy(c);
        graveyard.push_back(c);
    }

    // Frees what the connection holds; the Conn itself is deleted by the caller.
    void destroy(Conn* c)
    {
        if (c->sink) {
            c->sink->abort();
            c->sink.reset();
        }
        end_transfer(c);
        c->file.reset();
        if (c->ssl)
            SSL_free(c->ssl);
        c->ssl = nullptr;
        if (c->fd >= 0) {
            ::close(c->fd);
            release_address(c->addr);
        }
        c->fd = -1;
        c->phase = Phase::closed;
    }

    void on_event(Conn* c)
    {
        switch (c->phase) {
        case Phase::handshake: handshake(c); break;
        case Phase::head:
        case Phase::body: read_request(c); break;
        case Phase::send_wait:
        case Phase::recv_wait:
            set_events(c, 0);
            to_worker(c);
            break;
        case Phase::worker:
        case Phase::closed: break;
        }
    }

    // After a non-blocking OpenSSL call failed: wait for the socket, or close.
    void wait_or_close(Conn* c, int ret)
    {
        switch (SSL_get_error(c->ssl, ret)) {
        case SSL_ERROR_WANT_READ: set_events(c, EPOLLIN); break;
        case SSL_ERROR_WANT_WRITE: set_events(c, EPOLLOUT); break;
        default:
            ERR_clear_error();
            close_conn(c, false);
        }
    }

    void handshake(Conn* c)
    {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1)
            return wait_or_close(c, r);
        c->phase = Phase::head;
        read_request(c);
    }

    void read_request(Conn* c)
    {
        char buf[kReadChunk];
        for (;;) {
            if (request_complete(c)) {
                mark_ready(c);
                set_events(c, 0);
                to_worker(c);
                return;
            }
            if (c->phase == Phase::closed)
                return;
            int r = SSL_read(c->ssl, buf, sizeof buf);
            if (r <= 0)
                return wait_or_close(c, r);
            c->in.append(buf, static_cast<size_t>(r));
        }
    }

    // True once `in` holds a whole head and the body the handler needs.
    bool request_complete(Conn* c)
    {
        if (c->phase == Phase::head) {
            // Search only the new bytes: a head trickled a byte per record stays linear.
            size_t end = c->in.find("\r\n\r\n", c->scanned);
            if (end == std::string::npos) {
                c->scanned = c->in.size() > 3 ? c->in.size() - 3 : 0;
                if (c->in.size() > kMaxHead) {   // no end in sight: the handler answers 431
                    c->bad_request = true;
                    c->head_len = c->in.size();
                    return true;
                }
                return false;
            }
            c->head_len = end + 4;
            c->req = std::make_unique<Request>();
            try {
                std::istringstream head(c->in.substr(0, c->head_len));
                c->req->read(head);
            } catch (const Poco::Exception&) {
                c->bad_request = true;
                return true;
            }
            c->body_len = 0;
            c->body.clear();
            c->chunked = c->req->getChunkedTransferEncoding();
            if (c->req->hasContentLength()) {
                Poco::Int64 n = c->req->getContentLength64();
                if (n < 0 || static_cast<uint64_t>(n) > lim.max_body) {
                    c->body_unread = true;   // the handler refuses it; the connection closes after
                    return true;
                }
                c->body_len = static_cast<size_t>(n);
            }
            c->phase = Phase::body;
        }
        if (c->chunked) {
            std::string_view raw(c->in);
            raw.remove_prefix(c->head_len);
            switch (dechunk(raw, lim.max_body, c->body, c->body_len)) {
            case Chunked::done: return true;
            case Chunked::too_big:   // the handler refuses it; the connection closes after
                c->body_unread = true;
                return true;
            case Chunked::bad:
                c->bad_request = true;
                return true;
            case Chunked::more:
                if (raw.size() > 4 * lim.max_body + 1024) {   // framing out of all proportion
                    c->bad_request = true;
                    return true;
                }
                break;
            }
        } else if (c->in.size() >= c->head_len + c->body_len) {
            c->body = c->in.substr(c->head_len, c->body_len);
            return true;
        }
        if (c->req->getExpectContinue() && !c->sent_continue) {
            static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
            c->sent_continue = true;
            if (SSL_write(c->ssl, kContinue, sizeof kContinue - 1) != static_cast<int>(sizeof kContinue - 1)) {
                ERR_clear_error();
                close_conn(c, false);
            }
        }
        return false;
    }

    void to_worker(Conn* c)
    {
        c->phase = Phase::worker;
        {
            std::lock_guard<std::mutex> l(qmu);
            queue.push_back(c);
        }
        qcv.notify_one();
    }

    void take_returns()
    {
        uint64_t v;
        (void)!read(wake, &v, sizeof v);
        std::vector<std::pair<Conn*, Next>> got;
        std::vector<Adopted> in;
        {
            std::lock_guard<std::mutex> l(rmu);
            got.swap(returns);
            in.swap(adopted);
        }
        for (const Adopted& a : in)
            admit(a.fd, a.peer, a.len);
        for (auto [c, next] : got) {
            switch (next) {
            case Next::close: close_conn(c, true); break;
            case Next::wait_write:
                c->phase = c->sink ? Phase::recv_wait : Phase::send_wait;
                set_events(c, EPOLLOUT);
                break;
            case Next::wait_read:
                c->phase = Phase::recv_wait;
                set_events(c, EPOLLIN);
                break;
            case Next::requeue: to_worker(c); break;
            case Next::read_next:
                c->phase = Phase::head;
                c->since = Clock::now();
                c->scanned = 0;
                c->sent_continue = false;
                mark_unready(c);
                read_request(c);   // a pipelined request, or bytes OpenSSL holds already
                break;
            }
        }
    }

    void sweep(Clock::time_point now)
    {
        if (accept_paused && now >= accept_paused_until) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.ptr = nullptr;
            epoll_ctl(ep, EPOLL_CTL_MOD, lfd, &ev);
            accept_paused = false;
        }
        // Oldest first, so the expired ones are at the front.
        while (!unready.empty() && now - unready.front()->since > lim.header_timeout) {
            ++cut_head;
            gateway_metrics().error(ErrorKind::header_timeout);
            close_conn(unready.front(), false);
        }
        std::vector<Conn*> cut;
        for (Conn* c : all) {
            if (c->phase != Phase::send_wait && c->phase != Phase::recv_wait)
                continue;
            if (c->phase == Phase::recv_wait) {
                // Under SO_RCVLOWAT (receive()) bytes may have come without
                // waking us: what waits in the socket is progress all the same.
                int waiting = 0;
                if (ioctl(c->fd, FIONREAD, &waiting) == 0 && static_cast<uint64_t>(waiting) > c->credited) {
                    c->window_bytes += static_cast<uint64_t>(waiting) - c->credited;
                    c->credited = static_cast<uint64_t>(waiting);
                    c->last_progress = now;
                }
            }
            if (now - c->last_progress >= lim.timeout) {
                ++cut_stall;
                gateway_metrics().error(ErrorKind::stalled);
                cut.push_back(c);
            } else if (lim.min_rate > 0 && now - c->window_start >= lim.min_rate_window) {
                if (c->window_bytes < lim.min_rate * static_cast<uint64_t>(lim.min_rate_window.count())) {
                    ++cut_rate;
                    gateway_metrics().error(ErrorKind::slow_rate);
                    cut.push_back(c);
                } else {
                    c->window_start = now;
                    c->window_bytes = 0;
                }
            }
        }
        // A cut transfer is reset: what it had not read yet is dropped at once
        // instead of trickling out of the kernel's buffers to the slow reader.
        for (Conn* c : cut) {
            log_line(c, true);
            reset_on_close(c->fd);
            close_conn(c, false);
        }
        // Once the last connection is gone, give the workers' malloc arenas
        // back: an attack's buffers must not stay resident after it.
        if (all.empty() && trim_pending) {
            malloc_trim(0);
            trim_pending = false;
        } else if (!all.empty()) {
            trim_pending = true;
        }
        // One summary line a minute at most: an attack must not flood the log.
        uint64_t total = cut_head + cut_rate + cut_stall + refused_addr + evicted;
        if (total > 0 && now - last_log >= std::chrono::seconds(60)) {
            if (cut_head)
                log_info("closed " + std::to_string(cut_head) +
                         " connection(s) that sent no complete request within gateway.header_timeout");
            if (cut_rate)
                log_info("cut " + std::to_string(cut_rate) + " transfer(s) slower than gateway.min_rate");
            if (cut_stall)
                log_info("cut " + std::to_string(cut_stall) + " transfer(s) stalled for gateway.timeout");
            if (refused_addr)
                log_info("refused " + std::to_string(refused_addr) +
                         " connection(s) over gateway.max_connections_per_ip");
            if (evicted)
                log_info("closed " + std::to_string(evicted) +
                         " idle connection(s) to make room under gateway.max_connections");
            cut_head = cut_rate = cut_stall = refused_addr = evicted = 0;
            last_log = now;
        }
    }

    // ---- workers -------------------------------------------------------

    void work()
    {
        for (;;) {
            Conn* c;
            {
                std::unique_lock<std::mutex> l(qmu);
                qcv.wait(l, [this] { return qstop || !queue.empty(); });
                if (qstop)
                    return;
                c = queue.front();
                queue.pop_front();
            }
            Next next = Next::close;
            try {
                if (!c->responding && !c->sink)
                    respond(c);
                if (c->sink)
                    next = receive(c);
                else
                    next = c->responding ? pump(c) : Next::close;
            } catch (const std::exception& e) {
                log_error("request " + c->method + " id=" + c->log_id + " failed: " + e.what());
                log_line(c, true);
                end_transfer(c);
                next = Next::close;
            }
            {
                std::lock_guard<std::mutex> l(rmu);
                returns.emplace_back(c, next);
            }
            uint64_t one = 1;
            (void)!write(wake, &one, sizeof one);
        }
    }

    bool take_transfer(Conn* c)
    {
        if (c->transfer)
            return true;
        std::lock_guard<std::mutex> l(amu);
        PerAddress& a = addrs[c->addr];
        if (a.transfers >= lim.max_transfers_per_ip)
            return false;
        ++a.transfers;
        c->transfer = true;
        gateway_metrics().transfer_started();
        return true;
    }

    void end_transfer(Conn* c)
    {
        if (!c->transfer)
            return;
        c->transfer = false;
        gateway_metrics().transfer_ended();
        std::lock_guard<std::mutex> l(amu);
        auto it = addrs.find(c->addr);
        if (it != addrs.end())
            --it->second.transfers;
    }

    // Runs the handler on the request the loop read and lays out the answer.
    void respond(Conn* c)
    {
        ++c->requests;
        Response resp;
        resp.setVersion(Poco::Net::HTTPMessage::HTTP_1_1);
        resp.setDate(Poco::Timestamp());
        c->method = "-";
        c->log_id = "-";
        int status;
        if (c->bad_request) {
            status = c->head_len > kMaxHead ? Poco::Net::HTTPResponse::HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE
                                            : Poco::Net::HTTPResponse::HTTP_BAD_REQUEST;
            resp.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
            resp.setContentLength(0);
            resp.setKeepAlive(false);
        } else {
            Request& req = *c->req;
            c->method = req.getMethod();
            resp.setVersion(req.getVersion());
            resp.setKeepAlive(req.getKeepAlive() && !c->body_unread && c->requests < kMaxRequestsPerConnection);
            req.peer_ = c->peer;
            c->peer_keep_alive = req.getKeepAlive();
            req.body_.str(c->body);
            resp.take_transfer_ = [this, c] { return take_transfer(c); };
            status = handler(req, resp);
            c->log_id = resp.log_id;
            if (resp.sink_ && status >= 0)
                return start_receiving(c, std::move(resp.sink_));
        }
        c->in.erase(0, c->bad_request || c->body_unread ? c->in.size() : c->head_len + c->body_len);
        c->body.clear();
        c->req.reset();
        lay_out(c, resp, status);
    }

    // The handler gave the body to a sink: what the loop read of it already
    // goes first, then receive() takes the rest from the socket.
    void start_receiving(Conn* c, std::unique_ptr<BodySink> sink)
    {
        c->sink = std::move(sink);
        c->received = 0;
        c->credited = 0;
        if (c->body_unread) {
            c->recv_left = static_cast<uint64_t>(c->req->getContentLength64());
            c->body_unread = false;        // the sink takes it
            c->in.erase(0, c->head_len);   // keeps the body bytes read with the head
            if (c->req->getExpectContinue() && c->recv_left > c->in.size()) {
                static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (SSL_write(c->ssl, kContinue, sizeof kContinue - 1) != static_cast<int>(sizeof kContinue - 1))
                    throw std::runtime_error("cannot send 100 Continue");
            }
        } else {
            // A small body the loop read whole: the sink gets it at once.
            c->recv_left = 0;
            if (!c->body.empty())
                c->sink->write(c->body.data(), c->body.size());
            c->received = c->body.size();
            c->in.erase(0, c->head_len + c->body_len);
        }
        c->body.clear();
        c->req.reset();
        c->window_start = c->last_progress = Clock::now();
        c->window_bytes = 0;
        if (c->recv_left > 0) {
            // A long body: OpenSSL reads ahead in large socket reads and keeps
            // its buffer, instead of two read()s and a malloc per 16 KiB
            // record. Bytes it reads past the body stay in its buffer for the
            // next request (read_request() asks OpenSSL before the socket).
            SSL_clear_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
            SSL_set_read_ahead(c->ssl, 1);
        }
    }

    // Feeds the body to the sink until it ends or the socket is empty; never waits.
    Next receive(Conn* c)
    {
        thread_local std::unique_ptr<char[]> buf;
        if (!buf)
            buf.reset(new char[kBodyBuffer]);   // one per worker thread, not per upload
        uint64_t turn = 0;
        bool stopped = false;
        // Bytes the loop read along with the head (never more than recv_left:
        // a pipelined request after the body stays in `in`).
        if (c->recv_left > 0 && !c->in.empty()) {
            size_t n = static_cast<size_t>(std::min<uint64_t>(c->recv_left, c->in.size()));
            stopped = !c->sink->write(c->in.data(), n);
            c->in.erase(0, n);
            c->recv_left -= n;
            c->received += n;
        }
        while (c->recv_left > 0 && !stopped) {
            size_t fill = 0;
            int r = 1;
            // Several TLS records per write(): the sink hashes and writes in large pieces.
            while (fill < kBodyBuffer && fill < c->recv_left) {
                size_t want = static_cast<size_t>(std::min<uint64_t>(kBodyBuffer - fill, c->recv_left - fill));
                r = SSL_read(c->ssl, buf.get() + fill, static_cast<int>(want));
                if (r <= 0)
                    break;
                fill += static_cast<size_t>(r);
            }
            if (fill > 0) {
                stopped = !c->sink->write(buf.get(), fill);
                c->recv_left -= fill;
                c->received += fill;
                // Bytes the sweep credited while they waited in the socket count once.
                uint64_t already = std::min<uint64_t>(fill, c->credited);
                c->credited -= already;
                if (fill > already)
                    progress(c, static_cast<int>(fill - already));
                turn += fill;
            }
            if (stopped)
                break;
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ) {
                    wake_at(c, std::min<uint64_t>(kBodyWake, c->recv_left > kBodySlack ? c->recv_left - kBodySlack : 1));
                    return Next::wait_read;
                }
                if (e == SSL_ERROR_WANT_WRITE)
                    return Next::wait_write;
                ERR_clear_error();
                c->sink->abort();
                c->sink.reset();
                c->status = -1;
                log_line(c, true);
                return Next::close;   // the peer went away mid-body
            }
            if (turn >= kTurn && c->recv_left > 0)
                return Next::requeue;   // let the others in line have a worker too
        }
        SSL_set_read_ahead(c->ssl, 0);
        SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
        wake_at(c, 1);
        std::unique_ptr<BodySink> sink = std::move(c->sink);
        Response resp;
        resp.setVersion(Poco::Net::HTTPMessage::HTTP_1_1);
        resp.setDate(Poco::Timestamp());
        resp.setKeepAlive(c->peer_keep_alive && c->recv_left == 0 && c->requests < kMaxRequestsPerConnection);
        resp.log_id = c->log_id;
        int status = sink->finish(resp);
        c->log_id = resp.log_id;
        if (c->recv_left > 0) {
            resp.setKeepAlive(false);   // the rest of the body stays unread
            c->body_unread = true;
        }
        lay_out(c, resp, status);
        if (!c->responding)
            return Next::close;
        return pump(c);
    }

    // SO_RCVLOWAT: the loop hears of the socket only once it holds `bytes`.
    // While a long body streams, a worker then takes a few hundred KiB per
    // turn instead of the one segment that just came: each turn is a hand-off
    // between threads, and those, not the bytes, were the cost.
    void wake_at(Conn* c, uint64_t bytes)
    {
        int v = static_cast<int>(std::max<uint64_t>(1, bytes));
        if (c->rcvlowat != v && setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v) == 0)
            c->rcvlowat = v;
    }

    // Lays out the answer `resp` (status from the handler or a sink) for pump().
    void lay_out(Conn* c, Response& resp, int status)
    {
        if (status < 0) {
            c->status = -1;
            log_line(c, true);
            end_transfer(c);
            return;   // not responding: the worker closes the connection
        }
        c->status = status;
        // A body of unknown length ends with the connection (as Poco did).
        if (!resp.hasContentLength())
            resp.setKeepAlive(false);
        std::ostringstream head;
        resp.write(head);
        c->out = head.str();
        if (c->method != "HEAD")
            c->out += resp.body_.str();
        c->out_off = 0;
        c->keep_alive = resp.getKeepAlive() && !c->bad_request && !c->body_unread;
        c->file = std::move(resp.file_);
        c->file_off = resp.first_;
        c->file_left = c->file ? resp.count_ : 0;
        c->sent = 0;
        c->responding = true;
        c->body_unread = false;
        c->window_start = c->last_progress = Clock::now();
        c->window_bytes = 0;
    }

    void progress(Conn* c, int n)
    {
        c->window_bytes += static_cast<uint64_t>(n);
        c->last_progress = Clock::now();
    }

    // Writes until done or the socket is full; never waits.
    Next pump(Conn* c)
    {
        uint64_t turn = 0;
        while (c->out_off < c->out.size()) {
            int w = SSL_write(c->ssl, c->out.data() + c->out_off, static_cast<int>(c->out.size() - c->out_off));
            if (w <= 0)
                return write_failed(c, w);
            c->out_off += static_cast<size_t>(w);
            progress(c, w);
        }
        thread_local std::unique_ptr<char[]> buf;
        while (c->file_left > 0) {
            const char* p;
            size_t n;
            if (!buf)
                buf.reset(new char[kWriteChunk]);   // one per worker thread, not per request
            size_t want = static_cast<size_t>(std::min<uint64_t>(c->file_left, kWriteChunk));
            ssize_t r = pread(c->file.get(), buf.get(), want, static_cast<off_t>(c->file_off));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                throw std::runtime_error("read error or short file at offset " + std::to_string(c->file_off));
            p = buf.get();
            n = static_cast<size_t>(r);
            int w = SSL_write(c->ssl, p, static_cast<int>(n));
            if (w <= 0)
                return write_failed(c, w);
            c->file_off += static_cast<uint64_t>(w);
            c->file_left -= static_cast<uint64_t>(w);
            c->sent += static_cast<uint64_t>(w);
            progress(c, w);
            turn += static_cast<uint64_t>(w);
            if (turn >= kTurn && c->file_left > 0)
                return Next::requeue;   // let the others in line have a worker too
        }
        log_line(c, false);
        end_transfer(c);
        c->file.reset();
        c->out.clear();
        c->responding = false;
        return c->keep_alive ? Next::read_next : Next::close;
    }

    Next write_failed(Conn* c, int ret)
    {
        int e = SSL_get_error(c->ssl, ret);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return Next::wait_write;
        ERR_clear_error();
        log_line(c, true);
        end_transfer(c);
        c->responding = false;
        return Next::close;
    }

    // The access log line: METHOD STATUS bytes=N id=ID peer=ADDR ("aborted" for a cut answer).
    void log_line(Conn* c, bool aborted)
    {
        if (c->method == "-")
            return;   // a malformed request: no handler ran
        gateway_metrics().answered(c->status, aborted, c->sent);
        log_info(c->method + " " + (aborted ? std::string("aborted") : std::to_string(c->status)) +
                 " bytes=" + std::to_string(c->sent) + " id=" + c->log_id + " peer=" + c->peer.toString() +
                 kv("item", c->log_id) + kv("client", c->peer.host().toString()) +
                 kv("status", aborted ? std::string("aborted") : std::to_string(c->status)) +
                 (c->received ? kv("received", std::to_string(c->received)) : std::string()));
        c->method = "-";
        c->received = 0;
    }
};

HttpFrontend::HttpFrontend(const Poco::Net::SocketAddress* listen, SSL_CTX* tls, const NetLimits& limits,
                           RequestHandler handler)
    : impl_(std::make_unique<Frontend>(listen, tls, limits, std::move(handler)))
{
}

HttpFrontend::~HttpFrontend() = default;

void HttpFrontend::set_tls(SSL_CTX* tls) { impl_->set_tls(tls); }

void HttpFrontend::start() { impl_->start(); }

void HttpFrontend::stop() { impl_->stop(); }

void HttpFrontend::adopt(int fd, const sockaddr_storage& peer, socklen_t len) { impl_->adopt(fd, peer, len); }

std::string HttpFrontend::address() const
{
    if (impl_->lfd < 0)
        return "";
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(impl_->lfd, reinterpret_cast<sockaddr*>(&ss), &len);
    return Poco::Net::SocketAddress(reinterpret_cast<sockaddr*>(&ss), len).toString();
}

} // namespace mm
