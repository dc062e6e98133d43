/* options.h: the parser of shadowprof's option string.
 *
 * One grammar for `python -X shadowprof=OPTIONS`, the SHADOWPROF environment variable
 * and Profiler.from_options(): comma-separated items, each `key=value`, a bare boolean
 * key (`quiet`, `native`: on), or a bare value, which is the output path:
 *
 *     interval=5ms,mode=wall,output=prof-{pid}.pb.gz,format=pprof
 *     out.pb.gz
 *
 * The keys, their kinds, bounds and choices come from the option table
 * (profiler/_options.py), written into options_table.h and options.gperf by
 * tools/gen_options.py: nothing here or in options.c names an option.  The Python
 * API parses its values with the same code (_core.parse_option, parse_interval).
 *
 * Durations: a number and a unit (ns, us, ms, s, m, min, h) or a rate (hz); a bare
 * number is seconds, and an option may require it to be below a limit
 * (interval: below 1, since `interval=5` could mean 5 s or 5 ms).
 *
 * The parser is pure C (no Python API, no allocation): it fills an sp_options_t whose
 * string values point into the caller's buffer (or into the table), and marks which
 * keys were given.  Not for use in a signal handler (it calls strtod).
 */
#ifndef SP_OPTIONS_H
#define SP_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    SP_OPTK_DURATION,   /* value.u: ns */
    SP_OPTK_SHARE,      /* value.d: 0..1, also written 5% */
    SP_OPTK_UINT,       /* value.u */
    SP_OPTK_BOOL,       /* value.u: 0 | 1 */
    SP_OPTK_CHOICE,     /* value.s: the table's word (lower case); value.u its index */
    SP_OPTK_SIGNAL,     /* value.u: a signal number, 0 for off */
    SP_OPTK_PATH,       /* value.s: non-empty */
} sp_optkind_t;

/* A word of a choice or signal option and what it means. */
typedef struct {
    const char *word;
    int value;
} sp_optchoice_t;

/* One option of the table (options_table.h). */
typedef struct {
    const char *name;            /* the key: "max_depth" */
    const char *dest;            /* its Python name: "interval_ns" for a duration */
    sp_optkind_t kind;
    double lo, hi;               /* bounds of durations (ns), shares and integers */
    double bare_below;           /* durations: a bare number of seconds must be below
                                    this (0: no limit) */
    int off;                     /* "off" (and "0") means 0 */
    const sp_optchoice_t *choices;   /* CHOICE, SIGNAL: ends with {NULL, 0} */
    const char *default_value;   /* in the option grammar ("10ms"), or NULL: unset */
    const char *hint;            /* what to give: the end of the error message */
} sp_option_desc_t;

/* A string value: a slice of the parsed text (not NUL-terminated). */
typedef struct {
    const char *s;
    size_t len;
} sp_optstr_t;

#include "options_table.h"   /* SP_OPT_* codes, generated */

typedef struct {
    sp_optstr_t s;
    uint64_t u;
    double d;
} sp_optval_t;

typedef struct {
    uint32_t given;                 /* bit (1 << SP_OPT_x) for each key the string set */
    sp_optval_t value[SP_OPT_COUNT];
} sp_options_t;

/* The table, indexed by SP_OPT_*. */
extern const sp_option_desc_t sp_options_desc[SP_OPT_COUNT];

/* Parses text[0..len) into *out (zeroed first).  Returns 0, or -1 with a one-line
 * message in err[0..errlen) naming the item and what it may be. */
int sp_options_parse(const char *text, size_t len, sp_options_t *out, char *err,
                     size_t errlen);

/* Parses one value v[0..n) of option `code` into *out; same convention.  Used for
 * the option string and for the values of the Python API (Profiler(interval=...)). */
int sp_options_parse_value(int code, const char *v, size_t n, sp_optval_t *out,
                           char *err, size_t errlen);

/* Fills *out (zeroed first) with the table's defaults: each option that has one is
 * marked given.  Returns 0, or -1 with the message if the table is wrong. */
int sp_options_defaults(sp_options_t *out, char *err, size_t errlen);

/* The SP_OPT_* code of key k[0..n), or -1. */
int sp_options_code(const char *k, size_t n);

#endif /* SP_OPTIONS_H */
