/* pprof_enc: varints (one byte to ten, negatives as two's complement), zero fields
 * omitted, nested lengths patched for short and long bodies, the string table
 * interning each string once with "" first, the u64 map through growth, and gzip
 * (deflate.c: ISA-L's, libdeflate's or zlib's, as the machine has them) that zlib
 * inflates back to the same bytes; a profile's encoding: shared locations
 * written once, holes left out, one mapping per native object's path, a frame past
 * the function table refused. */
#include "pprof_enc.h"

#include "check.h"
#include "deflate.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static int
bytes_eq(const sp_buf_t *b, const char *hex)
{
    char got[256] = "";
    for (size_t i = 0; i < b->len && 2 * i + 2 < sizeof(got); i++)
        sprintf(got + 2 * i, "%02x", b->p[i]);
    if (strcmp(got, hex) != 0) {
        fprintf(stderr, "  got %s, want %s\n", got, hex);
        return 0;
    }
    return 1;
}

static void
test_varints_and_fields(void)
{
    sp_buf_t b;
    sp_buf_init(&b);
    sp_buf_varint(&b, 0);
    sp_buf_varint(&b, 127);
    sp_buf_varint(&b, 128);
    sp_buf_varint(&b, 300);
    CHECK(bytes_eq(&b, "007f8001ac02"));
    b.len = 0;
    sp_buf_varint(&b, (uint64_t)(int64_t)-1);
    CHECK(b.len == 10 && bytes_eq(&b, "ffffffffffffffffff01"));
    b.len = 0;
    sp_pb_int(&b, SP_PROFILE_PERIOD, 0);   /* proto3 default: nothing */
    CHECK(b.len == 0);
    sp_pb_int(&b, SP_PROFILE_PERIOD, 10000000);
    CHECK(bytes_eq(&b, "6080ade204"));
    CHECK(sp_varint_size(0) == 1 && sp_varint_size(1ull << 63) == 10);
    sp_buf_free(&b);
}

static void
test_nested_lengths(void)
{
    sp_buf_t b;
    sp_buf_init(&b);
    size_t m = sp_pb_begin(&b, SP_PROFILE_SAMPLE);
    sp_pb_int(&b, SP_SAMPLE_LABEL, 5);
    sp_pb_end(&b, m);
    CHECK(bytes_eq(&b, "12021805"));
    /* a body of 299 bytes: the length takes two bytes, the body moves by one */
    b.len = 0;
    m = sp_pb_begin(&b, SP_PROFILE_STRING_TABLE);
    size_t inner = sp_pb_begin(&b, 1);
    for (int i = 0; i < 296; i++)
        sp_buf_varint(&b, 7);
    sp_pb_end(&b, inner);
    sp_pb_end(&b, m);
    CHECK(b.len == 1 + 2 + 1 + 2 + 296);
    CHECK(b.p[0] == 0x32 && b.p[1] == 0xab && b.p[2] == 0x02);   /* 299 */
    CHECK(b.p[3] == 0x0a && b.p[4] == 0xa8 && b.p[5] == 0x02);   /* 296 */
    CHECK(b.p[6] == 7 && b.p[b.len - 1] == 7);
    sp_buf_free(&b);
}

static void
test_string_table(void)
{
    sp_strtab_t *t = sp_strtab_new();
    CHECK(t && sp_strtab_size(t) == 1);
    CHECK(sp_strtab_intern(t, "", 0) == 0);
    CHECK(sp_strtab_intern(t, "cpu", 3) == 1);
    CHECK(sp_strtab_intern(t, "nanoseconds", 11) == 2);
    CHECK(sp_strtab_intern(t, "cpu", 3) == 1);
    char name[32];
    for (int i = 0; i < 5000; i++) {   /* through several index growths */
        int n = snprintf(name, sizeof(name), "f%d", i);
        CHECK(sp_strtab_intern(t, name, (size_t)n) == 3 + i);
    }
    CHECK(sp_strtab_intern(t, "f1234", 5) == 3 + 1234);
    CHECK(sp_strtab_intern(t, "a\0b", 3) != sp_strtab_intern(t, "a", 1));
    sp_buf_t b;
    sp_buf_init(&b);
    sp_strtab_t *small = sp_strtab_new();
    sp_strtab_intern(small, "ab", 2);
    sp_strtab_encode(small, &b);
    CHECK(bytes_eq(&b, "3200" "32026162"));
    sp_buf_free(&b);
    sp_strtab_free(small);
    sp_strtab_free(t);
}

