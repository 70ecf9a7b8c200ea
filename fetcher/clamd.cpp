// clamd.cpp - media streamed to clamd with zINSTREAM (clamd.h). Every socket
// operation is bounded by fetcher.clamd_timeout: a clamd that hangs must not
// hang a login, it only holds the mail back (as a download still under way).
#include "fetcher/clamd.h"

#include "core/fileio.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace mm {

namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr size_t kMaxReply = 1024;

struct Fd {
    int fd = -1;
    ~Fd()
    {
        if (fd >= 0)
            ::close(fd);
    }
};

/// Waits for `events` on fd until the deadline; false on timeout or error.
bool wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline)
{
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return false;
        pollfd p{fd, events, 0};
        int r = poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 60000)));
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
    }
}

bool connect_with_timeout(int fd, const sockaddr* sa, socklen_t len, std::chrono::seconds timeout)
{
    if (connect(fd, sa, len) == 0)
        return true;
    if (errno != EINPROGRESS && errno != EAGAIN)
        return false;
    if (!wait_fd(fd, POLLOUT, std::chrono::steady_clock::now() + timeout))
        return false;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0;
}

int open_clamd(const ClamdAddress& addr, std::chrono::seconds timeout, std::string& detail)
{
    if (!addr.path.empty()) {
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        if (addr.path.size() >= sizeof sun.sun_path) {
            detail = "clamd socket path too long";
            return -1;
        }
        memcpy(sun.sun_path, addr.path.c_str(), addr.path.size() + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect_with_timeout(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun, timeout))
            return fd;
        detail = std::string("cannot connect to clamd: ") + std::strerror(errno);
        if (fd >= 0)
            ::close(fd);
        return -1;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(addr.host.c_str(), std::to_string(addr.port).c_str(), &hints, &res) != 0 || !res) {
        detail = "cannot resolve the clamd host";
        return -1;
    }
    int fd = -1;
    for (addrinfo* a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect_with_timeout(fd, a->ai_addr, a->ai_addrlen, timeout))
            break;
        if (fd >= 0)
            ::close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        detail = "cannot connect to clamd";
    return fd;
}

bool send_all(int fd, const char* p, size_t n, std::chrono::seconds timeout)
{
    while (n > 0) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= static_cast<size_t>(w);
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_fd(fd, POLLOUT, std::chrono::steady_clock::now() + timeout))
                return false;
        } else if (!(w < 0 && errno == EINTR)) {
            return false;
        }
    }
    return true;
}

/// Signature names are clamd's, made from the database: still kept to a
/// harmless alphabet before they reach logs, verdict files and notes.
std::string safe_name(std::string_view s)
{
    std::string out;
    for (char c : s.substr(0, 100)) {
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  std::string_view("._:/+-").find(c) != std::string_view::npos;
        out.push_back(ok ? c : '_');
    }
    return out.empty() ? "unnamed" : out;
}

} // namespace

bool parse_clamd_address(std::string_view s, ClamdAddress& out)
{
    out = {};
    if (s.substr(0, 5) == "unix:") {
        out.path = std::string(s.substr(5));
        return out.path.size() > 1 && out.path[0] == '/';
    }
    if (s.substr(0, 5) != "inet:")
        return false;
    s.remove_prefix(5);
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
        return false;
    std::string_view host = s.substr(0, colon), port = s.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || p != port.data() + port.size() || port.empty() || v == 0 || v > 65535)
        return false;
    for (char c : host)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            return false;
    out.host = std::string(host);
    out.port = static_cast<uint16_t>(v);
    return !out.host.empty();
}

ScanVerdict parse_clamd_reply(std::string_view r, std::string& detail)
{
    detail.clear();
    while (!r.empty() && (r.back() == '\n' || r.back() == '\0'))
        r.remove_suffix(1);
    if (r.substr(0, 8) != "stream: ") {
        detail = "unexpected clamd reply";
        return ScanVerdict::unavailable;
    }
    r.remove_prefix(8);
    if (r == "OK")
        return ScanVerdict::clean;
    constexpr std::string_view found = " FOUND";
    if (r.size() > found.size() && r.substr(r.size() - found.size()) == found) {
        detail = safe_name(r.substr(0, r.size() - found.size()));
        return ScanVerdict::infected;
    }
    detail = "clamd error: " + safe_name(r);
    return ScanVerdict::unavailable;
}

ScanVerdict clamd_scan_file(const ClamdAddress& addr, const std::string& path, std::chrono::seconds timeout,
                            std::string& detail)
{
    Fd file{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (file.fd < 0) {
        detail = "cannot open media to scan";
        return ScanVerdict::unavailable;
    }
    Fd sock{open_clamd(addr, timeout, detail)};
    if (sock.fd < 0)
        return ScanVerdict::unavailable;
    static constexpr char cmd[] = "zINSTREAM";
    if (!send_all(sock.fd, cmd, sizeof cmd, timeout)) {   // with its NUL
        detail = "clamd closed the connection";
        return ScanVerdict::unavailable;
    }
    std::string buf(4 + kChunk, '\0');
    for (;;) {
        ssize_t n = read(file.fd, buf.data() + 4, kChunk);
        if (n < 0) {
            detail = "cannot read media to scan";
            return ScanVerdict::unavailable;
        }
        uint32_t be = htonl(static_cast<uint32_t>(n));
        memcpy(buf.data(), &be, 4);
        if (!send_all(sock.fd, buf.data(), 4 + static_cast<size_t>(n), timeout)) {
            // clamd closes early when the stream is over its StreamMaxLength;
            // its reply may still be waiting.
            break;
        }
        if (n == 0)
            break;
    }
    std::string reply;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (reply.size() < kMaxReply && reply.find('\0') == std::string::npos) {
        if (!wait_fd(sock.fd, POLLIN, deadline)) {
            detail = "clamd did not answer in time";
            return ScanVerdict::unavailable;
        }
        char b[256];
        ssize_t n = recv(sock.fd, b, sizeof b, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            break;
        }
        reply.append(b, static_cast<size_t>(n));
    }
    return parse_clamd_reply(reply.substr(0, reply.find('\0')), detail);
}

ScanVerdict scan_media_once(const ClamdAddress& addr, const std::string& path, std::chrono::seconds timeout,
                            std::string& detail)
{
    const std::string verdict_path = path + ".scan";
    if (FILE* f = fopen(verdict_path.c_str(), "rb")) {
        char line[160] = {};
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        std::string_view v(line, n);
        if (v == "OK\n")
            return ScanVerdict::clean;
        if (v.substr(0, 6) == "FOUND " && v.size() > 7 && v.back() == '\n') {
            detail = safe_name(v.substr(6, v.size() - 7));
            return ScanVerdict::infected;
        }
        // Anything else is not ours: ask again.
    }
    ScanVerdict r = clamd_scan_file(addr, path, timeout, detail);
    if (r == ScanVerdict::unavailable)
        return r;
    const std::string text = r == ScanVerdict::clean ? "OK\n" : "FOUND " + detail + "\n";
    const std::string tmp = verdict_path + ".tmp" + random_hex(4);
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write_all(fd, text.data(), text.size()) && fsync(fd) == 0;
    if (fd >= 0)
        ::close(fd);
    // A verdict that cannot be kept is still this scan's verdict.
    if (!ok || rename(tmp.c_str(), verdict_path.c_str()) != 0)
        unlink(tmp.c_str());
    return r;
}

} // namespace mm
