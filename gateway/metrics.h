// metrics.h - mm-gateway's counters and its gateway.admin_listen answers: /healthz
// and /metrics (Prometheus text format 0.0.4, docs/gateway-api.md). The counters
// are atomics bumped by the connection front end and the request handler
// (server_net.cpp, server.cpp); the store's figures are read at each scrape.
#pragma once

#include "core/status_http.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace mm {

/// Why a request or connection went wrong: the `kind` label of mm_gateway_errors_total.
enum class ErrorKind {
    bad_request,      // 400: malformed request or receipt
    not_found,        // 404: unknown item, wrong token, expired, revoked (all alike)
    gone,             // 410: a linked file the sender changed
    too_large,        // 413, 431: request head or receipt body over its cap
    method,           // 405
    internal,         // 5xx other than the per-address transfer cap, or a handler failure
    aborted,          // an answer cut before its end (peer gone, write error)
    header_timeout,   // no complete request within gateway.header_timeout
    slow_rate,        // a transfer under gateway.min_rate
    stalled,          // a transfer that made no progress for gateway.timeout
    count_
};
const char* error_kind_name(ErrorKind k);

/// Which cap refused a connection or a download: the `limit` label of
/// mm_gateway_refused_total.
enum class Limit {
    connections_per_ip,   // gateway.max_connections_per_ip: the connection is closed at once
    connections,          // gateway.max_connections with no idle connection to evict
    transfers_per_ip,     // gateway.max_transfers_per_ip: 503 with Retry-After
    count_
};
const char* limit_name(Limit l);

/// The relay session's state (gateway/relay.h): the `state` field of its log
/// lines, /healthz and mm_gateway_relay_up.
enum class RelayState {
    off,          // no gateway.relay
    connecting,   // TCP, key exchange, host key check, login, forward request
    up,           // the forward is open: channels are served
    refused,      // the relay's host key, our key or the forward was refused; retried after the wait
    waiting,      // the session dropped or an attempt failed; waiting before the next one
    stopped,
};
const char* relay_state_name(RelayState s);

class GatewayMetrics {
public:
    void error(ErrorKind k) { errors_[static_cast<size_t>(k)].fetch_add(1, std::memory_order_relaxed); }
    void refused(Limit l) { refused_[static_cast<size_t>(l)].fetch_add(1, std::memory_order_relaxed); }
    /// One answer sent (or cut): its body bytes count as served; its status
    /// (or `aborted`) as an error of the matching kind, if it is one.
    void answered(int status, bool aborted, uint64_t body_bytes);
    void transfer_started() { active_transfers_.fetch_add(1, std::memory_order_relaxed); }
    void transfer_ended() { active_transfers_.fetch_sub(1, std::memory_order_relaxed); }
    void receipt() { receipts_.fetch_add(1, std::memory_order_relaxed); }
    void set_listening(bool on) { listening_.store(on); }
    void set_relay_state(RelayState s) { relay_state_.store(s); }
    void relay_reconnect() { relay_reconnects_.fetch_add(1, std::memory_order_relaxed); }
    void relay_channel_opened()
    {
        relay_channels_.fetch_add(1, std::memory_order_relaxed);
        relay_channels_total_.fetch_add(1, std::memory_order_relaxed);
    }
    void relay_channel_closed() { relay_channels_.fetch_sub(1, std::memory_order_relaxed); }
    /// Upload API: bytes written into open uploads, and uploads made into an
    /// item on their last byte (`verified` false: the SHA-256 was not the
    /// declared one and the item was removed).
    void upload_bytes(uint64_t n) { upload_bytes_.fetch_add(n, std::memory_order_relaxed); }
    void upload_completed(bool verified)
    {
        (verified ? uploads_completed_ : uploads_mismatched_).fetch_add(1, std::memory_order_relaxed);
    }
    uint64_t upload_bytes() const { return upload_bytes_.load(); }
    uint64_t uploads_completed() const { return uploads_completed_.load(); }
    uint64_t uploads_mismatched() const { return uploads_mismatched_.load(); }
    RelayState relay_state() const { return relay_state_.load(); }
    uint64_t relay_reconnects() const { return relay_reconnects_.load(); }
    int64_t relay_channels() const { return relay_channels_.load(); }
    uint64_t relay_channels_total() const { return relay_channels_total_.load(); }
    bool listening() const { return listening_.load(); }

    uint64_t errors(ErrorKind k) const { return errors_[static_cast<size_t>(k)].load(); }
    uint64_t refusals(Limit l) const { return refused_[static_cast<size_t>(l)].load(); }
    uint64_t bytes_served() const { return bytes_served_.load(); }
    int64_t active_transfers() const { return active_transfers_.load(); }
    uint64_t receipts() const { return receipts_.load(); }

private:
    std::array<std::atomic<uint64_t>, static_cast<size_t>(ErrorKind::count_)> errors_{};
    std::array<std::atomic<uint64_t>, static_cast<size_t>(Limit::count_)> refused_{};
    std::atomic<uint64_t> bytes_served_{0}, receipts_{0};
    std::atomic<int64_t> active_transfers_{0};
    std::atomic<bool> listening_{false};
    std::atomic<RelayState> relay_state_{RelayState::off};
    std::atomic<uint64_t> relay_reconnects_{0}, relay_channels_total_{0};
    std::atomic<int64_t> relay_channels_{0};
    std::atomic<uint64_t> upload_bytes_{0}, uploads_completed_{0}, uploads_mismatched_{0};
};

/// The process's counters (one gateway per process).
GatewayMetrics& gateway_metrics();

/// What the store holds, read at each scrape (Lifecycle::stats).
struct StoreFigures {
    std::map<std::string, uint64_t> items_by_state;
    uint64_t objects = 0, object_bytes = 0, receipts = 0;
};

/// The /metrics body.
std::string render_gateway_metrics(const GatewayMetrics& m, const StoreFigures& store);

/// The answer of gateway.admin_listen to `path`: /healthz is 200 "ok" when
/// `healthy` says so (the store readable, the HTTPS listener running), else 503
/// with the reason, as it is when gateway.relay is set and its forward is not
/// up; /metrics renders `figures()` (503 when the store cannot be
/// read); anything else 404.
StatusReply gateway_admin_reply(const std::string& path, const GatewayMetrics& m,
                                const std::function<bool(std::string& why)>& healthy,
                                const std::function<StoreFigures()>& figures);

} // namespace mm
