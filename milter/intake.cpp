// intake.cpp - spool, decode ahead and rewrite one message (see intake.h).
// Reads milter.min_size, milter.types, milter.max_size, milter.over_max_size,
// milter.max_message_size, milter.rewrite_signed_dkim and store.dir (the spool
// lives in store.dir/spool) through MilterSettings.
#include "milter/intake.h"

#include "store/quota.h"

#include "core/fileio.h"
#include "core/log.h"
#include "store/index.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <strings.h>
#include <unistd.h>

namespace mm {

namespace {

constexpr size_t kHeadBuffer = 64 * 1024;   // header bytes kept in memory before a spool file exists


} // namespace

void Intake::begin()
{
    reset();
    spooling_ = true;
}

void Intake::recipient(std::string address)
{
    if (address.size() >= 2 && address.front() == '<' && address.back() == '>')
        address = address.substr(1, address.size() - 2);
    if (recipients_.size() < 1000)
        recipients_.push_back(std::move(address));
}

void Intake::sender(std::string_view sasl_login, std::string_view envelope_from)
{
    if (envelope_from.size() >= 2 && envelope_from.front() == '<' && envelope_from.back() == '>')
        envelope_from = envelope_from.substr(1, envelope_from.size() - 2);
    envelope_from_ = sanitize_trace(envelope_from, kMaxSenderBytes);
    std::string_view who = sasl_login.empty() ? envelope_from : sasl_login;
    sender_ = (sasl_login.empty() ? "from:" : "sasl:") + printable(who, 200);
    for (char& ch : sender_)
        ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
}

void Intake::stop_spooling()
{
    parse_.reset();
    prescan_.reset();   // joins its thread; unused temp files in the store go
    if (fd_ >= 0)
        close(fd_);
    if (!spool_path_.empty())
        unlink(spool_path_.c_str());
    fd_ = -1;
    spool_path_.clear();
    head_.clear();
    head_.shrink_to_fit();
}

void Intake::reset()
{
    stop_spooling();
    if (!out_path_.empty())
        unlink(out_path_.c_str());
    out_path_.clear();
    pre_sink_.reset();
    spooling_ = false;
    too_big_ = false;
    unparsed_ = false;
    size_ = 0;
    pass_why_.clear();
    failed_why_.clear();
    recipients_.clear();
    sender_.clear();
    copies_.clear();
    envelope_from_.clear();
    message_id_.clear();
    item_ids_.clear();
    item_sha256_.clear();
    content_types_.clear();
    encodings_.clear();
    started_ = std::chrono::steady_clock::now();
}

/// The message will pass untouched: stop spooling, keep counting its size for the log.
void Intake::pass_untouched(std::string why)
{
    parse_.reset();
    prescan_.reset();
    if (!keep_all_)
        stop_spooling();
    pass_why_ = std::move(why);
}

uint64_t Intake::elapsed_ms() const
{
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count());
}

/// Creates the spool file and moves the buffered head into it. On failure
/// errno says why; setting failed_why_ is the caller's.
bool Intake::open_spool()
{
    if (fd_ >= 0)
        return true;
    std::string path = s_.spool_dir + "/msg.XXXXXX";
    fd_ = mkostemp(path.data(), O_CLOEXEC);
    if (fd_ < 0)
        return false;
    spool_path_ = path;
    bool ok = write_all(fd_, head_.data(), head_.size());
    head_.clear();
    head_.shrink_to_fit();
    return ok;
}

/// Appends to the spooled message: in memory while it is small, else to the file.
bool Intake::spool_write(const char* p, size_t n)
{
    if (fd_ < 0 && head_.size() + n <= kHeadBuffer) {
        head_.append(p, n);
        size_ += n;
        return true;
    }
    if (!open_spool() || !write_all(fd_, p, n))
        return false;   // the message is answered with a failure: its size no longer matters
    size_ += n;
    return true;
}

