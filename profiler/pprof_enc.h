/* pprof_enc.h: profile.proto by hand: varints, fields, the string table, files.
 *
 * The schema is google/pprof's proto/profile.proto (perftools.profiles.Profile), the
 * same one analysis/pprof.py writes and reads; this file declares each field number
 * once, with its wire type, and the few primitives a writer needs: a growable byte
 * buffer with varint and field writers, nested messages whose length is patched in
 * afterwards, a string table that interns each string once (index 0 the empty
 * string), a 64-bit hash map, and the gzipped (deflate.h), atomically renamed output
 * file.  What goes into a profile is decided by the caller (export.c for the live
 * core).
 *
 * No Python dependency; no globals but the encoder's size hints and spare buffers
 * (pprof_enc.c): unit-tested in plain C (tests/c/test_pprof_enc.c).
 * Not reachable from the signal handler; allocates freely.  Thread contract: each
 * object belongs to one thread at a time; sp_pprof_emit and sp_pprof_write_file touch
 * only their arguments (and deflate.c's table of dlopen'ed entry points), and
 * sp_pprof_encode and sp_pprof_emit besides only the spare buffers one file leaves to
 * the next (taken and given back with atomic exchanges), so they run with the GIL
 * released.
 *
 * Error convention: allocation failures are sticky (sp_buf_t.oom, sp_strtab_oom): the
 * writers keep going as no-ops and the caller checks once at the end.  Functions
 * returning int return 0 on success and -1 on failure (with errno set where stated).
 */
#ifndef SP_PPROF_ENC_H
#define SP_PPROF_ENC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Wire types. */
enum {
    SP_WT_VARINT = 0,
    SP_WT_I64 = 1,
    SP_WT_LEN = 2,
    SP_WT_I32 = 5,
};

/* message Profile */
enum {
    SP_PROFILE_SAMPLE_TYPE = 1,           /* repeated ValueType; LEN */
    SP_PROFILE_SAMPLE = 2,                /* repeated Sample; LEN */
    SP_PROFILE_MAPPING = 3,               /* repeated Mapping; LEN */
    SP_PROFILE_LOCATION = 4,              /* repeated Location; LEN */
    SP_PROFILE_FUNCTION = 5,              /* repeated Function; LEN */
    SP_PROFILE_STRING_TABLE = 6,          /* repeated string; LEN */
    SP_PROFILE_DROP_FRAMES = 7,           /* int64 string index; VARINT */
    SP_PROFILE_KEEP_FRAMES = 8,           /* int64 string index; VARINT */
    SP_PROFILE_TIME_NANOS = 9,            /* int64; VARINT */
    SP_PROFILE_DURATION_NANOS = 10,       /* int64; VARINT */
    SP_PROFILE_PERIOD_TYPE = 11,          /* ValueType; LEN */
    SP_PROFILE_PERIOD = 12,               /* int64; VARINT */
    SP_PROFILE_COMMENT = 13,              /* repeated int64 string index; packed LEN */
    SP_PROFILE_DEFAULT_SAMPLE_TYPE = 14,  /* int64 string index; VARINT */
};

/* message ValueType */
enum {
    SP_VALUETYPE_TYPE = 1,                /* int64 string index; VARINT */
    SP_VALUETYPE_UNIT = 2,                /* int64 string index; VARINT */
};

/* message Sample */
enum {
    SP_SAMPLE_LOCATION_ID = 1,            /* repeated uint64; packed LEN */
    SP_SAMPLE_VALUE = 2,                  /* repeated int64; packed LEN */
    SP_SAMPLE_LABEL = 3,                  /* repeated Label; LEN */
};

/* message Label */
enum {
    SP_LABEL_KEY = 1,                     /* int64 string index; VARINT */
    SP_LABEL_STR = 2,                     /* int64 string index; VARINT */
    SP_LABEL_NUM = 3,                     /* int64; VARINT */
    SP_LABEL_NUM_UNIT = 4,                /* int64 string index; VARINT */
};

/* message Mapping */
enum {
    SP_MAPPING_ID = 1,                    /* uint64; VARINT */
    SP_MAPPING_MEMORY_START = 2,          /* uint64; VARINT */
    SP_MAPPING_MEMORY_LIMIT = 3,          /* uint64; VARINT */
    SP_MAPPING_FILE_OFFSET = 4,           /* uint64; VARINT */
    SP_MAPPING_FILENAME = 5,              /* int64 string index; VARINT */
    SP_MAPPING_BUILD_ID = 6,              /* int64 string index; VARINT */
    SP_MAPPING_HAS_FUNCTIONS = 7,         /* bool; VARINT */
    SP_MAPPING_HAS_FILENAMES = 8,         /* bool; VARINT */
    SP_MAPPING_HAS_LINE_NUMBERS = 9,      /* bool; VARINT */
    SP_MAPPING_HAS_INLINE_FRAMES = 10,    /* bool; VARINT */
};

