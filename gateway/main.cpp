// main.cpp - mm-gateway: the sender's peer HTTPS server (serve) and admin
// commands on the media store (put, list, show, revoke, gc, stats). Reads mediamail.conf
// (-c, else the default path) and --set: store.dir, gateway.* and log.*; their bounds
// are core/config.cpp's, --help lists them. Exit codes: core/exit_codes.h.
#include "gateway/admin.h"
#include "gateway/relay.h"
#include "gateway/server.h"
#include "store/layout.h"
#include "store/store.h"

#include "core/log.h"
#include "core/program.h"

#include <Poco/Exception.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SSLManager.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

const char* const kUsage =
    "usage: mm-gateway [-c FILE] [--set section.key=value]... [--check] [COMMAND]\n"
    "\n"
    "commands:\n"
    "  serve        run the peer HTTPS server (the default)\n"
    "  put FILE [--type TYPE] [--name NAME] [--title TITLE] [--note NOTE]\n"
    "           [--date DATE] [--recipient ADDRESS]...\n"
    "               store FILE as a new item and print its URL, pin, sha256,\n"
    "               size and expiry (TYPE defaults to application/octet-stream,\n"
    "               NAME to the file's base name), and one URL per --recipient\n"
    "               (\"recipient: ADDRESS URL\"): only that URL's receipts count\n"
    "  list [--recipient ADDRESS] [--since DATE] [--message-id ID]\n"
    "               items: id, state, size, expiry, receipts, sender, Message-ID,\n"
    "               name; the filters combine (DATE: YYYY-MM-DD or ISO 8601)\n"
    "  show ID      one item with its recipients and their receipts\n"
    "  revoke ID    make an item's link answer 404 from now on\n"
    "  revoke ID --recipient ADDRESS\n"
    "               the same for that recipient's own URL only\n"
    "  gc           apply the after-delivery policy, remove expired items and\n"
    "               media no active item needs (the server also does this\n"
    "               every gateway.gc_interval)\n"
    "  stats        items per state, receipts, media files and bytes\n"
    "  token add USER     make USER's upload token (printed once; replaces an old one)\n"
    "  token list         users with an upload token, and when it was made\n"
    "  token revoke USER  refuse USER's token from now on (docs/gateway-api.md)\n"
    "               (list, show, revoke, gc and stats take --json; an ID may\n"
    "               be a unique prefix of at least 6 digits)\n"
    "\n"
    "options:\n"
    "  -c, --config FILE   read mediamail.conf from FILE\n"
    "  --set k=v           override a key, e.g. --set gateway.listen=127.0.0.1:8443\n"
    "  --check             check the configuration, print what is not default, exit\n"
    "  -V, --version       print the version\n"
    "  -h, --help          this text, the keys read and the exit codes\n"
    "\n"
    "The server answers GET and HEAD for <public_url>/m/<id>/<token>[/<name>]\n"
    "and takes receipts as POST <public_url>/m/<id>/<token>/receipt (docs/gateway-api.md).\n"
    "Started as root it binds, opens its files, then runs as gateway.user.\n"
    "Signals: SIGTERM or SIGINT stop the server cleanly (exit 0); SIGHUP reopens\n"
    "log.file, loads gateway.tls_cert and tls_key again for new connections and\n"
    "re-reads the configuration (log.level applies at once; the rest at restart).\n";

const mm::ProgramSpec kSpec{"mm-gateway", "gateway", {"store.dir", "gateway.", "log."}, "gateway.user"};

// The keys a SIGHUP applies without a restart (the TLS pair is always re-read).
const std::vector<std::string> kLiveKeys = {"log.level", "gateway.tls_cert", "gateway.tls_key"};

struct Invocation {
    std::string config_path;
    std::vector<std::string> overrides;
};

int usage_error(const std::string& msg)
{
    std::fprintf(stderr, "mm-gateway: %s\n%s", msg.c_str(), kUsage);
    return mm::code(mm::Exit::usage);
}

