// mmsend.cpp - the run of mmsend (see mmsend.h): build or read the message into
// a private spool directory, detach media with the milter's engine and policy
// into the store (copied, or linked in place), submit, and on a failed
// submission take the stored media out again so nothing unreachable stays.
// Reads mmsend.*, milter.max_message_size, milter.min_size, milter.types, the
// store's keys and log.level; --help lists them from core/config.cpp's table.
#include "mmsend/mmsend.h"

#include "mmsend/address.h"
#include "mmsend/compose.h"
#include "mmsend/options.h"
#include "mmsend/progress.h"
#include "mmsend/submit.h"
#include "mmsend/upload.h"

#include "store/quota.h"
#include "store/store.h"
#include "store/store_sink.h"
#include "core/address.h"
#include "core/config.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/program.h"
#include "core/text.h"
#include "mime/detach.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <functional>
#include <iostream>
#include <unistd.h>

namespace mm::send {

namespace {

// The private spool directory; removed with everything in it at the end.
/// What the store or the gateway records with an item: the handle's
/// descriptive fields, the media type and the envelope recipients.
ItemMeta item_meta(const Handle& h, const std::string& type, const std::vector<std::string>& recipients)
{
    ItemMeta meta;
    meta.type = type;
    meta.name = h.name;
    meta.title = h.title;
    meta.note = h.note;
    meta.copyright = h.copyright;
    meta.recipients = recipients;
    return meta;
}

class Spool {
public:
    explicit Spool(const std::string& parent)
    {
        std::string tmpl = parent + "/mmsend.XXXXXX";
        if (!mkdtemp(tmpl.data()))
            throw Failure(ex_cantcreat, "cannot create a spool directory in " + parent +
                                            " (mmsend.spool_dir): " + std::strerror(errno));
        dir_ = tmpl;
    }
    ~Spool()
    {
        for (const char* f : {"in.eml", "msg.eml", "out.eml", "copy.eml"})
            unlink((dir_ + "/" + f).c_str());
        rmdir(dir_.c_str());
    }
    std::string path(const char* name) const { return dir_ + "/" + name; }
    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
};

// Standard input into a file, in fixed buffers, at most `cap` bytes.
void spool_stdin(const std::string& path, uint64_t cap)
{
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        throw Failure(ex_cantcreat, "cannot create " + path + ": " + std::strerror(errno));
    char buf[65536];
    uint64_t total = 0;
    auto fail = [&](int code, const std::string& msg) {
        close(fd);
        throw Failure(code, msg);
    };
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail(ex_ioerr, std::string("cannot read the message from standard input: ") + std::strerror(errno));
        if (n == 0)
            break;
        total += static_cast<uint64_t>(n);
        if (total > cap)
            fail(ex_dataerr, "the message on standard input is larger than milter.max_message_size (" +
                                 std::to_string(cap) + " bytes)");
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(fd, buf + done, static_cast<size_t>(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                fail(ex_ioerr, "cannot write " + path + ": " + std::strerror(errno));
            done += w;
        }
    }
    if (fsync(fd) != 0)
        fail(ex_ioerr, "cannot write " + path + ": " + std::strerror(errno));
    close(fd);
    if (total == 0)
        throw Failure(ex_noinput, "no message on standard input");
}

std::string id_of_url(const std::string& url)
{
    size_t m = url.rfind("/m/");
    return m == std::string::npos ? "" : url.substr(m + 3, 32);
}

// Whom mmsend's media counts against (milter.sender_quota), spelled as
// mm-milter spells an unauthenticated sender, so both count alike.
std::string sender_identity(const std::string& envelope_from)
{
    std::string who = "from:" + envelope_from;
    for (char& ch : who)
        ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
    return who;
}

struct Created {
    Handle h;
    bool linked = false;
};

// The engine's sink for mmsend: the StoreSink for copies, Store::link_file for
// --link, and the descriptive fields of each --attach put into its handle.
// Parts are matched to attachments by name, in message order, which is the
// order the engine calls begin() in.
class SendSink : public MediaSink {
public:
    /// `open_store` is called on the first part to detach, never before: a mail
    /// with nothing to detach needs no store (and no write access to one).
    /// With `uploader` the media goes to a remote gateway instead (mmsend
    /// --gateway); parts read from a message are spooled under `spool_dir` first.
    SendSink(std::function<Store&()> open_store, std::vector<std::string> rcpts, const Options& o,
             const std::vector<ComposedPart>& parts, bool progress, const std::string& envelope_from,
             Uploader* uploader = nullptr, std::string spool_dir = "")
        : open_store_(std::move(open_store)), rcpts_(std::move(rcpts)), o_(o), parts_(parts), progress_(progress),
          sender_(sender_identity(envelope_from)), uploader_(uploader), spool_dir_(std::move(spool_dir))
    {
    }

