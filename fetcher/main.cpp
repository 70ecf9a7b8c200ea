// main.cpp - mm-fetcher: the receiver's local POP3 proxy (RFC 1939) that resolves
// MediaMail handles before the mail client sees a message. Reads fetcher.* and log.level;
// --help lists them. Exit 78 (EX_CONFIG) on a bad configuration.
#include "config.h"
#include "download.h"
#include "log.h"
#include "server.h"

#include <csignal>
#include <cstdio>
#include <iostream>
#include <pthread.h>

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) { g_stop.store(true); }

const char kUsage[] =
    "usage: mm-fetcher [-c FILE] [--set section.key=value]...\n"
    "\n"
    "Local POP3 proxy: point the mail client at fetcher.listen; messages are\n"
    "fetched from fetcher.upstream, their media downloaded and verified, and\n"
    "presented with the original attachments put back.\n"
    "\n"
    "keys read (see conf/mediamail.conf):\n"
    "  fetcher.listen         host:port to listen on (default 127.0.0.1:1110)\n"
    "  fetcher.upstream       pop3://host:port or pop3s://host:port\n"
    "  fetcher.upstream_tls   required|none: pop3:// must use STLS unless none\n"
    "  fetcher.cache_dir      cache of presented messages and media\n"
    "  fetcher.allow_private  download media from private/loopback addresses\n"
    "  fetcher.allow_insecure allow http:// media URLs\n"
    "  fetcher.max_size       largest message accepted from upstream\n"
    "  fetcher.timeout        upstream and download timeout\n"
    "  fetcher.max_sessions   concurrent client sessions\n"
    "  log.level              error|warning|info|debug\n";

} // namespace

int main(int argc, char** argv)
{
    using namespace mm;
    ServerConfig sc;
    std::string level;
    try {
        CommonArgs args = parse_common_args(argc, argv);
        if (args.help) {
            std::cout << kUsage;
            return 0;
        }
        if (!args.rest.empty())
            throw ConfigError("unexpected argument: " + args.rest.front());
        Config cfg = Config::load(args.config_path, args.overrides);
        level = cfg.str("log.level");
        HostPort listen = cfg.hostport("fetcher.listen");
        sc.host = listen.host;
        sc.port = listen.port;
        int64_t max_sessions = cfg.integer("fetcher.max_sessions");
        if (max_sessions < 1 || max_sessions > 10000)
            throw ConfigError("fetcher.max_sessions: must be 1..10000, not " + std::to_string(max_sessions));
        sc.max_sessions = static_cast<unsigned>(max_sessions);
        UpstreamConfig& up = sc.session.upstream;
        const std::string& url = cfg.str("fetcher.upstream");
        if (!parse_upstream_url(url, up))
            throw ConfigError("fetcher.upstream: not pop3://host:port or pop3s://host:port: " + url);
        up.tls_required = cfg.str("fetcher.upstream_tls") != "none";
        up.timeout = cfg.duration("fetcher.timeout");
        if (up.timeout.count() < 1)
            throw ConfigError("fetcher.timeout: must be at least 1s");
        SyncOptions& so = sc.session.sync;
        so.cache_dir = cfg.str("fetcher.cache_dir");
        so.upstream_id = up.host + ":" + std::to_string(up.port);
        so.max_size = cfg.size("fetcher.max_size");
        so.download.media_dir = so.cache_dir + "/media";
        so.download.allow_private = cfg.boolean("fetcher.allow_private");
        so.download.allow_insecure = cfg.boolean("fetcher.allow_insecure");
        so.download.timeout = up.timeout;
        so.stop = &g_stop;
    } catch (const ConfigError& e) {
        std::cerr << "mm-fetcher: " << e.what() << "\n";
        return 78;
    }
    log_init("mm-fetcher", level);

    std::string err;
    if (!prepare_cache(sc.session.sync.cache_dir, err)) {
        std::cerr << "mm-fetcher: fetcher.cache_dir: " << err << "\n";
        return 73;   // EX_CANTCREAT
    }
    if (!upstream_tls_context()) {
        std::cerr << "mm-fetcher: cannot create TLS context\n";
        return 70;
    }
    download_global_init();

    // Signals are blocked everywhere except inside the accept loop's ppoll, so
    // worker threads never see EINTR and the stop is noticed in one place.
    std::signal(SIGPIPE, SIG_IGN);
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    sigset_t block, orig;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &orig);

    int fd = listen_on(sc.host, sc.port, err);
    if (fd < 0) {
        std::cerr << "mm-fetcher: " << err << "\n";
        return 78;
    }
    log_info("listening on " + sc.host + ":" + std::to_string(sc.port) + ", upstream " +
             sc.session.sync.upstream_id);
    serve(fd, sc, g_stop, &orig);
    log_info("stopped");
    return 0;
}
