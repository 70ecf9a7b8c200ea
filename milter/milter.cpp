// milter.cpp - the libmilter callbacks of mm-milter (Sendmail milter protocol 6,
// as Postfix speaks it): spool each message to a file, detach its media into the
// store at end of message, and hand the rewritten body back in 64 KiB chunks.
//
// Reads milter.min_size, milter.types, milter.on_error, milter.max_message_size,
// milter.apply_to, milter.trusted_networks, milter.max_size, milter.over_max_size,
// milter.rewrite_signed_dkim and store.dir (the spool lives in store.dir/spool).
// Postfix macros used: {auth_authen} (MAIL FROM; also whom milter.sender_quota counts), i (queue id: MAIL FROM, end of
// headers, end of message).
#include "milter/milter.h"
#include "milter/intake.h"

#include "core/exit_codes.h"
#include "core/log.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <strings.h>
#include <libmilter/mfapi.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace mm {

namespace {

constexpr size_t kReplaceChunk = 64 * 1024;   // smfi_replacebody chunk bound

MilterSettings* g_settings = nullptr;

/// Per-connection context, created at negotiation and freed at close.
struct Connection {
    std::string client;
    bool trusted = false;   // client address in milter.trusted_networks
    unsigned long no_reply = 0;   // SMFIP_NR_* flags Postfix agreed to
    Intake msg{*g_settings};
};

Connection* conn_of(SMFICTX* ctx) { return static_cast<Connection*>(smfi_getpriv(ctx)); }

std::string queue_id(SMFICTX* ctx)
{
    const char* qid = smfi_getsymval(ctx, const_cast<char*>("i"));
    return qid ? printable(qid, 40) : "?";
}

/// The one log line per message: queue id, action, sizes, time, then the
/// fields that trace it (queue_id=, message_id=, item=, hash=).
void log_outcome(SMFICTX* ctx, const Intake& m, const std::string& action, const std::string& sizes,
                 const std::string& more = "")
{
    log_info("queue " + queue_id(ctx) + ": " + action + ", " + sizes + " bytes, " + std::to_string(m.elapsed_ms()) +
             " ms" + more + kv("queue_id", queue_id(ctx)) + m.trace_fields());
}

/// The one place that turns an internal failure into a verdict for the MTA:
/// tempfail (the client retries later, nothing is lost) or accept unchanged.
sfsistat on_internal_error(SMFICTX* ctx, const std::string& why)
{
    Connection* c = conn_of(ctx);
    bool accept = g_settings->on_error == OnError::accept;
    log_error("queue " + queue_id(ctx) + ": " + why + "; answering " + (accept ? "accept" : "tempfail"));
    if (c)
        c->msg.reset();
    if (accept)
        return SMFIS_ACCEPT;
    smfi_setreply(ctx, const_cast<char*>("451"), const_cast<char*>("4.3.0"),
                  const_cast<char*>("MediaMail could not store an attachment, try again later"));
    return SMFIS_TEMPFAIL;
}

/// What a callback answers when all is well: nothing at all, when Postfix agreed
/// not to wait for that reply (one round trip less per header line).
sfsistat fine(const Connection* c, unsigned long nr_flag)
{
    return c && (c->no_reply & nr_flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/// Negotiation: ask only for the events and macros we use, and for no replies
/// where we always continue. Each macro packet and each reply is a round trip
/// on the milter socket for every mail, media or not.
sfsistat cb_negotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                      unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3)
{
    auto* c = new Connection;
    smfi_setpriv(ctx, c);
    *pf0 = f0 & (SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_SETSYMLIST);
    ProtocolFlags want = protocol_flags(g_settings->socket);
    *pf1 = f1 & (want.skip | want.no_reply);
    c->no_reply = *pf1 & want.no_reply;
    *pf2 = 0;
    *pf3 = 0;
    if (*pf0 & SMFIF_SETSYMLIST) {
        smfi_setsymlist(ctx, SMFIM_CONNECT, const_cast<char*>("j"));
        smfi_setsymlist(ctx, SMFIM_ENVFROM, const_cast<char*>("i {auth_authen}"));
        smfi_setsymlist(ctx, SMFIM_EOM, const_cast<char*>("i"));
    }
    return SMFIS_CONTINUE;
}

sfsistat cb_connect(SMFICTX* ctx, char* hostname, _SOCK_ADDR* addr)
{
    Connection* c = conn_of(ctx);
    if (!c)
        c = new Connection;   // the MTA did not negotiate (older protocol)
    c->client = hostname ? printable(hostname, 80) : "?";
    c->trusted = address_in(addr, g_settings->trusted);
    smfi_setpriv(ctx, c);
    return fine(c, SMFIP_NR_CONN);
}

sfsistat cb_envfrom(SMFICTX* ctx, char** argv)
{
    Connection* c = conn_of(ctx);
    if (!c)
        return SMFIS_TEMPFAIL;
    c->msg.reset();
    // Only outgoing mail is rewritten: a receiving server must never pull media
    // out of inbound mail. Postfix sends {auth_authen} at MAIL FROM by default.
    const char* auth = smfi_getsymval(ctx, const_cast<char*>("{auth_authen}"));
    bool authenticated = auth && *auth;
    if (!g_settings->apply_to_all && !c->trusted && !authenticated) {
        // Accepted here, so Postfix sends this mail's headers and body nowhere near us.
        log_outcome(ctx, c->msg, "passed (not outgoing: client " + c->client + " neither trusted nor authenticated)",
                    "envelope only");
        return SMFIS_ACCEPT;
    }
    c->msg.begin();
    c->msg.sender(authenticated ? auth : "", argv && argv[0] ? argv[0] : "");
    return SMFIS_CONTINUE;
}

sfsistat cb_envrcpt(SMFICTX* ctx, char** argv)
{
    Connection* c = conn_of(ctx);
    if (c && argv && argv[0])
        c->msg.recipient(argv[0]);
    return fine(c, SMFIP_NR_RCPT);
}

/// DATA is only asked for over TCP, where its reply acknowledges the data
/// macros before Postfix sends the headers (see protocol_flags).
sfsistat cb_data(SMFICTX*)
{
    return SMFIS_CONTINUE;
}

sfsistat cb_header(SMFICTX* ctx, char* name, char* value)
{
    Connection* c = conn_of(ctx);
    if (!c || !c->msg.spooling())
        return fine(c, SMFIP_NR_HDR);
    // Only the engine's MIME parser reads these header lines; Postfix keeps its
    // own copy of the headers, so folded values just need CRLF line ends here.
    std::string line = std::string(name) + ": ";
    for (const char* p = value; *p; ++p) {
        if (*p == '\n' && (p == value || p[-1] != '\r'))
            line += '\r';
        line += *p;
    }
    line += "\r\n";
    c->msg.header(name, value, line);   // a spool failure is answered at body or end of message
    return fine(c, SMFIP_NR_HDR);
}

sfsistat cb_eoh(SMFICTX* ctx)
{
    Connection* c = conn_of(ctx);
    if (!c || !c->msg.spooling())
        return SMFIS_CONTINUE;
    if (!c->msg.end_of_headers()) {
        // A single text part: accepting now spares Postfix sending the body and
        // end of message, two round trips and a spool file for most mail.
        log_outcome(ctx, c->msg, "passed (no media: a single text part)", "headers only");
        c->msg.reset();
        return SMFIS_ACCEPT;
    }
    return SMFIS_CONTINUE;
}

sfsistat cb_body(SMFICTX* ctx, unsigned char* chunk, size_t len)
{
    Connection* c = conn_of(ctx);
    if (!c)
        return SMFIS_CONTINUE;
    if (!c->msg.body(reinterpret_cast<const char*>(chunk), len))
        return on_internal_error(ctx, c->msg.failed_why());
    return SMFIS_CONTINUE;
}

/// Sends [offset, end) of a file as the new body, in chunks of at most 64 KiB.
bool replace_body(SMFICTX* ctx, const std::string& path, uint64_t offset)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    std::string buf(kReplaceChunk, '\0');
    bool ok = true;
    for (;;) {
        ssize_t n = pread(fd, buf.data(), buf.size(), static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ok = n == 0;
            break;
        }
        if (smfi_replacebody(ctx, reinterpret_cast<unsigned char*>(buf.data()), static_cast<int>(n)) != MI_SUCCESS) {
            ok = false;
            break;
        }
        offset += static_cast<uint64_t>(n);
    }
    close(fd);
    return ok;
}

sfsistat cb_eom(SMFICTX* ctx)
{
    Connection* c = conn_of(ctx);
    if (!c)
        return SMFIS_CONTINUE;
    Intake& m = c->msg;
    Verdict v = m.finish([ctx] { smfi_progress(ctx); });
    switch (v.kind) {
    case Verdict::Kind::fail:
        return on_internal_error(ctx, v.text);
    case Verdict::Kind::reject:
        log_outcome(ctx, m, v.action, v.sizes);
        m.reset();
        smfi_setreply(ctx, const_cast<char*>("552"), const_cast<char*>("5.3.4"), v.text.data());
        return SMFIS_REJECT;
    case Verdict::Kind::over_quota:
        // This message only: the client keeps it and retries; other mail passes.
        log_outcome(ctx, m, v.action, v.sizes);
        m.reset();
        smfi_setreply(ctx, const_cast<char*>("452"), const_cast<char*>("4.3.1"), v.text.data());
        return SMFIS_TEMPFAIL;
    case Verdict::Kind::pass:
        log_outcome(ctx, m, v.action, v.sizes);
        m.reset();
        return SMFIS_CONTINUE;
    case Verdict::Kind::detached:
        break;
    }
    // The engine's output starts with the X-Media-Handles header; Postfix adds
    // ours to its own copy of the headers and takes the body from the file.
    std::string count = std::to_string(v.detached);
    bool ok = smfi_addheader(ctx, const_cast<char*>("X-Media-Handles"), count.data()) == MI_SUCCESS &&
              replace_body(ctx, v.out_path, v.out_body_offset);
    if (!ok)
        return on_internal_error(ctx, "could not hand the rewritten body to the MTA");
    const char* qid = smfi_getsymval(ctx, const_cast<char*>("i"));
    m.record_trace(qid ? qid : "");
    log_outcome(ctx, m, v.action, v.sizes, " (end of message " + std::to_string(v.eom_ms) + " ms)");
    m.reset();
    return SMFIS_CONTINUE;
}

sfsistat cb_abort(SMFICTX* ctx)
{
    if (Connection* c = conn_of(ctx))
        c->msg.reset();
    return SMFIS_CONTINUE;
}

sfsistat cb_close(SMFICTX* ctx)
{
    Connection* c = conn_of(ctx);
    if (c) {
        delete c;
        smfi_setpriv(ctx, nullptr);
    }
    return SMFIS_CONTINUE;
}

} // namespace

