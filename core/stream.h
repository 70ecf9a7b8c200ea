// stream.h - a buffered byte stream over a socket, plain or TLS (OpenSSL), with
// bounded line reads: the building block of both POP3 sides of mm-fetcher and of
// both SMTP sides of mm-milter's before-queue filter (lines end in CRLF), and the
// TCP socket set-up they share. Reads no config keys; timeouts are the caller's.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace mm {

/// TLS 1.3 cipher suites, cheapest first: AES-128-GCM, then AES-256-GCM, then
/// ChaCha20-Poly1305. The gateway prefers them in this order and the fetcher
/// offers them so; OpenSSL's default order puts AES-256-GCM first, which costs
/// more CPU per byte and protects a media file no better.
constexpr const char* kTls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/// Binds and listens on host:port (SO_REUSEADDR). Returns the fd, or -1 with
/// err saying why (the caller names its config key).
int listen_tcp(const std::string& host, uint16_t port, std::string& err);

/// Connects to host:port within `timeout`, then sets it as the socket's read
/// and write timeout. Returns a blocking fd, or -1 with err set.
int connect_tcp(const std::string& host, uint16_t port, std::chrono::seconds timeout, std::string& err);

enum class LineResult { ok, too_long, eof, error };

class Stream {
public:
    explicit Stream(int fd) : fd_(fd) {}
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;

    /// One line without its CRLF (or bare LF). A line longer than `cap` is
    /// consumed up to its end and reported as too_long, so the dialogue stays in sync.
    LineResult read_line(std::string& out, size_t cap);
    /// Up to n bytes (at least one unless eof/error): returns 0 on eof, -1 on error.
    long read_some(char* p, size_t n);
    /// One byte, or -1 on eof/error.
    int get();
    /// Peeks one byte without consuming it, or -1.
    int peek();
    /// The bytes read ahead and not yet consumed, reading more first if there
    /// are none; empty on eof/error. consume(n) takes n of them.
    std::string_view peek_buffer();
    void consume(size_t n) { pos_ += n; }

    bool write(const void* p, size_t n);
    bool write(const std::string& s) { return write(s.data(), s.size()); }
    /// Buffered writes go through out_ and are sent by flush().
    bool put(const void* p, size_t n);
    bool put(const std::string& s) { return put(s.data(), s.size()); }
    bool flush();

    /// Client-side TLS on the connected socket: SNI and certificate/host name
    /// verification against `host`, or, with a `pin` ("sha256//BASE64"), the
    /// server's public key compared with it instead. Returns false with err set.
    bool start_tls(SSL_CTX* ctx, const std::string& host, const std::string& pin, std::string& err);
    /// Server-side TLS (fetcher.tls_listen, STLS). Returns false with err set.
    bool accept_tls(SSL_CTX* ctx, std::string& err);
    bool tls() const { return ssl_ != nullptr; }
    bool buffered() const { return pos_ < len_; }
    int fd() const { return fd_; }

private:
    /// The SSL object on this socket, refusing plaintext already buffered (both handshakes).
    bool attach_tls(SSL_CTX* ctx, std::string& err);
    bool fill();
    int fd_;
    SSL* ssl_ = nullptr;
    char buf_[16384];
    size_t pos_ = 0, len_ = 0;
    std::string out_;
    bool failed_ = false;
};

/// Message bytes in, wire bytes out, for POP3 (RFC 1939 3) and SMTP (RFC 5321
/// 4.5.2) alike: a dot doubled at each line start, then the terminating line
/// (after a CRLF if the message does not end in one). Chunks of any size.
class DotEncoder {
public:
    /// Hands [p, p+n) to emit(const char*, size_t) in runs, with a "." between
    /// two runs wherever a line starts with a dot. Line ends are found with
    /// memchr: RETR of a 300 MB video goes through here.
    template <class Emit>
    void feed(const char* p, size_t n, Emit&& emit)
    {
        size_t from = 0, i = 0;
        while (i < n) {
            if (line_start_ && p[i] == '.') {
                if (i > from)
                    emit(p + from, i - from);
                emit(".", 1);
                from = i;   // the line's own dot goes out with the next run
            }
            const void* nl = std::memchr(p + i, '\n', n - i);
            if (!nl) {
                line_start_ = false;
                break;
            }
            i = static_cast<size_t>(static_cast<const char*>(nl) - p) + 1;
            line_start_ = true;
        }
        if (n > from)
            emit(p + from, n - from);
    }
    void feed(const char* p, size_t n, std::string& out)
    {
        feed(p, n, [&out](const char* q, size_t k) { out.append(q, k); });
    }
    /// Appends the terminating line, after a CRLF if the last line had none.
    void finish(std::string& out);

private:
    bool line_start_ = true;
};

} // namespace mm
