// growing.cpp - GrowingFile and its GMime stream (see growing.h).
#include "mime/growing.h"

#include <algorithm>
#include <cerrno>
#include <gmime/gmime.h>
#include <unistd.h>

namespace mm {

void GrowingFile::grew(uint64_t size)
{
    {
        std::lock_guard<std::mutex> lock(mu_);
        size_ = size;
    }
    cv_.notify_all();
}

void GrowingFile::finish()
{
    {
        std::lock_guard<std::mutex> lock(mu_);
        done_ = true;
    }
    cv_.notify_all();
}

uint64_t GrowingFile::wait_beyond(uint64_t pos)
{
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ || size_ > pos; });
    return size_;
}

uint64_t GrowingFile::wait_done()
{
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return size_;
}

uint64_t GrowingFile::size(bool& done)
{
    std::lock_guard<std::mutex> lock(mu_);
    done = done_;
    return size_;
}

} // namespace mm

// The GObject subclass of GMimeStream. Its semantics follow GMime's own file
// stream (absolute offsets, bound_start/bound_end), except that reads wait.
extern "C" {
typedef struct {
    GMimeStream parent_object;
    int fd;
    std::shared_ptr<mm::GrowingFile>* file;   // heap-allocated: GObject memory runs no constructors
} MmGrowingStream;
typedef struct {
    GMimeStreamClass parent_class;
} MmGrowingStreamClass;
}

G_DEFINE_TYPE(MmGrowingStream, mm_growing_stream, GMIME_TYPE_STREAM)

namespace {

MmGrowingStream* self(GMimeStream* s) { return reinterpret_cast<MmGrowingStream*>(s); }
mm::GrowingFile& file_of(GMimeStream* s) { return **self(s)->file; }

ssize_t gs_read(GMimeStream* s, char* buf, size_t len)
{
    if (s->bound_end != -1 && s->position >= s->bound_end)
        return 0;
    uint64_t have = file_of(s).wait_beyond(static_cast<uint64_t>(s->position));
    gint64 limit = static_cast<gint64>(have);
    if (s->bound_end != -1 && s->bound_end < limit)
        limit = s->bound_end;
    if (s->position >= limit)
        return 0;   // the file is complete and we are at its end
    size_t want = static_cast<size_t>(std::min<gint64>(static_cast<gint64>(len), limit - s->position));
    ssize_t n;
    do
        n = pread(self(s)->fd, buf, want, static_cast<off_t>(s->position));
    while (n < 0 && errno == EINTR);
    if (n > 0)
        s->position += n;
    return n;
}

ssize_t gs_write(GMimeStream*, const char*, size_t) { return -1; }
int gs_flush(GMimeStream*) { return 0; }
int gs_close(GMimeStream*) { return 0; }   // the fd goes with the object

gboolean gs_eos(GMimeStream* s)
{
    if (s->bound_end != -1)
        return s->position >= s->bound_end;
    bool done = false;
    uint64_t size = file_of(s).size(done);
    return done && s->position >= static_cast<gint64>(size);
}

int gs_reset(GMimeStream* s)
{
    s->position = s->bound_start;
    return 0;
}

gint64 gs_seek(GMimeStream* s, gint64 offset, GMimeSeekWhence whence)
{
    gint64 real;
    switch (whence) {
    case GMIME_STREAM_SEEK_SET:
        real = offset;
        break;
    case GMIME_STREAM_SEEK_CUR:
        real = s->position + offset;
        break;
    case GMIME_STREAM_SEEK_END:
        real = (s->bound_end != -1 ? s->bound_end : static_cast<gint64>(file_of(s).wait_done())) + offset;
        break;
    default:
        return -1;
    }
    if (real < s->bound_start || (s->bound_end != -1 && real > s->bound_end))
        return -1;
    s->position = real;
    return real;
}

gint64 gs_tell(GMimeStream* s) { return s->position; }

gint64 gs_length(GMimeStream* s)
{
    gint64 end = s->bound_end != -1 ? s->bound_end : static_cast<gint64>(file_of(s).wait_done());
    return end - s->bound_start;
}

GMimeStream* gs_substream(GMimeStream* s, gint64 start, gint64 end)
{
    int fd = dup(self(s)->fd);
    if (fd < 0)
        return nullptr;
    GMimeStream* sub = mm::growing_stream_new(fd, *self(s)->file);
    g_mime_stream_construct(sub, start, end);
    return sub;
}

} // namespace

static void mm_growing_stream_init(MmGrowingStream* s)
{
    s->fd = -1;
    s->file = nullptr;
}

static void mm_growing_stream_finalize(GObject* o)
{
    MmGrowingStream* s = reinterpret_cast<MmGrowingStream*>(o);
    if (s->fd >= 0)
        close(s->fd);
    delete s->file;
    G_OBJECT_CLASS(mm_growing_stream_parent_class)->finalize(o);
}

static void mm_growing_stream_class_init(MmGrowingStreamClass* klass)
{
    G_OBJECT_CLASS(klass)->finalize = mm_growing_stream_finalize;
    GMimeStreamClass* s = GMIME_STREAM_CLASS(klass);
    s->read = gs_read;
    s->write = gs_write;
    s->flush = gs_flush;
    s->close = gs_close;
    s->eos = gs_eos;
    s->reset = gs_reset;
    s->seek = gs_seek;
    s->tell = gs_tell;
    s->length = gs_length;
    s->substream = gs_substream;
}

namespace mm {

GMimeStream* growing_stream_new(int fd, std::shared_ptr<GrowingFile> file)
{
    MmGrowingStream* s = static_cast<MmGrowingStream*>(g_object_new(mm_growing_stream_get_type(), nullptr));
    s->fd = fd;
    s->file = new std::shared_ptr<GrowingFile>(std::move(file));
    g_mime_stream_construct(GMIME_STREAM(s), 0, -1);
    return GMIME_STREAM(s);
}

} // namespace mm
