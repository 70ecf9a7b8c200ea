// milter.cpp - the libmilter callbacks of mm-milter (Sendmail milter protocol 6,
// as Postfix speaks it): spool each message to a file, detach its media into the
// store at end of message, and hand the rewritten body back in 64 KiB chunks.
//
// Reads milter.min_size, milter.types, milter.on_error, milter.max_message_size,
// milter.apply_to, milter.trusted_networks, milter.max_size, milter.over_max_size,
// milter.rewrite_signed_dkim and store.dir (the spool lives in store.dir/spool).
// Postfix macros used: {auth_authen} (MAIL FROM), i (queue id: MAIL FROM, end of
// headers, end of message).
#include "milter.h"
#include "prescan_thread.h"

#include "mime/log.h"
#include "gateway/store_sink.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <strings.h>
#include <libmilter/mfapi.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

constexpr size_t kReplaceChunk = 64 * 1024;   // smfi_replacebody chunk bound
constexpr size_t kHeadBuffer = 64 * 1024;     // header bytes kept in memory before a spool file exists

MilterSettings* g_settings = nullptr;

/// Per-message state: the spool file and what the envelope said.
struct Message {
    bool spooling = false;  // the message is being kept for end of message
    std::string head;       // spooled bytes not yet in a file: the file is created only
                            // once the headers show the mail may hold media (or they grow
                            // past kHeadBuffer), as creating it costs more than the rest
                            // of a plain mail's milter work
    std::string spool_path;
    int fd = -1;
    uint64_t size = 0;
    std::string pass_why;   // set when this message passes untouched; nothing is spooled
    std::string failed_why; // a spool error in a callback that may not reply; answered later
    std::vector<std::string> recipients;
    std::vector<std::string> content_types;   // top-level Content-Type values
    std::vector<std::string> encodings;       // top-level Content-Transfer-Encoding values
    std::chrono::steady_clock::time_point started;
    // Media decoded while the body arrives (declared after pre_sink: destroyed first).
    std::unique_ptr<StoreSink> pre_sink;
    std::unique_ptr<PrescanThread> prescan;
    std::unique_ptr<ParseThread> parse;   // GMime's parse of the spool file, as it grows
};

/// Per-connection context, created at connect and freed at close.
struct Connection {
    std::string client;
    bool trusted = false;   // client address in milter.trusted_networks
    unsigned long no_reply = 0;   // SMFIP_NR_* flags Postfix agreed to
    Message msg;
};

void drop_message(Message& m)
{
    m.parse.reset();
    m.prescan.reset();   // joins its thread; unused temp files in the store go
    if (m.fd >= 0)
        close(m.fd);
    if (!m.spool_path.empty())
        unlink(m.spool_path.c_str());
    m = Message{};
}

Connection* conn_of(SMFICTX* ctx) { return static_cast<Connection*>(smfi_getpriv(ctx)); }

/// The message will pass untouched: stop spooling, keep counting its size for the log.
void pass_untouched(Message& m, std::string why)
{
    m.parse.reset();
    m.prescan.reset();
    if (m.fd >= 0)
        close(m.fd);
    if (!m.spool_path.empty())
        unlink(m.spool_path.c_str());
    m.fd = -1;
    m.spool_path.clear();
    m.spooling = false;
    m.head.clear();
    m.head.shrink_to_fit();
    m.pass_why = std::move(why);
}

uint64_t elapsed_ms(const Message& m)
{
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - m.started).count());
}

std::string queue_id(SMFICTX* ctx)
{
    const char* qid = smfi_getsymval(ctx, const_cast<char*>("i"));
    return qid ? printable(qid, 40) : "?";
}

/// The one log line per message: queue id, action, sizes, time.
void log_outcome(SMFICTX* ctx, const Message& m, const std::string& action, const std::string& sizes,
                 const std::string& more = "")
{
    log_info("queue " + queue_id(ctx) + ": " + action + ", " + sizes + " bytes, " + std::to_string(elapsed_ms(m)) +
             " ms" + more);
}

bool write_all(int fd, const char* p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += n;
        len -= static_cast<size_t>(n);
    }
    return true;
}

/// Creates the spool file and moves the buffered head into it. On failure
/// errno says why; setting m.failed_why is the caller's.
bool open_spool(Message& m)
{
    if (m.fd >= 0)
        return true;
    std::string path = g_settings->spool_dir + "/msg.XXXXXX";
    m.fd = mkostemp(path.data(), O_CLOEXEC);
    if (m.fd < 0)
        return false;
    m.spool_path = path;
    bool ok = write_all(m.fd, m.head.data(), m.head.size());
    m.head.clear();
    m.head.shrink_to_fit();
    return ok;
}

/// Appends to the spooled message: in memory while it is small, else to the file.
bool spool_write(Message& m, const void* data, size_t len)
{
    const char* p = static_cast<const char*>(data);
    if (m.fd < 0 && m.head.size() + len <= kHeadBuffer) {
        m.head.append(p, len);
        m.size += len;
        return true;
    }
    if (!open_spool(m) || !write_all(m.fd, p, len))
        return false;   // the message is answered with a failure: its size no longer matters
    m.size += len;
    return true;
}

