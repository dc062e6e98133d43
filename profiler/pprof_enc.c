/* pprof_enc.c: profile.proto primitives, gzip and the output file (see pprof_enc.h). */
#include "pprof_enc.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------ buffer */

void
sp_buf_init(sp_buf_t *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void
sp_buf_free(sp_buf_t *b)
{
    free(b->p);
    sp_buf_init(b);
}

int
sp_buf_grow(sp_buf_t *b, size_t n)
{
    if (b->oom)
        return -1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void
sp_buf_append(sp_buf_t *b, const void *data, size_t n)
{
    if (n == 0 || sp_buf_reserve(b, n) < 0)
        return;
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

void
sp_pb_bytes(sp_buf_t *b, int field, const void *data, size_t n)
{
    sp_pb_key(b, field, SP_WT_LEN);
    sp_buf_varint(b, n);
    sp_buf_append(b, data, n);
}

void
sp_pb_end_long(sp_buf_t *b, size_t start)
{
    size_t n = b->len - start;
    size_t extra = sp_varint_size(n) - 1;
    if (sp_buf_reserve(b, extra) < 0)
        return;
    memmove(b->p + start + extra, b->p + start, n);
    sp_put_varint(b->p + start - 1, n);
    b->len += extra;
}

/* ------------------------------------------------------------------ u64 map */

static inline size_t
mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return (size_t)k;
}

void
sp_u64map_init(sp_u64map_t *m)
{
    memset(m, 0, sizeof(*m));
}

void
sp_u64map_free(sp_u64map_t *m)
{
    free(m->keys);
    free(m->vals);
    free(m->used);
    sp_u64map_init(m);
}

uint64_t *
sp_u64map_get(const sp_u64map_t *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t j = mix64(key) & mask; m->used[j]; j = (j + 1) & mask)
        if (m->keys[j] == key)
            return &m->vals[j];
    return NULL;
}

static int
u64map_resize(sp_u64map_t *m, size_t cap)
{
    uint64_t *keys = malloc(cap * sizeof(uint64_t)), *vals = malloc(cap * sizeof(uint64_t));
    uint8_t *used = calloc(cap, 1);
    if (!keys || !vals || !used) {
        free(keys);
        free(vals);
        free(used);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->used[i])
            continue;
        size_t j = mix64(m->keys[i]) & (cap - 1);
        while (used[j])
            j = (j + 1) & (cap - 1);
        used[j] = 1;
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    free(m->used);
    m->keys = keys;
    m->vals = vals;
    m->used = used;
    m->cap = cap;
    return 0;
}

uint64_t *
sp_u64map_put(sp_u64map_t *m, uint64_t key, int *created)
{
    if ((m->n + 1) * 2 > m->cap && u64map_resize(m, m->cap ? m->cap * 2 : 64) < 0)
        return NULL;
    size_t mask = m->cap - 1;
    size_t j = mix64(key) & mask;
    for (; m->used[j]; j = (j + 1) & mask) {
        if (m->keys[j] == key) {
            *created = 0;
            return &m->vals[j];
        }
    }
    m->used[j] = 1;
    m->keys[j] = key;
    m->vals[j] = 0;
    m->n++;
    *created = 1;
    return &m->vals[j];
}

/* ------------------------------------------------------------------ strings */

typedef struct {
    size_t off;      /* into the arena */
    size_t len;
    uint64_t hash;
} str_t;

struct sp_strtab {
    sp_buf_t arena;
    str_t *strs;
    size_t n, cap;
    uint32_t *index;     /* string number + 1; 0 = empty slot */
    size_t index_cap;    /* a power of two */
    int oom;
};

static uint64_t
hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ n;   /* FNV-1a, 8 bytes at a time */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return mix64(h);
}

sp_strtab_t *
sp_strtab_new(void)
{
    sp_strtab_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    sp_buf_init(&t->arena);
    t->index_cap = 1024;
    t->index = calloc(t->index_cap, sizeof(uint32_t));
    if (!t->index || sp_strtab_intern(t, "", 0) != 0) {
        sp_strtab_free(t);
        return NULL;
    }
    return t;
}

void
sp_strtab_free(sp_strtab_t *t)
{
    if (!t)
        return;
    sp_buf_free(&t->arena);
    free(t->strs);
    free(t->index);
    free(t);
}

size_t
sp_strtab_size(const sp_strtab_t *t)
{
    return t->n;
}

static int
strtab_grow_index(sp_strtab_t *t)
{
    size_t cap = t->index_cap * 2;
    uint32_t *idx = calloc(cap, sizeof(uint32_t));
    if (!idx)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t j = t->strs[i].hash & (cap - 1);
        while (idx[j])
            j = (j + 1) & (cap - 1);
        idx[j] = (uint32_t)(i + 1);
    }
    free(t->index);
    t->index = idx;
    t->index_cap = cap;
    return 0;
}

