// compose.h - builds the MIME message of compose mode (RFC 5322 headers with
// RFC 2047 words, RFC 2045 multipart/mixed, RFC 2231 file names) into a spool
// file, streaming each attachment through a base64 encoder in fixed buffers.
#pragma once

#include "mmsend/options.h"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mm::send {

/// One attachment as written into the message.
struct ComposedPart {
    std::string path;   // the file given with --attach
    std::string name;   // the file name in the message (UTF-8, sanitised as the engine reads it)
    std::string type;   // media type
    uint64_t size = 0;
};

/// Checks every attachment (and the body file) before anything is written:
/// Failure(66) naming the file when one is missing, unreadable or not a file.
std::vector<ComposedPart> check_inputs(const Options& o);

/// Writes the whole message to out_path. `progress` (may be empty) gets
/// (attachment index, bytes done) while files are encoded. Throws Failure.
void compose_message(const Options& o, const std::vector<ComposedPart>& parts, const std::string& out_path,
                     const std::function<void(size_t, uint64_t)>& progress);

/// The file name for a path as it goes into the message: the last component,
/// valid UTF-8, control characters as '_', at most 255 bytes.
std::string attachment_name(const std::string& path);

/// The media type for a file from its first bytes, else its extension.
std::string guess_type(const std::string& name, const unsigned char* head, size_t n);

/// A Content-Disposition filename parameter: quoted when plain ASCII and short,
/// else RFC 2231 (utf-8, percent-encoded, continued in sections of at most 60 characters).
std::string filename_param(const std::string& name, std::string_view eol);

/// Streaming quoted-printable encoder (RFC 2045 6.7) for the text body, lines
/// ended with CRLF; `out` receives encoded bytes.
class QpEncoder {
public:
    explicit QpEncoder(std::function<void(std::string_view)> out) : out_(std::move(out)) {}
    void feed(std::string_view in);
    void finish();

private:
    void put(std::string_view token);
    void flush_ws(bool encode);
    std::function<void(std::string_view)> out_;
    size_t col_ = 0;
    char ws_ = 0;
    bool cr_ = false;
};

} // namespace mm::send
