/* deflate.c: one raw pprof message through zlib's strategies and libdeflate's levels:
 * CPU time per compression and the compressed share of the raw bytes.
 *
 *   PYTHONPATH=/tmp/spdev python3.11 benchmarks/writer.py --sizes 2000 --dump-raw /tmp/raw
 *   gcc -O2 benchmarks/deflate.c -o /tmp/deflate -lz -ldl -lisal   # -lisal: with libisal-dev
 *   for m in z1 z1m9 huff rle ld1 ld2 isal0 isal1 isal2; do /tmp/deflate /tmp/raw/2000.pb 50 $m; done
 *
 * Modes: z1 (zlib level 1, what the writer used), z1m9 (memLevel 9), huff (Huffman
 * only), rle, ldN (libdeflate level N, dlopen'ed as the writer does), isalN (ISA-L's
 * igzip level N, 0-3; built only where libisal-dev's header is). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#if __has_include(<isa-l/igzip_lib.h>)
#include <isa-l/igzip_lib.h>
#define HAVE_ISAL 1
#endif

static double
cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: deflate RAW_FILE REPS MODE\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    rewind(f);
    unsigned char *in = malloc(n), *out = malloc(2 * n + 1024);
    if (!in || !out || fread(in, 1, n, f) != n)
        return 1;
    fclose(f);
    int reps = atoi(argv[2]);
    const char *mode = argv[3];
    void *(*ld_alloc)(int) = NULL;
    size_t (*ld_gzip)(void *, const void *, size_t, void *, size_t) = NULL;
    void (*ld_free)(void *) = NULL;
    if (strncmp(mode, "ld", 2) == 0) {
        void *h = dlopen("libdeflate.so.0", RTLD_NOW);
        if (!h) {
            fprintf(stderr, "no libdeflate.so.0\n");
            return 1;
        }
        *(void **)&ld_alloc = dlsym(h, "libdeflate_alloc_compressor");
        *(void **)&ld_gzip = dlsym(h, "libdeflate_gzip_compress");
        *(void **)&ld_free = dlsym(h, "libdeflate_free_compressor");
    }
    size_t got = 0;
    double t0 = cpu_ms();
    for (int r = 0; r < reps; r++) {
#ifdef HAVE_ISAL
        if (strncmp(mode, "isal", 4) == 0) {
            static uint8_t level_buf[ISAL_DEF_LVL3_DEFAULT];
            static const uint32_t level_size[] = {ISAL_DEF_LVL0_DEFAULT, ISAL_DEF_LVL1_DEFAULT,
                                                  ISAL_DEF_LVL2_DEFAULT, ISAL_DEF_LVL3_DEFAULT};
            int lvl = atoi(mode + 4);
            struct isal_zstream z;
            isal_deflate_init(&z);
            z.gzip_flag = IGZIP_GZIP;
            z.level = (uint32_t)lvl;
            z.level_buf = level_buf;
            z.level_buf_size = level_size[lvl];
            z.end_of_stream = 1;
            z.flush = NO_FLUSH;
            z.next_in = in;
            z.avail_in = (uint32_t)n;
            z.next_out = out;
            z.avail_out = (uint32_t)(2 * n + 1024);
            if (isal_deflate(&z) != COMP_OK || z.internal_state.state != ZSTATE_END) {
                fprintf(stderr, "isal_deflate failed\n");
                return 1;
            }
            got = z.total_out;
            continue;
        }
#endif
        if (ld_gzip) {
            void *c = ld_alloc(atoi(mode + 2));
            got = ld_gzip(c, in, n, out, 2 * n + 1024);
            ld_free(c);
            continue;
        }
        int mem = strcmp(mode, "z1m9") == 0 ? 9 : 8;
        int strategy = strcmp(mode, "rle") == 0 ? Z_RLE
                       : strcmp(mode, "huff") == 0 ? Z_HUFFMAN_ONLY : Z_DEFAULT_STRATEGY;
        z_stream z;
        memset(&z, 0, sizeof(z));
        deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, mem, strategy);
        z.next_in = in;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)(2 * n + 1024);
        deflate(&z, Z_FINISH);
        got = z.total_out;
        deflateEnd(&z);
    }
    printf("%-5s %zu bytes -> %zu (%.3f), %.2f ms CPU each\n", mode, n, got,
           (double)got / n, (cpu_ms() - t0) / reps);
    return 0;
}