void Intake::header(std::string_view name, std::string_view value, std::string_view line)
{
    if (message_id_.empty() && name.size() == 10 && strncasecmp(name.data(), "Message-ID", 10) == 0)
        message_id_ = sanitize_trace(value, kMaxMessageIdBytes);   // from the mail: hostile
    if (!keeping())
        return;
    if (pass_why_.empty()) {
        auto is = [&](const char* h) {
            return name.size() == strlen(h) && strncasecmp(name.data(), h, name.size()) == 0;
        };
        if (name.empty())
            unparsed_ = true;
        else if (is("Content-Type") && content_types_.size() < 2)
            content_types_.emplace_back(value);
        else if (is("Content-Transfer-Encoding") && encodings_.size() < 2)
            encodings_.emplace_back(value);
        else if (!s_.rewrite_signed_dkim && is("DKIM-Signature"))
            // Rewriting the body would break the signature; mm-milter belongs before the signer.
            pass_untouched("DKIM-signed (milter.rewrite_signed_dkim = false)");
        if (!keeping())
            return;
    }
    if (!spool_write(line.data(), line.size()))
        failed_why_ = "cannot write spool file in " + s_.spool_dir + ": " + strerror(errno);
}

bool Intake::end_of_headers(std::string_view blank)
{
    if (!keeping())
        return true;
    bool plain = pass_why_.empty() && !unparsed_ && headers_rule_out_media(content_types_, encodings_);
    if (plain) {
        pass_untouched("no media: a single text part");
        if (!keeping())
            return false;
    }
    bool ok = spool_write(blank.data(), blank.size());
    if (ok && fd_ < 0 && pass_why_.empty()) {
        // The whole header block is still in memory: the prescan can see the
        // message from its first byte, as the engine will see the file.
        pre_sink_ = std::make_unique<StoreSink>(*s_.store, recipients_, nullptr, &copies_);
        pre_sink_->set_sender(sender_);
        prescan_ = std::make_unique<PrescanThread>(s_.policy, *pre_sink_);
        prescan_->feed(head_.data(), head_.size());
    }
    if (!ok || !open_spool())
        failed_why_ = "cannot write spool file in " + s_.spool_dir + ": " + strerror(errno);
    else if (prescan_)
        parse_ = std::make_unique<ParseThread>(spool_path_, size_);
    return !plain;
}

bool Intake::body(const char* p, size_t n)
{
    if (!failed_why_.empty())
        return false;
    if (!keeping()) {
        size_ += n;   // passing untouched: counted for the log only
        return true;
    }
    if (size_ + n > s_.max_message_size) {
        size_ += n;
        if (keep_all_) {
            // No other copy exists to pass on unchanged: refused (552), not spooled on.
            too_big_ = true;
            stop_spooling();
        } else {
            // Over our cap: stop spooling and let the message pass unchanged.
            pass_untouched("larger than milter.max_message_size");
        }
        return true;
    }
    if (!spool_write(p, n)) {
        failed_why_ = "cannot write spool file in " + s_.spool_dir + ": " + strerror(errno);
        return false;
    }
    if (prescan_)
        prescan_->feed(p, n);
    if (parse_)
        parse_->grew(size_);
    return true;
}