    StoreSink& inner()
    {
        if (!inner_) {
            inner_ = std::make_unique<StoreSink>(open_store_(), rcpts_, std::function<void()>{}, &copies);
            inner_->set_sender(sender_);
        }
        return *inner_;
    }

    std::unique_ptr<Part> begin(const std::string& type, const std::string& name) override
    {
        size_t idx = parts_.size();
        for (size_t i = next_; i < parts_.size(); ++i)
            if (parts_[i].name == name) {
                idx = i;
                next_ = i + 1;
                break;
            }
        const Attachment* att = idx < parts_.size() ? &o_.attachments[idx] : nullptr;
        const ComposedPart* cp = idx < parts_.size() ? &parts_[idx] : nullptr;
        if (o_.link && cp)
            return std::make_unique<LinkPart>(*this, *cp, *att, type);
        if (uploader_)
            return std::make_unique<UploadPart>(*this, cp, att, type, spool_dir_ + "/media-" + std::to_string(++spooled_));
        return std::make_unique<CopyPart>(*this, inner().begin(type, name), att, cp ? cp->size : 0, name);
    }

    std::vector<Created> created;
    std::vector<std::string> ids;
    RecipientCopies copies;   // each recipient's own copy (store_sink.h)

private:
    static void describe(Handle& h, const Attachment* att)
    {
        if (!att)
            return;
        h.title = att->title;
        h.note = att->note;
        h.copyright = att->copyright;
    }

    struct CopyPart : Part {
        CopyPart(SendSink& s, std::unique_ptr<Part> inner, const Attachment* att, uint64_t total,
                 const std::string& name)
            : s_(s), inner_(std::move(inner)), att_(att), bar_("storing " + name, total, s.progress_)
        {
        }
        void write(const void* data, size_t len) override
        {
            inner_->write(data, len);
            done_ += len;
            bar_.update(done_);
        }
        void finish(Handle& h) override
        {
            bar_.finish();
            describe(h, att_);
            inner_->finish(h);   // durable in the store; fills url, pin, expires
            s_.ids.push_back(id_of_url(h.url));
            s_.created.push_back(Created{h, false});
        }
        SendSink& s_;
        std::unique_ptr<Part> inner_;
        const Attachment* att_;
        Progress bar_;
        uint64_t done_ = 0;
    };

    struct LinkPart : Part {
        LinkPart(SendSink& s, const ComposedPart& cp, const Attachment& att, const std::string& type)
            : s_(s), cp_(cp), att_(att), type_(type)
        {
        }
        // The engine's decoded bytes are only counted: the file itself is
        // registered, and its hash must equal the engine's.
        void write(const void*, size_t) override {}
        void finish(Handle& h) override
        {
            describe(h, &att_);
            ItemMeta meta = item_meta(h, type_, s_.rcpts_);
            Progress bar("hashing " + cp_.name, cp_.size, s_.progress_);
            NewItem item = s_.open_store_().link_file(cp_.path, meta, [&](uint64_t done, uint64_t) { bar.update(done); });
            bar.finish();
            s_.ids.push_back(item.id);
            if (item.sha256 != h.sha256 || item.size != h.size)
                throw Failure(ex_dataerr, cp_.path + " changed while mmsend was reading it");
            h.url = item.url;
            h.pin = item.pin;
            h.expires = item.expires;
            h.seg_size = item.seg_size;
            h.seg_sha256 = item.seg_sha256;
            s_.copies.add(h, item);
            s_.created.push_back(Created{h, true});
        }
        SendSink& s_;
        const ComposedPart& cp_;
        const Attachment& att_;
        std::string type_;
    };

