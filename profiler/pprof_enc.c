/* pprof_enc.c: profile.proto primitives and the output file (see pprof_enc.h); the
 * gzip is deflate.c's. */
#include "pprof_enc.h"

#include "deflate.h"

#include "clock.h"
#include "posindex.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
sp_buf_append_slow(sp_buf_t *b, const void *data, size_t n)
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

int
sp_u64map_reserve(sp_u64map_t *m, size_t n)
{
    size_t cap = m->cap ? m->cap : 64;
    while (n * 2 > cap)
        cap *= 2;
    return cap == m->cap ? 0 : u64map_resize(m, cap);
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
    size_t r = n - i;   /* 0..7 bytes left: read as at most two overlapping words */
    if (r) {
        uint64_t w;
        if (r >= 4) {
            uint32_t a, b;
            memcpy(&a, s + i, 4);
            memcpy(&b, s + n - 4, 4);
            w = (uint64_t)a << 32 | b;
        } else {
            w = (uint64_t)(uint8_t)s[i] << 16 | (uint64_t)(uint8_t)s[i + r / 2] << 8 |
                (uint8_t)s[n - 1];
        }
        h = (h ^ w) * 0x100000001b3ull;
    }
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

size_t
sp_strtab_bytes(const sp_strtab_t *t)
{
    return t->arena.len;
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
    if (t->n * 2 > t->index_cap &&
        sp_posindex_grow(&t->index, &t->index_cap, t->strs, t->n, sizeof(str_t),
                         offsetof(str_t, hash)) < 0)
        goto oom;
    return (int64_t)(t->n - 1);
oom:
    t->oom = 1;
    return -1;
}

int
sp_strtab_reserve(sp_strtab_t *t, size_t nstrings, size_t nbytes)
{
    if (t->oom)
        return -1;
    if (nstrings > t->cap) {
        str_t *strs = realloc(t->strs, nstrings * sizeof(str_t));
        if (!strs)
            goto oom;
        t->strs = strs;
        t->cap = nstrings;
    }
    if (sp_buf_reserve(&t->arena, nbytes) < 0)
        goto oom;
    while (nstrings * 2 > t->index_cap)
        if (sp_posindex_grow(&t->index, &t->index_cap, t->strs, t->n, sizeof(str_t),
                             offsetof(str_t, hash)) < 0)
            goto oom;
    return 0;
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
    /* one reservation for all: a one-byte key, a length of at most 10 bytes each */
    _Static_assert(SP_PROFILE_STRING_TABLE < 16, "a one-byte key");
    if (t->n > (SIZE_MAX - t->arena.len) / 11 ||
        sp_buf_reserve(out, t->arena.len + t->n * 11) < 0) {
        out->oom = 1;
        return;
    }
    uint8_t *q = out->p + out->len;
    for (size_t i = 0; i < t->n; i++) {
        const str_t *e = &t->strs[i];
        *q++ = SP_PROFILE_STRING_TABLE << 3 | SP_WT_LEN;
        q = sp_put_varint(q, e->len);
        memcpy(q, t->arena.p + e->off, e->len);
        q += e->len;
    }
    out->len = (size_t)(q - out->p);
}

/* ------------------------------------------------------------------ the profile */

void
sp_pprof_init(sp_pprof_t *p)
{
    memset(p, 0, sizeof(*p));
    sp_buf_init(&p->text);
}

void
sp_pprof_free(sp_pprof_t *p)
{
    sp_buf_free(&p->text);
    free(p->funcs);
    free(p->natives);
    free(p->threads);
    free(p->frames);
    free(p->samples);
    free(p->comments);
    sp_pprof_init(p);
}

int
sp_pprof_reserve(sp_pprof_t *p, void **arr, size_t *cap, size_t len, size_t n, size_t size)
{
    if (p->oom)
        return -1;
    if (*cap - len >= n)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c - len < n)
        c *= 2;
    void *a = realloc(*arr, c * size);
    if (!a) {
        p->oom = 1;
        return -1;
    }
    *arr = a;
    *cap = c;
    return 0;
}

