/* deflate.c: gzip of one finished buffer with ISA-L's igzip, libdeflate or zlib.
 *
 * Owns the compressor the pprof writer uses (deflate.h).  The writer's fast level
 * (1, what profiles are written with, as Go's runtime/pprof writes gzip.BestSpeed)
 * goes to ISA-L's igzip when the system has it: level 2 of igzip is about twice as
 * fast as libdeflate's level 1 on a profile's protobuf, for a file about 5% larger
 * (benchmarks/RESULTS.md, "pprof writer: ISA-L").  Higher levels, where igzip's
 * level 3 compresses no better than libdeflate's level 1 in the same time, go to
 * libdeflate; zlib when neither library is there.
 *
 * The libraries are dlopen'ed on first use (pthread_once), so neither the build, the
 * install nor the run needs them.  ISA-L is compiled in only where its header is
 * (libisal-dev): its stream structure is the header's, and libisal.so.2's soname
 * keeps that layout.  libdeflate's four entry points are declared here (libdeflate.h
 * is in libdeflate-dev, which a machine with the library alone does not have); they
 * are stable since libdeflate 1.0.
 *
 * Thread contract: called from the writer with the GIL released, never from the
 * signal handler (it allocates).  Touches only its arguments and the table of
 * entry points, written once under pthread_once and read-only after.
 */
#include "deflate.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#ifdef SP_HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

/* zlib and igzip count in 32 bits: feed at most 1 GiB at a time. */
#define CHUNK ((size_t)1 << 30)

struct libdeflate_compressor;
static struct {
    struct libdeflate_compressor *(*alloc)(int level);
    size_t (*gzip)(struct libdeflate_compressor *c, const void *in, size_t n, void *out,
                   size_t avail);
    size_t (*bound)(struct libdeflate_compressor *c, size_t n);
    void (*free)(struct libdeflate_compressor *c);
} libdeflate;

#ifdef SP_HAVE_ISAL
static struct {
    void (*init)(struct isal_zstream *z);
    int (*deflate)(struct isal_zstream *z);
} isal;
#endif

