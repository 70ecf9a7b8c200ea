// main.cpp - mm-milter: detaches media attachments from outgoing mail inside
// Postfix (smtpd_milters / non_smtpd_milters). See docs/postfix.md. Reads milter.*,
// store.dir, gateway.public_url, gateway.retention, gateway.tls_* and log.*
// (-c, else the default path); their bounds are core/config.cpp's, --help lists
// them. Exit codes: core/exit_codes.h. Signals: see kUsage.
#include "milter/milter.h"
#include "milter/proxy.h"

#include "core/config.h"
#include "core/log.h"
#include "core/program.h"
#include "core/stream.h"
#include "store/layout.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace {

const char kUsage[] =
    "usage: mm-milter [-c FILE] [--set section.key=value]... [--check]\n"
    "\n"
    "Postfix milter that replaces large video and audio attachments by a small\n"
    "location part and keeps the media in the sender's store for mm-gateway.\n"
    "With milter.proxy_listen set it is also a before-queue filter (Postfix's\n"
    "smtpd_proxy_filter), which takes the media out before Postfix queues the mail.\n"
    "\n"
    "  -c, --config FILE   configuration file (INI), see conf/mediamail.conf\n"
    "      --set K=V       override one key, e.g. --set milter.min_size=5M\n"
    "      --check         check the configuration, print what is not default, exit\n"
    "  -V, --version       print the version\n"
    "  -h, --help          this text, the keys read and the exit codes\n"
    "\n"
    "Started as root it opens its sockets and the store, then runs as milter.user.\n"
    "Signals: SIGTERM or SIGINT stop it (running sessions are finished or cut,\n"
    "exit 0); SIGHUP reopens log.file and re-reads the configuration (log.level\n"
    "applies at once, the rest at restart).\n";

const mm::ProgramSpec kSpec{"mm-milter",
                            "milter",
                            {"store.dir", "gateway.public_url", "gateway.retention", "gateway.tls_", "milter.", "log."},
                            "milter.user"};
const std::vector<std::string> kLiveKeys = {"log.level"};

// The main thread takes the signals through these handlers and a pipe (the
// worker threads block them): libmilter's own signal thread, which would stop
// on SIGHUP, never sees one.
int g_signal_pipe[2] = {-1, -1};

extern "C" void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = static_cast<unsigned char>(sig);
    (void)!write(g_signal_pipe[1], &b, 1);
    errno = saved;
}

constexpr unsigned char kServerEnded = 0;   // written by the milter thread when smfi_main returns

void reload(mm::Config& running, const std::string& config_path, const std::vector<std::string>& overrides)
{
    std::string err;
    if (!mm::log_reopen(err))
        mm::log_error("SIGHUP: " + err + "; still logging to the old file");
    try {
        mm::Config fresh = mm::load_program_config(config_path, overrides, kSpec);
        mm::log_set_level(fresh.word("log.level"));
        mm::log_info(mm::reload_report(running, fresh, kSpec, kLiveKeys));
        running = fresh;
    } catch (const mm::ExitError& e) {
        mm::log_error(std::string("SIGHUP: configuration not reloaded: ") + e.what());
    }
}

int fail(const mm::ExitError& e)
{
    std::fprintf(stderr, "mm-milter: %s\n", e.what());
    return mm::code(e.exit);
}

} // namespace