size_t
sp_pprof_frames(sp_pprof_t *p, const uint64_t *frames, size_t n)
{
    size_t off = p->nframes;
    if (n && sp_pprof_reserve(p, (void **)&p->frames, &p->frames_cap, p->nframes, n,
                              sizeof(uint64_t)) == 0) {
        memcpy(p->frames + off, frames, n * sizeof(uint64_t));
        p->nframes += n;
    }
    return off;
}

sp_psample_t *
sp_pprof_push_sample(sp_pprof_t *p, const uint64_t *frames, uint32_t n, int64_t count,
                     int64_t weight, int64_t calls)
{
    size_t off = sp_pprof_frames(p, frames, n);
    sp_psample_t *s = SP_PPROF_PUSH(p, samples);
    if (s)
        *s = (sp_psample_t){off, n, 0, SP_PLABEL_NONE, {count, weight, calls}};
    return s;
}

/* ------------------------------------------------------------------ spare buffers */

/* The large buffers of one encoding, kept for the next: a writer called once a period
 * would otherwise get them fresh from the system each time (glibc hands large blocks
 * and the top of the heap back to the kernel when they are freed) and fault in every
 * page again: ~220 page faults a file of 2,000 stacks, a fifth of the encoding's
 * time.  One spare per use, taken and given back with an atomic exchange, so that
 * concurrent encoders (rare) stay correct: whoever finds no spare allocates, and a
 * spare slot already filled frees the second buffer.  Buffers over SPARE_KEEP are
 * freed, not kept: at most a few MiB stay between files (about 1 MiB at 2,000
 * stacks), and the 200,000-stack cap allocates as before.  A kept buffer holds its
 * capacity in its first bytes.  Not reachable from the signal handler. */
enum { SPARE_RAW, SPARE_LOCS, SPARE_LOCTAB, NSPARES };
#define SPARE_KEEP ((size_t)4 << 20)
static uint8_t *spares[NSPARES];
static sp_strtab_t *spare_strings;

static sp_buf_t
spare_take(int k)
{
    sp_buf_t b;
    sp_buf_init(&b);
    uint8_t *p = __atomic_exchange_n(&spares[k], NULL, __ATOMIC_ACQUIRE);
    if (p) {
        memcpy(&b.cap, p, sizeof(b.cap));
        b.p = p;
    }
    return b;
}

static void
spare_give(int k, sp_buf_t *b)
{
    uint8_t *p = b->p, *none = NULL;
    if (p && b->cap >= sizeof(b->cap) && b->cap <= SPARE_KEEP) {
        memcpy(p, &b->cap, sizeof(b->cap));
        if (__atomic_compare_exchange_n(&spares[k], &none, p, 0, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED)) {
            sp_buf_init(b);
            return;
        }
    }
    sp_buf_free(b);
}

/* An empty string table (only ""): the spare one emptied, or a new one.  NULL if out
 * of memory. */
static sp_strtab_t *
strtab_take(void)
{
    sp_strtab_t *t = __atomic_exchange_n(&spare_strings, NULL, __ATOMIC_ACQUIRE);
    if (!t)
        return sp_strtab_new();
    t->n = 0;
    t->arena.len = 0;
    memset(t->index, 0, t->index_cap * sizeof(uint32_t));
    if (sp_strtab_intern(t, "", 0) != 0) {
        sp_strtab_free(t);
        return NULL;
    }
    return t;
}

static void
strtab_give(sp_strtab_t *t)
{
    sp_strtab_t *none = NULL;
    if (t && !t->oom && t->arena.cap <= SPARE_KEEP && t->cap * sizeof(str_t) <= SPARE_KEEP &&
        t->index_cap * sizeof(uint32_t) <= SPARE_KEEP &&
        __atomic_compare_exchange_n(&spare_strings, &none, t, 0, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED))
        return;
    sp_strtab_free(t);
}

/* The id of the interpreter's Mapping; native objects' follow in first-use order. */
#define MAPPING_PYTHON 1