static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void
load(void)
{
    void *h;
#ifdef SP_HAVE_ISAL
    h = dlopen("libisal.so.2", RTLD_NOW | RTLD_LOCAL);
    if (h) {
        void *i = dlsym(h, "isal_deflate_init"), *d = dlsym(h, "isal_deflate");
        if (i && d) {
            *(void **)&isal.init = i;
            *(void **)&isal.deflate = d;
        } else {
            dlclose(h);
        }
    }
#endif
    h = dlopen("libdeflate.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    void *a = dlsym(h, "libdeflate_alloc_compressor"), *g = dlsym(h, "libdeflate_gzip_compress"),
         *b = dlsym(h, "libdeflate_gzip_compress_bound"), *f = dlsym(h, "libdeflate_free_compressor");
    if (!a || !g || !b || !f) {
        dlclose(h);
        return;
    }
    *(void **)&libdeflate.alloc = a;
    *(void **)&libdeflate.gzip = g;
    *(void **)&libdeflate.bound = b;
    *(void **)&libdeflate.free = f;
}

static int
have_isal(void)
{
#ifdef SP_HAVE_ISAL
    return isal.deflate != NULL;
#else
    return 0;
#endif
}

int
sp_gzip_deflater(int level, int deflater)
{
    pthread_once(&load_once, load);
    switch (deflater) {
    case SP_DEFLATE_ANY:
        if (level <= 1 && have_isal())
            return SP_DEFLATE_ISAL;
        return libdeflate.gzip ? SP_DEFLATE_LIBDEFLATE : SP_DEFLATE_ZLIB;
    case SP_DEFLATE_ISAL:
        return have_isal() ? deflater : -1;
    case SP_DEFLATE_LIBDEFLATE:
        return libdeflate.gzip ? deflater : -1;
    case SP_DEFLATE_ZLIB:
        return deflater;
    }
    return -1;
}

static const char *const names[] = {"none", "isal", "libdeflate", "zlib"};

const char *
sp_deflater_name(int deflater)
{
    return deflater >= 0 && deflater <= SP_DEFLATE_ZLIB ? names[deflater] : NULL;
}

int
sp_deflater_parse(const char *name)
{
    for (int d = SP_DEFLATE_ISAL; d <= SP_DEFLATE_ZLIB; d++)
        if (strcmp(name, names[d]) == 0)
            return d;
    return -1;
}

/* The output: a growable buffer, handed to the caller on success. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} out_t;

/* Room for n more bytes; 0, or -1 with errno ENOMEM. */
static int
reserve(out_t *o, size_t n)
{
    if (o->cap - o->len >= n)
        return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap - o->len < n) {
        if (cap > SIZE_MAX / 2) {
            errno = ENOMEM;
            return -1;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(o->p, cap);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    o->p = p;
    o->cap = cap;
    return 0;
}

#ifdef SP_HAVE_ISAL
/* igzip's level for ours: 2 at level 1 (as fast as its level 1 on profiles, and
 * smaller), else its best, 3. */
static int
gzip_isal(const uint8_t *data, size_t n, int level, out_t *out)
{
    uint32_t ilevel = level <= 1 ? 2 : 3;
    uint32_t lsize = ilevel == 2 ? ISAL_DEF_LVL2_DEFAULT : ISAL_DEF_LVL3_DEFAULT;
    /* The stream is 80 KB: on the heap, not on a thread's stack.  The level buffer
     * zeroed: igzip's hashing reads parts of it it has not written (valgrind), and
     * the same input then gives the same file. */
    struct isal_zstream *z = malloc(sizeof(*z));
    uint8_t *lbuf = calloc(1, lsize);
    int rc = -1, err = ENOMEM;
    if (!z || !lbuf)
        goto done;
    isal.init(z);
    z->gzip_flag = IGZIP_GZIP;   /* the generic header: mtime 0, no name */
    z->level = ilevel;
    z->level_buf = lbuf;
    z->level_buf_size = lsize;
    z->flush = NO_FLUSH;
    size_t done = 0;
    err = EIO;
    for (;;) {
        size_t chunk = n - done < CHUNK ? n - done : CHUNK;
        z->next_in = (uint8_t *)(data + done);
        z->avail_in = (uint32_t)chunk;
        z->end_of_stream = done + chunk == n;
        /* room for the chunk stored (igzip's worst case) and the wrapper */
        if (reserve(out, 1024 + chunk + chunk / 16) < 0) {
            err = ENOMEM;
            goto done;
        }
        size_t room = out->cap - out->len;
        z->next_out = out->p + out->len;
        z->avail_out = (uint32_t)(room < CHUNK ? room : CHUNK);
        uint32_t in0 = z->avail_in, out0 = z->avail_out;
        int r = isal.deflate(z);
        out->len += out0 - z->avail_out;
        done += in0 - z->avail_in;
        if (r != COMP_OK)
            goto done;
        if (z->internal_state.state == ZSTATE_END)
            break;
        if (z->avail_in == in0 && z->avail_out == out0)   /* no progress: give up */
            goto done;
    }
    if (done != n)
        goto done;
    rc = 0;
done:
    free(lbuf);
    free(z);
    if (rc < 0)
        errno = err;
    return rc;
}
#endif

static int
gzip_libdeflate(const uint8_t *data, size_t n, int level, out_t *out)
{
    struct libdeflate_compressor *c = libdeflate.alloc(level);
    if (!c) {
        errno = ENOMEM;
        return -1;
    }
    if (reserve(out, libdeflate.bound(c, n)) < 0) {
        libdeflate.free(c);
        return -1;
    }
    /* gzip header with mtime 0 (no time known), as zlib's below */
    size_t len = libdeflate.gzip(c, data, n, out->p, out->cap);
    libdeflate.free(c);
    if (!len) {
        errno = EIO;
        return -1;
    }
    out->len = len;
    return 0;
}

static int
gzip_zlib(const uint8_t *data, size_t n, int level, out_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip wrapper with a zero mtime and no file name. */
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        errno = ENOMEM;
        return -1;
    }
    if (reserve(out, deflateBound(&z, (uLong)n)) < 0) {
        deflateEnd(&z);
        return -1;
    }
    int rc = Z_OK;
    size_t done = 0;
    while (rc == Z_OK) {
        size_t chunk = n - done < CHUNK ? n - done : CHUNK;
        z.next_in = (Bytef *)(data + done);
        z.avail_in = (uInt)chunk;
        if (reserve(out, 64 + chunk / 2) < 0) {
            deflateEnd(&z);
            return -1;
        }
        z.next_out = out->p + out->len;
        size_t room = out->cap - out->len;
        z.avail_out = room > CHUNK ? (uInt)CHUNK : (uInt)room;
        size_t before_out = z.avail_out;
        rc = deflate(&z, done + chunk == n ? Z_FINISH : Z_NO_FLUSH);
        out->len += before_out - z.avail_out;
        done += chunk - z.avail_in;
        if (rc == Z_BUF_ERROR)   /* no progress possible: more output room */
            rc = Z_OK;
    }
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        errno = EIO;
        return -1;
    }
    return 0;
}

int
sp_gzip(const uint8_t *data, size_t n, int level, int deflater, uint8_t **out,
        size_t *out_len)
{
    out_t o = {NULL, 0, 0};
    int d = sp_gzip_deflater(level, deflater);
    int rc;
    switch (d) {
#ifdef SP_HAVE_ISAL
    case SP_DEFLATE_ISAL:
        rc = gzip_isal(data, n, level, &o);
        break;
#endif
    case SP_DEFLATE_LIBDEFLATE:
        rc = gzip_libdeflate(data, n, level, &o);
        break;
    case SP_DEFLATE_ZLIB:
        rc = gzip_zlib(data, n, level, &o);
        break;
    default:
        errno = ENOSYS;
        rc = -1;
    }
    if (rc < 0) {
        int err = errno;
        free(o.p);
        *out = NULL;
        *out_len = 0;
        errno = err;
        return -1;
    }
    *out = o.p;
    *out_len = o.len;
    return d;
}
