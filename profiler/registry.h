/* registry.h: code objects -> stable ids, names, and exact call counts.
 *
 * Every code object the hook sees gets an entry, found again through the code object's
 * co_extra slot (so a code object that dies and whose address is reused by another is
 * a different entry: ids are never keyed by address and never reused).  When CPython
 * frees a code object it calls our co_extra free function; we first drain the sample
 * ring (so pending samples resolve their lines against the live code object), then mark
 * the entry dead.  Dead entries keep their names for reports, and are revived by a new
 * code object with the same (qualname, filename, first line); past a limit, new code
 * objects share one synthetic entry (see registry.c: bounded memory).
 *
 * Ids 1..SP_ID_FIRST_CODE-1 are synthetic frames ("[lost samples]" and friends); id 0
 * means "no Python caller" in call edges.
 *
 * Threading: everything here runs with the GIL held (the hook, registration, the
 * drain).  The signal handler never touches the registry: it copies ids that the hook
 * already stored on the shadow stack.
 */
#ifndef SP_REGISTRY_H
#define SP_REGISTRY_H

#include "compat.h"
#include <stdint.h>

enum {
    SP_ID_ROOT = 0,
    SP_ID_TRUNCATED = 1,   /* frames dropped between root and leaf of a deep sample */
    SP_ID_LOST = 2,        /* samples lost because the ring was full */
    SP_ID_OVERHEAD = 3,    /* samples that interrupted shadowprof's own code */
    SP_ID_NOPY = 4,        /* samples of a thread with no Python frame */
    SP_ID_DEEP = 5,        /* shadow stack overflowed: the frames below are unknown */
    SP_ID_TABLE_FULL = 6,  /* the aggregation table was full */
    SP_ID_OTHER = 7,       /* code objects registered past the registry's limit */
    SP_ID_FIRST_CODE = 8
};

#define SP_EDGE_SLOTS 4

typedef struct sp_code {
    /* Hot fields first: read and written by the hooks on every call. */
    uint32_t edge_caller[SP_EDGE_SLOTS];    /* inline cache of caller ids ... */
    uint64_t edge_count[SP_EDGE_SLOTS];     /* ... and their call counts (0 = free) */
    uint32_t id;
    uint32_t creates_generator;  /* generator/coroutine code: see SP_FRAME_IS_CREATION */
    uint64_t calls;          /* exact calls: the sum of the edges into this entry, filled
                                in by sp_registry_sum_calls (the hooks count edges only) */
    int firstlineno;
    uint32_t revivals;       /* times a new code object took this entry over: a cache
                                keyed by id must key by this too (its lines change) */
    PyCodeObject *code;      /* borrowed; NULL once CPython freed it */
    uint64_t quickened_version;  /* CPython 3.12: code's instrumentation version when
                                    requicken.c last went over it (UINT64_MAX: never) */
    PyObject *qualname;      /* strong */
    PyObject *filename;      /* strong */
} sp_code_t;

/* Index of our co_extra slot; -1 before sp_registry_init. */
extern Py_ssize_t sp_registry_extra_index;

/* Requests the co_extra slot and creates the synthetic entries.  Returns -1 with a
 * Python exception set on failure.  GIL held. */
int sp_registry_init(void);

/* What our co_extra slot holds: the entry's address, plus SP_CODE_TAG_CALL when every
 * frame entry of the code is a call (it is not generator or coroutine code, whose
 * frames are also entered to be created and resumed).  The PEP 523 hook tests the tag
 * and the presence of an entry with one instruction. */
#define SP_CODE_TAG_CALL ((uintptr_t)1)
/* 3.13+: the code is an __init__, which CPython may call through a shim frame that
 * never starts in the hooks' sense (it is incomplete) and may sit at the address of
 * a frame that ended: sys.monitoring's fast path leaves such code to its slow path. */
#define SP_CODE_TAG_INIT ((uintptr_t)2)
#define SP_CODE_TAGS (SP_CODE_TAG_CALL | SP_CODE_TAG_INIT)

/* The raw slot of a code object: 0 if it has none.  `idx` is sp_registry_extra_index;
 * a caller that knows it to be 0 passes the constant, which saves the size check
 * (a code object's extras, when present, always hold every index handed out before
 * they were allocated, and index 0 is the first).  Plain loads of the live code
 * object: async-signal-safe while the code object is alive. */
static inline uintptr_t
sp_code_slot(PyCodeObject *co, Py_ssize_t idx)
{
    sp_code_extra_t *x = (sp_code_extra_t *)co->co_extra;
    if (SP_UNLIKELY(x == NULL))
        return 0;
    if (idx != 0 && SP_UNLIKELY(x->ce_size <= idx))
        return 0;
    return (uintptr_t)x->ce_extras[idx];
}

/* The entry of a code object, or NULL if it has none yet.  Inline: a few loads.
 * GIL held (or, from the signal handler, a code object of a live frame). */
static inline sp_code_t *
sp_code_of(PyCodeObject *co)
{
    if (SP_UNLIKELY(sp_registry_extra_index < 0))
        return NULL;
    return (sp_code_t *)(sp_code_slot(co, sp_registry_extra_index) & ~SP_CODE_TAGS);
}

/* Default limit on registry ids (each about 100 bytes plus its identity-map slot). */
#define SP_REGISTRY_DEFAULT_MAX (1u << 17)

/* Sets the limit on ids; code objects first seen past it share SP_ID_OTHER.  GIL. */
void sp_registry_set_max(uint32_t n);

/* Creates the entry of a code object.  Returns NULL (no exception set) if memory runs
 * out; the caller then simply does not track the frame.  GIL held. */
sp_code_t *sp_code_register(PyCodeObject *co);

/* Counts a call of `callee` from the code with id `caller`: one edge; the calls of an
 * entry are the sum of its edges (sp_registry_sum_calls).  GIL held. */
void sp_code_count_edge_slow(sp_code_t *callee, uint32_t caller);
static inline void
sp_code_count_call(sp_code_t *callee, uint32_t caller)
{
    if (SP_LIKELY(callee->edge_caller[0] == caller)) {
        callee->edge_count[0]++;
        return;
    }
    sp_code_count_edge_slow(callee, caller);
}

/* Sets every entry's `calls` to the sum of its edges.  GIL held. */
void sp_registry_sum_calls(void);

/* Entry by id (NULL if out of range); number of ids handed out.  GIL held. */
sp_code_t *sp_registry_get(uint32_t id);
uint32_t sp_registry_size(void);

/* Zeroes every call and edge count.  GIL held. */
void sp_registry_reset_counts(void);

/* Line of instruction `instr` (code units; -1: the first line) in the entry's code.
 * Dead entries answer their first line.  GIL held. */
int sp_code_line(sp_code_t *e, int instr);

/* Calls fn for every edge with a nonzero count.  GIL held. */
typedef int (*sp_edge_visit_t)(uint32_t caller, uint32_t callee, uint64_t n, void *arg);
int sp_registry_visit_edges(sp_edge_visit_t fn, void *arg);

/* Registers fn (NULL: none) to be called (GIL held) when a code object with an entry
 * is about to be freed, before the entry is marked dead: the session drains the ring
 * then.  GIL held. */
void sp_registry_on_free(void (*fn)(void));

#endif /* SP_REGISTRY_H */
