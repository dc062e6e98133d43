/* deflate.h: gzip of one finished buffer (a pprof file's protobuf) with the fastest
 * deflater this machine has: ISA-L's igzip, libdeflate, or zlib.
 *
 * Owns the choice of compressor and the three calls to it.  ISA-L (libisal.so.2) and
 * libdeflate (libdeflate.so.0) are dlopen'ed on first use, so neither the build, the
 * install nor the run needs them; ISA-L is compiled in only where its header
 * (libisal-dev's <isa-l/igzip_lib.h>) is.  zlib is linked.
 *
 * Thread contract: called from the writer with the GIL released (sp_pprof_emit), never
 * from the signal handler: allocates freely.  Each call touches only its arguments and,
 * once (pthread_once), the table of dlsym'ed entry points, read-only after.
 */
#ifndef SP_DEFLATE_H
#define SP_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

/* ISA-L compiled in: where its header is, unless -DSP_NO_ISAL (a build as on a
 * machine without libisal-dev). */
#if !defined(SP_NO_ISAL) && defined(__has_include)
#if __has_include(<isa-l/igzip_lib.h>)
#define SP_HAVE_ISAL 1
#endif
#endif

/* Deflaters.  SP_DEFLATE_ANY asks for the fastest for the level (ISA-L at level 1,
 * else libdeflate, else zlib); as what a call used, 0 reads "none". */
enum {
    SP_DEFLATE_ANY = 0,
    SP_DEFLATE_ISAL = 1,
    SP_DEFLATE_LIBDEFLATE = 2,
    SP_DEFLATE_ZLIB = 3,
};

/* gzip (RFC 1952, mtime 0, no name) of data[0..n) at level 1..9 (zlib's scale) with
 * deflater (SP_DEFLATE_*), into *out (malloc'ed, the caller frees it) of *out_len
 * bytes.  Returns the deflater used (1..3), or -1 with errno ENOMEM, EIO (the
 * compressor did not finish the stream) or ENOSYS (the deflater asked for is not on
 * this machine), and *out NULL. */
int sp_gzip(const uint8_t *data, size_t n, int level, int deflater, uint8_t **out,
            size_t *out_len);

/* The deflater sp_gzip would use for level and deflater, or -1 if the one asked for
 * is not on this machine. */
int sp_gzip_deflater(int level, int deflater);

/* "isal", "libdeflate", "zlib"; "none" for 0; NULL past SP_DEFLATE_ZLIB. */
const char *sp_deflater_name(int deflater);

/* SP_DEFLATE_ISAL... for a name of sp_deflater_name's (1..3), or -1. */
int sp_deflater_parse(const char *name);

#endif