static void
test_u64map(void)
{
    sp_u64map_t m;
    sp_u64map_init(&m);
    CHECK(sp_u64map_get(&m, 1) == NULL);
    int created;
    for (uint64_t k = 0; k < 10000; k++) {
        uint64_t *v = sp_u64map_put(&m, k * 0x100000001ull, &created);
        CHECK(v && created);
        *v = k + 1;
    }
    CHECK(m.n == 10000);
    uint64_t *v = sp_u64map_put(&m, 77 * 0x100000001ull, &created);
    CHECK(v && !created && *v == 78);
    for (uint64_t k = 0; k < 10000; k += 999)
        CHECK(*sp_u64map_get(&m, k * 0x100000001ull) == k + 1);
    CHECK(sp_u64map_get(&m, 3) == NULL);
    sp_u64map_free(&m);
}

/* zlib's inflate of gz[0..len): 1 if it is one gzip member holding exactly raw[0..n). */
static int
inflates_to(const uint8_t *gz, size_t len, const uint8_t *raw, size_t n)
{
    static uint8_t back[1 << 21];
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (!gz || inflateInit2(&z, 15 + 16) != Z_OK)
        return 0;
    z.next_in = (Bytef *)gz;
    z.avail_in = (uInt)len;
    z.next_out = back;
    z.avail_out = sizeof(back);
    int ok = inflate(&z, Z_FINISH) == Z_STREAM_END && z.avail_in == 0 &&
             z.total_out == n && memcmp(back, raw, n) == 0;
    inflateEnd(&z);
    return ok;
}

/* Each compressor this machine has (ISA-L's igzip, libdeflate, zlib) writes gzip
 * with mtime 0 that zlib reads back, at the fast level and the slow ones, for
 * compressible input, random input (igzip's stored blocks) and none. */
static void
test_gzip_round_trip(int deflater)
{
    sp_buf_t raw, noise;
    sp_buf_init(&raw);
    sp_buf_init(&noise);
    for (uint64_t i = 0; i < 200000; i++)
        sp_buf_varint(&raw, i % 1000);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 1 << 20; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint8_t c = (uint8_t)x;
        sp_buf_append(&noise, &c, 1);
    }
    uint8_t *gz;
    size_t len;
    static const int levels[] = {1, 2, 6, 9};
    for (size_t l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
        CHECK(sp_gzip(raw.p, raw.len, levels[l], deflater, &gz, &len) == deflater);
        CHECK(len > 18 && gz[0] == 0x1f && gz[1] == 0x8b && gz[2] == 8);
        CHECK(gz[4] == 0 && gz[5] == 0 && gz[6] == 0 && gz[7] == 0);   /* mtime 0 */
        CHECK(gz[3] == 0);   /* no name, no comment, no extra field */
        CHECK(len < raw.len / 2);
        CHECK(inflates_to(gz, len, raw.p, raw.len));
        free(gz);
    }
    CHECK(sp_gzip(noise.p, noise.len, 1, deflater, &gz, &len) == deflater);
    CHECK(len < noise.len + noise.len / 16 + 1024 && inflates_to(gz, len, noise.p, noise.len));
    free(gz);
    /* empty input: still a valid gzip member */
    CHECK(sp_gzip(raw.p, 0, 1, deflater, &gz, &len) == deflater && len >= 18);
    CHECK(inflates_to(gz, len, raw.p, 0));
    free(gz);
    sp_buf_free(&raw);
    sp_buf_free(&noise);
}

/* Which compressor sp_gzip picks: ISA-L's at level 1 when libisal.so.2 loads (and its
 * header was there at build time: SP_HAVE_ISAL), else libdeflate when libdeflate.so.0
 * loads, else zlib; above level 1 never ISA-L; one named but missing is refused with
 * ENOSYS. */