/// Admin commands read a store; they never make one. A missing store.dir or
/// index is said plainly (66), with nothing created on the way.
void require_existing_store(const mm::Config& cfg)
{
    const std::string& dir = cfg.str("store.dir");
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw mm::ExitError(mm::Exit::no_input, "store.dir = " + dir + ": no store there (" +
                                                    (errno == ENOENT ? "no such directory" : "not a directory") + ")");
    if (stat(mm::layout::index_path(dir).c_str(), &st) != 0)
        throw mm::ExitError(mm::Exit::no_input, "store.dir = " + dir + ": no store there (no " +
                                                    mm::layout::index_path(dir) + ")");
}

int cmd_put(const mm::Config& cfg, const std::vector<std::string>& args)
{
    std::string file;
    mm::ItemMeta meta;
    meta.type = "application/octet-stream";
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size())
                throw mm::ConfigError(a + " needs a value");
            return args[++i];
        };
        if (a == "--type")
            meta.type = value();
        else if (a == "--name")
            meta.name = value();
        else if (a == "--title")
            meta.title = value();
        else if (a == "--note")
            meta.note = value();
        else if (a == "--date")
            meta.date = value();
        else if (a == "--recipient")
            meta.recipients.push_back(value());
        else if (!a.empty() && a[0] == '-')
            return usage_error("put: unknown option " + a);
        else if (file.empty())
            file = a;
        else
            return usage_error("put: only one FILE");
    }
    if (file.empty())
        return usage_error("put: FILE is missing");
    if (meta.name.empty()) {
        size_t slash = file.rfind('/');
        meta.name = slash == std::string::npos ? file : file.substr(slash + 1);
    }
    int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        std::fprintf(stderr, "mm-gateway: cannot open %s: %s\n", file.c_str(), std::strerror(errno));
        return mm::code(errno == EACCES ? mm::Exit::permission : mm::Exit::no_input);
    }
    std::unique_ptr<mm::Store> opened;
    try {
        opened = std::make_unique<mm::Store>(cfg);
    } catch (const mm::StoreError& e) {
        throw mm::ExitError(mm::Exit::cant_create, std::string("store.dir: ") + e.what());
    }
    mm::Store& store = *opened;
    auto w = store.create();
    std::vector<char> buf(256 * 1024);
    for (;;) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            std::fprintf(stderr, "mm-gateway: cannot read %s: %s\n", file.c_str(), std::strerror(e));
            return mm::code(mm::Exit::io);
        }
        if (n == 0)
            break;
        w->write(buf.data(), static_cast<size_t>(n));
    }
    close(fd);
    mm::NewItem item = w->commit(meta);
    std::printf("url: %s\npin: %s\nsha256: %s\nsize: %llu\nexpires: %s\n", item.url.c_str(), item.pin.c_str(),
                item.sha256.c_str(), static_cast<unsigned long long>(item.size), item.expires.c_str());
    for (const auto& [address, token] : item.recipient_tokens)
        std::printf("recipient: %s %s\n", address.c_str(), mm::recipient_url(item.url, token).c_str());
    return 0;
}

/// SIGHUP: reopen the log, re-read the configuration and the TLS pair, say
/// what changed. Never exits; whatever fails keeps what was running.
void reload(mm::Gateway& gw, mm::Config& running, const Invocation& inv)
{
    std::string err;
    if (!mm::log_reopen(err))
        mm::log_error("SIGHUP: " + err + "; still logging to the old file");
    mm::Config fresh = running;
    try {
        fresh = mm::load_program_config(inv.config_path, inv.overrides, kSpec);
    } catch (const mm::ExitError& e) {
        mm::log_error(std::string("SIGHUP: configuration not reloaded: ") + e.what());
    }
    mm::log_set_level(fresh.word("log.level"));
    std::string old_pin = gw.pin();
    if (!gw.reload_tls(fresh, err)) {
        mm::log_error("SIGHUP: TLS certificate not reloaded, the old one stays in use:" + mm::kv("why", err));
    } else if (gw.pin() != old_pin) {
        mm::log_warning("SIGHUP: the TLS key changed: handles made with the old pin no longer verify" +
                        mm::kv("pin", gw.pin()));
    } else {
        mm::log_info("SIGHUP: TLS certificate reloaded" + mm::kv("pin", gw.pin()));
    }
    mm::log_info(mm::reload_report(running, fresh, kSpec, kLiveKeys));
    running = fresh;
}