/* The encoder's working state: one per sp_pprof_encode call. */
typedef struct {
    const sp_pprof_t *p;
    sp_buf_t *out;
    sp_buf_t locs;          /* Location messages, appended after the mappings */
    sp_buf_t labels;        /* the encoded labels of each thread, in first-use order */
    sp_buf_t scratch;
    sp_strtab_t *strings;
    /* frame key + 1 -> location id: open addressing, multiplicative hash; key 0 marks
     * an empty slot (only the keys are zeroed).  Both arrays live in loctab. */
    sp_buf_t loctab;
    uint64_t *loc_keys;
    uint32_t *loc_ids;
    int bad_frame;          /* a frame named a function past the table */
    size_t nlocs, loc_cap;  /* loc_cap: a power of two */
    int loc_shift;          /* 64 - log2(loc_cap) */
    uint64_t *thread_labels;  /* by thread: offset << 20 | length + 1 in labels; 0 new */
    uint64_t *native_mapping; /* by native: its Mapping id; 0 not yet known */
    sp_strtab_t *mapping_paths;   /* native paths in first-use order */
    uint32_t *mapping_native;     /* by path index: the native that named it first */
    size_t nmappings;
    uint8_t unknown[32];    /* the caller=unknown label, once encoded */
    size_t unknown_len;
    sp_span_t last_file;    /* the file name of the last Function written ... */
    uint64_t last_file_index;   /* ... and its string index (0: none yet) */
} enc_t;

/* Sizes of the previous profile encoded: a writer called once a period starts at the
 * sizes it will need instead of growing to them.  Hints only (any value is correct;
 * loc_cap_hint stays a power of two), read and written relaxed by concurrent
 * encoders. */
static size_t loc_cap_hint = 4096, out_hint, locs_hint, strings_hint, text_hint;
#define HINT_GET(h) __atomic_load_n(&(h), __ATOMIC_RELAXED)
#define HINT_SET(h, v) __atomic_store_n(&(h), (v), __ATOMIC_RELAXED)

static inline const char *
span(const sp_pprof_t *p, sp_span_t s)
{
    return (const char *)p->text.p + s.off;
}

static inline uint64_t
intern_span(enc_t *e, sp_span_t s)
{
    return (uint64_t)sp_strtab_intern(e->strings, span(e->p, s), s.len);
}

static inline uint64_t
intern_c(enc_t *e, const char *s)
{
    return (uint64_t)sp_strtab_intern(e->strings, s, strlen(s));
}

static int
loc_grow(enc_t *e)
{
    size_t cap = e->loc_cap ? e->loc_cap * 2 : HINT_GET(loc_cap_hint);
    /* the first table goes into the spare loctab (if big enough), a bigger one into a
     * new buffer */
    sp_buf_t t;
    sp_buf_init(&t);
    if (!e->loc_cap) {
        t = e->loctab;
        sp_buf_init(&e->loctab);
    }
    size_t need = cap * (sizeof(uint64_t) + sizeof(uint32_t));
    if (t.cap < need) {
        sp_buf_free(&t);
        if (!(t.p = malloc(need)))
            return -1;
        t.cap = need;
    }
    uint64_t *keys = (uint64_t *)(void *)t.p;
    uint32_t *ids = (uint32_t *)(void *)(t.p + cap * sizeof(uint64_t));
    memset(keys, 0, cap * sizeof(uint64_t));
    int shift = 64;
    for (size_t c = cap; c > 1; c >>= 1)
        shift--;
    for (size_t i = 0; i < e->loc_cap; i++) {
        if (!e->loc_keys[i])
            continue;
        size_t j = (size_t)((e->loc_keys[i] * 0x9E3779B97F4A7C15ull) >> shift);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = e->loc_keys[i];
        ids[j] = e->loc_ids[i];
    }
    sp_buf_free(&e->loctab);
    e->loctab = t;
    e->loc_keys = keys;
    e->loc_ids = ids;
    e->loc_cap = cap;
    e->loc_shift = shift;
    return 0;
}

