// main.cpp - mm-fetcher: the receiver's local POP3 proxy (RFC 1939) that resolves
// MediaMail handles before the mail client sees a message, its background downloader
// and prefetch poller, and the "fetch" command of fetcher.mode = ask. Reads fetcher.*
// and log.* (-c, else the default path); their bounds are core/config.cpp's, --help
// lists them. Exit codes: core/exit_codes.h.
#include "core/fileio.h"
#include "core/config.h"
#include "fetcher/clamd.h"
#include "fetcher/download.h"
#include "fetcher/imap_agent.h"
#include "core/log.h"
#include "fetcher/sync.h"
#include "fetcher/server.h"
#include "fetcher/status.h"
#include "core/status_http.h"
#include "core/stream.h"
#include "fetcher/upstream.h"
#include "core/util.h"
#include "core/program.h"

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
#include <algorithm>

namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_stop_signal{0};
std::atomic<bool> g_reload{false};

extern "C" void on_signal(int sig)
{
    if (sig == SIGHUP) {
        g_reload.store(true);
        return;
    }
    g_stop_signal.store(sig);
    g_stop.store(true);
}

const mm::ProgramSpec kSpec{"mm-fetcher", "fetcher", {"fetcher.", "log."}, ""};
const std::vector<std::string> kLiveKeys = {"log.level"};

const char kUsage[] =
    "usage: mm-fetcher [-c FILE] [--set section.key=value]... [--check]\n"
    "       mm-fetcher [-c FILE] --imap             the IMAP mailbox agent (fetcher.imap)\n"
    "       mm-fetcher [-c FILE] fetch SHA256|URL   download media of fetcher.mode = ask\n"
    "       mm-fetcher [-c FILE] status             mail held back and its downloads, from the\n"
    "                                               running fetcher's fetcher.status_listen\n"
    "       mm-fetcher --version\n"
    "\n"
    "Local POP3 proxy: point the mail client at fetcher.listen; messages are\n"
    "fetched from fetcher.upstream, their media downloaded and verified, and\n"
    "presented with the original attachments put back.\n"
    "With --imap it is instead an agent beside the user's IMAP server\n"
    "(fetcher.imap): it puts the media back into the mail in place, for every\n"
    "IMAP client at once (docs/imap.md).\n"
    "\n"
    "  --check    check the configuration, print what is not default, exit\n"
    "\n"
    "Signals: SIGTERM or SIGINT stop it (sessions are ended, exit 0); SIGHUP\n"
    "reopens log.file and re-reads the configuration (log.level applies at once,\n"
    "the rest at restart).\n";

