// loopback_upstream.h - the upstream settings the unit tests' fake POP3 servers
// (test_pop3.cpp, fetcher_fixtures.h) hand to mm::Upstream: plain POP3 on loopback.
#pragma once

#include "fetcher/upstream.h"

#include <chrono>
#include <cstdint>

inline mm::UpstreamConfig loopback_upstream(uint16_t port)
{
    mm::UpstreamConfig c;
    c.host = "127.0.0.1";
    c.port = port;
    c.tls_required = false;
    c.timeout = std::chrono::seconds(5);
    return c;
}
