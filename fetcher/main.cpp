// main.cpp - mm-fetcher: the receiver's local POP3 proxy (RFC 1939) that resolves
// MediaMail handles before the mail client sees a message, its background downloader
// and prefetch poller, and the "fetch" command of fetcher.mode = ask. Reads fetcher.*
// and log.level; --help lists them. Exit 78 (EX_CONFIG) on a bad configuration.
#include "core/fileio.h"
#include "core/address.h"
#include "core/config.h"
#include "fetcher/download.h"
#include "core/log.h"
#include "fetcher/sync.h"
#include "fetcher/server.h"
#include "fetcher/upstream.h"
#include "core/util.h"

#include <openssl/ssl.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <thread>
#include <unistd.h>
#include <cstdio>
#include <iostream>
#include <pthread.h>

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) { g_stop.store(true); }

const char kUsage[] =
    "usage: mm-fetcher [-c FILE] [--set section.key=value]...\n"
    "       mm-fetcher [-c FILE] fetch SHA256|URL   download media of fetcher.mode = ask\n"
    "\n"
    "Local POP3 proxy: point the mail client at fetcher.listen; messages are\n"
    "fetched from fetcher.upstream, their media downloaded and verified, and\n"
    "presented with the original attachments put back.\n"
    "\n"
    "keys read (see conf/mediamail.conf):\n"
    "  fetcher.listen         host:port to listen on (default 127.0.0.1:1110)\n"
    "  fetcher.upstream       pop3://host:port or pop3s://host:port\n"
    "  fetcher.upstream_tls   required|none: pop3:// must use STLS unless none\n"
    "  fetcher.upstream_ca    CA file for a private upstream server\n"
    "  fetcher.upstream_pin   sha256//BASE64 key pin of the upstream server\n"
    "  fetcher.tls_listen     host:port of the implicit-TLS listener for clients\n"
    "  fetcher.tls_cert, fetcher.tls_key  its PEM certificate and key (also STLS)\n"
    "  fetcher.cache_dir      cache of presented messages and media\n"
    "  fetcher.allow_private  download media from private/loopback addresses\n"
    "  fetcher.allow_insecure allow http:// media URLs\n"
    "  fetcher.max_size       largest message read, and largest media downloaded\n"
    "  fetcher.timeout        upstream and download timeout\n"
    "  fetcher.max_sessions   concurrent client sessions\n"
    "  fetcher.address        mailbox owner's address, for download receipts\n"
    "  fetcher.hold_max       longest a mail waits for its media before shown as is\n"
    "  fetcher.login_wait     how long a login waits for media already downloading\n"
    "  fetcher.stream         send a mail while its media still download, checked piece by piece\n"
    "  fetcher.mode           auto|ask: download at once, or only when asked\n"
    "  fetcher.priority_senders  senders whose media is downloaded first\n"
    "  fetcher.ignore_senders    senders whose media is never downloaded\n"
    "  fetcher.cache_quota    most bytes of media kept in the cache\n"
    "  fetcher.parallel       downloads at once\n"
    "  fetcher.retry_max      longest wait between retries\n"
    "  fetcher.prefetch_interval  background mailbox poll (0: off)\n"
    "  fetcher.prefetch_user, fetcher.prefetch_password_file  its login\n"
    "  log.level              error|warning|info|debug\n";


// "mm-fetcher fetch SHA256|URL": fetcher.mode = ask's way of asking. The running
// fetcher sees the marker within a second or two; we wait for the verified file.
int fetch_command(const std::string& jobs_dir, const std::string& media_dir, const std::string& key,
                  std::chrono::seconds wait)
{
    std::string err;
    std::string sha = mm::Downloader::request_fetch(jobs_dir, key, err);
    if (sha.empty()) {
        std::cerr << "mm-fetcher: fetch: " << err << "\n";
        return 1;
    }
    const std::string path = media_dir + "/" + sha;
    auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
        if (access(path.c_str(), F_OK) == 0) {
            std::cout << path << "\n";
            return 0;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    std::cerr << "mm-fetcher: fetch: requested " << sha << "; not downloaded yet (is mm-fetcher running?"
              << " see its log)\n";
    return 75;   // EX_TEMPFAIL
}

} // namespace

