// program.cpp - the start-up and service behaviour shared by mm-gateway,
// mm-milter, mm-fetcher and mmsend (see program.h): version, default config
// path, --check, logging set-up, listening sockets, privilege drop, reload report.
#include "core/program.h"

#include "core/log.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MM_VERSION
#define MM_VERSION "unknown"
#endif
#ifndef MM_SYSCONFDIR
#define MM_SYSCONFDIR "/etc"
#endif

namespace mm {

namespace {

bool reads_key(const ProgramSpec& spec, const std::string& key)
{
    return std::any_of(spec.keys.begin(), spec.keys.end(),
                       [&](const std::string& p) { return key.compare(0, p.size(), p) == 0; });
}

bool file_exists(const std::string& path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

/// A number-only name ("1000") as an id.
bool numeric_id(const std::string& s, unsigned& out)
{
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

// The checks of config_problems, each adding "ORIGIN: bad value for KEY = 'V': why".
struct Checker {
    const Config& cfg;
    std::vector<std::string>& out;

    void fail(const std::string& key, const std::string& why) { out.push_back(cfg.invalid(key, why).what()); }

    void readable_file(const std::string& key)
    {
        const std::string& path = cfg.str(key);
        if (!path.empty() && access(path.c_str(), R_OK) != 0)
            fail(key, std::string("cannot be read by this user: ") + std::strerror(errno));
    }

    /// A directory the program writes in: it exists and is writable, or (when the
    /// program creates it) its parent is.
    void writable_dir(const std::string& key, bool may_create)
    {
        const std::string& path = cfg.str(key);
        struct stat st;
        if (stat(path.c_str(), &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                fail(key, "not a directory");
            else if (access(path.c_str(), W_OK | X_OK) != 0)
                fail(key, std::string("not writable by this user: ") + std::strerror(errno));
            return;
        }
        if (errno != ENOENT || !may_create) {
            fail(key, std::strerror(errno));
            return;
        }
        std::string parent = path.substr(0, path.find_last_of('/'));
        if (parent.empty())
            parent = "/";
        if (access(parent.c_str(), W_OK | X_OK) != 0)
            fail(key, "does not exist and cannot be created in " + parent + ": " + std::strerror(errno));
    }

    void user(const std::string& key)
    {
        RunAs r;
        std::string err;
        if (!cfg.str(key).empty() && !resolve_run_as(cfg.str(key), r, err))
            fail(key, err);
    }
};

} // namespace

std::string version_line(const std::string& program) { return program + " (MediaMail) " MM_VERSION; }

std::string default_config_path() { return MM_SYSCONFDIR "/mediamail/mediamail.conf"; }

std::string exit_code_help()
{
    std::string out = "exit codes (docs/exit-codes.md):\n";
    for (const auto& e : kExitCodes) {
        std::string n = std::to_string(code(e.exit));
        out += "  " + std::string(3 - std::min<size_t>(3, n.size()), ' ') + n + "  " + e.name +
               std::string(16 - std::min<size_t>(15, std::strlen(e.name)), ' ') + e.meaning + "\n";
    }
    return out;
}

std::string program_help(const ProgramSpec& spec)
{
    std::string out = "\nWithout -c the configuration is " + default_config_path() +
                      " if it exists, else the built-in defaults.\n\n";
    std::string keys;
    for (const auto& k : config_keys())
        if (reads_key(spec, k.key))
            keys += "  " + k.key + " (" + k.syntax + "; default " + (k.default_value.empty() ? "empty" : k.default_value) +
                    ")\n      " + k.description + "\n";
    return out + "keys read (see conf/mediamail.conf):\n" + keys + "\n" + exit_code_help();
}

Config load_program_config(const std::string& config_path, const std::vector<std::string>& overrides,
                           const ProgramSpec& spec)
{
    std::string path = config_path;
    if (path.empty()) {
        if (file_exists(default_config_path()))
            path = default_config_path();
    } else if (struct stat st; stat(path.c_str(), &st) != 0) {
        throw ExitError(Exit::no_input, "configuration file " + path + ": " + std::strerror(errno));
    } else if (access(path.c_str(), R_OK) != 0) {
        throw ExitError(Exit::config, "configuration file " + path + ": " + std::strerror(errno));
    }
    try {
        Config cfg = Config::load(path, overrides);
        cfg.verify(spec.role);
        return cfg;
    } catch (const ConfigError& e) {
        throw ExitError(Exit::config, e.what());
    }
}

std::string public_url_problem(const Config& cfg)
{
    const std::string& url = cfg.str("gateway.public_url");
    size_t start = url.find("://");
    start = start == std::string::npos ? 0 : start + 3;
    std::string host = url.substr(start, url.find_first_of("/?#", start) - start);
    if (!host.empty() && host[0] == '[')
        host = host.substr(1, host.find(']') - 1);
    else
        host = host.substr(0, host.rfind(':'));
    // Without a listener (gateway.relay only) the URL names the relay, which this check cannot judge.
    if (cfg.str("gateway.listen").empty())
        return "";
    if (loopback_host(host) && !loopback_host(cfg.hostport("gateway.listen").host))
        return "names this machine's loopback (" + host + ") while gateway.listen = " + cfg.str("gateway.listen") +
               " serves others: every handle would send receivers to their own machine";
    return "";
}

std::vector<std::string> config_problems(const Config& cfg, const ProgramSpec& spec)
{
    std::vector<std::string> out;
    Checker c{cfg, out};
    const std::string& role = spec.role;
    if (!cfg.str("log.file").empty() && cfg.is("log.target", "file")) {
        std::string f = cfg.str("log.file");
        bool ok = file_exists(f) ? access(f.c_str(), W_OK) == 0
                                 : access(f.substr(0, std::max<size_t>(1, f.find_last_of('/'))).c_str(), W_OK | X_OK) == 0;
        if (!ok)
            c.fail("log.file", std::string("cannot be written by this user: ") + std::strerror(errno));
    }
    if (!spec.user_key.empty())
        c.user(spec.user_key);
    if (role == "gateway" || role == "milter") {
        c.writable_dir("store.dir", true);
        c.readable_file("gateway.tls_cert");
        c.readable_file("gateway.tls_key");
    }
    if (role == "gateway") {
        if (std::string why = public_url_problem(cfg); !why.empty())
            c.fail("gateway.public_url", why);
        if (cfg.is("gateway.after_delivery", "archive"))
            c.writable_dir("gateway.archive_dir", true);
        c.readable_file("gateway.relay_key");   // their contents: gateway/relay.cpp's relay_problems()
        c.readable_file("gateway.relay_known_hosts");
    } else if (role == "milter") {
        std::string err;
        gid_t g;
        if (!cfg.str("milter.socket_group").empty() && !resolve_group(cfg.str("milter.socket_group"), g, err))
            c.fail("milter.socket_group", err);
        const std::string& sock = cfg.str("milter.socket");
        if (sock.rfind("unix:", 0) == 0 || sock.rfind("local:", 0) == 0) {
            std::string path = sock.substr(sock.find(':') + 1);
            std::string dir = path.substr(0, std::max<size_t>(1, path.find_last_of('/')));
            if (path.empty() || path[0] != '/')
                c.fail("milter.socket", "a unix socket needs an absolute path");
            else if (access(dir.c_str(), W_OK | X_OK) != 0)
                c.fail("milter.socket", "cannot create the socket in " + dir + ": " + std::strerror(errno));
        }
    } else if (role == "fetcher") {
        c.writable_dir("fetcher.cache_dir", true);
        c.readable_file("fetcher.upstream_ca");
        c.readable_file("fetcher.tls_cert");
        c.readable_file("fetcher.tls_key");
        if (cfg.duration("fetcher.prefetch_interval").count() > 0) {
            c.readable_file("fetcher.prefetch_password_file");
            if (cfg.str("fetcher.prefetch_password_file").empty())
                c.fail("fetcher.prefetch_password_file", "fetcher.prefetch_interval needs the password");
        }
        const std::string& clamd = cfg.str("fetcher.clamd");
        if (clamd.rfind("unix:", 0) == 0 && !file_exists(clamd.substr(5)))
            c.fail("fetcher.clamd", std::string("no socket there: ") + std::strerror(errno));
    } else if (role == "mmsend") {
        // No store check: mmsend without media to detach never opens the store.
        if (cfg.str("mmsend.smtp") == "sendmail" && access(cfg.str("mmsend.sendmail").c_str(), X_OK) != 0)
            c.fail("mmsend.sendmail", std::string("cannot be run by this user: ") + std::strerror(errno));
        if (!cfg.str("mmsend.user").empty())
            c.readable_file("mmsend.password_file");
        c.readable_file("mmsend.ca_file");
        c.writable_dir("mmsend.spool_dir", false);
    }
    return out;
}

std::string non_default_settings(const Config& cfg, const ProgramSpec& spec)
{
    // config_keys() is in table order; postconf -n sorts by name.
    std::vector<std::string> lines;
    for (const auto& k : config_keys())
        if (reads_key(spec, k.key) && cfg.origin(k.key) != "default")
            lines.push_back(k.key + " = " + cfg.str(k.key));
    std::sort(lines.begin(), lines.end());
    std::string out;
    for (const auto& l : lines)
        out += l + "\n";
    return out;
}

int run_check(const Config& cfg, const ProgramSpec& spec)
{
    std::vector<std::string> problems = config_problems(cfg, spec);
    for (const auto& p : problems)
        std::fprintf(stderr, "%s: %s\n", spec.name.c_str(), p.c_str());
    std::fputs(non_default_settings(cfg, spec).c_str(), stdout);
    return problems.empty() ? code(Exit::ok) : code(Exit::config);
}

void setup_logging(const Config& cfg, const std::string& program)
{
    LogOptions o;
    o.program = program;
    o.level = cfg.word("log.level");
    o.target = cfg.is("log.target", "syslog") ? LogTarget::syslog
               : cfg.is("log.target", "file") ? LogTarget::file
                                               : LogTarget::standard_error;
    o.facility = cfg.word("log.facility");
    o.file = cfg.str("log.file");
    std::string err;
    if (!log_open(o, err))
        throw ExitError(Exit::cant_create, err);
}

ExitError listen_failure(const std::string& key, const std::string& where, int err)
{
    switch (err) {
    case EADDRINUSE:
        return ExitError(Exit::unavailable, key + ": " + where + " is in use");
    case EADDRNOTAVAIL:
        return ExitError(Exit::unavailable, key + ": " + where + " is not an address of this machine");
    case EACCES:
        return ExitError(Exit::permission,
                         key + ": " + where + ": permission denied (a port below 1024 needs root)");
    default:
        return ExitError(Exit::unavailable, key + ": cannot listen on " + where + ": " + std::strerror(err));
    }
}

int listen_on(const std::string& key, const HostPort& hp)
{
    std::string where = hp.host + ":" + std::to_string(hp.port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(hp.host.c_str(), std::to_string(hp.port).c_str(), &hints, &res); rc != 0)
        throw ExitError(Exit::config, key + ": cannot resolve " + hp.host + ": " + gai_strerror(rc));
    int fd = -1, err = 0;
    for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        // SO_REUSEADDR only: a restart may bind over TIME_WAIT, but never a second
        // listener beside a live one (no SO_REUSEPORT).
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        throw listen_failure(key, where, err);
    return fd;
}

bool resolve_group(const std::string& name, gid_t& out, std::string& err)
{
    unsigned id;
    if (numeric_id(name, id)) {
        out = id;
        return true;
    }
    std::vector<char> buf(16384);
    group gr, *res = nullptr;
    if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || !res) {
        err = "no group '" + name + "'";
        return false;
    }
    out = res->gr_gid;
    return true;
}

bool resolve_run_as(const std::string& spec, RunAs& out, std::string& err)
{
    std::string user, group;
    if (!parse_user_group(spec, user, group)) {
        err = "expected user or user:group";
        return false;
    }
    std::vector<char> buf(16384);
    passwd pw, *res = nullptr;
    unsigned id;
    int rc = numeric_id(user, id) ? getpwuid_r(id, &pw, buf.data(), buf.size(), &res)
                                  : getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &res);
    if (rc != 0 || !res) {
        err = "no user '" + user + "'";
        return false;
    }
    out.uid = res->pw_uid;
    out.gid = res->pw_gid;
    out.user = res->pw_name;
    if (out.uid == 0) {
        err = "'" + user + "' is root: name an unprivileged user";
        return false;
    }
    return group.empty() || resolve_group(group, out.gid, err);
}

void drop_privileges(const Config& cfg, const ProgramSpec& spec, const std::vector<std::string>& created)
{
    if (geteuid() != 0)
        return;
    const std::string value = spec.user_key.empty() ? "" : cfg.str(spec.user_key);
    if (value.empty()) {
        log_warning("running as root" +
                    (spec.user_key.empty() ? std::string() : ": set " + spec.user_key + " to run as an unprivileged user"));
        return;
    }
    RunAs r;
    std::string err;
    if (!resolve_run_as(value, r, err))
        throw ExitError(Exit::config, cfg.invalid(spec.user_key, err).what());
    std::vector<std::string> mine = created;
    if (cfg.is("log.target", "file"))
        mine.push_back(cfg.str("log.file"));
    for (const std::string& path : mine) {
        struct stat st {};
        // lchown: a link is never followed to a file of someone else's.
        if (lstat(path.c_str(), &st) == 0 && st.st_uid == 0 && lchown(path.c_str(), r.uid, r.gid) != 0)
            throw ExitError(Exit::permission,
                            spec.user_key + ": cannot give " + path + " to " + value + ": " + std::strerror(errno));
    }
    // Groups first: once the uid is gone, so is the right to change them.
    if (initgroups(r.user.c_str(), r.gid) != 0 || setgid(r.gid) != 0 || setuid(r.uid) != 0)
        throw ExitError(Exit::permission, spec.user_key + ": cannot switch to " + value + ": " + std::strerror(errno));
    if (setuid(0) == 0 || geteuid() == 0 || getegid() != r.gid)
        throw ExitError(Exit::permission, spec.user_key + ": root privileges could be regained after the switch");
    log_info("running as" + kv("user", r.user) + kv("uid", static_cast<unsigned long>(r.uid)) +
             kv("gid", static_cast<unsigned long>(r.gid)));
}

std::string reload_report(const Config& before, const Config& after, const ProgramSpec& spec,
                          const std::vector<std::string>& live)
{
    std::string applied, restart;
    for (const auto& k : config_keys()) {
        if (!reads_key(spec, k.key) || before.str(k.key) == after.str(k.key))
            continue;
        std::string& to = std::find(live.begin(), live.end(), k.key) != live.end() ? applied : restart;
        to += (to.empty() ? "" : ",") + k.key;
    }
    return "reloaded configuration" + kv("applied", applied.empty() ? "none" : applied) +
           kv("restart_needed", restart.empty() ? "none" : restart);
}

} // namespace mm