Verdict Intake::finish(const std::function<void()>& progress)
{
    Verdict v;
    v.sizes = std::to_string(size_);
    if (!failed_why_.empty()) {
        v.kind = Verdict::Kind::fail;
        v.text = failed_why_;
        return v;
    }
    if (too_big_) {
        v.kind = Verdict::Kind::reject;
        v.action = "rejected (larger than milter.max_message_size, 552 5.3.4)";
        v.text = "MediaMail: message larger than this server filters (" + std::to_string(s_.max_message_size) +
                 " bytes)";
        return v;
    }
    if (spooling_ && fd_ < 0 && (keep_all_ || pass_why_.empty()) && !open_spool()) {
        // Also a message that never reached end of headers: the file is what is parsed or passed on.
        v.kind = Verdict::Kind::fail;
        v.text = "cannot write spool file in " + s_.spool_dir + ": " + strerror(errno);
        return v;
    }
    if (!spooling_ || !pass_why_.empty()) {
        v.action = "passed (" + (pass_why_.empty() ? std::string("no spool") : pass_why_) + ")";
        return v;
    }
    // No fsync of the spool: it is a scratch copy (the MTA holds the message, or
    // the SMTP client does, and both retry if we die); only the media in the store
    // must be durable, and the store syncs that itself.
    if (size_ < s_.policy.min_size) {
        // Too small to hold media of min_size: no need to parse it at all.
        v.action = "passed (no media)";
        return v;
    }
    auto eom_started = std::chrono::steady_clock::now();
    out_path_ = spool_path_ + ".out";
    DetachResult r;
    std::unique_ptr<StoreSink> sink;
    // Items this message already put in the store go again when it is refused
    // as a whole: no handle to them will ever leave.
    auto undo = [&] {
        for (const StoreSink* k : {pre_sink_.get(), sink.get()})
            for (const auto& id : k ? k->committed() : std::vector<std::string>{}) {
                try {
                    s_.store->remove_item(id);
                } catch (const std::exception& e) {
                    log_warning("cannot remove item " + id + " of a refused message: " + e.what());
                }
            }
    };
    try {
        std::vector<Predecoded> pre;
        if (prescan_) {
            std::string why;
            pre = prescan_->finish(why);
            if (!why.empty()) {
                log_info("decoding while receiving failed (" + why + "); decoding from the spool file");
                prescan_.reset();   // its unfinished parts and their reservations go first
            }
        }
        ParsedMessagePtr parsed;
        if (parse_) {
            std::string why;
            parsed = parse_->finish(why);
            if (!parsed)
                log_info("parsing while receiving failed (" + why + "); parsing the spool file");
        }
        sink = std::make_unique<StoreSink>(*s_.store, recipients_, progress, &copies_);
        sink->set_sender(sender_);
        r = detach_message(spool_path_, out_path_, s_.policy, *sink, &pre, std::move(parsed));
    } catch (const QuotaError& e) {
        undo();
        v.kind = Verdict::Kind::over_quota;
        v.action = "refused (" + std::string(e.what()) + ", 452 4.3.1)";
        v.text = "MediaMail: insufficient storage for this message's media, try again later";
        return v;
    } catch (const std::exception& e) {
        undo();
        v.kind = Verdict::Kind::fail;
        v.text = e.what();
        return v;
    }
    v.sizes = std::to_string(r.in_size);
    if (r.rejected) {
        v.kind = Verdict::Kind::reject;
        v.action = "rejected (" + r.skipped_why + ", 552 5.3.4)";
        v.text = "MediaMail: attachment of " + std::to_string(r.largest_over_max) +
                 " bytes is larger than this server sends (" + std::to_string(s_.policy.max_size) + " bytes)";
        return v;
    }
    if (r.detached == 0) {
        v.action = (r.protected_why.empty() ? "passed (" : "skipped (") + r.skipped_why + ")";
        return v;
    }
    v.kind = Verdict::Kind::detached;
    for (const StoreSink* k : {pre_sink_.get(), sink.get()})
        if (k) {
            item_ids_.insert(item_ids_.end(), k->committed().begin(), k->committed().end());
            item_sha256_.insert(item_sha256_.end(), k->committed_sha256().begin(), k->committed_sha256().end());
        }
    v.detached = r.detached;
    v.out_path = out_path_;
    v.out_body_offset = r.out_body_offset;
    v.action = "detached " + std::to_string(r.detached);
    if (r.over_max > 0)
        v.action += " (" + std::to_string(r.over_max) + " over milter.max_size left in place)";
    v.sizes = std::to_string(r.in_size) + " -> " + std::to_string(r.out_size);
    v.eom_ms = static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - eom_started).count());
    return v;
}

std::string Intake::trace_fields() const
{
    std::string items, hashes;
    for (size_t i = 0; i < item_ids_.size(); ++i) {
        items += (i ? "," : "") + item_ids_[i];
        hashes += (i ? "," : "") + item_sha256_[i].substr(0, 12);
    }
    std::string out = kv("message_id", message_id_);
    if (!items.empty())
        out += kv("item", items) + kv("hash", hashes);
    return out;
}

void Intake::record_trace(const std::string& queue_id)
{
    if (item_ids_.empty())
        return;
    try {
        s_.store->record_trace(item_ids_, ItemTrace{message_id_, envelope_from_, queue_id});
    } catch (const std::exception& e) {
        log_warning("cannot record the trace of items" + kv("item", item_ids_.front()) + ": " + printable(e.what()));
    }
}

void RawIntake::hand_over_fields()
{
    for (const auto& f : fields_)
        intake_.header(f.name, f.value, f.raw);
    fields_.clear();
}

void RawIntake::feed(const char* p, size_t n)
{
    size_t used = 0;
    if (!headers_.done()) {
        used = headers_.feed(p, n, fields_);
        hand_over_fields();
        if (headers_.done())
            intake_.end_of_headers(headers_.end());
    }
    if (used < n)
        intake_.body(p + used, n - used);   // a failure shows in the verdict
}

void RawIntake::finish()
{
    if (headers_.done())
        return;
    headers_.finish(fields_);
    hand_over_fields();
}

} // namespace mm
