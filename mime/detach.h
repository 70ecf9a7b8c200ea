// detach.h - the sender's side of the MIME engine: take media attachments out of
// a message file into a sink (the sender's store) and put a location part
// (handle.h) in each one's place; every other byte is copied as it was.
// Only base64 parts are detached in format v1. Reads no config itself: mm-milter
// and mmsend fill DetachPolicy from milter.min_size, .types, .max_size and
// .over_max_size.
//
// Errors: exceptions. I/O failures and whatever the sink throws come out as
// exceptions; every other outcome (detached, nothing to detach, left alone,
// refused) is a DetachResult.
#pragma once

#include "mime/handle.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mm {

struct DetachPolicy {
    uint64_t min_size = 1 << 20;                 // decoded bytes
    std::vector<std::string> types{"video/*", "audio/*"};
    bool sniff = true;                           // also detach parts whose bytes sniff as media
    uint64_t max_size = UINT64_MAX;              // decoded bytes; larger media are not detached
    bool reject_over_max = false;                // ...and the whole message is refused
};

/// Receives one attachment's decoded bytes. begin() is called per detached part;
/// the returned sink gets the bytes, then finish() fills the handle's url, pin,
/// expires (and checks sha256/size). Any throw aborts the whole rewrite.
class MediaSink {
public:
    virtual ~MediaSink() = default;
    struct Part {
        virtual ~Part() = default;
        virtual void write(const void* data, size_t len) = 0;
        /// The handle has size, type, name and layout set, and sha256 unless
        /// hashes_itself(); fill in the rest (sha256 too, then).
        virtual void finish(Handle& h) = 0;
        /// True when the sink hashes what it is given anyway (the store does,
        /// to name the object): the engine then leaves hashing to it.
        virtual bool hashes_itself() const { return false; }
    };
    virtual std::unique_ptr<Part> begin(const std::string& type, const std::string& name) = 0;
};

struct DetachResult {
    unsigned detached = 0;
    std::vector<Handle> handles;
    uint64_t in_size = 0, out_size = 0;
    uint64_t out_body_offset = 0;   // where the body starts in the output file
    std::string skipped_why;        // when nothing was detached for a reason worth logging
    unsigned over_max = 0;          // media parts left in place: larger than max_size
    uint64_t largest_over_max = 0;  // decoded size of the largest of them
    bool rejected = false;          // over max_size with reject_over_max: nothing stored or written
    std::string protected_why;      // signed/encrypted content: the message was left alone
};

/// What decoding one base64 body yields besides its bytes.
struct DecodedBody {
    uint64_t size = 0;
    std::string sha256;       // empty when the sink hashes itself
    bool regular = false;     // re-encodable byte for byte with the three below
    unsigned line_len = 0;
    std::string eol;          // "\r\n", "\n", or "" (a single line without one)
    bool final_eol = false;
};

struct Predecoded;
class GrowingFile;

/// A message file parsed ahead of detach_message(), while it was written.
struct ParsedMessage;
struct ParsedMessageDeleter {
    void operator()(ParsedMessage* p) const;
};
using ParsedMessagePtr = std::unique_ptr<ParsedMessage, ParsedMessageDeleter>;

/// Parses the message file at `path` while it is being written (`file` says
/// how far it is; see growing.h); returns once the file is complete and parsed.
/// Throws when the file cannot be opened.
ParsedMessagePtr parse_growing(const std::string& path, std::shared_ptr<GrowingFile> file);

/// Reads the message at in_path and, if anything is detached, writes the
/// rewritten message to out_path (with a top-level "X-Media-Handles: N" header
/// first) and returns detached > 0. With nothing to detach, out_path is not
/// written. A message holding signed or encrypted content (multipart/signed,
/// multipart/encrypted, application/pkcs7-mime, inline PGP in a text part)
/// anywhere is never altered: protected_why says why. Media over
/// policy.max_size are left in place, or with reject_over_max the result is
/// `rejected` before anything reaches the sink. Throws std::runtime_error on
/// I/O errors, and what the sink throws.
///
/// `predecoded` (see prescan.h): bodies decoded while the message arrived; one
/// whose range is exactly a chosen part's body is used instead of decoding it
/// again (its part moves out of the vector); the others are left alone.
/// `parsed`: in_path already parsed by parse_growing(), instead of parsing it here.
DetachResult detach_message(const std::string& in_path, const std::string& out_path,
                            const DetachPolicy& policy, MediaSink& sink,
                            std::vector<Predecoded>* predecoded = nullptr, ParsedMessagePtr parsed = nullptr);

} // namespace mm
