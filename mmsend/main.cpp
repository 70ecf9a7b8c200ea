// main.cpp - mmsend, the command-line sender of MediaMail: compose mode and a
// sendmail-compatible -t mode. All logic is in mm_send (mmsend.cpp); see mmsend(1).
#include "mmsend/mmsend.h"

int main(int argc, char** argv)
{
    return mm::send::run(std::vector<std::string>(argv + 1, argv + argc));
}
