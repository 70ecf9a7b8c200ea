// address.h - the header block of a message handed to mmsend -t: split into
// fields (RFC 5322 section 2.2, bounded), recipients from To/Cc/Bcc parsed as
// RFC 5322 address lists (by GMime), and the copy of the message without Bcc.
#pragma once

#include "mime/header_block.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mm::send {

constexpr size_t kMaxHeaderBytes = 1 << 20;   // whole header block
constexpr size_t kMaxRecipients = 1000;
constexpr size_t kMaxAddressLength = 320;     // RFC 5321: 64 + 1 + 255

/// Splits the header block at the start of `data` (mm::parse_header_block,
/// capped at kMaxHeaderBytes). `at_eof` says whether data is the whole message
/// (a message may have no body). Throws Failure(65) on a malformed line or a
/// block longer than kMaxHeaderBytes.
HeaderBlock parse_header_block(std::string_view data, bool at_eof);

/// The addr-specs of an RFC 5322 address list (groups flattened). Throws
/// Failure(65) naming `what` when the list does not parse or an address is bad.
std::vector<std::string> parse_address_list(const std::string& value, const std::string& what);

/// Exactly one mailbox; returns its addr-spec. Throws Failure(code).
std::string parse_one_address(const std::string& value, const std::string& what, int code);

/// What mmsend -t needs from a message file.
struct MessageHeaders {
    std::vector<std::string> to, cc, bcc, from;
    bool has_date = false, has_message_id = false;
    HeaderBlock block;
};
MessageHeaders read_message_headers(const std::string& path);

/// Writes the message at in_path to out_path without its Bcc fields (the rest
/// byte for byte, in fixed buffers).
void copy_without_bcc(const std::string& in_path, const MessageHeaders& h, const std::string& out_path);

/// Appends `add` to `list`, dropping duplicates (case-insensitive); throws
/// Failure(64) past kMaxRecipients.
void add_recipients(std::vector<std::string>& list, const std::vector<std::string>& add);

} // namespace mm::send
