// status_http.cpp - loopback health/metrics/status HTTP (see status_http.h).
//
// One thread, one connection at a time: the listener is on loopback (the config
// check refuses anything else) and meant for a scraper and the machine's owner,
// so a strict per-connection deadline is what keeps a stuck client from holding
// it, not parallelism; a client that overruns kDeadline is simply closed.
#include "core/status_http.h"

#include "core/log.h"
#include "core/stream.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mm {

namespace {

using Clock = std::chrono::steady_clock;

const char* reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/// Waits for `events` on fd until `until`; false on timeout or error.
bool wait_for(int fd, short events, Clock::time_point until)
{
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
        if (left <= 0)
            return false;
        pollfd p{fd, events, 0};
        int r = poll(&p, 1, static_cast<int>(left));
        if (r > 0)
            return (p.revents & (events | POLLHUP)) != 0;
        if (r < 0 && errno != EINTR)
            return false;
    }
}

bool send_all(int fd, std::string_view data, Clock::time_point until)
{
    while (!data.empty()) {
        if (!wait_for(fd, POLLOUT, until))
            return false;
        ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

} // namespace

bool parse_status_request(std::string_view head, std::string& method, std::string& path)
{
    size_t eol = head.find("\r\n");
    if (eol == std::string_view::npos)
        return false;
    std::string_view line = head.substr(0, eol);
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
        return false;
    std::string_view m = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                     version = line.substr(sp2 + 1);
    if ((m != "GET" && m != "HEAD") || (version != "HTTP/1.1" && version != "HTTP/1.0") || target.empty() ||
        target[0] != '/')
        return false;
    for (char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            return false;
    method = std::string(m);
    path = std::string(target.substr(0, target.find('?')));
    return true;
}

StatusServer::StatusServer(int listen_fd, std::string name, Handler handler)
    : fd_(listen_fd), name_(std::move(name)), handler_(std::move(handler))
{
}

StatusServer::~StatusServer()
{
    stop();
    if (fd_ >= 0)
        close(fd_);
}

void StatusServer::start()
{
    running_ = true;
    thread_ = std::thread([this] { loop(); });
}

void StatusServer::stop()
{
    stop_ = true;
    if (thread_.joinable())
        thread_.join();
    running_ = false;
}

void StatusServer::loop()
{
    while (!stop_.load()) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0)
            continue;   // the stop flag is looked at five times a second
        int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0)
            continue;
        try {
            serve_one(c);
        } catch (const std::exception& e) {
            log_error(name_ + ": request failed: " + printable(e.what()));
        }
        close(c);
    }
}

void StatusServer::serve_one(int fd)
{
    const auto until = Clock::now() + kDeadline;
    std::string head;
    char buf[512];
    bool complete = false;
    while (head.size() <= kMaxHead) {
        if (!wait_for(fd, POLLIN, until))
            return;   // too slow, or gone: closed without an answer
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return;
        head.append(buf, static_cast<size_t>(n));
        if (head.find("\r\n\r\n") != std::string::npos) {
            complete = true;
            break;
        }
    }
    std::string method, path;
    StatusReply r;
    if (!complete) {
        r.status = 431;
        r.body = "request head too large\n";
    } else if (!parse_status_request(head, method, path)) {
        r.status = 400;
        r.body = "bad request: GET or HEAD only\n";
    } else {
        r = handler_(path);
    }
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) +
                      "\r\nContent-Type: " + r.content_type + "\r\nContent-Length: " + std::to_string(r.body.size()) +
                      "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
    if (method != "HEAD")
        out += r.body;
    send_all(fd, out, until);
}

std::string prometheus_label(std::string_view value)
{
    std::string out;
    for (char c : value) {
        if (c == '\\' || c == '"')
            out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

std::string render_prometheus(const std::vector<MetricFamily>& families)
{
    std::string out;
    for (const auto& f : families) {
        out += "# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.type + "\n";
        for (const auto& [labels, value] : f.samples)
            out += f.name + (labels.empty() ? "" : "{" + labels + "}") + " " + std::to_string(value) + "\n";
    }
    return out;
}

bool status_get(const std::string& host, uint16_t port, const std::string& path, std::chrono::seconds timeout,
                size_t max_body, std::string& body, std::string& err)
{
    int fd = connect_tcp(host, port, timeout, err);
    if (fd < 0)
        return false;
    Stream s(fd);
    if (!s.write("GET " + path + " HTTP/1.0\r\nHost: " + host + "\r\nConnection: close\r\n\r\n")) {
        err = "cannot send the request";
        return false;
    }
    std::string line;
    if (s.read_line(line, 256) != LineResult::ok) {
        err = "no answer";
        return false;
    }
    // "HTTP/1.1 200 OK"
    int status = 0;
    size_t sp = line.find(' ');
    if (sp == std::string::npos || line.size() < sp + 4 ||
        std::from_chars(line.data() + sp + 1, line.data() + sp + 4, status).ec != std::errc()) {
        err = "not an HTTP answer: " + printable(line, 80);
        return false;
    }
    for (int fields = 0;; ++fields) {
        if (fields > 50 || s.read_line(line, 1024) != LineResult::ok) {
            err = "bad answer head";
            return false;
        }
        if (line.empty())
            break;
    }
    body.clear();
    char buf[4096];
    for (;;) {
        long n = s.read_some(buf, sizeof buf);
        if (n <= 0)
            break;
        if (body.size() + static_cast<size_t>(n) > max_body) {
            err = "answer larger than " + std::to_string(max_body) + " bytes";
            return false;
        }
        body.append(buf, static_cast<size_t>(n));
    }
    if (status != 200) {
        err = "HTTP " + std::to_string(status) + ": " + printable(body, 120);
        return false;
    }
    return true;
}

} // namespace mm