/* The Mapping id of a native function's object, given in first-use order. */
static uint64_t
native_mapping(enc_t *e, uint32_t native)
{
    if (e->native_mapping[native])
        return e->native_mapping[native];
    const sp_pnative_t *n = &e->p->natives[native];
    /* "\1" + path: the paths' own table never confuses a path with "" */
    e->scratch.len = 0;
    sp_buf_append(&e->scratch, "\1", 1);
    sp_buf_append(&e->scratch, span(e->p, n->path), n->path.len);
    size_t before = sp_strtab_size(e->mapping_paths);
    int64_t k = e->scratch.oom ? -1
                : sp_strtab_intern(e->mapping_paths, (const char *)e->scratch.p,
                                   e->scratch.len);
    if (k < 0) {
        e->out->oom = 1;
        return MAPPING_PYTHON;
    }
    if (sp_strtab_size(e->mapping_paths) > before)
        e->mapping_native[e->nmappings++] = native;
    return e->native_mapping[native] = MAPPING_PYTHON + (uint64_t)k;
}

static void
encode_location(enc_t *e, uint64_t id, uint32_t func, int32_t line)
{
    /* Written byte by byte straight into locs: every key and length here is one
     * byte, and a Location is at most 72 bytes. */
    _Static_assert(SP_PROFILE_LOCATION < 16 && SP_LOCATION_LINE < 16, "one-byte keys");
    if (func >= e->p->nfuncs) {   /* a frame names no function of the table */
        e->bad_frame = 1;
        return;
    }
    if (sp_buf_reserve(&e->locs, 72) < 0)
        return;
    const sp_pfunc_t *f = &e->p->funcs[func];
    uint8_t *msg = e->locs.p + e->locs.len, *m = msg + 2;   /* key and length first */
    *m++ = SP_LOCATION_ID << 3 | SP_WT_VARINT;
    m = sp_put_varint(m, id);
    *m++ = SP_LOCATION_MAPPING_ID << 3 | SP_WT_VARINT;
    if (!f->native) {
        *m++ = MAPPING_PYTHON;
    } else {
        m = sp_put_varint(m, native_mapping(e, f->native - 1));
        uint64_t address = e->p->natives[f->native - 1].address;
        if (address) {
            *m++ = SP_LOCATION_ADDRESS << 3 | SP_WT_VARINT;
            m = sp_put_varint(m, address);
        }
    }
    *m++ = SP_LOCATION_LINE << 3 | SP_WT_LEN;
    uint8_t *line_len = m++, *q = m;
    *q++ = SP_LINE_FUNCTION_ID << 3 | SP_WT_VARINT;
    q = sp_put_varint(q, f->id);
    if (line) {
        *q++ = SP_LINE_LINE << 3 | SP_WT_VARINT;
        q = sp_put_varint(q, (uint64_t)(int64_t)line);
    }
    *line_len = (uint8_t)(q - m);
    msg[0] = SP_PROFILE_LOCATION << 3 | SP_WT_LEN;
    msg[1] = (uint8_t)(q - msg - 2);
    e->locs.len += (size_t)(q - msg);
}

/* A new location for frame key (its key + 1 goes into the empty slot j): its id,
 * its Location written.  May grow the table. */
static uint64_t
location_new(enc_t *e, size_t j, uint64_t key)
{
    uint64_t key1 = key + 1;
    uint64_t id = ++e->nlocs;
    e->loc_keys[j] = key1;
    e->loc_ids[j] = (uint32_t)id;
    encode_location(e, id, (uint32_t)(key >> 32), (int32_t)(uint32_t)key);
    if (e->nlocs * 2 > e->loc_cap && loc_grow(e) < 0)
        e->out->oom = 1;   /* the table stays valid, only fuller */
    return id;
}

/* The labels of thread number t: "thread" with its name if it has one, and
 * "thread_id"; encoded (and the name interned) on first use. */
