// metrics.cpp - mm-gateway's counters, /metrics and /healthz (see metrics.h).
#include "gateway/metrics.h"

#include "core/log.h"

namespace mm {

const char* error_kind_name(ErrorKind k)
{
    switch (k) {
    case ErrorKind::bad_request: return "bad_request";
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::gone: return "gone";
    case ErrorKind::too_large: return "too_large";
    case ErrorKind::method: return "method_not_allowed";
    case ErrorKind::internal: return "internal";
    case ErrorKind::aborted: return "aborted";
    case ErrorKind::header_timeout: return "header_timeout";
    case ErrorKind::slow_rate: return "slow_rate";
    case ErrorKind::stalled: return "stalled";
    case ErrorKind::count_: break;
    }
    return "?";
}

const char* limit_name(Limit l)
{
    switch (l) {
    case Limit::connections_per_ip: return "max_connections_per_ip";
    case Limit::connections: return "max_connections";
    case Limit::transfers_per_ip: return "max_transfers_per_ip";
    case Limit::count_: break;
    }
    return "?";
}

const char* relay_state_name(RelayState s)
{
    switch (s) {
    case RelayState::off: return "off";
    case RelayState::connecting: return "connecting";
    case RelayState::up: return "up";
    case RelayState::refused: return "refused";
    case RelayState::waiting: return "waiting";
    case RelayState::stopped: return "stopped";
    }
    return "?";
}

void GatewayMetrics::answered(int status, bool aborted, uint64_t body_bytes)
{
    bytes_served_.fetch_add(body_bytes, std::memory_order_relaxed);
    if (aborted) {
        error(ErrorKind::aborted);
        return;
    }
    switch (status) {
    case 400: error(ErrorKind::bad_request); break;
    case 404: error(ErrorKind::not_found); break;
    case 405: error(ErrorKind::method); break;
    case 410: error(ErrorKind::gone); break;
    case 413:
    case 431: error(ErrorKind::too_large); break;
    case 503: break;   // the per-address transfer cap: counted as a refusal where it is decided
    default:
        if (status < 0 || status >= 500)
            error(ErrorKind::internal);
        break;
    }
}

GatewayMetrics& gateway_metrics()
{
    static GatewayMetrics m;
    return m;
}

std::string render_gateway_metrics(const GatewayMetrics& m, const StoreFigures& store)
{
    std::vector<MetricFamily> f;
    MetricFamily items{"mm_gateway_items", "Items in the store's index, by state.", "gauge", {}};
    for (const auto& [state, n] : store.items_by_state)
        items.samples.emplace_back("state=\"" + prometheus_label(state) + "\"", n);
    f.push_back(std::move(items));
    f.push_back({"mm_gateway_store_objects", "Media files in the store (shared media counted once).", "gauge",
                 {{"", store.objects}}});
    f.push_back({"mm_gateway_store_bytes", "Bytes of the media files in the store.", "gauge",
                 {{"", store.object_bytes}}});
    f.push_back({"mm_gateway_store_receipts", "Receipts recorded in the store's index.", "gauge",
                 {{"", store.receipts}}});
    f.push_back({"mm_gateway_served_bytes_total", "Media and page body bytes sent since start.", "counter",
                 {{"", m.bytes_served()}}});
    int64_t active = m.active_transfers();
    f.push_back({"mm_gateway_active_transfers", "Media downloads being sent now.", "gauge",
                 {{"", static_cast<uint64_t>(active < 0 ? 0 : active)}}});
    f.push_back({"mm_gateway_receipts_total", "Receipts accepted since start.", "counter", {{"", m.receipts()}}});
    MetricFamily errors{"mm_gateway_errors_total", "Failed requests and cut connections since start, by kind.",
                        "counter", {}};
    for (size_t k = 0; k < static_cast<size_t>(ErrorKind::count_); ++k)
        errors.samples.emplace_back(std::string("kind=\"") + error_kind_name(static_cast<ErrorKind>(k)) + "\"",
                                    m.errors(static_cast<ErrorKind>(k)));
    f.push_back(std::move(errors));
    MetricFamily refused{"mm_gateway_refused_total",
                         "Connections and downloads refused by a gateway limit since start, by limit.", "counter", {}};
    for (size_t l = 0; l < static_cast<size_t>(Limit::count_); ++l)
        refused.samples.emplace_back(std::string("limit=\"") + limit_name(static_cast<Limit>(l)) + "\"",
                                     m.refusals(static_cast<Limit>(l)));
    f.push_back(std::move(refused));
    f.push_back({"mm_gateway_upload_bytes_total", "Bytes written into uploads since start (upload API).", "counter",
                 {{"", m.upload_bytes()}}});
    f.push_back({"mm_gateway_uploads_total", "Uploads that reached their last byte since start, by result.", "counter",
                 {{"result=\"complete\"", m.uploads_completed()}, {"result=\"checksum_mismatch\"", m.uploads_mismatched()}}});
    if (m.relay_state() != RelayState::off) {   // gateway.relay set
        f.push_back({"mm_gateway_relay_up", "1 while the relay's port forward is open (gateway.relay), else 0.",
                     "gauge", {{"", m.relay_state() == RelayState::up ? 1u : 0u}}});
        f.push_back({"mm_gateway_relay_reconnects_total",
                     "Attempts to reach the relay again after a session dropped or an attempt failed.", "counter",
                     {{"", m.relay_reconnects()}}});
        int64_t open = m.relay_channels();
        f.push_back({"mm_gateway_relay_channels", "Forwarded channels from the relay being served now.", "gauge",
                     {{"", static_cast<uint64_t>(open < 0 ? 0 : open)}}});
        f.push_back({"mm_gateway_relay_channels_total", "Forwarded channels the relay opened since start.", "counter",
                     {{"", m.relay_channels_total()}}});
    }
    return render_prometheus(f);
}

StatusReply gateway_admin_reply(const std::string& path, const GatewayMetrics& m,
                                const std::function<bool(std::string& why)>& healthy,
                                const std::function<StoreFigures()>& figures)
{
    StatusReply r;
    if (path == "/healthz") {
        std::string why;
        if (!m.listening())
            why = "the HTTPS listener is not running";
        else if (m.relay_state() != RelayState::off && m.relay_state() != RelayState::up)
            why = std::string("the relay's port forward is not open (gateway.relay state ") +
                  relay_state_name(m.relay_state()) + ")";
        else if (!healthy(why) && why.empty())
            why = "unhealthy";
        r.status = why.empty() ? 200 : 503;
        r.body = why.empty() ? "ok\n" : why + "\n";
        return r;
    }
    if (path == "/metrics") {
        try {
            r.body = render_gateway_metrics(m, figures());
            r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        } catch (const std::exception& e) {
            r.status = 503;
            r.body = std::string("cannot read the store: ") + printable(e.what()) + "\n";
        }
        return r;
    }
    r.status = 404;
    r.body = "not found: /healthz or /metrics\n";
    return r;
}

} // namespace mm