    // mmsend --gateway: the bytes go to a remote gateway's upload API
    // (upload.h). A composed attachment is sent from its own file; a part of
    // a message read on standard input is spooled first, so that an upload
    // cut short can resume from the file.
    struct UploadPart : Part {
        UploadPart(SendSink& s, const ComposedPart* cp, const Attachment* att, const std::string& type,
                   std::string spool)
            : s_(s), cp_(cp), att_(att), type_(type), spool_(std::move(spool))
        {
        }
        ~UploadPart() override
        {
            if (!cp_)
                unlink(spool_.c_str());
        }
        void write(const void* data, size_t len) override
        {
            if (cp_)
                return;   // the file itself is sent; the engine's hash must be its hash
            if (!out_) {
                out_ = UniqueFd(open(spool_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
                if (!out_)
                    throw Failure(ex_cantcreat, "cannot create " + spool_ + ": " + std::strerror(errno));
            }
            if (!write_all(out_.get(), data, len))
                throw Failure(ex_ioerr, "cannot write " + spool_ + ": " + std::strerror(errno));
        }
        void finish(Handle& h) override
        {
            describe(h, att_);
            if (!cp_) {
                if (!out_)   // an empty part: nothing was written
                    out_ = UniqueFd(open(spool_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
                out_.reset();
            }
            ItemMeta meta = item_meta(h, type_, s_.rcpts_);
            Progress bar("uploading " + h.name, h.size, s_.progress_);
            NewItem item = s_.uploader_->upload(cp_ ? cp_->path : spool_, h.size, h.sha256, meta,
                                                [&](uint64_t done) { bar.update(done); });
            bar.finish();
            h.url = item.url;
            h.pin = item.pin;
            h.expires = item.expires;
            h.seg_size = item.seg_size;
            h.seg_sha256 = item.seg_sha256;
            s_.copies.add(h, item);
            s_.created.push_back(Created{h, false});
            s_.uploaded.push_back(item.id);
        }
        SendSink& s_;
        const ComposedPart* cp_;
        const Attachment* att_;
        std::string type_, spool_;
        UniqueFd out_;
    };

    std::function<Store&()> open_store_;
    std::unique_ptr<StoreSink> inner_;
    std::vector<std::string> rcpts_;
    const Options& o_;
    const std::vector<ComposedPart>& parts_;
    size_t next_ = 0;
    bool progress_;
    std::string sender_;   // whom quotas count, set on the StoreSink once it exists
    Uploader* uploader_;
    std::string spool_dir_;
    unsigned spooled_ = 0;

public:
    std::vector<std::string> uploaded;   // items made on the remote gateway
};

void print_json(const std::vector<Created>& created)
{
    std::string out = "[";
    for (size_t i = 0; i < created.size(); ++i) {
        const Handle& h = created[i].h;
        out += i ? ",\n " : "\n ";
        out += "{\"name\": " + json_quote(h.name) + ", \"type\": " + json_quote(h.type) +
               ", \"size\": " + std::to_string(h.size) + ", \"sha256\": " + json_quote(h.sha256) +
               ", \"url\": " + json_quote(h.url) + ", \"pin\": " + json_quote(h.pin) +
               ", \"expires\": " + json_quote(h.expires) + ", \"title\": " + json_quote(h.title) +
               ", \"note\": " + json_quote(h.note) + ", \"copyright\": " + json_quote(h.copyright) +
               ", \"linked\": " + (created[i].linked ? "true" : "false") + "}";
    }
    out += created.empty() ? "]\n" : "\n]\n";
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
}

// Addresses given on the command line: each an address list, errors are usage errors.
std::vector<std::string> cli_addresses(const std::vector<std::string>& values, const std::string& what)
{
    std::vector<std::string> out;
    for (const auto& v : values) {
        try {
            add_recipients(out, parse_address_list(v, what));
        } catch (const Failure& f) {
            throw UsageError(f.what());
        }
    }
    return out;
}

const ProgramSpec kSpec{"mmsend",
                        "mmsend",
                        {"mmsend.", "milter.max_message_size", "milter.min_size", "milter.types", "store.dir",
                         "gateway.public_url", "gateway.retention", "gateway.tls_", "log."},
                        ""};

int run_checked(const Options& o)
{
    Config cfg = [&] {
        try {
            return load_program_config(o.config_path, o.overrides, kSpec);
        } catch (const ExitError& e) {
            throw Failure(code(e.exit), e.what());
        }
    }();
    if (o.check)
        return run_check(cfg, kSpec);
    try {
        setup_logging(cfg, "mmsend");
    } catch (const ExitError& e) {
        throw Failure(code(e.exit), e.what());
    }

    SubmitSettings ss;
    ss.target = parse_submit_target(cfg.str("mmsend.smtp"));
    ss.sendmail_path = cfg.str("mmsend.sendmail");
    ss.user = cfg.str("mmsend.user");
    ss.auth = cfg.word("mmsend.auth");
    ss.ca_file = cfg.str("mmsend.ca_file");
    ss.timeout = cfg.duration("mmsend.timeout");
    ss.insecure = o.insecure;
    if (ss.target.kind != SubmitTarget::Kind::sendmail && !ss.user.empty())
        ss.password = read_password(cfg.str("mmsend.password_file"), ss.user);

    bool bars = Progress::wanted(o.quiet || o.json);
    Spool spool(cfg.str("mmsend.spool_dir"));
    std::string msg = spool.path("msg.eml");
    std::string envelope_from;
    std::vector<std::string> rcpts;
    std::vector<ComposedPart> parts;

    if (o.mode == Mode::compose) {
        parts = check_inputs(o);
        envelope_from = cli_addresses({o.from}, "--from").at(0);
        add_recipients(rcpts, cli_addresses(o.to, "--to"));
        add_recipients(rcpts, cli_addresses(o.cc, "--cc"));
        add_recipients(rcpts, cli_addresses(o.bcc, "--bcc"));
        std::unique_ptr<Progress> bar;
        size_t bar_for = parts.size();
        compose_message(o, parts, msg, [&](size_t i, uint64_t done) {
            if (i != bar_for) {
                bar = std::make_unique<Progress>("encoding " + parts[i].name, parts[i].size, bars);
                bar_for = i;
            }
            bar->update(done);
        });
        bar.reset();
    } else {
        std::string in = spool.path("in.eml");
        spool_stdin(in, cfg.size("milter.max_message_size"));
        MessageHeaders mh = read_message_headers(in);
        if (o.read_recipients) {
            add_recipients(rcpts, mh.to);
            add_recipients(rcpts, mh.cc);
            add_recipients(rcpts, mh.bcc);
        }
        add_recipients(rcpts, cli_addresses(o.recipients, "recipient"));
        if (!o.envelope_from.empty())
            envelope_from = cli_addresses({o.envelope_from}, "-f").at(0);
        else if (!mh.from.empty())
            envelope_from = mh.from[0];
        else
            throw UsageError("no sender: the message has no From address; give -f");
        if (rcpts.empty())
            throw UsageError("no recipients: the message has no To, Cc or Bcc, and none were given");
        // Bcc recipients get the mail, but no one may see that they did.
        copy_without_bcc(in, mh, msg);
        unlink(in.c_str());
    }

    std::unique_ptr<Store> store;
    auto open_store = [&]() -> Store& {
        if (!store) {
            try {
                store = std::make_unique<Store>(cfg);
            } catch (const std::exception& e) {
                throw Failure(ex_cantcreat, std::string("media store (store.dir): ") + e.what());
            }
        }
        return *store;
    };
    DetachPolicy policy;
    policy.min_size = cfg.size("milter.min_size");
    policy.types = cfg.list("milter.types");
    if (o.detach_all) {
        policy.min_size = 1;
        policy.types = {"*/*"};
    }
    // mmsend --gateway (mmsend.gateway): no local store at all.
    std::unique_ptr<Uploader> uploader;
    if (const std::string& gw = cfg.str("mmsend.gateway"); !gw.empty()) {
        GatewaySettings g;
        g.base = gw;
        while (!g.base.empty() && g.base.back() == '/')
            g.base.pop_back();
        g.token = read_upload_token(cfg.str("mmsend.gateway_token_file"));
        g.pin = cfg.str("mmsend.gateway_pin");
        g.ca_file = cfg.str("mmsend.ca_file");
        g.chunk = cfg.size("mmsend.gateway_chunk");
        g.retries = static_cast<int>(cfg.integer("mmsend.gateway_retries"));
        g.max_rate = cfg.size("mmsend.gateway_max_rate");
        g.timeout = cfg.duration("mmsend.timeout");
        g.insecure = o.insecure;
        uploader = std::make_unique<Uploader>(g);
    }
    SendSink sink(open_store, rcpts, o, parts, bars, envelope_from, uploader.get(), spool.dir());
    if (!o.link && !uploader) {   // the gateway checks its quotas at each upload's POST
        // The attachments' sizes are known: a store or sender quota that they
        // would exceed is told now, before any encoding or copying.
        uint64_t total = 0;
        for (const auto& p : parts)
            if (p.size >= policy.min_size)   // smaller ones stay in the mail
                total += p.size;
        try {
            if (total > 0)   // a mail without media is never refused
                open_store().check_room(sender_identity(envelope_from), total);
        } catch (const QuotaError& e) {
            throw Failure(ex_tempfail, std::string("media store full, try again later: ") + e.what());
        }
    }
    // Whatever fails from here on, items already in the store would be
    // unreachable (their handles never left): take them out again.
    // Items uploaded to a remote gateway are deleted there with the upload
    // token; one that cannot be (the gateway is unreachable now) stays,
    // unreachable, until gateway.retention ends.
    auto undo = [&] {
        for (const auto& id : sink.ids) {
            try {
                store->remove_item(id);
            } catch (const std::exception& e) {
                log_warning("could not remove stored item " + id + ": " + e.what());
            }
        }
        for (const auto& id : sink.uploaded) {
            std::string why;
            if (uploader->remove_item(id, why))
                log_info("the mail was not sent: uploaded item " + id + " deleted from the gateway");
            else
                log_warning("the mail was not sent, and uploaded item " + id + " could not be deleted from the " +
                            "gateway (" + why + "): it stays there, unreachable, until it expires");
        }
    };
    std::string out = spool.path("out.eml");
    DetachResult r;
    try {
        r = detach_message(msg, out, policy, sink);
    } catch (const Failure&) {
        undo();
        throw;
    } catch (const QuotaError& e) {
        undo();
        throw Failure(ex_tempfail, std::string("media store full, try again later: ") + e.what());
    } catch (const std::exception& e) {
        undo();
        throw Failure(ex_cantcreat, std::string("cannot detach media into the store: ") + e.what());
    }
    // Each recipient (group of addresses that normalize alike) gets its own
    // copy, whose links carry its own token: only its receipts count for it,
    // and no recipient can confirm, or learn, for another (docs/gateway-api.md).
    // Decided for all before the first copy goes, so that a recipient without
    // a token of its own means one shared copy, never a half-sent split.
    struct Group {
        std::string address;               // normalized
        std::vector<std::string> rcpts;    // as given
        const Substitutions* subs = nullptr;
    };
    std::vector<Group> groups;
    if (r.detached > 0) {
        std::string why = sink.copies.usable() ? "" : sink.copies.why();
        for (const auto& a : rcpts) {
            if (!why.empty())
                break;
            std::string n = normalize_address(a);
            auto g = std::find_if(groups.begin(), groups.end(), [&](const Group& x) { return x.address == n; });
            if (g != groups.end()) {
                g->rcpts.push_back(a);
                continue;
            }
            const Substitutions* subs = n.empty() ? nullptr : sink.copies.for_address(n);
            if (!subs)
                why = "a recipient without its own token: " + printable(a, 80);
            groups.push_back({n, {a}, subs});
        }
        if (!why.empty()) {
            log_warning("one shared copy for every recipient (" + why + "); their receipts will not count");
            groups.clear();
        }
    }
    size_t sent = 0;
    try {
        if (groups.empty()) {
            submit(ss, envelope_from, rcpts, r.detached > 0 ? out : msg);
        } else {
            std::string copy = spool.path("copy.eml");
            for (const Group& g : groups) {
                write_substituted(out, copy, *g.subs);
                submit(ss, envelope_from, g.rcpts, copy);
                ++sent;
            }
            unlink(copy.c_str());
        }
    } catch (...) {
        if (sent == 0)
            undo();   // no copy left: the items are unreachable
        else
            log_error("sent to " + std::to_string(sent) + " of " + std::to_string(groups.size()) +
                      " recipients before the failure; their links stay valid");
        throw;
    }
    if (!sink.ids.empty()) {
        // Which mail the items went out in, for `mm-gateway list --message-id`;
        // the mail is sent, so a failure here only costs the trace.
        try {
            MessageHeaders sent = read_message_headers(msg);
            store->record_trace(sink.ids, ItemTrace{header_value(sent.block, "Message-ID"), envelope_from, ""});
        } catch (const std::exception& e) {
            log_warning(std::string("cannot record which mail the items went out in: ") + e.what());
        }
    }
    if (o.json)
        print_json(sink.created);
    log_debug("sent to " + std::to_string(rcpts.size()) + " recipient(s), " + std::to_string(r.detached) +
              " media detached");
    return ex_ok;
}

} // namespace


int run(const std::vector<std::string>& args)
{
    Options o;
    try {
        o = parse_options(args);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "mmsend: %s\n(mmsend --help shows the usage)\n", e.what());
        return ex_usage;
    }
    if (o.help) {
        std::fputs(usage_text(), stdout);
        std::fputs(program_help(kSpec).c_str(), stdout);
        return ex_ok;
    }
    if (o.version) {
        std::puts(version_line("mmsend").c_str());
        return ex_ok;
    }
    try {
        return run_checked(o);
    } catch (const Failure& f) {
        std::fprintf(stderr, "mmsend: %s\n", f.what());
        return f.code;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mmsend: internal error: %s\n", e.what());
        return ex_software;
    }
}

} // namespace mm::send
