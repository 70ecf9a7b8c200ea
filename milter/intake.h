// intake.h - one message on its way into mm-milter, whichever front end hands it
// over (the milter protocol in milter.cpp, SMTP in proxy.cpp): header lines and
// body bytes are spooled to a file, media is decoded while the body arrives, and
// at the end the rewrite engine turns the spool into the message to pass on.
// Both front ends answer from the same Verdict, so a mail gets the same
// treatment (and the same log line) whichever way it came.
#pragma once

#include "milter/milter.h"
#include "milter/prescan_thread.h"
#include "milter/smtp.h"

#include "store/store_sink.h"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mm {

/// What becomes of a message at its end.
struct Verdict {
    enum class Kind {
        pass,       // unchanged
        detached,   // out_path holds the new message; its body starts at out_body_offset
        reject,     // 552 5.3.4 with `text` (milter.over_max_size = reject)
        fail,       // internal error: answer per milter.on_error; `text` says why
        over_quota, // a store quota is reached (store/quota.h): 452 4.3.1 with `text`
    } kind = Kind::pass;
    std::string action;   // for the log line: "passed (no media)", "detached 2", ...
    std::string sizes;    // for the log line: "1234" or "1234 -> 567"
    std::string text;
    std::string out_path;
    uint64_t out_body_offset = 0;
    unsigned detached = 0;
    long eom_ms = -1;     // the end-of-message work, when there was any
};

class Intake {
public:
    /// keep_all: the front end has no other copy of the message (the SMTP
    /// filter), so a message that passes is still spooled whole, to be sent on.
    explicit Intake(const MilterSettings& settings, bool keep_all = false) : s_(settings), keep_all_(keep_all) {}
    ~Intake() { reset(); }
    Intake(const Intake&) = delete;
    Intake& operator=(const Intake&) = delete;

    /// A new message (MAIL FROM): forgets the previous one.
    void begin();
    /// RCPT TO, accepted: recorded with the media for the gateway's clean-up.
    void recipient(std::string address);
    /// Whom this message's media counts against (milter.sender_quota), after
    /// begin(): "sasl:LOGIN" when the client authenticated, else
    /// "from:ENVELOPE-SENDER" (angle brackets dropped, lowercased, so that case
    /// games do not make a new sender).
    void sender(std::string_view sasl_login, std::string_view envelope_from);
    /// One top-level header field, line end(s) included, as it goes into the spool.
    /// name/value are only looked at (Content-Type, DKIM-Signature, ...); an
    /// empty name is a field that could not be read, which rules nothing out.
    void header(std::string_view name, std::string_view value, std::string_view line);
    /// The blank line after the headers (its bytes: the milter protocol sends
    /// none). False when the headers alone show the message holds no media (a
    /// single text part): it passes, and unless keep_all nothing is spooled.
    bool end_of_headers(std::string_view blank = "\r\n");
    /// Body bytes. False after a spool failure (failed_why() says why).
    bool body(const char* p, size_t n);
    /// Whether the message may still be rewritten (not passed, not failed).
    bool spooling() const { return spooling_ && pass_why_.empty() && failed_why_.empty() && !too_big_; }
    /// The spool file: after a verdict other than fail, with keep_all, the whole
    /// message as it came.
    const std::string& spool_path() const { return spool_path_; }
    const std::string& failed_why() const { return failed_why_; }
    uint64_t size() const { return size_; }
    const std::vector<std::string>& recipients() const { return recipients_; }
    /// After a detached verdict: what each recipient's own copy differs by
    /// (store_sink.h). The milter front end cannot use it (one message for
    /// every recipient); the SMTP filter sends each recipient its own copy.
    const RecipientCopies& copies() const { return copies_; }

    /// End of message: the rewrite. `progress` is called during long work.
    /// A detached verdict's out_path belongs to the caller until reset().
    Verdict finish(const std::function<void()>& progress);
    /// The message's trace for its log line (core/log.h, kv): message_id=,
    /// and after a detached verdict item= and hash= (12 hex digits), each a
    /// comma-separated list in the order the media appear.
    std::string trace_fields() const;
    /// After a detached verdict: records Message-ID, envelope sender and
    /// `queue_id` ("" when unknown) on the items stored (Store::record_trace).
    /// A failure is only logged: the items are durable and the mail goes on.
    void record_trace(const std::string& queue_id);
    /// Milliseconds since begin(), for the log line.
    uint64_t elapsed_ms() const;
    /// Drops the spool, the output and any media decoded ahead.
    void reset();

private:
    bool open_spool();
    bool spool_write(const char* p, size_t n);
    void pass_untouched(std::string why);
    void stop_spooling();
    bool keeping() const { return spooling_ && failed_why_.empty() && !too_big_ && (pass_why_.empty() || keep_all_); }

    const MilterSettings& s_;
    const bool keep_all_;
    bool spooling_ = false;
    bool too_big_ = false;    // over milter.max_message_size with keep_all: refused
    bool unparsed_ = false;   // a top-level header field that could not be read
    std::string head_;        // spooled bytes not yet in a file: the file is created only
                              // once the headers show the mail may hold media (or they grow
                              // past kHeadBuffer), as creating it costs more than the rest
                              // of a plain mail's work
    std::string spool_path_, out_path_;
    int fd_ = -1;
    uint64_t size_ = 0;
    std::string pass_why_;    // set when this message passes untouched; nothing is spooled
    std::string failed_why_;  // a spool error, answered at the next event that may answer
    std::vector<std::string> recipients_;
    std::string sender_;
    RecipientCopies copies_;
    std::string envelope_from_;   // MAIL FROM without angle brackets (ItemTrace)
    std::string message_id_;      // the first Message-ID field, cleaned and cut
    std::vector<std::string> item_ids_, item_sha256_;   // stored for this message, after finish()
    std::vector<std::string> content_types_;   // top-level Content-Type values
    std::vector<std::string> encodings_;       // top-level Content-Transfer-Encoding values
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    // Media decoded while the body arrives (declared after pre_sink_: destroyed first).
    std::unique_ptr<StoreSink> pre_sink_;
    std::unique_ptr<PrescanThread> prescan_;
    std::unique_ptr<ParseThread> parse_;   // GMime's parse of the spool file, as it grows
};

/// Hands a message as raw bytes (SMTP DATA, unstuffed) to an Intake: the top
/// header block is split into fields as it streams by, the rest is body.
class RawIntake {
public:
    explicit RawIntake(Intake& intake) : intake_(intake) {}
    void feed(const char* p, size_t n);
    /// The message is complete (it may have ended inside its header block).
    void finish();

private:
    void hand_over_fields();
    Intake& intake_;
    smtp::HeaderSplitter headers_;
    std::vector<smtp::HeaderSplitter::Field> fields_;
};

} // namespace mm
