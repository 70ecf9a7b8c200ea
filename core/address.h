// address.h - an e-mail address in the one form both ends of a receipt compare:
// the before-queue filter, the milter and mmsend record envelope recipients
// with it, mm-fetcher turns the mailbox's address into it, and the gateway
// compares the two. One function, so the two ends can never drift apart.
#pragma once

#include <string>
#include <string_view>

namespace mm {

/// Longest address kept: RFC 5321 section 4.5.3.1.3 allows a path of 256
/// octets including its angle brackets.
constexpr size_t kMaxAddress = 254;

/// `addr` (an envelope address, "<a@b>" or "a@b", or a header mailbox such as
/// "Name <a@b>": the part in the last angle brackets counts) with blanks
/// around it removed and ASCII letters lowered. Empty when it is not a plain
/// address: no '@' between a local part and a domain, longer than kMaxAddress,
/// or containing blanks, controls, non-ASCII octets (no SMTPUTF8), quotes, brackets, parentheses, ',', ';' or
/// '\' (quoted local parts are refused: such an address goes into a form body
/// and a log line).
std::string normalize_address(std::string_view addr);

} // namespace mm