static void
test_gzip_choice(void)
{
    int isal = 0, libdeflate = 0;
#ifdef SP_HAVE_ISAL
    void *h = dlopen("libisal.so.2", RTLD_NOW | RTLD_LOCAL);
    isal = h && dlsym(h, "isal_deflate") && dlsym(h, "isal_deflate_init");
#endif
    void *d = dlopen("libdeflate.so.0", RTLD_NOW | RTLD_LOCAL);
    libdeflate = d && dlsym(d, "libdeflate_gzip_compress");
    int slow = libdeflate ? SP_DEFLATE_LIBDEFLATE : SP_DEFLATE_ZLIB;
    printf("test_pprof_enc: isal %d, libdeflate %d\n", isal, libdeflate);
    CHECK(sp_gzip_deflater(1, SP_DEFLATE_ANY) == (isal ? SP_DEFLATE_ISAL : slow));
    CHECK(sp_gzip_deflater(2, SP_DEFLATE_ANY) == slow);
    CHECK(sp_gzip_deflater(9, SP_DEFLATE_ANY) == slow);
    CHECK(sp_gzip_deflater(1, SP_DEFLATE_ISAL) == (isal ? SP_DEFLATE_ISAL : -1));
    CHECK(sp_gzip_deflater(1, SP_DEFLATE_LIBDEFLATE) == (libdeflate ? SP_DEFLATE_LIBDEFLATE : -1));
    CHECK(sp_gzip_deflater(1, SP_DEFLATE_ZLIB) == SP_DEFLATE_ZLIB);
    const uint8_t one = 1;
    uint8_t *gz;
    size_t len;
    CHECK(sp_gzip(&one, 1, 1, SP_DEFLATE_ANY, &gz, &len) == (isal ? SP_DEFLATE_ISAL : slow));
    free(gz);
    if (!isal) {
        errno = 0;
        CHECK(sp_gzip(&one, 1, 1, SP_DEFLATE_ISAL, &gz, &len) == -1 && errno == ENOSYS && !gz);
    }
    if (!libdeflate) {
        errno = 0;
        CHECK(sp_gzip(&one, 1, 1, SP_DEFLATE_LIBDEFLATE, &gz, &len) == -1 && errno == ENOSYS);
    }
    for (int k = SP_DEFLATE_ISAL; k <= SP_DEFLATE_ZLIB; k++)
        CHECK(sp_deflater_parse(sp_deflater_name(k)) == k);
    CHECK(strcmp(sp_deflater_name(0), "none") == 0 && sp_deflater_parse("none") == -1);
    CHECK(strcmp(sp_deflater_name(SP_DEFLATE_ISAL), "isal") == 0);
    if (isal)
        test_gzip_round_trip(SP_DEFLATE_ISAL);
    if (libdeflate)
        test_gzip_round_trip(SP_DEFLATE_LIBDEFLATE);
    test_gzip_round_trip(SP_DEFLATE_ZLIB);
}

/* The top-level fields of a Profile message: how many of each number (LEN and
 * VARINT fields only, as the encoder writes), and the LEN payload of the n-th one of
 * field `want` in *payload. */
static int
count_fields(const sp_buf_t *b, int counts[16], int want, int nth, const uint8_t **payload,
             size_t *plen)
{
    memset(counts, 0, 16 * sizeof(int));
    size_t i = 0;
    while (i < b->len) {
        uint64_t key = 0, v = 0;
        int shift = 0;
        do
            key |= (uint64_t)(b->p[i] & 0x7f) << shift, shift += 7;
        while (b->p[i++] & 0x80);
        shift = 0;
        do
            v |= (uint64_t)(b->p[i] & 0x7f) << shift, shift += 7;
        while (b->p[i++] & 0x80);
        int no = (int)(key >> 3);
        if (no >= 16)
            return -1;
        if ((key & 7) == SP_WT_LEN) {
            if (no == want && counts[no] == nth) {
                *payload = b->p + i;
                *plen = (size_t)v;
            }
            i += v;
        } else if ((key & 7) != SP_WT_VARINT) {
            return -1;
        }
        counts[no]++;
    }
    return i == b->len ? 0 : -1;
}

