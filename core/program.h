// program.h - what every MediaMail program does the same way around its own
// work: --version, the default configuration path, --check, the exit-code table
// in --help, logging set up from log.*, listening sockets that name their key,
// the switch to an unprivileged user and the SIGHUP reload report.
#pragma once

#include "core/config.h"
#include "core/exit_codes.h"

#include <string>
#include <sys/types.h>
#include <vector>

namespace mm {

/// What a program is, for the shared start-up code.
struct ProgramSpec {
    std::string name;                   // "mm-gateway"
    std::string role;                   // Config::verify's name: "gateway", "milter", "fetcher", "mmsend"
    std::vector<std::string> keys;      // key prefixes the program reads, as config_help takes them
    std::string user_key;               // "gateway.user", or empty when the program never switches user
};

/// "mm-gateway (MediaMail) 0.1.0": the CMake project version.
std::string version_line(const std::string& program);

/// <sysconfdir>/mediamail/mediamail.conf, the file read when -c is absent.
std::string default_config_path();

/// The exit-code table for --help, from kExitCodes.
std::string exit_code_help();

/// --help's tail: the keys the program reads, then the exit codes.
std::string program_help(const ProgramSpec& spec);

/// The configuration a program runs with: -c FILE (which must exist: 66 if not),
/// else default_config_path() when it exists, else the built-in defaults; then
/// --set; then Config::verify. Throws ExitError (66 or 78) naming the file or key.
Config load_program_config(const std::string& config_path, const std::vector<std::string>& overrides,
                           const ProgramSpec& spec);

/// The checks --check makes beyond load_program_config: paths exist with usable
/// permissions for the running user, users and groups exist, public_url suits
/// listen. One line per problem, each naming its key; empty when all is well.
std::vector<std::string> config_problems(const Config& cfg, const ProgramSpec& spec);

/// `key = value` for each key of the program set away from its default (from the
/// file or --set), sorted, like postconf -n. Secrets are only ever paths to files.
std::string non_default_settings(const Config& cfg, const ProgramSpec& spec);

/// --check: prints the problems (stderr) and the non-default settings (stdout);
/// returns 0 or 78.
int run_check(const Config& cfg, const ProgramSpec& spec);

/// Why gateway.public_url would send receivers somewhere they cannot reach
/// (localhost while gateway.listen is not loopback), or "".
std::string public_url_problem(const Config& cfg);

/// Logging from log.level, log.target, log.facility and log.file. Throws
/// ExitError (73) when log.file cannot be opened.
void setup_logging(const Config& cfg, const std::string& program);

/// The exit error for a listening socket that cannot be bound: 69 (in use, or
/// not an address of this machine), 77 (a privileged port); the message names
/// the key: "gateway.listen: 127.0.0.1:8443 is in use".
ExitError listen_failure(const std::string& key, const std::string& where, int err);

/// A bind() or listen() that failed, thrown by code that does not know its key
/// (the gateway's front end); the program turns it into listen_failure().
struct BindError : std::runtime_error {
    BindError(const std::string& where, int err)
        : std::runtime_error("cannot listen on " + where + ": " + std::to_string(err)), where(where), err(err)
    {
    }
    std::string where;
    int err;
};

/// A TCP listening socket on `hp` (SO_REUSEADDR, never SO_REUSEPORT: one
/// listener per port). Throws listen_failure(key, ...).
int listen_on(const std::string& key, const HostPort& hp);

/// A resolved user[:group]: the group defaults to the user's primary group.
struct RunAs {
    uid_t uid = 0;
    gid_t gid = 0;
    std::string user;
};
/// Looks `spec` up in the user and group databases; false with `err` if it fails.
bool resolve_run_as(const std::string& spec, RunAs& out, std::string& err);
/// Looks a group name or number up; false with `err` if it fails.
bool resolve_group(const std::string& name, gid_t& out, std::string& err);

/// Called once the program has bound its sockets and opened its files. As root
/// with spec.user_key set: initgroups, setgid, setuid, then checks that root
/// cannot be regained (ExitError 77 if anything fails). As root without it: a
/// warning. Not root: nothing.
/// Before the switch, `created` (the files and directories the program may have
/// made as root, e.g. its store's) and log.file are given to the user when they
/// exist and belong to root: else the program could not write them once it runs
/// as the user, nor could the other programs running as it. Not recursive.
void drop_privileges(const Config& cfg, const ProgramSpec& spec, const std::vector<std::string>& created = {});

/// The SIGHUP report: the program's keys whose value differs between `before`
/// and `after`, split into those in `live` (applied now) and the others (which
/// need a restart). The line: "reloaded configuration applied=a,b restart_needed=c".
std::string reload_report(const Config& before, const Config& after, const ProgramSpec& spec,
                          const std::vector<std::string>& live);

} // namespace mm