static void
thread_labels(enc_t *e, uint32_t t, const uint8_t **lab, size_t *len)
{
    uint64_t v = e->thread_labels[t];
    if (!v) {
        const sp_pthread_t *th = &e->p->threads[t];
        size_t start = e->labels.len;
        if (th->named) {
            uint64_t name = intern_span(e, th->name);
            size_t m = sp_pb_begin(&e->labels, SP_SAMPLE_LABEL);
            sp_pb_int(&e->labels, SP_LABEL_KEY, intern_c(e, "thread"));
            sp_pb_int(&e->labels, SP_LABEL_STR, name);
            sp_pb_end(&e->labels, m);
        }
        size_t m = sp_pb_begin(&e->labels, SP_SAMPLE_LABEL);
        sp_pb_int(&e->labels, SP_LABEL_KEY, intern_c(e, "thread_id"));
        sp_pb_int(&e->labels, SP_LABEL_NUM, th->tid);
        sp_pb_end(&e->labels, m);
        /* offset << 20 | length + 1: labels of one thread are far below 1 MiB */
        v = e->thread_labels[t] = (uint64_t)start << 20 | (e->labels.len - start + 1);
    }
    *lab = e->labels.p + (v >> 20);
    *len = (size_t)(v & ((1u << 20) - 1)) - 1;
}

static void
value_type(enc_t *e, int field, const char *type, const char *unit)
{
    size_t m = sp_pb_begin(e->out, field);
    sp_pb_int(e->out, SP_VALUETYPE_TYPE, intern_c(e, type));
    sp_pb_int(e->out, SP_VALUETYPE_UNIT, intern_c(e, unit));
    sp_pb_end(e->out, m);
}

/* Decimal of v into buf (24 bytes); returns its length. */
static int
format_int(char *buf, int64_t v)
{
    uint64_t u = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
    int len = v < 0, digits = 1;
    for (uint64_t t = u; t >= 10; t /= 10)
        digits++;
    if (v < 0)
        buf[0] = '-';
    len += digits;
    for (int i = len; digits-- > 0; u /= 10)   /* right to left, in place */
        buf[--i] = (char)('0' + u % 10);
    return len;
}

/* The Function message of f: name, system name (cProfile's label,
 * file:first line(co_name), unless synthetic) and file name interned in that order. */
static void
encode_function(enc_t *e, const sp_pfunc_t *f)
{
    const sp_pprof_t *p = e->p;
    uint64_t name = intern_span(e, f->name), sys = 0;
    const char *file_s = span(p, f->filename);
    size_t file_len = f->filename.len;
    if (!f->synthetic) {
        const char *q = span(p, f->name), *co = q + f->name.len;
        while (co > q && co[-1] != '.')
            co--;
        size_t co_len = (size_t)(q + f->name.len - co);
        e->scratch.len = 0;
        if (sp_buf_reserve(&e->scratch, file_len + co_len + 27) < 0) {   /* ":" 24 "()" */
            e->out->oom = 1;
        } else {
            char *d = (char *)e->scratch.p;
            memcpy(d, file_s, file_len);
            d += file_len;
            *d++ = ':';
            d += format_int(d, f->start_line);
            *d++ = '(';
            memcpy(d, co, co_len);
            d += co_len;
            *d++ = ')';
            sys = (uint64_t)sp_strtab_intern(e->strings, (const char *)e->scratch.p,
                                             (size_t)(d - (char *)e->scratch.p));
        }
    }
    /* Functions of one module follow each other: their file name is the last one's
     * (the same span when the filler shares it), already interned. */
    uint64_t file;
    if (e->last_file_index && file_len == e->last_file.len &&
        (f->filename.off == e->last_file.off ||
         memcmp(file_s, span(p, e->last_file), file_len) == 0)) {
        file = e->last_file_index;
    } else {
        file = intern_span(e, f->filename);
        e->last_file = f->filename;
        e->last_file_index = file;
    }
    /* Written straight into out, as a Location: five fields of at most 11 bytes, so
     * the key and the length are one byte each; a zero field is left out. */
    _Static_assert(SP_PROFILE_FUNCTION < 16 && SP_FUNCTION_START_LINE < 16, "one-byte keys");
    sp_buf_t *out = e->out;
    if (sp_buf_reserve(out, 2 + 5 * 11) < 0)
        return;
    uint8_t *msg = out->p + out->len, *m = msg + 2;
#define FIELD(field, v)                                                             \
    do {                                                                            \
        uint64_t v_ = (v);                                                          \
        if (v_) {                                                                   \
            *m++ = (field) << 3 | SP_WT_VARINT;                                     \
            m = sp_put_varint(m, v_);                                               \
        }                                                                           \
    } while (0)
    FIELD(SP_FUNCTION_ID, f->id);
    FIELD(SP_FUNCTION_NAME, name);
    FIELD(SP_FUNCTION_SYSTEM_NAME, sys);
    FIELD(SP_FUNCTION_FILENAME, file);
    FIELD(SP_FUNCTION_START_LINE, (uint64_t)f->start_line);
#undef FIELD
    msg[0] = SP_PROFILE_FUNCTION << 3 | SP_WT_LEN;
    msg[1] = (uint8_t)(m - msg - 2);
    out->len += (size_t)(m - msg);
}