static void
test_profile_encoding(void)
{
    sp_pprof_t p;
    sp_pprof_init(&p);
    /* functions 0 (main), 1 (a hole), 2 (memcpy, native), 3 (also in libc) */
    for (int k = 0; k < 4; k++) {
        sp_pfunc_t *f = SP_PPROF_PUSH(&p, funcs);
        CHECK(f != NULL);
        memset(f, 0, sizeof(*f));
    }
    p.funcs[0] = (sp_pfunc_t){.id = 1, .name = sp_pprof_text(&p, "m.main", 6),
                              .filename = sp_pprof_text(&p, "/a.py", 5),
                              .start_line = 10, .present = 1};
    p.funcs[2] = (sp_pfunc_t){.id = 7, .name = sp_pprof_text(&p, "memcpy", 6),
                              .filename = sp_pprof_text(&p, "/libc.so", 8), .native = 1,
                              .present = 1, .synthetic = 1};
    p.funcs[3] = (sp_pfunc_t){.id = 8, .name = sp_pprof_text(&p, "strlen", 6),
                              .filename = sp_pprof_text(&p, "/libc.so", 8), .native = 2,
                              .present = 1, .synthetic = 1};
    for (int k = 0; k < 2; k++) {
        sp_pnative_t *n = SP_PPROF_PUSH(&p, natives);
        CHECK(n != NULL);
        *n = (sp_pnative_t){sp_pprof_text(&p, "/libc.so", 8), sp_pprof_text(&p, "", 0),
                            (uint64_t)0x1000 + k, 0x1000, 0x2000, 0};
    }
    sp_pthread_t *t = SP_PPROF_PUSH(&p, threads);
    *t = (sp_pthread_t){42, sp_pprof_text(&p, "worker", 6), 1};
    uint64_t st1[] = {sp_pprof_frame(0, 11), sp_pprof_frame(2, 0)};
    uint64_t st2[] = {sp_pprof_frame(0, 11), sp_pprof_frame(3, 0)};
    const uint64_t *stacks[] = {st1, st2};
    for (int k = 0; k < 2; k++) {
        sp_psample_t *s = SP_PPROF_PUSH(&p, samples);
        *s = (sp_psample_t){sp_pprof_frames(&p, stacks[k], 2), 2, 0, SP_PLABEL_THREAD,
                            {1, 1000, 0}};
    }
    p.interpreter = sp_pprof_text(&p, "python", 6);
    p.period = 1000000;
    CHECK(!p.oom);

    sp_buf_t a, b;
    sp_buf_init(&a);
    sp_buf_init(&b);
    CHECK(sp_pprof_encode(&p, &a) == 0 && sp_pprof_encode(&p, &b) == 0);
    CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);   /* deterministic */
    int n[16];
    const uint8_t *pl = NULL;
    size_t plen = 0;
    CHECK(count_fields(&a, n, SP_PROFILE_MAPPING, 1, &pl, &plen) == 0);
    CHECK(n[SP_PROFILE_SAMPLE_TYPE] == 3 && n[SP_PROFILE_SAMPLE] == 2);
    /* main:11 shared by both stacks: one Location; the hole is not a Function */
    CHECK(n[SP_PROFILE_LOCATION] == 3 && n[SP_PROFILE_FUNCTION] == 3);
    /* the interpreter, and one Mapping for the two natives of one path */
    CHECK(n[SP_PROFILE_MAPPING] == 2 && n[SP_PROFILE_PERIOD] == 1);
    /* the first native's object: id 2, start 0x1000 */
    CHECK(pl && plen >= 5 && pl[0] == (SP_MAPPING_ID << 3) && pl[1] == 2 &&
          pl[2] == (SP_MAPPING_MEMORY_START << 3) && pl[3] == 0x80 && pl[4] == 0x20);
    /* "", samples, count, cpu, nanoseconds, calls, thread, thread_id, worker,
     * python, m.main, /a.py:10(main), /a.py, memcpy, /libc.so, strlen */
    CHECK(n[SP_PROFILE_STRING_TABLE] == 16);

    /* a frame naming a function past the table is refused */
    uint64_t bad = sp_pprof_frame(9, 1);
    sp_psample_t *s = SP_PPROF_PUSH(&p, samples);
    *s = (sp_psample_t){sp_pprof_frames(&p, &bad, 1), 1, 0, SP_PLABEL_NONE, {1, 1, 0}};
    errno = 0;
    CHECK(sp_pprof_encode(&p, &b) == -1 && errno == EINVAL);
    sp_buf_free(&a);
    sp_buf_free(&b);
    sp_pprof_free(&p);
}

int
main(void)
{
    test_varints_and_fields();
    test_nested_lengths();
    test_string_table();
    test_u64map();
    test_profile_encoding();
    test_gzip_choice();
    return CHECK_DONE("test_pprof_enc");
}
