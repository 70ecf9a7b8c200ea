// mmsend.h - mmsend's whole run: options, config, spool, the detach engine with
// the media store, submission, and the removal of stored media when the mail
// could not be submitted. Reads milter.min_size and milter.types (the same
// detach policy as mm-milter), milter.max_message_size, store.*, mmsend.*, log.level.
#pragma once

#include <string>
#include <vector>

namespace mm::send {

/// Runs mmsend with argv[1..]; returns the process exit code (sysexits).
int run(const std::vector<std::string>& args);


} // namespace mm::send