int64_t
sp_strtab_intern(sp_strtab_t *t, const char *s, size_t n)
{
    if (t->oom)
        return -1;
    uint64_t h = hash_bytes(s, n);
    size_t mask = t->index_cap - 1;
    size_t j = h & mask;
    for (; t->index[j]; j = (j + 1) & mask) {
        const str_t *e = &t->strs[t->index[j] - 1];
        if (e->hash == h && e->len == n && (n == 0 || memcmp(t->arena.p + e->off, s, n) == 0))
            return (int64_t)(t->index[j] - 1);
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        str_t *strs = realloc(t->strs, cap * sizeof(str_t));
        if (!strs)
            goto oom;
        t->strs = strs;
        t->cap = cap;
    }
    size_t off = t->arena.len;
    sp_buf_append(&t->arena, s, n);
    if (t->arena.oom)
        goto oom;
    t->strs[t->n] = (str_t){off, n, h};
    t->index[j] = (uint32_t)(++t->n);
    if (t->n * 2 > t->index_cap && strtab_grow_index(t) < 0)
        goto oom;
    return (int64_t)(t->n - 1);
oom:
    t->oom = 1;
    return -1;
}

void
sp_strtab_encode(const sp_strtab_t *t, sp_buf_t *out)
{
    if (t->oom) {
        out->oom = 1;
        return;
    }
    for (size_t i = 0; i < t->n; i++)
        sp_pb_bytes(out, SP_PROFILE_STRING_TABLE, t->arena.p + t->strs[i].off,
                    t->strs[i].len);
}

/* ------------------------------------------------------------------ files */

/* libdeflate, when the system has it (Debian's libdeflate0): one call over the whole
 * buffer, at level 1 about 2.3 times fewer instructions than zlib's deflate for the
 * same size (benchmarks/RESULTS.md).  Loaded with dlopen, so neither the build nor
 * the install needs it; zlib otherwise.  Its entry points, declared here (libdeflate.h
 * is in libdeflate-dev, which a machine with the library alone does not have), are
 * stable since libdeflate 1.0.  Resolved once (pthread_once), read-only after. */
struct libdeflate_compressor;
static struct {
    struct libdeflate_compressor *(*alloc)(int level);
    size_t (*gzip)(struct libdeflate_compressor *c, const void *in, size_t n, void *out,
                   size_t avail);
    size_t (*bound)(struct libdeflate_compressor *c, size_t n);
    void (*free)(struct libdeflate_compressor *c);
} libdeflate;
static pthread_once_t libdeflate_once = PTHREAD_ONCE_INIT;

static void
libdeflate_load(void)
{
    void *h = dlopen("libdeflate.so.0", RTLD_NOW | RTLD_LOCAL);
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

const char *
sp_pprof_deflater(void)
{
    pthread_once(&libdeflate_once, libdeflate_load);
    return libdeflate.gzip ? "libdeflate" : "zlib";
}

int
sp_pprof_gzip(const uint8_t *data, size_t n, int level, sp_buf_t *out)
{
    pthread_once(&libdeflate_once, libdeflate_load);
    if (!libdeflate.gzip)
        return sp_pprof_gzip_zlib(data, n, level, out);
    struct libdeflate_compressor *c = libdeflate.alloc(level);
    if (!c) {
        errno = ENOMEM;
        return -1;
    }
    out->len = 0;
    size_t bound = libdeflate.bound(c, n);
    if (sp_buf_reserve(out, bound) < 0) {
        libdeflate.free(c);
        errno = ENOMEM;
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

int
sp_pprof_gzip_zlib(const uint8_t *data, size_t n, int level, sp_buf_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip wrapper with a zero mtime and no file name. */
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        errno = ENOMEM;
        return -1;
    }
    out->len = 0;
    size_t bound = deflateBound(&z, (uLong)n);
    if (sp_buf_reserve(out, bound) < 0) {
        deflateEnd(&z);
        errno = ENOMEM;
        return -1;
    }
    int rc = Z_OK;
    size_t done = 0;
    while (rc == Z_OK) {
        /* zlib counts in uInt: feed at most 1 GiB at a time. */
        size_t chunk = n - done < (1u << 30) ? n - done : (1u << 30);
        z.next_in = (Bytef *)(data + done);
        z.avail_in = (uInt)chunk;
        if (sp_buf_reserve(out, 64 + chunk / 2) < 0) {
            deflateEnd(&z);
            errno = ENOMEM;
            return -1;
        }
        z.next_out = out->p + out->len;
        size_t room = out->cap - out->len;
        z.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
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
sp_pprof_write_file(const char *path, const uint8_t *data, size_t n, int do_fsync,
                    int mode)
{
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    static const char templ[] = ".shadowprof-XXXXXX.tmp";
    char *tmp = malloc(dirlen + sizeof(templ));
    if (!tmp) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(tmp, path, dirlen);
    memcpy(tmp + dirlen, templ, sizeof(templ));
    int fd = mkstemps(tmp, 4);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    if (mode >= 0 && fchmod(fd, (mode_t)mode) < 0)
        goto fail;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, data + done, n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        done += (size_t)w;
    }
    if (do_fsync && fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        goto fail;
    free(tmp);
    return 0;
fail:;
    int err = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    errno = err;
    return -1;
}
