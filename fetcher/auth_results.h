// auth_results.h - whether the receiving server vouches for a mail's From:
// domain, read from its Authentication-Results header (RFC 8601). Only then do
// fetcher.priority_senders and fetcher.ignore_senders look at the sender: From:
// alone is whatever the sender wrote. Pure: bytes in, verdict out.
// Config keys (via SyncOptions): fetcher.authserv_id.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mm {

/// One resinfo of an Authentication-Results value: "dkim=pass header.d=b.org".
struct AuthResult {
    std::string method;   // lowercase, without a version
    std::string result;   // lowercase
    std::vector<std::pair<std::string, std::string>> props;   // "header.d" (lowercase) -> value as written
};

struct AuthResults {
    std::string authserv_id;
    std::vector<AuthResult> results;
};

/// Parses an Authentication-Results value (unfolded, after the colon):
/// authserv-id [version] then "; none" or 1*(";" method=result [reason=...]
/// *(ptype.property=value)), comments allowed anywhere CFWS is. False if it is
/// not that (a malformed header vouches for nothing).
bool parse_auth_results(std::string_view value, AuthResults& out);

/// Whether `ar` says the From domain `from_domain` passed: dmarc=pass (with
/// header.from, if given, that domain), or dkim=pass with header.d that domain
/// or a parent of it (with at least one dot). Domains compare case-insensitively.
bool auth_results_vouch(const AuthResults& ar, std::string_view from_domain);

/// The verdict for a mail's header block: the first Authentication-Results
/// field whose authserv-id is `authserv_id` (the receiving server puts its own
/// on top and removes forged ones with its id, RFC 8601 section 5; any later
/// one is not looked at) must vouch for the domain of the one address in the
/// one From: field. False when authserv_id is empty.
bool sender_vouched(std::string_view headers, std::string_view authserv_id);

} // namespace mm
