// store_sink.h - the bridge from the rewrite engine to the media store: each
// detached attachment is streamed into a Store::Writer and committed (durable)
// before its handle is finished. Also what each envelope recipient's own copy
// of the rewritten mail differs by (RecipientCopies): the lines of the
// location parts that carry a token. Reads nothing from the config itself.
#pragma once

#include "store/store.h"
#include "mime/detach.h"

#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mm {

/// Byte strings to replace by others of the same length, as a message streams
/// through fixed buffers (so offsets in the message never move).
using Substitutions = std::vector<std::pair<std::string, std::string>>;

/// What turns the rewritten message (every handle with its item token) into
/// one recipient's copy (every handle with that recipient's own token): per
/// normalized address, the location-part lines to swap. The engine writes
/// each location part as build_location_part() makes it, and a token may be
/// split across RFC 2231 sections there, so whole lines are swapped, not the
/// bare token.
class RecipientCopies {
public:
    /// Records a committed item's handle `h` (url with the item token).
    void add(const Handle& h, const NewItem& item);
    /// Whether every recipient of every item can get its own copy: false when
    /// a line to swap is too short or ambiguous to find safely (why() says
    /// why), or nothing was added. Callers then send the shared copy.
    bool usable() const { return why_.empty() && items_ > 0; }
    const std::string& why() const { return why_; }
    /// The swaps for one address (normalize_address form); nullptr when it
    /// has no token for some item.
    const Substitutions* for_address(const std::string& normalized) const;
    void clear();

private:
    std::map<std::string, Substitutions> subs_;
    std::map<std::string, unsigned> counts_;   // items each address has a token for
    std::set<std::string> keys_;               // every line to swap, all items
    unsigned items_ = 0;
    std::string why_;
};

/// Streams bytes through `subs` in fixed buffers: every occurrence of a key is
/// replaced by its value (same length). Output lags input by at most the
/// longest key.
class Substituter {
public:
    explicit Substituter(const Substitutions& subs);
    void feed(const char* p, size_t n, std::string& out);
    void finish(std::string& out);

private:
    const Substitutions& subs_;
    size_t keep_ = 0;
    std::string buf_;
};

/// Copies the file at `in` to `out` (created 0600) through a Substituter.
/// Throws std::runtime_error naming the file.
void write_substituted(const std::string& in, const std::string& out, const Substitutions& subs);

class StoreSink : public MediaSink {
public:
    /// `progress` is called every few MiB so a long detach keeps the MTA waiting.
    /// Each committed item is added to `copies` when given.
    StoreSink(Store& store, std::vector<std::string> recipients, std::function<void()> progress,
              RecipientCopies* copies = nullptr)
        : store_(store), recipients_(std::move(recipients)), progress_(std::move(progress)), copies_(copies)
    {
    }
    std::unique_ptr<Part> begin(const std::string& type, const std::string& name) override;

    /// Whom the media counts against (Store::create); set before the first begin().
    void set_sender(std::string sender) { sender_ = std::move(sender); }
    /// Ids of the items committed through this sink, for a caller that must
    /// take them out again when the message as a whole is refused.
    const std::vector<std::string>& committed() const { return committed_; }
    /// Their media's SHA-256, in the same order (for log lines).
    const std::vector<std::string>& committed_sha256() const { return committed_sha256_; }

private:
    std::string sender_;
    std::vector<std::string> committed_, committed_sha256_;
    Store& store_;
    std::vector<std::string> recipients_;
    std::function<void()> progress_;
    RecipientCopies* copies_;
};

} // namespace mm
