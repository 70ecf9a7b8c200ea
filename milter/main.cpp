// main.cpp - mm-milter: detaches media attachments from outgoing mail inside
// Postfix (smtpd_milters / non_smtpd_milters). See docs/postfix.md.
#include "milter.h"

#include "mime/config.h"
#include "mime/log.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>

namespace {

const char kUsage[] =
    "usage: mm-milter [-c FILE] [--set section.key=value]...\n"
    "\n"
    "Postfix milter that replaces large video and audio attachments by a small\n"
    "location part and keeps the media in the sender's store for mm-gateway.\n"
    "\n"
    "  -c, --config FILE   configuration file (INI), see mediamail.conf(5)\n"
    "      --set K=V       override one key, e.g. --set milter.min_size=5M\n"
    "  -h, --help          this text\n"
    "\n"
    "Keys read: store.dir, gateway.public_url, gateway.retention, gateway.tls_cert,\n"
    "gateway.tls_key, milter.socket, milter.min_size, milter.types, milter.on_error,\n"
    "milter.max_message_size, milter.apply_to, milter.trusted_networks, milter.max_size,\n"
    "milter.over_max_size, milter.rewrite_signed_dkim, log.level.\n";

} // namespace

int main(int argc, char** argv)
{
    mm::MilterSettings s;
    try {
        mm::CommonArgs args = mm::parse_common_args(argc, argv);
        if (args.help) {
            fputs(kUsage, stdout);
            return 0;
        }
        if (!args.rest.empty()) {
            fprintf(stderr, "mm-milter: unexpected argument '%s'\n%s", args.rest[0].c_str(), kUsage);
            return 64;
        }
        mm::Config cfg = mm::Config::load(args.config_path, args.overrides);
        mm::log_init("mm-milter", cfg.str("log.level"));
        s.socket = cfg.str("milter.socket");
        s.on_error = cfg.str("milter.on_error");
        s.max_message_size = cfg.size("milter.max_message_size");
        s.policy.min_size = cfg.size("milter.min_size");
        s.policy.types = cfg.list("milter.types");
        s.policy.max_size = cfg.size("milter.max_size");
        s.policy.reject_over_max = cfg.str("milter.over_max_size") == "reject";
        s.apply_to_all = cfg.str("milter.apply_to") == "all";
        s.rewrite_signed_dkim = cfg.boolean("milter.rewrite_signed_dkim");
        for (const std::string& net : cfg.list("milter.trusted_networks")) {
            mm::Cidr c;
            if (!mm::parse_cidr(net, c))
                throw mm::ConfigError("milter.trusted_networks: '" + net + "' is not an address or ADDRESS/PREFIX");
            s.trusted.push_back(c);
        }
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
    return mm::run_milter(s);
}