int main(int argc, char** argv)
{
    using namespace mm;
    ServerConfig sc;
    std::string level;
    DownloadOptions dl;
    std::string prefetch_user, prefetch_password;
    std::chrono::seconds prefetch_interval{0};
    std::vector<std::string> command;
    HostPort tls_listen;
    std::string tls_cert, tls_key, upstream_ca;
    try {
        CommonArgs args = parse_common_args(argc, argv);
        if (args.help) {
            std::cout << kUsage;
            return 0;
        }
        command = args.rest;
        if (!command.empty() && command[0] == "fetch" && command.size() != 2)
            throw ConfigError("fetch needs one argument: the media's SHA-256 or its URL");
        if (!command.empty() && command[0] != "fetch")
            throw ConfigError("unexpected argument: " + command.front() + " (see --help)");
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
        upstream_ca = cfg.str("fetcher.upstream_ca");
        up.pin = cfg.str("fetcher.upstream_pin");
        if (!up.pin.empty()) {
            std::string raw;
            if (up.pin.rfind("sha256//", 0) != 0 || !base64_decode(up.pin.substr(8), raw) || raw.size() != 32)
                throw ConfigError("fetcher.upstream_pin: expected sha256//BASE64 of the server's public key: " + up.pin);
        }
        tls_cert = cfg.str("fetcher.tls_cert");
        tls_key = cfg.str("fetcher.tls_key");
        const std::string& tl = cfg.str("fetcher.tls_listen");
        if (!tl.empty() && !parse_hostport(tl, tls_listen))
            throw ConfigError("fetcher.tls_listen: expected host:port, not " + tl);
        if (tls_cert.empty() != tls_key.empty())
            throw ConfigError("fetcher.tls_cert and fetcher.tls_key: set both or neither");
        if (!tls_listen.host.empty() && tls_cert.empty())
            throw ConfigError("fetcher.tls_listen needs fetcher.tls_cert and fetcher.tls_key");
        if (up.timeout.count() < 1)
            throw ConfigError("fetcher.timeout: must be at least 1s");
        SyncOptions& so = sc.session.sync;
        so.cache_dir = cfg.str("fetcher.cache_dir");
        so.upstream_id = up.host + ":" + std::to_string(up.port);
        so.max_size = cfg.size("fetcher.max_size");
        so.hold_max = cfg.duration("fetcher.hold_max");
        so.login_wait = cfg.duration("fetcher.login_wait");
        if (so.login_wait > std::chrono::seconds(60))
            throw ConfigError("fetcher.login_wait: at most 60s, or mail clients time out");
        so.stream = cfg.boolean("fetcher.stream");
        so.ask = cfg.str("fetcher.mode") == "ask";
        so.address = cfg.str("fetcher.address");
        if (!so.address.empty() && normalize_address(so.address) != so.address)
            throw ConfigError("fetcher.address: not a plain lowercase address local@domain: " + so.address);
        so.priority_senders = cfg.list("fetcher.priority_senders");
        so.ignore_senders = cfg.list("fetcher.ignore_senders");
        so.stop = &g_stop;
        dl.media_dir = so.cache_dir + "/media";
        dl.jobs_dir = so.cache_dir + "/jobs";
        dl.allow_private = cfg.boolean("fetcher.allow_private");
        dl.allow_insecure = cfg.boolean("fetcher.allow_insecure");
        dl.timeout = up.timeout;
        int64_t parallel = cfg.integer("fetcher.parallel");
        if (parallel < 1 || parallel > 64)
            throw ConfigError("fetcher.parallel: must be 1..64, not " + std::to_string(parallel));
        dl.parallel = static_cast<unsigned>(parallel);
        dl.quota = cfg.size("fetcher.cache_quota");
        if (dl.quota == 0)
            throw ConfigError("fetcher.cache_quota: must be more than 0");
        dl.retry_max = cfg.duration("fetcher.retry_max");
        if (dl.retry_max < dl.retry_min)
            throw ConfigError("fetcher.retry_max: must be at least 10s");
        prefetch_interval = cfg.duration("fetcher.prefetch_interval");
        if (prefetch_interval.count() > 0) {
            prefetch_user = cfg.str("fetcher.prefetch_user");
            if (prefetch_user.empty())
                throw ConfigError("fetcher.prefetch_interval is set but fetcher.prefetch_user is empty");
            std::string err;
            // 255: the longest PASS argument a POP3 command line leaves room for (RFC 2449).
            if (!read_secret_line(cfg.str("fetcher.prefetch_password_file"), 255, prefetch_password, err))
                throw ConfigError("fetcher.prefetch_password_file: " + err);
        }
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
    if (!command.empty())
        return fetch_command(dl.jobs_dir, dl.media_dir, command[1], sc.session.upstream.timeout * 10);
    if (!upstream_tls_context(upstream_ca)) {
        std::cerr << "mm-fetcher: cannot create the upstream TLS context"
                  << (upstream_ca.empty() ? "" : " (fetcher.upstream_ca: cannot load " + upstream_ca + ")") << "\n";
        return 78;
    }
    if (!tls_cert.empty()) {
        SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
            SSL_CTX_use_certificate_chain_file(ctx, tls_cert.c_str()) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, tls_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            std::cerr << "mm-fetcher: fetcher.tls_cert/tls_key: cannot load " << tls_cert << " and " << tls_key
                      << " as a matching PEM certificate chain and key\n";
            return 78;
        }
        sc.session.tls = ctx;
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

    int fd = listen_tcp(sc.host, sc.port, err);
    if (fd < 0) {
        std::cerr << "mm-fetcher: fetcher.listen: " << err << "\n";
        return 78;
    }
    int tls_fd = -1;
    if (!tls_listen.host.empty()) {
        tls_fd = listen_tcp(tls_listen.host, tls_listen.port, err);
        if (tls_fd < 0) {
            std::cerr << "mm-fetcher: fetcher.tls_listen: " << err << "\n";
            return 78;
        }
    }
    Downloader downloader(dl);
    if (!downloader.start(err)) {
        std::cerr << "mm-fetcher: " << err << "\n";
        return 73;
    }
    sc.session.sync.downloader = &downloader;

    // Background polling: the same synchronisation a client login does, so the
    // media is downloading before anyone asks. Never deletes anything.
    std::mutex prefetch_mu;
    std::condition_variable prefetch_cv;
    std::thread prefetcher;
    if (prefetch_interval.count() > 0) {
        prefetcher = std::thread([&] {
            std::unique_lock<std::mutex> lock(prefetch_mu);
            do {
                lock.unlock();
                std::string perr;
                unsigned shown = 0, held = 0;
                if (!poll_mailbox(sc.session.upstream, sc.session.sync, prefetch_user, prefetch_password, shown,
                                  held, perr))
                    log_warning("prefetch: " + printable(perr));
                else
                    log_debug("prefetch: " + std::to_string(shown) + " ready, " + std::to_string(held) + " held");
                lock.lock();
            } while (!prefetch_cv.wait_for(lock, prefetch_interval, [] { return g_stop.load(); }));
        });
    }

    log_info("listening on " + sc.host + ":" + std::to_string(sc.port) + ", upstream " +
             sc.session.sync.upstream_id);
    serve(fd, tls_fd, sc, g_stop, &orig);
    prefetch_cv.notify_all();
    if (prefetcher.joinable())
        prefetcher.join();
    downloader.stop();
    log_info("stopped");
    return 0;
}
