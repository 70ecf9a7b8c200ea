// main.cpp - mm-milter: detaches media attachments from outgoing mail inside
// Postfix (smtpd_milters / non_smtpd_milters). See docs/postfix.md. Reads milter.*,
// store.dir, gateway.public_url, gateway.retention, gateway.tls_* and log.level;
// their bounds are core/config.cpp's, --help lists them.
#include "milter/milter.h"
#include "milter/proxy.h"

#include "core/config.h"
#include "core/log.h"
#include "core/stream.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <thread>

namespace {

const char kUsage[] =
    "usage: mm-milter [-c FILE] [--set section.key=value]...\n"
    "\n"
    "Postfix milter that replaces large video and audio attachments by a small\n"
    "location part and keeps the media in the sender's store for mm-gateway.\n"
    "With milter.proxy_listen set it is also a before-queue filter (Postfix's\n"
    "smtpd_proxy_filter), which takes the media out before Postfix queues the mail.\n"
    "\n"
    "  -c, --config FILE   configuration file (INI), see mediamail.conf(5)\n"
    "      --set K=V       override one key, e.g. --set milter.min_size=5M\n"
    "  -h, --help          this text, and the keys read\n";

} // namespace

int main(int argc, char** argv)
{
    mm::MilterSettings s;
    try {
        mm::CommonArgs args = mm::parse_common_args(argc, argv);
        if (args.help) {
            fputs(kUsage, stdout);
            fputs(("\n" + mm::config_help({"store.dir", "gateway.public_url", "gateway.retention", "gateway.tls_",
                                            "milter.", "log."}))
                      .c_str(),
                  stdout);
            return 0;
        }
        if (!args.rest.empty()) {
            fprintf(stderr, "mm-milter: unexpected argument '%s'\n%s", args.rest[0].c_str(), kUsage);
            return 64;
        }
        mm::Config cfg = mm::Config::load(args.config_path, args.overrides);
        cfg.verify("milter");
        mm::log_init("mm-milter", cfg.word("log.level"));
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
        s.store = std::make_unique<mm::Store>(cfg);
        s.spool_dir = cfg.str("store.dir") + "/spool";
        if (mkdir(s.spool_dir.c_str(), 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "mm-milter: cannot create %s: %s\n", s.spool_dir.c_str(), strerror(errno));
            return 73;
        }
    } catch (const mm::ConfigError& e) {
        fprintf(stderr, "mm-milter: %s\n", e.what());
        return 78;
    } catch (const std::exception& e) {
        fprintf(stderr, "mm-milter: %s\n", e.what());
        return 71;
    }
    // Signals are taken by one thread (libmilter's, or the wait below); every
    // thread started from here inherits the mask.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    std::atomic<bool> stop{false};
    std::thread proxy;
    if (s.proxy_listen.port != 0) {
        std::string err;
        int fd = mm::listen_tcp(s.proxy_listen.host, s.proxy_listen.port, err);
        if (fd < 0) {
            mm::log_error("milter.proxy_listen: " + err);
            return 69;
        }
        mm::log_info("before-queue filter listening on " + s.proxy_listen.host + ":" +
                     std::to_string(s.proxy_listen.port) + ", next hop " + s.proxy_next.host + ":" +
                     std::to_string(s.proxy_next.port));
        proxy = std::thread([fd, &s, &stop] { mm::serve_proxy(fd, s, stop); });
    }
    int rc = 0;
    if (!s.socket.empty()) {
        rc = mm::run_milter(s);
    } else {
        int sig = 0;
        sigwait(&sigs, &sig);
        mm::log_info(std::string("stopping on ") + strsignal(sig));
    }
    stop = true;
    if (proxy.joinable())
        proxy.join();
    return rc;
}
