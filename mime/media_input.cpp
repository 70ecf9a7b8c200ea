// media_input.cpp - a finished media file as a MediaInput (media_input.h).
#include "mime/media_input.h"

#include "mime/walk.h"

#include <stdexcept>

namespace mm {

namespace {

/// A finished media file, read front to back.
class FileMediaInput : public MediaInput {
public:
    explicit FileMediaInput(const std::string& path) : in_(path) {}
    size_t read(char* buf, size_t n) override
    {
        size_t got = in_.pread_some(buf, n, pos_);
        if (got == 0)
            throw std::runtime_error("media file " + in_.path() + " is shorter than its handle says");
        pos_ += got;
        return got;
    }
    void finish() override
    {
        if (pos_ != in_.size())
            throw std::runtime_error("media file " + in_.path() + " is longer than its handle says");
    }

private:
    walk::InFile in_;
    uint64_t pos_ = 0;
};

} // namespace

std::unique_ptr<MediaInput> open_media_file(const std::string& path)
{
    return std::make_unique<FileMediaInput>(path);
}

} // namespace mm