// "mm-fetcher fetch SHA256|URL": fetcher.mode = ask's way of asking. The running
// fetcher sees the marker within a second or two; we wait for the verified file.
int fetch_command(const std::string& jobs_dir, const std::string& media_dir, const std::string& key,
                  std::chrono::seconds wait)
{
    std::string err;
    std::string sha = mm::Downloader::request_fetch(jobs_dir, key, err);
    if (sha.empty()) {
        std::cerr << "mm-fetcher: fetch: " << err << "\n";
        return mm::code(mm::Exit::data);
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
    return mm::code(mm::Exit::temp_fail);
}

// "mm-fetcher status": asks the running fetcher (fetcher.status_listen) rather
// than reading the cache: which mail is held and why is what that process
// decided at its last sync, and the cache alone cannot tell a held mail from
// one merely not re-presented yet.
int status_command(const mm::HostPort& at)
{
    if (at.host.empty()) {
        std::cerr << "mm-fetcher: status: fetcher.status_listen is empty: set it (e.g. 127.0.0.1:1180) and "
                     "restart mm-fetcher\n";
        return mm::code(mm::Exit::config);
    }
    std::string body, err;
    if (!mm::status_get(at.host, at.port, "/status.txt", std::chrono::seconds(5), 1 << 20, body, err)) {
        std::cerr << "mm-fetcher: status: " << at.host << ":" << at.port << ": " << err
                  << " (is mm-fetcher running?)\n";
        return mm::code(mm::Exit::unavailable);
    }
    std::cout << body;
    return 0;
}

/// The status page (fetcher.status_listen) served on FD; none when FD < 0.
std::unique_ptr<mm::StatusServer> status_page(int fd, const std::string& media_dir)
{
    if (fd < 0)
        return nullptr;
    return std::make_unique<mm::StatusServer>(fd, "status_listen", [media_dir](const std::string& p) {
        return mm::fetcher_status_reply(p, mm::fetcher_status(), media_dir);
    });
}

/// mm-fetcher --imap: the downloader, the status page if configured, and the
/// IMAP agent on this thread until SIGTERM/SIGINT (signals as in POP3 mode).
int run_imap_mode(mm::ImapAgentOptions& imap, const mm::SyncOptions& so, const mm::DownloadOptions& dl,
                  const mm::HostPort& status_listen, const sigset_t* orig)
{
    using namespace mm;
    int status_fd = -1;
    try {
        if (!status_listen.host.empty())
            status_fd = listen_on("fetcher.status_listen", status_listen);
    } catch (const ExitError& e) {
        std::cerr << "mm-fetcher: " << e.what() << "\n";
        return code(e.exit);
    }
    std::unique_ptr<StatusServer> status = status_page(status_fd, dl.media_dir);
    Downloader downloader(dl);
    std::string err;
    if (!downloader.start(err)) {
        std::cerr << "mm-fetcher: " << err << "\n";
        return code(Exit::cant_create);
    }
    imap.sync = so;
    imap.sync.downloader = &downloader;
    if (status)
        status->start();
    // SIGHUP: log.file reopened (logrotate); other changes apply at restart.
    std::thread reopener([] {
        while (!g_stop.load()) {
            if (g_reload.exchange(false)) {
                std::string rerr;
                if (!log_reopen(rerr))
                    log_error("SIGHUP: " + rerr + "; still logging to the old file");
                else
                    log_info("SIGHUP: log reopened; configuration changes apply at restart");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
    });
    log_info("IMAP agent for " + imap.server.host + ":" + std::to_string(imap.server.port) +
             kv("user", imap.user) + kv("folders", std::to_string(imap.folders.size())));
    if (imap.stop_after_append)
        log_warning("test hook MM_TEST_STOP_AFTER_APPEND=1 is set: the agent stops after its first APPEND");
    // The other threads keep the signals blocked: this one sees them, and a
    // poll it waits in (IDLE) ends with EINTR, so the stop is noticed at once.
    pthread_sigmask(SIG_SETMASK, orig, nullptr);
    run_imap_agent(imap, g_stop);
    reopener.join();
    if (status)
        status->stop();
    log_info("stopping" + kv("signal", g_stop_signal.load() == SIGINT ? "SIGINT" : "SIGTERM"));
    downloader.stop();
    return 0;
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
    HostPort tls_listen, status_listen;
    std::string tls_cert, tls_key, upstream_ca;
    ImapAgentOptions imap;
    CommonArgs args;
    try {
        args = parse_common_args(argc, argv);
    } catch (const ConfigError& e) {
        std::cerr << "mm-fetcher: " << e.what() << "\n" << kUsage;
        return code(Exit::usage);
    }
    if (args.help) {
        std::cout << kUsage << program_help(kSpec);
        return 0;
    }
    if (args.version) {
        std::cout << version_line("mm-fetcher") << "\n";
        return 0;
    }
    command = args.rest;
    bool imap_mode = false;
    if (auto it = std::find(command.begin(), command.end(), "--imap"); it != command.end()) {
        imap_mode = true;
        command.erase(it);
    }
    if (imap_mode && !command.empty()) {
        std::cerr << "mm-fetcher: --imap takes no command\n" << kUsage;
        return code(Exit::usage);
    }
    if (!command.empty()) {
        std::string bad;
        if (command[0] == "fetch" && command.size() != 2)
            bad = "fetch needs one argument: the media's SHA-256 or its URL";
        else if (command[0] == "status" && command.size() != 1)
            bad = "status takes no arguments";
        else if (command[0] != "fetch" && command[0] != "status")
            bad = "unexpected argument: " + printable(command.front(), 80);
        if (!bad.empty()) {
            std::cerr << "mm-fetcher: " << bad << "\n" << kUsage;
            return code(Exit::usage);
        }
    }
    Config cfg = Config::load("", {});
    try {
        cfg = load_program_config(args.config_path, args.overrides, kSpec);
        if (args.check)
            return run_check(cfg, kSpec);
        setup_logging(cfg, "mm-fetcher");
        level = cfg.word("log.level");
        HostPort listen = cfg.hostport("fetcher.listen");
        sc.host = listen.host;
        sc.port = listen.port;
        sc.max_sessions = static_cast<unsigned>(cfg.integer("fetcher.max_sessions"));
        UpstreamConfig& up = sc.session.upstream;
        if (!parse_upstream_url(cfg.str("fetcher.upstream"), up))
            throw cfg.invalid("fetcher.upstream", "expected pop3://HOST[:PORT] or pop3s://HOST[:PORT]");
        up.tls_required = cfg.is("fetcher.upstream_tls", "required");
        up.timeout = cfg.duration("fetcher.timeout");
        upstream_ca = cfg.str("fetcher.upstream_ca");
        up.pin = cfg.str("fetcher.upstream_pin");
        tls_cert = cfg.str("fetcher.tls_cert");
        tls_key = cfg.str("fetcher.tls_key");
        tls_listen = cfg.hostport("fetcher.tls_listen");   // port 0: empty, no TLS listener
        status_listen = cfg.hostport("fetcher.status_listen");
        SyncOptions& so = sc.session.sync;
        so.cache_dir = cfg.str("fetcher.cache_dir");
        so.upstream_id = up.host + ":" + std::to_string(up.port);
        so.max_size = cfg.size("fetcher.max_size");
        so.hold_max = cfg.duration("fetcher.hold_max");
        so.login_wait = cfg.duration("fetcher.login_wait");
        so.stream = cfg.boolean("fetcher.stream");
        so.ask = cfg.is("fetcher.mode", "ask");
        so.address = cfg.str("fetcher.address");
        so.priority_senders = cfg.list("fetcher.priority_senders");
        so.ignore_senders = cfg.list("fetcher.ignore_senders");
        so.types = cfg.list("fetcher.types");
        so.max_message_size = cfg.size("fetcher.max_message_size");
        if (so.max_message_size == 0)
            so.max_message_size = so.max_size + (uint64_t{64} << 20);
        so.clamd = cfg.str("fetcher.clamd");
        if (ClamdAddress ca; !so.clamd.empty() && !parse_clamd_address(so.clamd, ca))
            throw cfg.invalid("fetcher.clamd", "expected unix:/PATH or inet:HOST:PORT");
        so.clamd_timeout = cfg.duration("fetcher.clamd_timeout");
        so.authserv_id = cfg.str("fetcher.authserv_id");
        so.stop = &g_stop;
        dl.media_dir = so.cache_dir + "/media";
        dl.jobs_dir = so.cache_dir + "/jobs";
        dl.allow_private = cfg.boolean("fetcher.allow_private");
        dl.allow_insecure = cfg.boolean("fetcher.allow_insecure");
        dl.timeout = up.timeout;
        dl.msg_dir = so.cache_dir + "/msg";
        dl.parallel = static_cast<unsigned>(cfg.integer("fetcher.parallel"));
        dl.max_per_host = static_cast<unsigned>(cfg.integer("fetcher.max_per_host"));
        dl.min_rate = cfg.size("fetcher.min_rate");
        dl.min_rate_window = cfg.duration("fetcher.min_rate_window");
        dl.receipts = cfg.boolean("fetcher.receipts");
        dl.quota = cfg.size("fetcher.cache_quota");
        dl.retry_max = cfg.duration("fetcher.retry_max");
        prefetch_interval = cfg.duration("fetcher.prefetch_interval");
        if (prefetch_interval.count() > 0) {
            prefetch_user = cfg.str("fetcher.prefetch_user");
            std::string err;
            // 255: the longest PASS argument a POP3 command line leaves room for (RFC 2449).
            if (!read_secret_line(cfg.str("fetcher.prefetch_password_file"), 255, prefetch_password, err))
                throw cfg.invalid("fetcher.prefetch_password_file", err);
        }
        if (imap_mode) {
            ImapConfig& ic = imap.server;
            if (cfg.str("fetcher.imap").empty())
                throw cfg.invalid("fetcher.imap", "--imap needs the IMAP server: imaps://HOST[:PORT]");
            if (!parse_imap_url(cfg.str("fetcher.imap"), ic))
                throw cfg.invalid("fetcher.imap", "expected imaps://HOST[:PORT] or imap://HOST[:PORT]");
            ic.tls_required = up.tls_required;
            ic.timeout = up.timeout;
            ic.pin = up.pin;
            imap.user = cfg.str("fetcher.imap_user");
            std::string err;
            // Sent as a quoted string or literal: any length a password file holds.
            if (!read_secret_line(cfg.str("fetcher.imap_password_file"), 1024, imap.password, err))
                throw cfg.invalid("fetcher.imap_password_file", err);
            imap.folders = cfg.list("fetcher.imap_folders");
            imap.originals = cfg.str("fetcher.imap_originals");
            imap.poll = cfg.duration("fetcher.imap_poll");
            // Test hook (docs/imap.md, tests/integration/imap.test.sh): stop still
            // between a confirmed APPEND and the removal of the original.
            const char* hook = getenv("MM_TEST_STOP_AFTER_APPEND");
            imap.stop_after_append = hook && std::string(hook) == "1";
            so.upstream_id = "imap:" + ic.host + ":" + std::to_string(ic.port);
        }
    } catch (const ExitError& e) {
        std::cerr << "mm-fetcher: " << e.what() << "\n";
        return code(e.exit);
    } catch (const ConfigError& e) {
        std::cerr << "mm-fetcher: " << e.what() << "\n";
        return code(Exit::config);
    }
    if (!command.empty() && command[0] == "status")
        return status_command(status_listen);

    std::string err;
    if (!prepare_cache(sc.session.sync.cache_dir, err)) {
        std::cerr << "mm-fetcher: fetcher.cache_dir: " << err << "\n";
        return code(Exit::cant_create);
    }
    if (!command.empty())
        return fetch_command(dl.jobs_dir, dl.media_dir, command[1], sc.session.upstream.timeout * 10);
    if (!upstream_tls_context(upstream_ca)) {
        std::cerr << "mm-fetcher: cannot create the upstream TLS context"
                  << (upstream_ca.empty() ? "" : " (fetcher.upstream_ca: cannot load " + upstream_ca + ")") << "\n";
        return code(Exit::config);
    }
    if (!tls_cert.empty()) {
        SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
            SSL_CTX_use_certificate_chain_file(ctx, tls_cert.c_str()) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, tls_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            std::cerr << "mm-fetcher: fetcher.tls_cert/tls_key: cannot load " << tls_cert << " and " << tls_key
                      << " as a matching PEM certificate chain and key\n";
            return code(Exit::config);
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
    sigaction(SIGHUP, &sa, nullptr);
    sigset_t block, orig;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &orig);

    if (imap_mode)
        return run_imap_mode(imap, sc.session.sync, dl, status_listen, &orig);

    int fd = -1, tls_fd = -1, status_fd = -1;
    try {
        fd = listen_on("fetcher.listen", HostPort{sc.host, sc.port});
        if (!tls_listen.host.empty())
            tls_fd = listen_on("fetcher.tls_listen", tls_listen);
        if (!status_listen.host.empty())
            status_fd = listen_on("fetcher.status_listen", status_listen);
    } catch (const ExitError& e) {
        std::cerr << "mm-fetcher: " << e.what() << "\n";
        return code(e.exit);
    }
    std::unique_ptr<StatusServer> status = status_page(status_fd, dl.media_dir);
    Downloader downloader(dl);
    if (!downloader.start(err)) {
        std::cerr << "mm-fetcher: " << err << "\n";
        return code(Exit::cant_create);
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
    auto reload = [&] {
        if (!g_reload.exchange(false))
            return;
        std::string rerr;
        if (!log_reopen(rerr))
            log_error("SIGHUP: " + rerr + "; still logging to the old file");
        try {
            Config fresh = load_program_config(args.config_path, args.overrides, kSpec);
            log_set_level(fresh.word("log.level"));
            log_info(reload_report(cfg, fresh, kSpec, kLiveKeys));
            cfg = fresh;
        } catch (const ExitError& e) {
            log_error(std::string("SIGHUP: configuration not reloaded: ") + e.what());
        }
    };
    fetcher_status().listening = true;
    if (status)
        status->start();
    serve(fd, tls_fd, sc, g_stop, &orig, reload);
    fetcher_status().listening = false;
    if (status)
        status->stop();
    log_info("stopping" + kv("signal", g_stop_signal.load() == SIGINT ? "SIGINT" : "SIGTERM"));
    prefetch_cv.notify_all();
    if (prefetcher.joinable())
        prefetcher.join();
    downloader.stop();
    return 0;
}