/* One Sample. */
static void
encode_sample(enc_t *e, const sp_psample_t *s)
{
    sp_buf_t *out = e->out;
    const uint8_t *lab = NULL;
    size_t lab_len = 0;
    if (s->label == SP_PLABEL_THREAD) {
        thread_labels(e, s->thread, &lab, &lab_len);
    } else if (s->label == SP_PLABEL_UNKNOWN_CALLER) {
        if (!e->unknown_len) {
            sp_buf_t lb;
            sp_buf_init(&lb);
            size_t m = sp_pb_begin(&lb, SP_SAMPLE_LABEL);
            sp_pb_int(&lb, SP_LABEL_KEY, intern_c(e, "caller"));
            sp_pb_int(&lb, SP_LABEL_STR, intern_c(e, "unknown"));
            sp_pb_end(&lb, m);
            if (lb.oom || lb.len > sizeof(e->unknown))
                out->oom = 1;
            else
                memcpy(e->unknown, lb.p, e->unknown_len = lb.len);
            sp_buf_free(&lb);
        }
        lab = e->unknown;
        lab_len = e->unknown_len;
    }
    /* Written through a pointer into out, reserved once: every key here is one
     * byte, and so is every length but the sample's and its location ids' (patched
     * by sp_pb_end, which moves the body when they are longer).  location_new
     * appends to e->locs, never to out. */
    _Static_assert(SP_PROFILE_SAMPLE < 16 && SP_SAMPLE_VALUE < 16, "one-byte keys");
    if (sp_buf_reserve(out, 4 + (size_t)s->nframes * 10) < 0)
        return;
    uint8_t *q = out->p + out->len;
    *q++ = SP_PROFILE_SAMPLE << 3 | SP_WT_LEN;
    *q++ = 0;
    size_t m = (size_t)(q - out->p);
    if (s->nframes) {
        *q++ = SP_SAMPLE_LOCATION_ID << 3 | SP_WT_LEN;
        *q++ = 0;
        size_t l = (size_t)(q - out->p);
        const uint64_t *fr = e->p->frames + s->frames;
        /* The location of each frame, leaf first: a multiply and usually one probe
         * for one seen before.  The table in locals: the byte stores into out would
         * otherwise reload it from e at every frame. */
        const uint64_t *keys = e->loc_keys;
        const uint32_t *ids = e->loc_ids;
        size_t mask = e->loc_cap - 1;
        int shift = e->loc_shift;
        for (uint32_t k = s->nframes; k-- > 0;) {
            uint64_t key1 = fr[k] + 1, id;
            size_t j = (size_t)((key1 * 0x9E3779B97F4A7C15ull) >> shift);
            for (;;) {
                uint64_t kj = keys[j];
                if (kj == key1) {
                    id = ids[j];
                    break;
                }
                if (!kj) {
                    id = location_new(e, j, fr[k]);
                    keys = e->loc_keys;
                    ids = e->loc_ids;
                    mask = e->loc_cap - 1;
                    shift = e->loc_shift;
                    break;
                }
                j = (j + 1) & mask;
            }
            q = sp_put_varint(q, id);
        }
        out->len = (size_t)(q - out->p);
        sp_pb_end(out, l);
    } else {
        out->len = (size_t)(q - out->p);
    }
    /* the values (at most 30 bytes) and the labels */
    if (sp_buf_reserve(out, 32 + lab_len) < 0)
        return;
    q = out->p + out->len;
    *q++ = SP_SAMPLE_VALUE << 3 | SP_WT_LEN;
    uint8_t *vlen = q++;
    q = sp_put_varint(q, (uint64_t)s->values[0]);
    q = sp_put_varint(q, (uint64_t)s->values[1]);
    q = sp_put_varint(q, (uint64_t)s->values[2]);
    *vlen = (uint8_t)(q - vlen - 1);
    /* labels may move if thread_labels grew them: copied after the lookup */
    if (lab_len)
        memcpy(q, lab, lab_len);
    out->len = (size_t)(q + lab_len - out->p);
    sp_pb_end(out, m);
}

