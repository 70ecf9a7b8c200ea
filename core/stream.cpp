// stream.cpp - buffered socket stream with bounded line reads and optional TLS
// (OpenSSL 3, verification against the system CAs and the host name). No config keys.
#include "core/stream.h"

#include "core/util.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mm {

namespace {

/// The addresses of host:port for a TCP socket (passive: to listen on), or
/// null with err set. The caller frees the list.
addrinfo* resolve(const std::string& host, uint16_t port, bool passive, std::string& err)
{
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0) {
        err = "cannot resolve " + host + ": " + gai_strerror(rc);
        return nullptr;
    }
    return res;
}

} // namespace

int listen_tcp(const std::string& host, uint16_t port, std::string& err)
{
    addrinfo* res = resolve(host, port, true, err);
    if (!res)
        return -1;
    std::string p = std::to_string(port);
    int fd = -1;
    for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            err = "cannot listen on " + host + ":" + p + ": " + std::strerror(errno);
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

int connect_tcp(const std::string& host, uint16_t port, std::chrono::seconds timeout, std::string& err)
{
    addrinfo* res = resolve(host, port, false, err);
    if (!res)
        return -1;
    std::string p = std::to_string(port);
    int fd = -1;
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            pollfd pf{fd, POLLOUT, 0};
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (poll(&pf, 1, static_cast<int>(timeout.count() * 1000)) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
                break;
            err = host + ":" + p + ": " + (soerr ? std::strerror(soerr) : "connect timed out");
        } else {
            err = host + ":" + p + ": " + std::strerror(errno);
        }
        ::close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    timeval tv{static_cast<time_t>(timeout.count()), 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

Stream::~Stream()
{
    if (ssl_) {
        SSL_shutdown(ssl_);
        SSL_free(ssl_);
    }
    if (fd_ >= 0)
        close(fd_);
}

bool Stream::fill()
{
    if (failed_)
        return false;
    pos_ = len_ = 0;
    for (;;) {
        long n;
        if (ssl_) {
            n = SSL_read(ssl_, buf_, sizeof buf_);
            if (n <= 0) {
                failed_ = true;
                return false;
            }
        } else {
            n = ::recv(fd_, buf_, sizeof buf_, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                failed_ = true;
                return false;
            }
        }
        len_ = static_cast<size_t>(n);
        return true;
    }
}

int Stream::get()
{
    if (pos_ >= len_ && !fill())
        return -1;
    return static_cast<unsigned char>(buf_[pos_++]);
}

int Stream::peek()
{
    if (pos_ >= len_ && !fill())
        return -1;
    return static_cast<unsigned char>(buf_[pos_]);
}

std::string_view Stream::peek_buffer()
{
    if (pos_ >= len_ && !fill())
        return {};
    return std::string_view(buf_ + pos_, len_ - pos_);
}

long Stream::read_some(char* p, size_t n)
{
    if (pos_ >= len_ && !fill())
        return 0;
    size_t k = std::min(n, len_ - pos_);
    std::memcpy(p, buf_ + pos_, k);
    pos_ += k;
    return static_cast<long>(k);
}

LineResult Stream::read_line(std::string& out, size_t cap)
{
    out.clear();
    bool over = false;
    for (;;) {
        if (pos_ >= len_ && !fill())
            return LineResult::eof;
        const char* start = buf_ + pos_;
        const char* nl = static_cast<const char*>(std::memchr(start, '\n', len_ - pos_));
        size_t take = nl ? static_cast<size_t>(nl - start) : len_ - pos_;
        if (!over) {
            if (out.size() + take > cap + 1) {   // +1: the CR not yet stripped
                over = true;
                out.clear();
            } else {
                out.append(start, take);
            }
        }
        pos_ += take;
        if (nl) {
            ++pos_;
            if (over)
                return LineResult::too_long;
            if (!out.empty() && out.back() == '\r')
                out.pop_back();
            if (out.size() > cap)
                return LineResult::too_long;
            return LineResult::ok;
        }
    }
}

bool Stream::write(const void* p, size_t n)
{
    return put(p, n) && flush();
}

void DotEncoder::finish(std::string& out)
{
    if (!line_start_)
        out += "\r\n";
    out += ".\r\n";
    line_start_ = true;
}

bool Stream::put(const void* p, size_t n)
{
    out_.append(static_cast<const char*>(p), n);
    if (out_.size() >= 65536)
        return flush();
    return !failed_;
}

bool Stream::flush()
{
    size_t off = 0;
    while (off < out_.size()) {
        long n;
        if (ssl_) {
            n = SSL_write(ssl_, out_.data() + off, static_cast<int>(out_.size() - off));
            if (n <= 0) {
                failed_ = true;
                break;
            }
        } else {
            n = ::send(fd_, out_.data() + off, out_.size() - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                failed_ = true;
                break;
            }
        }
        off += static_cast<size_t>(n);
    }
    out_.clear();
    return !failed_;
}

static std::string spki_pin(X509* cert)
{
    // The same form as curl's CURLOPT_PINNEDPUBLICKEY and the handles' pin=.
    unsigned char* der = nullptr;
    int len = i2d_PUBKEY(X509_get0_pubkey(cert), &der);
    if (len <= 0)
        return "";
    Sha256 h;
    h.update(der, static_cast<size_t>(len));
    std::string d = h.raw_digest();
    OPENSSL_free(der);
    return "sha256//" + base64_encode(d);
}

bool Stream::attach_tls(SSL_CTX* ctx, std::string& err)
{
    if (pos_ < len_) {
        // Bytes after the STLS reply before the handshake: a man in the middle
        // injecting plaintext (cf. CVE-2011-0411). Refuse, on either side.
        err = "plaintext data after STLS";
        return false;
    }
    ssl_ = SSL_new(ctx);
    if (!ssl_) {
        err = "SSL_new failed";
        return false;
    }
    SSL_set_fd(ssl_, fd_);
    return true;
}

bool Stream::accept_tls(SSL_CTX* ctx, std::string& err)
{
    if (!attach_tls(ctx, err))
        return false;
    if (SSL_accept(ssl_) != 1) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        err = std::string("TLS handshake with client failed: ") + buf;
        return false;
    }
    return true;
}

bool Stream::start_tls(SSL_CTX* ctx, const std::string& host, const std::string& pin, std::string& err)
{
    if (!attach_tls(ctx, err))
        return false;
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, host.c_str(), ip) == 1 || inet_pton(AF_INET6, host.c_str(), ip) == 1;
    if (literal) {
        // An address literal is checked against the certificate's IP SANs (and sent without SNI).
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str())) {
            err = "cannot set expected IP address";
            return false;
        }
    } else {
        SSL_set_tlsext_host_name(ssl_, host.c_str());
        SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (!SSL_set1_host(ssl_, host.c_str())) {
            err = "SSL_set1_host failed";
            return false;
        }
    }
    // With a pin the key is the server's identity (a self-signed private server):
    // the chain is not checked, the key is, right after the handshake.
    SSL_set_verify(ssl_, pin.empty() ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (SSL_connect(ssl_) != 1) {
        char buf[256];
        unsigned long e = ERR_get_error();
        ERR_error_string_n(e, buf, sizeof buf);
        long vr = SSL_get_verify_result(ssl_);
        err = std::string("TLS handshake failed: ") + buf;
        if (vr != X509_V_OK)
            err += std::string(" (") + X509_verify_cert_error_string(vr) + ")";
        return false;
    }
    if (!pin.empty()) {
        X509* cert = SSL_get1_peer_certificate(ssl_);
        std::string got = cert ? spki_pin(cert) : "";
        X509_free(cert);
        if (got.empty() || got != pin) {
            err = "upstream public key does not match fetcher.upstream_pin";
            return false;
        }
    }
    return true;
}

} // namespace mm
