// status_http.h - the small plain-HTTP server of gateway.admin_listen and
// fetcher.status_listen: loopback only, one request per connection, GET and HEAD,
// a 2 KiB request head read under a 2 s deadline, answers built whole in memory.
// Also the Prometheus text format (0.0.4) both programs' /metrics speak, and a
// bounded GET client for "mm-fetcher status". Reads no config keys itself.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mm {

struct StatusReply {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

/// Parses a request head as the status server takes it: "GET /path HTTP/1.x"
/// (or HEAD), then header lines up to the empty line. Sets method and path
/// (the query cut off); false for anything else, which gets 400.
bool parse_status_request(std::string_view head, std::string& method, std::string& path);

class StatusServer {
public:
    using Handler = std::function<StatusReply(const std::string& path)>;
    static constexpr size_t kMaxHead = 2048;                           // bytes of request head
    static constexpr std::chrono::milliseconds kDeadline{2000};       // accept to answer sent

    /// Listens on fd (listen_tcp's) and answers each request with handler(path);
    /// `name` prefixes log lines. Runs on its own thread from start() to stop().
    StatusServer(int listen_fd, std::string name, Handler handler);
    ~StatusServer();
    StatusServer(const StatusServer&) = delete;
    StatusServer& operator=(const StatusServer&) = delete;
    void start();
    void stop();
    bool running() const { return running_.load(); }

private:
    void loop();
    void serve_one(int fd);

    int fd_;
    std::string name_;
    Handler handler_;
    std::atomic<bool> stop_{false}, running_{false};
    std::thread thread_;
};

/// One metric family of the Prometheus text format: "# HELP", "# TYPE" and a
/// sample per label set ("" for none; else `kind="internal"`, already escaped).
struct MetricFamily {
    std::string name, help, type;   // type: counter or gauge
    std::vector<std::pair<std::string, uint64_t>> samples;
};
std::string render_prometheus(const std::vector<MetricFamily>& families);
/// A label value escaped as the text format wants (\\, \", \n).
std::string prometheus_label(std::string_view value);

/// GET http://host:port/path over a plain connection within `timeout`; the
/// body (at most max_body bytes) when the status is 200, else false with err set.
bool status_get(const std::string& host, uint16_t port, const std::string& path, std::chrono::seconds timeout,
                size_t max_body, std::string& body, std::string& err);

} // namespace mm