int main(int argc, char** argv)
{
    mm::MilterSettings s;
    mm::CommonArgs args;
    try {
        args = mm::parse_common_args(argc, argv);
    } catch (const mm::ConfigError& e) {
        std::fprintf(stderr, "mm-milter: %s\n%s", e.what(), kUsage);
        return mm::code(mm::Exit::usage);
    }
    if (args.help) {
        std::fputs(kUsage, stdout);
        std::fputs(mm::program_help(kSpec).c_str(), stdout);
        return 0;
    }
    if (args.version) {
        std::puts(mm::version_line("mm-milter").c_str());
        return 0;
    }
    if (!args.rest.empty()) {
        std::fprintf(stderr, "mm-milter: unexpected argument '%s'\n%s", mm::printable(args.rest[0], 80).c_str(), kUsage);
        return mm::code(mm::Exit::usage);
    }
    mm::Config cfg = mm::Config::load("", {});
    try {
        cfg = mm::load_program_config(args.config_path, args.overrides, kSpec);
        if (args.check)
            return mm::run_check(cfg, kSpec);
        mm::setup_logging(cfg, "mm-milter");
        s.socket = cfg.str("milter.socket");
        s.on_error = cfg.is("milter.on_error", "accept") ? mm::OnError::accept : mm::OnError::tempfail;
        s.max_message_size = cfg.size("milter.max_message_size");
        s.policy.min_size = cfg.size("milter.min_size");
        s.policy.types = cfg.list("milter.types");
        s.policy.max_size = cfg.size("milter.max_size");
        s.policy.reject_over_max = cfg.is("milter.over_max_size", "reject");
        s.apply_to_all = cfg.is("milter.apply_to", "all");
        s.rewrite_signed_dkim = cfg.boolean("milter.rewrite_signed_dkim");
        for (const std::string& net : cfg.list("milter.trusted_networks")) {
            mm::Cidr c;
            if (!mm::parse_cidr(net, c))
                throw cfg.invalid("milter.trusted_networks", "'" + net + "' is not an address or ADDRESS/PREFIX");
            s.trusted.push_back(c);
        }
        s.proxy_listen = cfg.hostport("milter.proxy_listen");   // port 0: empty, the filter is off
        s.proxy_next = cfg.hostport("milter.proxy_next");
        s.proxy_timeout = cfg.duration("milter.proxy_timeout");
        s.proxy_max_clients = static_cast<unsigned>(cfg.integer("milter.proxy_max_clients"));
        s.max_recipient_copies = static_cast<unsigned>(cfg.integer("milter.max_recipient_copies"));
        try {
            s.store = std::make_unique<mm::Store>(cfg);
        } catch (const std::exception& e) {
            throw mm::ExitError(mm::Exit::cant_create, std::string("store.dir: ") + e.what());
        }
        s.spool_dir = cfg.str("store.dir") + "/spool";
        if (mkdir(s.spool_dir.c_str(), 0700) != 0 && errno != EEXIST)
            throw mm::ExitError(mm::Exit::cant_create, "cannot create " + s.spool_dir + ": " + std::strerror(errno));
    } catch (const mm::ExitError& e) {
        return fail(e);
    } catch (const mm::ConfigError& e) {
        return fail(mm::ExitError(mm::Exit::config, e.what()));
    }

    // Every thread started from here inherits a mask that blocks the signals;
    // only the main thread, in poll() below, takes them.
    sigset_t sigs, orig;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, &orig);
    std::signal(SIGPIPE, SIG_IGN);
    if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        std::perror("mm-milter: pipe");
        return mm::code(mm::Exit::software);
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int sig : {SIGTERM, SIGINT, SIGHUP})
        sigaction(sig, &sa, nullptr);

    std::atomic<bool> stop{false};
    std::thread proxy, milter;
    try {
        int fd = -1;
        if (s.proxy_listen.port != 0)
            fd = mm::listen_on("milter.proxy_listen", s.proxy_listen);
        if (!s.socket.empty()) {
            long group = -1;
            if (const std::string& g = cfg.str("milter.socket_group"); !g.empty()) {
                gid_t gid;
                std::string err;
                if (!mm::resolve_group(g, gid, err))
                    throw mm::ExitError(mm::Exit::config, cfg.invalid("milter.socket_group", err).what());
                group = static_cast<long>(gid);
            }
            mm::open_milter(s, cfg.mode("milter.socket_mode"), group);
        }
        std::vector<std::string> created = mm::layout::opened_paths(mm::layout::store_dir(cfg));
        created.push_back(s.spool_dir);
        mm::drop_privileges(cfg, kSpec, created);
        if (fd >= 0) {
            mm::log_info("before-queue filter listening" + mm::kv("listen", cfg.str("milter.proxy_listen")) +
                         mm::kv("next", cfg.str("milter.proxy_next")));
            proxy = std::thread([fd, &s, &stop] { mm::serve_proxy(fd, s, stop); });
        }
    } catch (const mm::ExitError& e) {
        return fail(e);
    }
    int rc = 0;
    if (!s.socket.empty())
        milter = std::thread([&rc] {
            rc = mm::serve_milter();
            unsigned char b = kServerEnded;
            (void)!write(g_signal_pipe[1], &b, 1);
        });
    pthread_sigmask(SIG_SETMASK, &orig, nullptr);

    bool stopping = false;
    while (!stopping) {
        pollfd p{g_signal_pipe[0], POLLIN, 0};
        if (poll(&p, 1, -1) <= 0)
            continue;
        unsigned char sig;
        while (!stopping && read(g_signal_pipe[0], &sig, 1) == 1) {
            if (sig == SIGHUP) {
                reload(cfg, args.config_path, args.overrides);
            } else if (sig == kServerEnded) {
                mm::log_error("the milter stopped serving" + mm::kv("status", rc));
                stopping = true;
            } else {
                mm::log_info("stopping" + mm::kv("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
                stopping = true;
            }
        }
    }
    stop = true;
    if (milter.joinable()) {
        mm::stop_milter();
        milter.join();
    }
    if (proxy.joinable())
        proxy.join();
    return rc;
}