/// The one place that turns an internal failure into a verdict for the MTA:
/// tempfail (the client retries later, nothing is lost) or accept unchanged.
sfsistat on_internal_error(SMFICTX* ctx, const std::string& why)
{
    Connection* c = conn_of(ctx);
    log_error("queue " + queue_id(ctx) + ": " + why + "; answering " + g_settings->on_error);
    if (c)
        drop_message(c->msg);
    if (g_settings->on_error == "accept")
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

sfsistat cb_envfrom(SMFICTX* ctx, char**)
{
    Connection* c = conn_of(ctx);
    if (!c)
        return SMFIS_TEMPFAIL;
    drop_message(c->msg);
    c->msg.started = std::chrono::steady_clock::now();
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
    c->msg.spooling = true;
    return SMFIS_CONTINUE;
}

sfsistat cb_envrcpt(SMFICTX* ctx, char** argv)
{
    Connection* c = conn_of(ctx);
    if (c && argv && argv[0]) {
        std::string r = argv[0];
        if (r.size() >= 2 && r.front() == '<' && r.back() == '>')
            r = r.substr(1, r.size() - 2);
        if (c->msg.recipients.size() < 1000)
            c->msg.recipients.push_back(r);
    }
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
    if (!c || !c->msg.spooling || !c->msg.failed_why.empty())
        return fine(c, SMFIP_NR_HDR);
    if (strcasecmp(name, "Content-Type") == 0 && c->msg.content_types.size() < 2)
        c->msg.content_types.emplace_back(value);
    else if (strcasecmp(name, "Content-Transfer-Encoding") == 0 && c->msg.encodings.size() < 2)
        c->msg.encodings.emplace_back(value);
    if (!g_settings->rewrite_signed_dkim && strcasecmp(name, "DKIM-Signature") == 0) {
        // Rewriting the body would break the signature; mm-milter belongs before the signer.
        pass_untouched(c->msg, "DKIM-signed (milter.rewrite_signed_dkim = false)");
        return fine(c, SMFIP_NR_HDR);
    }
    // Only the engine's MIME parser reads these header lines; Postfix keeps its
    // own copy of the headers, so folded values just need CRLF line ends here.
    std::string line = std::string(name) + ": ";
    for (const char* p = value; *p; ++p) {
        if (*p == '\n' && (p == value || p[-1] != '\r'))
            line += '\r';
        line += *p;
    }
    line += "\r\n";
    if (!spool_write(c->msg, line.data(), line.size()))
        c->msg.failed_why = "cannot write spool file in " + g_settings->spool_dir + ": " + strerror(errno);   // answered at body/eom
    return fine(c, SMFIP_NR_HDR);
}

sfsistat cb_eoh(SMFICTX* ctx)
{
    Connection* c = conn_of(ctx);
    if (!c || !c->msg.spooling || !c->msg.failed_why.empty())
        return SMFIS_CONTINUE;
    if (headers_rule_out_media(c->msg.content_types, c->msg.encodings)) {
        // A single text part: accepting now spares Postfix sending the body and
        // end of message, two round trips and a spool file for most mail.
        log_outcome(ctx, c->msg, "passed (no media: a single text part)", "headers only");
        drop_message(c->msg);
        return SMFIS_ACCEPT;
    }
    Message& m = c->msg;
    bool ok = spool_write(m, "\r\n", 2);
    if (ok && m.fd < 0) {
        // The whole header block is still in memory: the prescan can see the
        // message from its first byte, as the engine will see the file.
        m.pre_sink = std::make_unique<StoreSink>(*g_settings->store, m.recipients, nullptr);
        m.prescan = std::make_unique<PrescanThread>(g_settings->policy, *m.pre_sink);
        m.prescan->feed(m.head.data(), m.head.size());
    }
    if (!ok || !open_spool(m))
        c->msg.failed_why = "cannot write spool file in " + g_settings->spool_dir + ": " + strerror(errno);   // answered at body/eom
    else if (m.prescan)
        m.parse = std::make_unique<ParseThread>(m.spool_path, m.size);
    return SMFIS_CONTINUE;
}

sfsistat cb_body(SMFICTX* ctx, unsigned char* chunk, size_t len)
{
    Connection* c = conn_of(ctx);
    if (!c)
        return SMFIS_CONTINUE;
    if (!c->msg.failed_why.empty())
        return on_internal_error(ctx, c->msg.failed_why);
    if (!c->msg.spooling) {
        c->msg.size += len;   // passing untouched: counted for the log only
        return SMFIS_CONTINUE;
    }
    if (c->msg.size + len > g_settings->max_message_size) {
        // Over our cap: stop spooling and let the message pass unchanged.
        c->msg.size += len;
        pass_untouched(c->msg, "larger than milter.max_message_size");
        return SMFIS_CONTINUE;
    }
    if (!spool_write(c->msg, chunk, len))
        return on_internal_error(ctx, "cannot write spool file in " + g_settings->spool_dir + ": " + strerror(errno));
    if (c->msg.prescan)
        c->msg.prescan->feed(reinterpret_cast<const char*>(chunk), len);
    if (c->msg.parse)
        c->msg.parse->grew(c->msg.size);
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
    Message& m = c->msg;
    if (!m.failed_why.empty())
        return on_internal_error(ctx, m.failed_why);
    if (!m.pass_why.empty() || !m.spooling) {
        log_outcome(ctx, m, "passed (" + (m.pass_why.empty() ? std::string("no spool") : m.pass_why) + ")",
                    std::to_string(m.size));
        drop_message(m);
        return SMFIS_CONTINUE;
    }
    // No fsync of the spool: it is a scratch copy (Postfix holds the message and
    // tempfails if we die); only the media in the store must be durable, and the
    // store syncs that itself. Syncing here would cost every plain mail a disk flush.
    if (m.size < g_settings->policy.min_size) {
        // Too small to hold media of min_size: no need to parse it at all.
        log_outcome(ctx, m, "passed (no media)", std::to_string(m.size));
        drop_message(m);
        return SMFIS_CONTINUE;
    }

    // The time from MAIL FROM includes receiving the message; the end-of-message
    // part is the milter's own work (parse, decode, hash, store, new body).
    auto eom_started = std::chrono::steady_clock::now();
    std::string out_path = m.spool_path + ".out";
    DetachResult r;
    try {
        std::vector<Predecoded> pre;
        if (m.prescan) {
            std::string why;
            pre = m.prescan->finish(why);
            if (!why.empty())
                log_info("queue " + queue_id(ctx) + ": decoding while receiving failed (" + why +
                         "); decoding from the spool file");
        }
        ParsedMessagePtr parsed;
        if (m.parse) {
            std::string why;
            parsed = m.parse->finish(why);
            if (!parsed)
                log_info("queue " + queue_id(ctx) + ": parsing while receiving failed (" + why +
                         "); parsing the spool file");
        }
        StoreSink sink(*g_settings->store, m.recipients, [ctx] { smfi_progress(ctx); });
        r = detach_message(m.spool_path, out_path, g_settings->policy, sink, &pre, std::move(parsed));
    } catch (const std::exception& e) {
        unlink(out_path.c_str());
        return on_internal_error(ctx, e.what());
    }
    if (r.rejected) {
        std::string text = "MediaMail: attachment of " + std::to_string(r.largest_over_max) +
                           " bytes is larger than this server sends (" + std::to_string(g_settings->policy.max_size) +
                           " bytes)";
        log_outcome(ctx, m, "rejected (" + r.skipped_why + ", 552 5.3.4)", std::to_string(r.in_size));
        drop_message(m);
        smfi_setreply(ctx, const_cast<char*>("552"), const_cast<char*>("5.3.4"), text.data());
        return SMFIS_REJECT;
    }
    if (r.detached == 0) {
        std::string action = (r.protected_why.empty() ? "passed (" : "skipped (") + r.skipped_why + ")";
        log_outcome(ctx, m, action, std::to_string(r.in_size));
        drop_message(m);
        return SMFIS_CONTINUE;
    }
    std::string count = std::to_string(r.detached);
    bool ok = smfi_addheader(ctx, const_cast<char*>("X-Media-Handles"), count.data()) == MI_SUCCESS &&
              replace_body(ctx, out_path, r.out_body_offset);
    unlink(out_path.c_str());
    if (!ok)
        return on_internal_error(ctx, "could not hand the rewritten body to the MTA");
    std::string action = "detached " + count;
    if (r.over_max > 0)
        action += " (" + std::to_string(r.over_max) + " over milter.max_size left in place)";
    auto eom_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - eom_started).count();
    log_outcome(ctx, m, action, std::to_string(r.in_size) + " -> " + std::to_string(r.out_size),
                " (end of message " + std::to_string(eom_ms) + " ms)");
    drop_message(m);
    return SMFIS_CONTINUE;
}

sfsistat cb_abort(SMFICTX* ctx)
{
    if (Connection* c = conn_of(ctx))
        drop_message(c->msg);
    return SMFIS_CONTINUE;
}

sfsistat cb_close(SMFICTX* ctx)
{
    Connection* c = conn_of(ctx);
    if (c) {
        drop_message(c->msg);
        delete c;
        smfi_setpriv(ctx, nullptr);
    }
    return SMFIS_CONTINUE;
}

} // namespace

int run_milter(MilterSettings& settings)
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

    if (smfi_setconn(settings.socket.data()) != MI_SUCCESS) {
        log_error("milter.socket = '" + settings.socket + "' is not a usable milter socket");
        return 78;
    }
    if (smfi_register(desc) != MI_SUCCESS) {
        log_error("smfi_register failed");
        return 70;
    }
    if (smfi_opensocket(true) != MI_SUCCESS) {
        log_error("cannot listen on milter.socket = '" + settings.socket + "'");
        return 69;
    }
    log_info("listening on " + settings.socket);
    return smfi_main() == MI_SUCCESS ? 0 : 70;
}

} // namespace mm
