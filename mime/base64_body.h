// base64_body.h - one base64 body decoded as it streams past, with the layout
// check that tells whether a receiver can re-encode it byte for byte. Shared by
// the engine (decoding from the spooled file) and the prescanner (decoding while
// the message arrives), so both give the same bytes and the same layout.
#pragma once

#include <cstdint>
#include <cstring>
#include <gmime/gmime.h>
#include <openssl/evp.h>
#include <string>

namespace mm {

/// Decodes a base64 body as it streams past and learns whether it has the
/// regular layout (equal lines of a multiple of 4 characters, one kind of line
/// ending, canonical padding) that lets a receiver re-encode it byte for byte.
///
/// Most bodies are regular, so a line that starts with nothing pending and
/// holds only alphabet characters, a multiple of 4 of them, is decoded by
/// table four characters at a time (which also validates them). Every other
/// line -- padding, odd lengths, stray characters, a line split across two
/// reads -- takes the byte-at-a-time path with GMime's decoder, whose output
/// is the same for clean quads; the layout rules are the same on both paths.
class Base64Body {
public:
    Base64Body()
    {
        static const Table table;
        t_ = table.v;
    }

    /// Decodes the next encoded bytes, appending to `out`.
    void feed(const char* p, size_t n, std::string& out)
    {
        size_t i = 0;
        while (i < n) {
            if (regular_ && cur_ == 0 && !prev_cr_ && !saw_pad_ && state_ == 0) {
                const char* nl = static_cast<const char*>(memchr(p + i, '\n', n - i));
                if (nl) {
                    size_t len = static_cast<size_t>(nl - (p + i));
                    bool cr = len > 0 && nl[-1] == '\r';
                    size_t chars = cr ? len - 1 : len;
                    if (chars > 0 && chars % 4 == 0 && decode_clean(p + i, chars, out)) {
                        cur_ = chars;
                        chars_ += chars;
                        memcpy(last4_, p + i + chars - 4, 4);   // chars_ % 4 == 0: ring order is plain order
                        line_end(cr);
                        i += len + 1;
                        continue;
                    }
                }
            }
            i += slow_line(p + i, n - i, out);
        }
    }

    /// Decides; `decoded_size` and `tail` (the last up to 3 decoded bytes of
    /// the final quantum) check that re-encoding gives the same characters.
    void finish(uint64_t decoded_size, const std::string& tail)
    {
        if (prev_cr_)
            regular_ = false;
        if (cur_ > 0)
            end_line();
        final_eol_ = ended_with_eol_ && lines_ > 0;
        if (line_len_ == 0 || line_len_ % 4 != 0 || line_len_ > 998)
            regular_ = false;
        if (chars_ != 4 * ((decoded_size + 2) / 3))
            regular_ = false;
        if (regular_ && decoded_size % 3 != 0) {
            unsigned char enc[8];
            EVP_EncodeBlock(enc, reinterpret_cast<const unsigned char*>(tail.data()), static_cast<int>(tail.size()));
            // last4_ holds the final quantum in ring order starting at chars_ % 4 == 0.
            if (memcmp(enc, last4_, 4) != 0)
                regular_ = false;
        }
    }

    bool regular() const { return regular_; }
    unsigned line_len() const { return static_cast<unsigned>(line_len_); }
    std::string eol() const { return eol_ == Eol::crlf ? "\r\n" : eol_ == Eol::lf ? "\n" : ""; }
    bool final_eol() const { return final_eol_; }

private:
    enum class Eol { none, lf, crlf };
    struct Table {
        unsigned char v[256];
        Table()
        {
            memset(v, 0x80, sizeof v);
            const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            for (unsigned char k = 0; k < 64; ++k)
                v[static_cast<unsigned char>(abc[k])] = k;
        }
    };

    /// Decodes `chars` (a multiple of 4) alphabet characters; false, with `out`
    /// as it was, if any character is not in the alphabet (padding included).
    bool decode_clean(const char* p, size_t chars, std::string& out)
    {
        size_t at = out.size();
        out.resize(at + chars / 4 * 3);
        auto* o = reinterpret_cast<unsigned char*>(out.data() + at);
        const auto* q = reinterpret_cast<const unsigned char*>(p);
        unsigned bad = 0;
        for (size_t k = 0; k < chars; k += 4, q += 4, o += 3) {
            unsigned a = t_[q[0]], b = t_[q[1]], c = t_[q[2]], d = t_[q[3]];
            bad |= a | b | c | d;
            o[0] = static_cast<unsigned char>(a << 2 | b >> 4);
            o[1] = static_cast<unsigned char>(b << 4 | c >> 2);
            o[2] = static_cast<unsigned char>(c << 6 | d);
        }
        if (bad & 0x80) {
            out.resize(at);
            return false;
        }
        return true;
    }

    /// The byte-at-a-time path for one line (through its '\n') or the rest of
    /// the input; returns the bytes consumed.
    size_t slow_line(const char* p, size_t n, std::string& out)
    {
        const char* nl = static_cast<const char*>(memchr(p, '\n', n));
        size_t len = nl ? static_cast<size_t>(nl - p) + 1 : n;
        for (size_t i = 0; i < len; ++i) {
            char c = p[i];
            if (c == '\n') {
                line_end(prev_cr_);
                continue;
            }
            if (prev_cr_)
                regular_ = false;   // a bare CR
            if (c == '\r') {
                prev_cr_ = true;
                continue;
            }
            ended_with_eol_ = false;
            if (saw_pad_ && c != '=')
                regular_ = false;
            if (c == '=')
                saw_pad_ = true;
            else if (t_[static_cast<unsigned char>(c)] & 0x80)
                regular_ = false;
            ++cur_;
            ++chars_;
            last4_[(chars_ - 1) % 4] = c;
        }
        size_t at = out.size();
        out.resize(at + len / 4 * 3 + 8);
        size_t m = g_mime_encoding_base64_decode_step(reinterpret_cast<const unsigned char*>(p), len,
                                                      reinterpret_cast<unsigned char*>(out.data() + at), &state_,
                                                      &save_);
        out.resize(at + m);
        return len;
    }

    void line_end(bool cr)
    {
        Eol e = cr ? Eol::crlf : Eol::lf;
        if (eol_ == Eol::none)
            eol_ = e;
        else if (eol_ != e)
            regular_ = false;
        end_line();
        prev_cr_ = false;
        ended_with_eol_ = true;
    }

    void end_line()
    {
        ++lines_;
        if (cur_ == 0 || short_seen_) {
            regular_ = false;   // an empty line, or a line after a short one
        } else if (lines_ == 1) {
            line_len_ = cur_;
        } else if (cur_ > line_len_) {
            regular_ = false;
        } else if (cur_ < line_len_) {
            short_seen_ = true;
        }
        cur_ = 0;
    }

    const unsigned char* t_;
    uint64_t cur_ = 0, line_len_ = 0, lines_ = 0, chars_ = 0;
    bool prev_cr_ = false, ended_with_eol_ = false, short_seen_ = false, saw_pad_ = false;
    bool regular_ = true, final_eol_ = false;
    Eol eol_ = Eol::none;
    char last4_[4] = {0, 0, 0, 0};
    int state_ = 0;       // GMime's decoder state, carried between slow lines
    guint32 save_ = 0;
};

} // namespace mm
