// rewrite.h - the MIME rewriting engine: detach media attachments from a message
// into a sink (the sender's store), and re-insert them from files (the receiver).
//
// Messages are files, parsed by GMime with a persistent stream so that no body is
// held in memory; every part of the message we do not replace is copied byte for
// byte from the input. Only base64 parts are detached in format v1.
#pragma once

#include "mime/handle.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mm {

/// Caps on what the engine walks.
constexpr unsigned kMaxMimeDepth = 32;
constexpr unsigned kMaxMimeParts = 2000;

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
ParsedMessagePtr parse_growing(const std::string& path, std::shared_ptr<GrowingFile> file);

/// Whether a lowercased MIME type matches one of the patterns ("video/*", "*/*", exact).
bool type_matches(const std::string& type, const std::vector<std::string>& patterns);

/// Reads the message at in_path and, if anything is detached, writes the
/// rewritten message to out_path. A message holding signed or encrypted content
/// (multipart/signed, multipart/encrypted, application/pkcs7-mime, inline PGP
/// in a text part) anywhere is never altered: protected_why says why.
/// Media over policy.max_size are left in place, or with reject_over_max the
/// result is `rejected` before anything reaches the sink.
///
/// In detail: reads the message at in_path and, if anything is detached, writes the
/// rewritten message to out_path (with a top-level "X-Media-Handles: N" header
/// first) and returns detached > 0. With nothing to detach, out_path is not
/// written. Throws std::runtime_error on I/O errors and sink failures.
///
/// `predecoded` (see prescan.h): bodies decoded while the message arrived; one
/// whose range is exactly a chosen part's body is used instead of decoding it
/// again (its part moves out of the vector); the others are left alone.
/// `parsed`: in_path already parsed by parse_growing(), instead of parsing it here.
DetachResult detach_message(const std::string& in_path, const std::string& out_path,
                            const DetachPolicy& policy, MediaSink& sink,
                            std::vector<Predecoded>* predecoded = nullptr, ParsedMessagePtr parsed = nullptr);

/// One location part found in a message.
struct FoundHandle {
    HandleParse parsed;   // parsed.error != none: the part is left as it is
};

/// The location parts of the message at path, in order of appearance.
std::vector<FoundHandle> find_handles(const std::string& path);

/// The bytes of one media file, read front to back by reinsert_media. The
/// plain one reads a finished file; the fetcher's follows a download still
/// being written and checks the SHA-256 itself (fetcher/growing_media.h).
class MediaInput {
public:
    virtual ~MediaInput() = default;
    /// Up to n (> 0) next bytes into buf; never 0. Throws when there are no more
    /// (a file shorter than the handle says, a download that failed).
    virtual size_t read(char* buf, size_t n) = 0;
    /// After the handle's size has been read: throws unless the bytes were the
    /// ones promised (for a plain file: that nothing follows them).
    virtual void finish() {}
};

/// A MediaInput reading the finished file at path (throws if it cannot be opened).
std::unique_ptr<MediaInput> open_media_file(const std::string& path);

/// Writes the message at in_path to out_path with location part i replaced by
/// the original part rebuilt from the media file media[i] (an empty string
/// leaves that location part in place). The caller has verified each file's size
/// and SHA-256. Returns false with `err` set on failure.
bool reinsert_media(const std::string& in_path, const std::vector<std::string>& media,
                    const std::string& out_path, std::string& err);

/// The same with each media read from media[i] (nullptr leaves that location
/// part in place). `crlf_clean`, if given, is set to whether out_path has no
/// bare LF and ends with a line end, which saves a caller that needs CRLF a
/// pass over the whole file.
bool reinsert_media(const std::string& in_path, const std::vector<MediaInput*>& media,
                    const std::string& out_path, std::string& err, bool* crlf_clean = nullptr);

/// What reinsert_media would write, worked out without the media: its octets,
/// where the first media's encoded bytes start, and whether it is CRLF-clean
/// (as crlf_clean above).
struct ReinsertLayout {
    uint64_t size = 0;
    uint64_t first_media = UINT64_MAX;   // UINT64_MAX: nothing replaced
    bool crlf_clean = false;
};

/// The layout of reinsert_media(in_path, media, ...) where replace[i] says
/// whether media[i] is given. Returns false with `err` set when reinsert_media
/// would fail before reading any media (or a handle's psize does not add up).
bool reinsert_layout(const std::string& in_path, const std::vector<bool>& replace, ReinsertLayout& layout,
                     std::string& err);

/// Octets of `size` bytes encoded as base64 in lines of line_len characters
/// separated by an eol of eol_len octets (and ended by one when final_eol).
uint64_t base64_encoded_size(uint64_t size, unsigned line_len, size_t eol_len, bool final_eol);

/// Sniffs the first bytes of decoded content: returns a media type such as
/// "video/mp4" for MP4/MOV, Matroska/WebM, AVI, MPEG-PS/TS, MP3, Ogg, FLAC, WAV,
/// or "" when it is none of them.
std::string sniff_media(const unsigned char* p, size_t n);

} // namespace mm