int cmd_serve(mm::Config& cfg, const Invocation& inv)
{
    // Block the stop and reload signals in every thread (they inherit this
    // mask) and wait for them here: no work in a signal handler.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    std::signal(SIGPIPE, SIG_IGN);   // a peer closing mid-transfer is an error return, not a death

    if (std::string why = mm::public_url_problem(cfg); !why.empty())
        mm::log_warning("gateway.public_url = " + cfg.str("gateway.public_url") + " " + why);
    std::unique_ptr<mm::Gateway> gw;
    try {
        gw = std::make_unique<mm::Gateway>(cfg);
    } catch (const mm::BindError& e) {
        throw mm::listen_failure("gateway.listen", e.where, e.err);
    } catch (const mm::StoreError& e) {
        throw mm::ExitError(mm::Exit::cant_create, std::string("store.dir: ") + e.what());
    } catch (const Poco::Net::SSLContextException& e) {
        throw mm::ExitError(mm::Exit::config, "gateway.tls_cert, gateway.tls_key: " + e.displayText());
    }
    mm::drop_privileges(cfg, kSpec, mm::layout::opened_paths(mm::layout::store_dir(cfg)));
    gw->start();
    if (gw->address().empty())
        std::fprintf(stderr, "mm-gateway: no listener (gateway.listen is empty): serving through %s\n",
                     cfg.str("gateway.relay").c_str());
    else
        std::fprintf(stderr, "mm-gateway: listening on https://%s\n", gw->address().c_str());
    std::fprintf(stderr, "mm-gateway: pin %s\n", gw->pin().c_str());
    std::fflush(stderr);
    for (;;) {
        int sig = 0;
        sigwait(&sigs, &sig);
        if (sig == SIGHUP) {
            reload(*gw, cfg, inv);
            continue;
        }
        mm::log_info("stopping" + mm::kv("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
        break;
    }
    gw->stop();
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    mm::CommonArgs args;
    try {
        args = mm::parse_common_args(argc, argv);
    } catch (const mm::ConfigError& e) {
        return usage_error(e.what());
    }
    if (args.help) {
        std::fputs(kUsage, stdout);
        std::fputs(mm::program_help(kSpec).c_str(), stdout);
        return 0;
    }
    if (args.version) {
        std::puts(mm::version_line("mm-gateway").c_str());
        return 0;
    }
    std::string command = args.rest.empty() ? "serve" : args.rest[0];
    try {
        Invocation inv{args.config_path, args.overrides};
        mm::Config cfg = mm::load_program_config(inv.config_path, inv.overrides, kSpec);
        if (args.check) {
            int rc = mm::run_check(cfg, kSpec);
            for (const std::string& p : mm::relay_problems(cfg)) {   // the relay's key and known_hosts contents
                std::fprintf(stderr, "mm-gateway: %s\n", p.c_str());
                rc = mm::code(mm::Exit::config);
            }
            return rc;
        }
        mm::setup_logging(cfg, "mm-gateway");
        if (command == "serve") {
            if (args.rest.size() > 1)
                return usage_error("serve takes no arguments");
            Poco::Net::initializeSSL();
            int rc = cmd_serve(cfg, inv);
            Poco::Net::uninitializeSSL();
            return rc;
        }
        if (command == "put")
            return cmd_put(cfg, args.rest);
        if (mm::is_admin_command(command)) {
            require_existing_store(cfg);
            return mm::run_admin(cfg, args.rest);
        }
        return usage_error("unknown command " + mm::printable(command, 40));
    } catch (const mm::ExitError& e) {
        std::fprintf(stderr, "mm-gateway: %s\n", e.what());
        return mm::code(e.exit);
    } catch (const mm::ConfigError& e) {
        std::fprintf(stderr, "mm-gateway: configuration: %s\n", e.what());
        return mm::code(mm::Exit::config);
    } catch (const Poco::Exception& e) {
        std::fprintf(stderr, "mm-gateway: %s\n", e.displayText().c_str());
        return mm::code(mm::Exit::software);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mm-gateway: %s\n", e.what());
        return mm::code(mm::Exit::software);
    }
}
