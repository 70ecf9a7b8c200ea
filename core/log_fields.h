// log_fields.h - the key=value fields that follow a log line's short message, so
// that one mail can be followed through mm-milter, mm-gateway and mm-fetcher by
// grepping the same message_id=, item= or hash= value in each program's log.
// A stopgap until core/log.h has its own field helper; then this one folds into it.
#pragma once

#include <string>
#include <string_view>

namespace mm {

/// One field, " key=value" (leading space included, so fields just append to a
/// message). The value is cut at 160 bytes and its control bytes, non-ASCII and
/// backslashes escaped as \xNN (printable()); it is put in double quotes, with
/// \" for a quote, when it is empty or holds a space, a quote or '=', so that a
/// hostile value can never forge another field.
std::string kv(std::string_view key, std::string_view value);
std::string kv(std::string_view key, unsigned long long value);

} // namespace mm
