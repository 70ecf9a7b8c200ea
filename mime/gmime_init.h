// gmime_init.h - GMime's process-wide set-up, done once whichever program or
// thread parses a message first (g_mime_init is not safe to call twice at once).
#pragma once

namespace mm {

/// Calls g_mime_init() exactly once per process; safe from any thread.
void gmime_init_once();

} // namespace mm