/* message Location */
enum {
    SP_LOCATION_ID = 1,                   /* uint64; VARINT */
    SP_LOCATION_MAPPING_ID = 2,           /* uint64; VARINT */
    SP_LOCATION_ADDRESS = 3,              /* uint64; VARINT */
    SP_LOCATION_LINE = 4,                 /* repeated Line; LEN */
    SP_LOCATION_IS_FOLDED = 5,            /* bool; VARINT */
};

/* message Line */
enum {
    SP_LINE_FUNCTION_ID = 1,              /* uint64; VARINT */
    SP_LINE_LINE = 2,                     /* int64; VARINT */
};

/* message Function */
enum {
    SP_FUNCTION_ID = 1,                   /* uint64; VARINT */
    SP_FUNCTION_NAME = 2,                 /* int64 string index; VARINT */
    SP_FUNCTION_SYSTEM_NAME = 3,          /* int64 string index; VARINT */
    SP_FUNCTION_FILENAME = 4,             /* int64 string index; VARINT */
    SP_FUNCTION_START_LINE = 5,           /* int64; VARINT */
};

/* ------------------------------------------------------------------ buffer */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom;        /* sticky: an allocation failed, the contents are incomplete */
} sp_buf_t;

void sp_buf_init(sp_buf_t *b);
void sp_buf_free(sp_buf_t *b);
/* Makes room for n more bytes; returns 0, or -1 (and sets oom) on failure. */
int sp_buf_grow(sp_buf_t *b, size_t n);

static inline int
sp_buf_reserve(sp_buf_t *b, size_t n)
{
    return (b->cap - b->len >= n) ? 0 : sp_buf_grow(b, n);
}

void sp_buf_append_slow(sp_buf_t *b, const void *data, size_t n);

/* Inline: a string of the profile is a few of them. */
static inline void
sp_buf_append(sp_buf_t *b, const void *data, size_t n)
{
    if (b->cap - b->len >= n && n) {
        memcpy(b->p + b->len, data, n);
        b->len += n;
    } else {
        sp_buf_append_slow(b, data, n);
    }
}

/* Bytes of the varint of v (1..10). */
static inline size_t
sp_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Base-128 varint at p (room for 10 bytes), low groups first; a negative int64 goes
 * in as its two's complement (uint64_t), 10 bytes.  Returns the byte after it. */
