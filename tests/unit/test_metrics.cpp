// test_metrics.cpp - gateway/metrics.h: the counters, their Prometheus text
// (HELP and TYPE for every family, one sample per label) and /healthz, /metrics.
#include <doctest/doctest.h>

#include "gateway/metrics.h"

#include <sstream>
#include <stdexcept>
#include <string>

using namespace mm;

namespace {

bool has_line(const std::string& text, const std::string& line)
{
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l))
        if (l == line)
            return true;
    return false;
}

} // namespace

TEST_CASE("gateway metrics: answers counted by kind, bytes summed")
{
    GatewayMetrics m;
    m.answered(200, false, 1000);
    m.answered(206, false, 24);
    m.answered(404, false, 0);
    m.answered(404, false, 0);
    m.answered(400, false, 0);
    m.answered(410, false, 0);
    m.answered(431, false, 0);
    m.answered(500, false, 0);
    m.answered(-1, false, 0);
    m.answered(503, false, 0);   // the transfer cap: a refusal, counted where it is decided
    m.answered(200, true, 77);   // cut: its bytes were still sent
    m.refused(Limit::connections_per_ip);
    m.refused(Limit::transfers_per_ip);
    m.refused(Limit::transfers_per_ip);
    m.error(ErrorKind::slow_rate);
    m.transfer_started();
    m.transfer_started();
    m.transfer_ended();
    m.receipt();
    m.upload_bytes(1 << 20);
    m.upload_bytes(5);
    m.upload_completed(true);
    m.upload_completed(false);
    m.upload_completed(true);

    CHECK(m.bytes_served() == 1101);
    CHECK(m.errors(ErrorKind::not_found) == 2);
    CHECK(m.errors(ErrorKind::internal) == 2);
    CHECK(m.errors(ErrorKind::aborted) == 1);

    StoreFigures f;
    f.items_by_state = {{"active", 3}, {"revoked", 1}};
    f.objects = 2;
    f.object_bytes = 4096;
    f.receipts = 5;
    std::string t = render_gateway_metrics(m, f);
    CHECK(has_line(t, "# TYPE mm_gateway_items gauge"));
    CHECK(has_line(t, "mm_gateway_items{state=\"active\"} 3"));
    CHECK(has_line(t, "mm_gateway_items{state=\"revoked\"} 1"));
    CHECK(has_line(t, "mm_gateway_store_bytes 4096"));
    CHECK(has_line(t, "mm_gateway_store_objects 2"));
    CHECK(has_line(t, "mm_gateway_store_receipts 5"));
    CHECK(has_line(t, "# TYPE mm_gateway_served_bytes_total counter"));
    CHECK(has_line(t, "mm_gateway_served_bytes_total 1101"));
    CHECK(has_line(t, "mm_gateway_active_transfers 1"));
    CHECK(has_line(t, "mm_gateway_receipts_total 1"));
    CHECK(has_line(t, "mm_gateway_errors_total{kind=\"not_found\"} 2"));
    CHECK(has_line(t, "mm_gateway_errors_total{kind=\"bad_request\"} 1"));
    CHECK(has_line(t, "mm_gateway_errors_total{kind=\"gone\"} 1"));
    CHECK(has_line(t, "mm_gateway_errors_total{kind=\"too_large\"} 1"));
    CHECK(has_line(t, "mm_gateway_errors_total{kind=\"slow_rate\"} 1"));
    CHECK(has_line(t, "mm_gateway_errors_total{kind=\"header_timeout\"} 0"));
    CHECK(has_line(t, "mm_gateway_refused_total{limit=\"max_connections_per_ip\"} 1"));
    CHECK(has_line(t, "mm_gateway_refused_total{limit=\"max_transfers_per_ip\"} 2"));
    CHECK(has_line(t, "mm_gateway_refused_total{limit=\"max_connections\"} 0"));
    CHECK(has_line(t, "# TYPE mm_gateway_upload_bytes_total counter"));
    CHECK(has_line(t, "mm_gateway_upload_bytes_total 1048581"));
    CHECK(has_line(t, "mm_gateway_uploads_total{result=\"complete\"} 2"));
    CHECK(has_line(t, "mm_gateway_uploads_total{result=\"checksum_mismatch\"} 1"));

    // Every sample's family has HELP and TYPE before it, once.
    std::istringstream in(t);
    std::string l, family;
    while (std::getline(in, l)) {
        CAPTURE(l);
        if (l.rfind("# HELP ", 0) == 0) {
            family = l.substr(7, l.find(' ', 7) - 7);
            continue;
        }
        if (l.rfind("# TYPE ", 0) == 0) {
            CHECK(l.substr(7, family.size()) == family);
            continue;
        }
        CHECK(l.rfind(family, 0) == 0);
        CHECK((l[family.size()] == ' ' || l[family.size()] == '{'));
    }
}

TEST_CASE("gateway metrics: a hostile state name cannot break the text format")
{
    GatewayMetrics m;
    StoreFigures f;
    f.items_by_state = {{"x\"} 99\nmm_fake 1", 1}};
    std::string t = render_gateway_metrics(m, f);
    CHECK_FALSE(has_line(t, "mm_fake 1"));
    CHECK(has_line(t, "mm_gateway_items{state=\"x\\\"} 99\\nmm_fake 1\"} 1"));
}

TEST_CASE("gateway admin: /healthz, /metrics and the rest")
{
    GatewayMetrics m;
    auto healthy = [](std::string&) { return true; };
    auto sick = [](std::string& why) {
        why = "index: disk I/O error";
        return false;
    };
    auto figures = [] { return StoreFigures{{{"active", 1}}, 1, 10, 0}; };
    auto broken = []() -> StoreFigures { throw std::runtime_error("cannot open index"); };

    StatusReply r = gateway_admin_reply("/healthz", m, healthy, figures);
    CHECK(r.status == 503);   // the listener is not running yet
    CHECK(r.body == "the HTTPS listener is not running\n");
    m.set_listening(true);
    r = gateway_admin_reply("/healthz", m, healthy, figures);
    CHECK(r.status == 200);
    CHECK(r.body == "ok\n");
    r = gateway_admin_reply("/healthz", m, sick, figures);
    CHECK(r.status == 503);
    CHECK(r.body == "index: disk I/O error\n");

    r = gateway_admin_reply("/metrics", m, healthy, figures);
    CHECK(r.status == 200);
    CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
    CHECK(has_line(r.body, "mm_gateway_items{state=\"active\"} 1"));
    r = gateway_admin_reply("/metrics", m, healthy, broken);
    CHECK(r.status == 503);

    for (const char* p : {"/", "/metrics/", "/healthz/../metrics", "/m/abc", ""}) {
        CAPTURE(std::string(p));
        CHECK(gateway_admin_reply(p, m, healthy, figures).status == 404);
    }
}
