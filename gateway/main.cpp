// main.cpp - mm-gateway: the sender's peer HTTPS server (serve) and admin
// commands on the media store (put, list, show, revoke, gc, stats). Reads mediamail.conf via -c and --set:
// store.dir, gateway.* and log.level; their bounds are core/config.cpp's, --help lists them.
#include "gateway/admin.h"
#include "gateway/server.h"
#include "store/store.h"

#include "core/log.h"

#include <Poco/Exception.h>
#include <Poco/Net/SSLManager.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <unistd.h>
#include <vector>

namespace {

const char* const kUsage =
    "usage: mm-gateway [-c FILE] [--set section.key=value]... [COMMAND]\n"
    "\n"
    "commands:\n"
    "  serve        run the peer HTTPS server (the default)\n"
    "  put FILE [--type TYPE] [--name NAME] [--title TITLE] [--note NOTE]\n"
    "           [--date DATE] [--recipient ADDRESS]...\n"
    "               store FILE as a new item and print its URL, pin, sha256,\n"
    "               size and expiry (TYPE defaults to application/octet-stream,\n"
    "               NAME to the file's base name), and one URL per --recipient\n"
    "               (\"recipient: ADDRESS URL\"): only that URL's receipts count\n"
    "  list         every item: id, state, size, expiry, receipts, name\n"
    "  show ID      one item with its recipients and their receipts\n"
    "  revoke ID    make an item's link answer 404 from now on\n"
    "  revoke ID --recipient ADDRESS\n"
    "               the same for that recipient's own URL only\n"
    "  gc           apply the after-delivery policy, remove expired items and\n"
    "               media no active item needs (the server also does this\n"
    "               every gateway.gc_interval)\n"
    "  stats        items per state, receipts, media files and bytes\n"
    "               (list, show, revoke, gc and stats take --json; an ID may\n"
    "               be a unique prefix of at least 6 digits)\n"
    "\n"
    "options:\n"
    "  -c, --config FILE   read mediamail.conf from FILE\n"
    "  --set k=v           override a key, e.g. --set gateway.listen=127.0.0.1:8443\n"
    "  -h, --help          this text, and the keys read\n"
    "\n"
    "The server answers GET and HEAD for <public_url>/m/<id>/<token>[/<name>]\n"
    "and takes receipts as POST <public_url>/m/<id>/<token>/receipt (docs/gateway-api.md).\n"
    "Signals: SIGTERM or SIGINT stop the server cleanly.\n";

int usage_error(const std::string& msg)
{
    std::fprintf(stderr, "mm-gateway: %s\n%s", msg.c_str(), kUsage);
    return 64;   // EX_USAGE, as every MediaMail program
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
        return 1;
    }
    mm::Store store(cfg);
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
            return 1;
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

int cmd_serve(const mm::Config& cfg)
{
    // Block the stop signals in every thread (they inherit this mask) and wait
    // for them here: no work in a signal handler.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    std::signal(SIGPIPE, SIG_IGN);   // a peer closing mid-transfer is an error return, not a death

    mm::Gateway gw(cfg);
    gw.start();
    std::fprintf(stderr, "mm-gateway: listening on https://%s\nmm-gateway: pin %s\n", gw.address().c_str(),
                 gw.pin().c_str());
    std::fflush(stderr);
    int sig = 0;
    sigwait(&stop, &sig);
    mm::log_info(std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    gw.stop();
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
        std::fputs(("\n" + mm::config_help({"store.dir", "gateway.", "log."})).c_str(), stdout);
        return 0;
    }
    std::string command = args.rest.empty() ? "serve" : args.rest[0];
    try {
        mm::Config cfg = mm::Config::load(args.config_path, args.overrides);
        cfg.verify("gateway");
        mm::log_init("mm-gateway", cfg.word("log.level"));
        if (command == "serve") {
            if (args.rest.size() > 1)
                return usage_error("serve takes no arguments");
            Poco::Net::initializeSSL();
            int rc = cmd_serve(cfg);
            Poco::Net::uninitializeSSL();
            return rc;
        }
        if (command == "put")
            return cmd_put(cfg, args.rest);
        if (mm::is_admin_command(command))
            return mm::run_admin(cfg, args.rest);
        return usage_error("unknown command " + mm::printable(command, 40));
    } catch (const mm::ConfigError& e) {
        std::fprintf(stderr, "mm-gateway: configuration: %s\n", e.what());
        return 78;   // EX_CONFIG
    } catch (const Poco::Exception& e) {
        std::fprintf(stderr, "mm-gateway: %s\n", e.displayText().c_str());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mm-gateway: %s\n", e.what());
        return 1;
    }
}