static inline uint8_t *
sp_put_varint(uint8_t *p, uint64_t v)
{
    /* Straight-line for 1, 2 and 3 bytes: location ids, lines, lengths, string
     * indexes; the loop for the rest (times, negative values). */
    if (v < 0x80) {
        p[0] = (uint8_t)v;
        return p + 1;
    }
    if (v < 0x4000) {
        p[0] = (uint8_t)(v | 0x80);
        p[1] = (uint8_t)(v >> 7);
        return p + 2;
    }
    if (v < 0x200000) {
        p[0] = (uint8_t)(v | 0x80);
        p[1] = (uint8_t)(v >> 7 | 0x80);
        p[2] = (uint8_t)(v >> 14);
        return p + 3;
    }
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline void
sp_buf_varint(sp_buf_t *b, uint64_t v)
{
    if (sp_buf_reserve(b, 10) < 0)
        return;
    b->len = (size_t)(sp_put_varint(b->p + b->len, v) - b->p);
}

static inline void
sp_pb_key(sp_buf_t *b, int field, int wire_type)
{
    sp_buf_varint(b, (uint64_t)field << 3 | (uint64_t)wire_type);
}

/* A VARINT field; nothing for 0 (the proto3 default). */
static inline void
sp_pb_int(sp_buf_t *b, int field, uint64_t v)
{
    if (v) {
        sp_pb_key(b, field, SP_WT_VARINT);
        sp_buf_varint(b, v);
    }
}

/* A LEN field with the given payload. */
void sp_pb_bytes(sp_buf_t *b, int field, const void *data, size_t n);

/* A nested message: sp_pb_begin writes the key and reserves one length byte and
 * returns where the body starts; sp_pb_end patches the length in (moving the body if
 * it needs more than one byte: sp_pb_end_long).  Inline: a sample is three of them. */
static inline size_t
sp_pb_begin(sp_buf_t *b, int field)
{
    if (sp_buf_reserve(b, 11) == 0) {
        uint8_t *p = sp_put_varint(b->p + b->len, (uint64_t)field << 3 | SP_WT_LEN);
        *p++ = 0;
        b->len = (size_t)(p - b->p);
    }
    return b->len;
}

void sp_pb_end_long(sp_buf_t *b, size_t start);

static inline void
sp_pb_end(sp_buf_t *b, size_t start)
{
    if (b->oom)
        return;
    size_t n = b->len - start;
    if (n < 0x80)
        b->p[start - 1] = (uint8_t)n;
    else
        sp_pb_end_long(b, start);
}

/* ------------------------------------------------------------------ u64 map */

/* Open-addressing map from uint64_t keys to uint64_t values. */
typedef struct {
    uint64_t *keys, *vals;
    uint8_t *used;
    size_t n, cap;   /* cap: a power of two, or 0 */
} sp_u64map_t;

void sp_u64map_init(sp_u64map_t *m);
void sp_u64map_free(sp_u64map_t *m);
/* The value slot of key, or NULL. */
uint64_t *sp_u64map_get(const sp_u64map_t *m, uint64_t key);
/* The value slot of key, created with *created = 1 and value 0 if new; NULL if out of
 * memory. */
uint64_t *sp_u64map_put(sp_u64map_t *m, uint64_t key, int *created);
/* Room for n keys in all without growing: 0, or -1 if out of memory. */
int sp_u64map_reserve(sp_u64map_t *m, size_t n);

/* ------------------------------------------------------------------ strings */

typedef struct sp_strtab sp_strtab_t;

/* A table holding only "" (index 0); NULL if out of memory. */
sp_strtab_t *sp_strtab_new(void);
void sp_strtab_free(sp_strtab_t *t);
/* The index of the string s[0..n), added if new; -1 if out of memory (sticky). */
int64_t sp_strtab_intern(sp_strtab_t *t, const char *s, size_t n);
size_t sp_strtab_size(const sp_strtab_t *t);
/* Bytes of all its strings together. */
size_t sp_strtab_bytes(const sp_strtab_t *t);
/* Room for nstrings strings of nbytes in all without growing: 0, or -1 (sticky). */
int sp_strtab_reserve(sp_strtab_t *t, size_t nstrings, size_t nbytes);
/* Appends every string, in index order, as Profile.string_table fields. */
void sp_strtab_encode(const sp_strtab_t *t, sp_buf_t *out);

/* ------------------------------------------------------------------ the profile */

/* A profile as the encoder takes it: plain C, no Python objects, so that it can be
 * encoded with the GIL released.  Both writers fill one: export.c (the live session,
 * from the table and the registry) and analysis/_pprof.c (a Profile model from
 * analysis/pprof.py); sp_pprof_encode writes every byte of profile.proto for both.
 *
 * Strings are bytes (UTF-8) copied into `text` and named by sp_span_t; the encoder
 * interns them itself, in the order it writes them, so the string table's order (and
 * so the bytes) depends only on the profile.  Frames are 64-bit keys,
 * function index << 32 | (uint32_t)line, into `funcs`: the encoder gives each
 * distinct key a Location on first use.  What the profile looks like in
 * profile.proto is described in analysis/pprof.py's docstring. */

typedef struct {
    size_t off, len;                /* bytes text[off .. off + len) */
} sp_span_t;

typedef struct {
    uint64_t id;                    /* Function.id (> 0) */
    sp_span_t name, filename;
    int64_t start_line;
    uint32_t native;                /* 1 + index into natives; 0: the interpreter */
    uint8_t present;                /* 0: a hole in the index space, not written */
    uint8_t synthetic;              /* no system name (shadowprof's own frames) */
} sp_pfunc_t;

/* A native function (--native): its address, and the object it lives in. */
typedef struct {
    sp_span_t path, build_id;
    uint64_t address, map_start, map_limit, map_offset;
} sp_pnative_t;

typedef struct {
    uint64_t tid;
    sp_span_t name;
    uint8_t named;                  /* 0: no "thread" label, only "thread_id" */
} sp_pthread_t;

enum {
    SP_PLABEL_NONE = 0,
    SP_PLABEL_THREAD = 1,           /* the thread's labels (thread, thread_id) */
    SP_PLABEL_UNKNOWN_CALLER = 2,   /* caller=unknown */
};

typedef struct {
    size_t frames;                  /* offset into sp_pprof_t.frames; root first */
    uint32_t nframes;
    uint32_t thread;                /* index into threads, with SP_PLABEL_THREAD */
    int label;                      /* SP_PLABEL_* */
    int64_t values[3];              /* samples, time (ns), calls */
} sp_psample_t;

typedef struct {
    int wall;                       /* sample type wall/nanoseconds, else cpu */
    sp_buf_t text;
    sp_pfunc_t *funcs;
    size_t nfuncs, funcs_cap;
    sp_pnative_t *natives;
    size_t nnatives, natives_cap;
    sp_pthread_t *threads;
    size_t nthreads, threads_cap;
    uint64_t *frames;
    size_t nframes, frames_cap;
    sp_psample_t *samples;
    size_t nsamples, samples_cap;
    sp_span_t *comments;
    size_t ncomments, comments_cap;
    sp_span_t interpreter;          /* the one Mapping of the Python frames */
    int64_t time_nanos, duration_nanos, period;
    int oom;                        /* sticky, as sp_buf_t.oom */
} sp_pprof_t;

void sp_pprof_init(sp_pprof_t *p);
void sp_pprof_free(sp_pprof_t *p);
/* Copies s[0..n) into p->text. */
static inline sp_span_t
sp_pprof_text(sp_pprof_t *p, const char *s, size_t n)
{
    sp_span_t sp = {p->text.len, n};
    sp_buf_append(&p->text, s, n);
    if (p->text.oom)
        p->oom = 1;
    return sp;
}
/* Room for n more entries of an array (funcs, natives ...): 0, or -1 and p->oom. */
int sp_pprof_reserve(sp_pprof_t *p, void **arr, size_t *cap, size_t len, size_t n,
                     size_t size);
#define SP_PPROF_PUSH(p, what)                                                      \
    (sp_pprof_reserve((p), (void **)&(p)->what, &(p)->what##_cap, (p)->n##what, 1,  \
                      sizeof(*(p)->what)) == 0 ? &(p)->what[(p)->n##what++] : NULL)
/* Appends n frames (root first) to p->frames; returns their offset. */
size_t sp_pprof_frames(sp_pprof_t *p, const uint64_t *frames, size_t n);
/* Appends a sample of the n frames (copied) with the values count, weight, calls and
 * no label; the new sample, or NULL when out of memory (sticky, as everywhere). */
sp_psample_t *sp_pprof_push_sample(sp_pprof_t *p, const uint64_t *frames, uint32_t n,
                                   int64_t count, int64_t weight, int64_t calls);

static inline uint64_t
sp_pprof_frame(uint32_t func, int32_t line)
{
    return (uint64_t)func << 32 | (uint32_t)line;
}

/* profile.proto of p into out (appended).  0, or -1 with errno ENOMEM, or EINVAL if
 * a frame names a function past p->funcs.  Touches only its arguments (and relaxed
 * size hints and the spare buffers of the previous call, at most 4 MiB each kept):
 * runs with the GIL released. */
int sp_pprof_encode(const sp_pprof_t *p, sp_buf_t *out);

/* What sp_pprof_emit did, in ns and bytes. */
typedef struct {
    uint64_t encode_ns, compress_ns, write_ns;
    size_t raw_bytes, file_bytes;
    int step;       /* on failure: 1 encoding, 2 compression, 3 the file */
    int deflater;   /* the compressor used (deflate.h's SP_DEFLATE_*), 0 if none */
} sp_pprof_emit_t;

/* The one writer: encodes p, gzips it at level (0: not compressed) with deflater
 * (sp_gzip's: SP_DEFLATE_ANY for the fastest, or one named) and writes it atomically
 * to path (sp_pprof_write_file), or with path NULL leaves the bytes in out.  Returns
 * 0, or -1 with errno set and st->step saying where.  Runs with the GIL released. */
int sp_pprof_emit(const sp_pprof_t *p, int level, int deflater, const char *path,
                  int do_fsync, int mode, sp_buf_t *out, sp_pprof_emit_t *st);

/* ------------------------------------------------------------------ files */

/* Writes data[0..n) to path atomically: a temporary file in the same directory
 * (.shadowprof-XXXXXX.tmp) with permissions mode (-1: mkstemp's 0600), fsync'ed if
 * do_fsync, then renamed over path, so an interrupted write never leaves a truncated
 * file under its name.  Returns 0, or -1 with errno set (the temporary file removed). */
int sp_pprof_write_file(const char *path, const uint8_t *data, size_t n, int do_fsync,
                        int mode);

#endif /* SP_PPROF_ENC_H */