static void
encode_profile(enc_t *e)
{
    const sp_pprof_t *p = e->p;
    sp_buf_t *out = e->out;
    const char *time_type = p->wall ? "wall" : "cpu";
    value_type(e, SP_PROFILE_SAMPLE_TYPE, "samples", "count");
    value_type(e, SP_PROFILE_SAMPLE_TYPE, time_type, "nanoseconds");
    value_type(e, SP_PROFILE_SAMPLE_TYPE, "calls", "count");
    intern_c(e, "thread");
    intern_c(e, "thread_id");
    for (size_t i = 0; i < p->nsamples && !out->oom && !e->locs.oom; i++)
        encode_sample(e, &p->samples[i]);

    /* The interpreter's Mapping, fully symbolized: tools then neither try to
     * symbolize the locations nor complain that the main binary is unknown; then one
     * per native object. */
    size_t m = sp_pb_begin(out, SP_PROFILE_MAPPING);
    sp_pb_int(out, SP_MAPPING_ID, MAPPING_PYTHON);
    sp_pb_int(out, SP_MAPPING_FILENAME, intern_span(e, p->interpreter));
    sp_pb_int(out, SP_MAPPING_HAS_FUNCTIONS, 1);
    sp_pb_int(out, SP_MAPPING_HAS_FILENAMES, 1);
    sp_pb_int(out, SP_MAPPING_HAS_LINE_NUMBERS, 1);
    sp_pb_int(out, SP_MAPPING_HAS_INLINE_FRAMES, 1);
    sp_pb_end(out, m);
    for (size_t k = 0; k < e->nmappings; k++) {
        const sp_pnative_t *n = &p->natives[e->mapping_native[k]];
        m = sp_pb_begin(out, SP_PROFILE_MAPPING);
        sp_pb_int(out, SP_MAPPING_ID, MAPPING_PYTHON + 1 + k);
        sp_pb_int(out, SP_MAPPING_MEMORY_START, n->map_start);
        sp_pb_int(out, SP_MAPPING_MEMORY_LIMIT, n->map_limit);
        sp_pb_int(out, SP_MAPPING_FILE_OFFSET, n->map_offset);
        sp_pb_int(out, SP_MAPPING_FILENAME, intern_span(e, n->path));
        sp_pb_int(out, SP_MAPPING_BUILD_ID, intern_span(e, n->build_id));
        sp_pb_int(out, SP_MAPPING_HAS_FUNCTIONS, 1);
        sp_pb_end(out, m);
    }
    sp_buf_append(out, e->locs.p, e->locs.len);
    for (size_t i = 0; i < p->nfuncs; i++)
        if (p->funcs[i].present)
            encode_function(e, &p->funcs[i]);

    sp_pb_int(out, SP_PROFILE_TIME_NANOS, (uint64_t)p->time_nanos);
    sp_pb_int(out, SP_PROFILE_DURATION_NANOS, (uint64_t)p->duration_nanos);
    value_type(e, SP_PROFILE_PERIOD_TYPE, time_type, "nanoseconds");
    sp_pb_int(out, SP_PROFILE_PERIOD, (uint64_t)p->period);
    e->scratch.len = 0;
    for (size_t k = 0; k < p->ncomments; k++)
        sp_buf_varint(&e->scratch, intern_span(e, p->comments[k]));
    if (p->ncomments)
        sp_pb_bytes(out, SP_PROFILE_COMMENT, e->scratch.p, e->scratch.len);
    sp_pb_int(out, SP_PROFILE_DEFAULT_SAMPLE_TYPE, intern_c(e, time_type));
    /* The string table last: every string has been interned by now. */
    sp_strtab_encode(e->strings, out);
}

