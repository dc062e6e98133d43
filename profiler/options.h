/* options.h: the parser of shadowprof's option string.
 *
 * One grammar for `python -X shadowprof=OPTIONS`, the SHADOWPROF environment variable
 * and Profiler.from_options(): comma-separated items, each `key=value`, a bare boolean
 * key (`quiet`, `native`: on), or a bare value, which is the output path:
 *
 *     interval=5ms,mode=wall,output=prof-{pid}.pb.gz,format=pprof
 *     out.pb.gz
 *
 * Keys are looked up in a gperf table (options.gperf).  The parser is pure C (no Python
 * API, no allocation): it fills an sp_options_t whose string values point into the
 * caller's buffer, and marks which keys were given, so that the caller can merge two
 * strings (the flag wins over the variable) and apply its own defaults.  Not for use
 * in a signal handler (it calls strtod).
 */
#ifndef SP_OPTIONS_H
#define SP_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

enum {
    SP_OPT_INTERVAL, SP_OPT_MODE, SP_OPT_OUTPUT, SP_OPT_FORMAT, SP_OPT_PERIOD,
    SP_OPT_KEEP, SP_OPT_SAMPLE_RATE, SP_OPT_SIGNAL, SP_OPT_NATIVE, SP_OPT_MAX_DEPTH,
    SP_OPT_BUDGET, SP_OPT_QUIET, SP_OPT_TOP, SP_OPT_FORK,
    SP_OPT_COUNT
};

/* A string value: a slice of the parsed text (not NUL-terminated). */
typedef struct {
    const char *s;
    size_t len;
} sp_optstr_t;

typedef struct {
    uint32_t given;          /* bit (1 << SP_OPT_x) for each key the string set */
    uint64_t interval_ns;    /* 100us..60s */
    sp_optstr_t mode;        /* "cpu" | "wall" */
    sp_optstr_t output;      /* a path; may hold {pid}, {host}, {time} */
    sp_optstr_t format;      /* one of sp_options_formats */
    uint64_t period_ns;      /* 0 (off) or 100ms..1 day */
    uint32_t keep;           /* 0 (keep all) .. 1000000 */
    double sample_rate;      /* 0..1 */
    int signal;              /* 0: off, else a signal number */
    int native;              /* 0 | 1 */
    uint32_t max_depth;      /* 8..1000000 */
    double budget;           /* share of CPU, 0 (off) .. 1 */
    int quiet;               /* 0 | 1 */
    uint32_t top;            /* 1..100000 */
    sp_optstr_t fork;        /* "continue" | "stop" */
} sp_options_t;

/* Names of the keys, indexed by SP_OPT_*, and the output formats the value of
 * `format` may name (NULL-terminated). */
extern const char *const sp_options_names[SP_OPT_COUNT];
extern const char *const sp_options_formats[];

/* Parses text[0..len) into *out (zeroed first).  Returns 0, or -1 with a one-line
 * message in err[0..errlen) naming the item and what it may be. */
int sp_options_parse(const char *text, size_t len, sp_options_t *out, char *err,
                     size_t errlen);

#endif /* SP_OPTIONS_H */
