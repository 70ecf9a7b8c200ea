// prescan.h - decodes media attachments while a message is still arriving, so
// that the engine finds them already decoded, hashed and stored at the end.
//
// The prescanner sees the bytes of the message file in order, as the milter
// spools them. It does not parse MIME: it guesses. After a line starting with
// "--" it reads a part header block; if that block declares base64, it decodes
// the body until the next line starting with '-' (which base64 text never has).
// The guess is never trusted. detach_message() parses the finished file with
// GMime as always and uses a prescanned body only when its byte range equals
// the range GMime gives the part; decoding the same bytes gives the same result
// whoever does it, so the outcome is the same as without prescanning, only
// sooner. A wrong guess costs the work done for it, nothing else.
#pragma once

#include "mime/detach.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mm {

class Base64Body;

/// One base64 body decoded ahead of time: its range in the message file and
/// everything detach_message() would have learnt by decoding it there.
struct Predecoded {
    uint64_t body_start = 0, body_end = 0;
    DecodedBody decoded;
    std::unique_ptr<MediaSink::Part> part;   // holds the bytes; not committed
};

class Prescanner {
public:
    /// Parts are begun in `sink` only when they may be detached under `policy`
    /// (declared or sniffed media type, at least policy.min_size or 1 MiB).
    Prescanner(const DetachPolicy& policy, MediaSink& sink);
    ~Prescanner();
    Prescanner(const Prescanner&) = delete;
    Prescanner& operator=(const Prescanner&) = delete;

    /// The next bytes of the message file. Throws what the sink throws.
    void feed(const char* p, size_t n);
    /// The bodies whose end was seen, in order. The prescanner is done.
    std::vector<Predecoded> finish();

private:
    enum class State { top_headers, part_headers, other, base64 };
    void line_in_headers(const char* p, size_t n);
    void end_of_headers(uint64_t body_start);
    void scan_other(const char* p, size_t n, size_t& i);
    void scan_base64(const char* p, size_t n, size_t& i);
    void body_data(const char* p, size_t n);
    void end_body(uint64_t end);

    const DetachPolicy policy_;   // a copy: callers pass temporaries
    MediaSink& sink_;
    State state_ = State::top_headers;
    uint64_t off_ = 0;           // file offset of the next byte fed
    bool line_start_ = true;     // the next byte fed starts a line
    bool collecting_ = false;    // reading a line that starts with '-' into line_
    std::string line_;           // a header line being assembled (capped)
    bool line_over_ = false;     // line_ hit its cap: the block is not used
    std::string block_;          // the part's header block so far (capped)
    std::string held_;           // a line break (or its CR) not yet fed to the decoder:
    uint64_t held_off_ = 0;      // it belongs to a boundary line if one follows

    struct Body;
    std::unique_ptr<Body> body_;
    std::vector<Predecoded> done_;
};

} // namespace mm