namespace {

/// Whether something accepts connections on the unix socket `path` now.
bool unix_socket_answers(const std::string& path)
{
    sockaddr_un sa{};
    if (path.size() >= sizeof sa.sun_path)
        return false;
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool live = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    close(fd);
    return live;
}

} // namespace

void open_milter(MilterSettings& settings, unsigned mode, long group)
{
    g_settings = &settings;
    struct smfiDesc desc {};
    desc.xxfi_name = const_cast<char*>("mm-milter");
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGBODY;
    desc.xxfi_connect = cb_connect;
    desc.xxfi_envfrom = cb_envfrom;
    desc.xxfi_envrcpt = cb_envrcpt;
    desc.xxfi_data = cb_data;
    desc.xxfi_header = cb_header;
    desc.xxfi_eoh = cb_eoh;
    desc.xxfi_body = cb_body;
    desc.xxfi_eom = cb_eom;
    desc.xxfi_abort = cb_abort;
    desc.xxfi_close = cb_close;
    desc.xxfi_negotiate = cb_negotiate;

    const std::string& sock = settings.socket;
    if (smfi_setconn(settings.socket.data()) != MI_SUCCESS)
        throw ExitError(Exit::config, "milter.socket = '" + sock + "' is not a usable milter socket");
    if (smfi_register(desc) != MI_SUCCESS)
        throw ExitError(Exit::software, "smfi_register failed");
    std::string path;
    for (const char* prefix : {"unix:", "local:"})
        if (sock.rfind(prefix, 0) == 0)
            path = sock.substr(std::strlen(prefix));
    // libmilter removes an existing socket file before binding: a second milter
    // would silently take the first one's socket over. Refuse instead.
    if (!path.empty() && unix_socket_answers(path))
        throw ExitError(Exit::unavailable, "milter.socket: " + sock + " is in use");
    // The socket is created with the umask's mode: make that the wanted one, so
    // there is no moment where it is wider, then set it exactly.
    mode_t old_mask = umask(static_cast<mode_t>(~mode & 0777));
    errno = 0;
    bool opened = smfi_opensocket(true) == MI_SUCCESS;
    int e = errno;
    umask(old_mask);
    if (!opened) {
        if (e == EADDRINUSE)
            throw ExitError(Exit::unavailable, "milter.socket: " + sock + " is in use");
        throw ExitError(Exit::unavailable, "milter.socket: cannot listen on " + sock +
                                               (e ? std::string(": ") + std::strerror(e) : std::string()));
    }
    if (!path.empty()) {
        if (chmod(path.c_str(), mode) != 0)
            throw ExitError(Exit::permission, "milter.socket_mode: cannot chmod " + path + ": " + std::strerror(errno));
        if (group >= 0 && chown(path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(group)) != 0)
            throw ExitError(Exit::permission,
                            "milter.socket_group: cannot chown " + path + ": " + std::strerror(errno));
    }
    log_info("listening" + kv("socket", sock));
}

int serve_milter() { return smfi_main() == MI_SUCCESS ? 0 : code(Exit::software); }

void stop_milter() { smfi_stop(); }

} // namespace mm
