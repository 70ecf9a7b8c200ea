// receipt.h - download receipts: once a media file is verified, mm-fetcher tells
// the sender's gateway who has it (POST <handle url>/receipt, form-encoded), so
// that the gateway can delete or archive its copy when every recipient has one.
// This is who the receipt is for and what the request says; download.cpp sends it.
// Config key: fetcher.address (passed in).
#pragma once

#include <string>
#include <string_view>

namespace mm {

/// Whose receipt this is: fetcher.address, else Delivered-To / X-Original-To as
/// Postfix writes them (in the raw header block `headers`), else the POP3 user
/// if it has an '@'; "" if none.
std::string receipt_recipient(const std::string& configured, std::string_view headers, const std::string& user);

/// The receipt request for a verified download: its URL (<handle url>/receipt)
/// and its form body "recipient=<escaped>&sha256=<hex>".
std::string receipt_url(const std::string& handle_url);
std::string receipt_body(const std::string& recipient, const std::string& sha256);

} // namespace mm
