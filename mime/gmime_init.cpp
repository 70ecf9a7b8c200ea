// gmime_init.cpp - GMime's one-time set-up (gmime_init.h).
#include "mime/gmime_init.h"

#include <gmime/gmime.h>
#include <mutex>

namespace mm {

void gmime_init_once()
{
    static std::once_flag once;
    std::call_once(once, [] { g_mime_init(); });
}

} // namespace mm