int
sp_pprof_encode(const sp_pprof_t *p, sp_buf_t *out)
{
    enc_t e;
    memset(&e, 0, sizeof(e));
    e.p = p;
    e.out = out;
    e.locs = spare_take(SPARE_LOCS);
    e.loctab = spare_take(SPARE_LOCTAB);
    sp_buf_init(&e.labels);
    sp_buf_init(&e.scratch);
    int rc = -1;
    if (p->oom)
        goto done;
    e.strings = strtab_take();
    e.mapping_paths = sp_strtab_new();
    e.thread_labels = calloc(p->nthreads + 1, sizeof(uint64_t));
    e.native_mapping = calloc(p->nnatives + 1, sizeof(uint64_t));
    e.mapping_native = calloc(p->nnatives + 1, sizeof(uint32_t));
    if (!e.strings || !e.mapping_paths || !e.thread_labels || !e.native_mapping ||
        !e.mapping_native || loc_grow(&e) < 0 || sp_buf_reserve(out, HINT_GET(out_hint)) < 0 ||
        sp_buf_reserve(&e.locs, HINT_GET(locs_hint)) < 0 ||
        sp_strtab_reserve(e.strings, HINT_GET(strings_hint), HINT_GET(text_hint)) < 0)
        goto done;
    encode_profile(&e);
    if (e.bad_frame) {
        rc = -2;
        goto done;
    }
    if (out->oom || e.locs.oom || e.labels.oom || e.scratch.oom)
        goto done;
    HINT_SET(loc_cap_hint, e.loc_cap);
    HINT_SET(locs_hint, e.locs.len);
    HINT_SET(out_hint, out->len);
    HINT_SET(strings_hint, sp_strtab_size(e.strings));
    HINT_SET(text_hint, sp_strtab_bytes(e.strings));
    rc = 0;
done:
    spare_give(SPARE_LOCS, &e.locs);
    spare_give(SPARE_LOCTAB, &e.loctab);
    sp_buf_free(&e.labels);
    sp_buf_free(&e.scratch);
    strtab_give(e.strings);
    sp_strtab_free(e.mapping_paths);
    free(e.thread_labels);
    free(e.native_mapping);
    free(e.mapping_native);
    if (rc < 0)
        errno = rc == -2 ? EINVAL : ENOMEM;
    return rc < 0 ? -1 : 0;
}

int
sp_pprof_emit(const sp_pprof_t *p, int level, int deflater, const char *path,
              int do_fsync, int mode, sp_buf_t *out, sp_pprof_emit_t *st)
{
    sp_buf_t raw = spare_take(SPARE_RAW);
    memset(st, 0, sizeof(*st));
    out->len = 0;
    uint64_t t0 = sp_clock_monotonic_ns();
    sp_buf_t *enc = level ? &raw : out;
    int rc = -1;
    if (sp_pprof_encode(p, enc) < 0) {
        st->step = 1;
        goto done;
    }
    uint64_t t1 = sp_clock_monotonic_ns();
    st->encode_ns = t1 - t0;
    st->raw_bytes = enc->len;
    if (level) {
        uint8_t *gz;
        size_t gz_len;
        int used = sp_gzip(raw.p, raw.len, level, deflater, &gz, &gz_len);
        if (used < 0) {
            st->step = 2;
            goto done;
        }
        sp_buf_free(out);   /* out takes the compressed bytes as they are */
        out->p = gz;
        out->len = out->cap = gz_len;
        st->deflater = used;
    }
    uint64_t t2 = sp_clock_monotonic_ns();
    st->compress_ns = t2 - t1;
    st->file_bytes = out->len;
    if (path && sp_pprof_write_file(path, out->p, out->len, do_fsync, mode) < 0) {
        st->step = 3;
        goto done;
    }
    st->write_ns = sp_clock_monotonic_ns() - t2;
    rc = 0;
done:;
    int err = errno;
    spare_give(SPARE_RAW, &raw);
    errno = err;
    return rc;
}

/* ------------------------------------------------------------------ files */

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
