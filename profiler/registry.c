/* registry.c: code registry and exact call counts (see registry.h).
 *
 * Entries live in fixed-size chunks that never move, so the pointer stored in a code
 * object's co_extra stays valid for the life of the process.  The overflow edge table
 * (callers beyond the SP_EDGE_SLOTS inline cache) is a small open-addressing hash map.
 * All of it is written with the GIL held.
 */
#include "registry.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_SHIFT 10
#define CHUNK_SIZE (1u << CHUNK_SHIFT)

Py_ssize_t sp_registry_extra_index = -1;
void (*sp_registry_before_free)(void) = NULL;

/* id -> entry, in chunks.  GIL. */
static sp_code_t **chunks;
static uint32_t nchunks, chunks_cap;
static uint32_t next_id = SP_ID_FIRST_CODE;

/* Overflow edges: (caller << 32 | callee) -> count.  GIL. */
typedef struct {
    uint64_t key;
    uint64_t count;
} edge_slot_t;
static edge_slot_t *edges;
static size_t edges_cap, edges_used;

sp_code_t *
sp_registry_get(uint32_t id)
{
    if (id >= next_id)
        return NULL;
    return &chunks[id >> CHUNK_SHIFT][id & (CHUNK_SIZE - 1)];
}

uint32_t
sp_registry_size(void)
{
    return next_id;
}

static sp_code_t *
new_entry(uint32_t id)
{
    uint32_t c = id >> CHUNK_SHIFT;
    if (c >= nchunks) {
        if (c >= chunks_cap) {
            uint32_t cap = chunks_cap ? chunks_cap * 2 : 16;
            sp_code_t **n = realloc(chunks, cap * sizeof(*n));
            if (!n)
                return NULL;
            chunks = n;
            chunks_cap = cap;
        }
        chunks[c] = calloc(CHUNK_SIZE, sizeof(sp_code_t));
        if (!chunks[c])
            return NULL;
        nchunks = c + 1;
    }
    sp_code_t *e = &chunks[c][id & (CHUNK_SIZE - 1)];
    memset(e, 0, sizeof(*e));
    e->id = id;
    return e;
}

/* Called by CPython as the code object is freed; its fields are still intact. */
static void
code_freed(void *extra)
{
    sp_code_t *e = extra;
    if (!e)
        return;
    if (sp_registry_before_free)
        sp_registry_before_free();
    e->code = NULL;
}

static int
add_synthetic(uint32_t id, const char *name)
{
    sp_code_t *e = new_entry(id);
    if (!e) {
        PyErr_NoMemory();
        return -1;
    }
    e->qualname = PyUnicode_FromString(name);
    e->filename = PyUnicode_FromString("<shadowprof>");
    if (!e->qualname || !e->filename)
        return -1;
    return 0;
}

int
sp_registry_init(void)
{
    if (sp_registry_extra_index >= 0)
        return 0;
    Py_ssize_t idx = _PyEval_RequestCodeExtraIndex(code_freed);
    if (idx < 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: no free code-object extra slot (too many tools "
                        "using co_extra); stop another profiler or debugger first");
        return -1;
    }
    static const char *names[] = {
        NULL, "[truncated]", "[lost samples]", "[shadowprof overhead]",
        "[no Python frame]", "[stack too deep]", "[table full]", "[unused]",
    };
    for (uint32_t id = 1; id < SP_ID_FIRST_CODE; id++)
        if (add_synthetic(id, names[id]) < 0)
            return -1;
    sp_code_t *root = new_entry(0);
    if (!root || !(root->qualname = PyUnicode_FromString("<root>")) ||
        !(root->filename = PyUnicode_FromString("<shadowprof>")))
        return -1;
    sp_registry_extra_index = idx;
    return 0;
}

SP_HOT sp_code_t *
sp_code_register(PyCodeObject *co)
{
    if (sp_registry_extra_index < 0)
        return NULL;
    sp_code_t *e = new_entry(next_id);
    if (!e)
        return NULL;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    if (_PyCode_SetExtra((PyObject *)co, sp_registry_extra_index, e) < 0) {
        PyErr_Clear();
        PyErr_Restore(exc_type, exc_value, exc_tb);
        return NULL;
    }
    PyErr_Restore(exc_type, exc_value, exc_tb);
    e->code = co;
#if PY_VERSION_HEX >= 0x030B0000
    e->qualname = Py_NewRef(co->co_qualname);
#else
    e->qualname = Py_NewRef(co->co_name);
#endif
    e->filename = Py_NewRef(co->co_filename);
    e->firstlineno = co->co_firstlineno;
    e->creates_generator =
        (co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) != 0;
    next_id++;
    return e;
}

static int
edges_grow(void)
{
    size_t cap = edges_cap ? edges_cap * 2 : 1024;
    edge_slot_t *n = calloc(cap, sizeof(*n));
    if (!n)
        return -1;
    for (size_t i = 0; i < edges_cap; i++) {
        if (!edges[i].count)
            continue;
        size_t j = (edges[i].key * 0x9E3779B97F4A7C15ull) >> 20 & (cap - 1);
        while (n[j].count)
            j = (j + 1) & (cap - 1);
        n[j] = edges[i];
    }
    free(edges);
    edges = n;
    edges_cap = cap;
    return 0;
}

SP_HOT void
sp_code_count_edge_slow(sp_code_t *callee, uint32_t caller)
{
    /* Slot 0 is checked inline by the hook; keep the most frequent caller there. */
    for (int i = 0; i < SP_EDGE_SLOTS; i++) {
        if (callee->edge_count[i] == 0) {
            callee->edge_caller[i] = caller;
            callee->edge_count[i] = 1;
            return;
        }
        if (callee->edge_caller[i] == caller) {
            uint64_t n = ++callee->edge_count[i];
            if (i > 0 && n > callee->edge_count[0]) {
                callee->edge_caller[i] = callee->edge_caller[0];
                callee->edge_count[i] = callee->edge_count[0];
                callee->edge_caller[0] = caller;
                callee->edge_count[0] = n;
            }
            return;
        }
    }
    if ((edges_used + 1) * 2 > edges_cap && edges_grow() < 0)
        return;   /* out of memory: the edge goes uncounted, the call is counted */
    uint64_t key = (uint64_t)caller << 32 | callee->id;
    size_t j = (key * 0x9E3779B97F4A7C15ull) >> 20 & (edges_cap - 1);
    while (edges[j].count && edges[j].key != key)
        j = (j + 1) & (edges_cap - 1);
    if (!edges[j].count) {
        edges[j].key = key;
        edges_used++;
    }
    edges[j].count++;
}

void
sp_registry_reset_counts(void)
{
    for (uint32_t id = 0; id < next_id; id++) {
        sp_code_t *e = sp_registry_get(id);
        e->calls = 0;
        memset(e->edge_caller, 0, sizeof(e->edge_caller));
        memset(e->edge_count, 0, sizeof(e->edge_count));
    }
    if (edges)
        memset(edges, 0, edges_cap * sizeof(*edges));
    edges_used = 0;
}

int
sp_code_line(sp_code_t *e, int instr)
{
    if (!e->code || instr < 0)
        return e->firstlineno;
    int line = PyCode_Addr2Line(e->code, SP_INSTR_TO_ADDR(instr));
    return line < 0 ? e->firstlineno : line;
}

int
sp_registry_visit_edges(sp_edge_visit_t fn, void *arg)
{
    for (uint32_t id = SP_ID_FIRST_CODE; id < next_id; id++) {
        sp_code_t *e = sp_registry_get(id);
        for (int i = 0; i < SP_EDGE_SLOTS; i++)
            if (e->edge_count[i] && fn(e->edge_caller[i], id, e->edge_count[i], arg) < 0)
                return -1;
    }
    for (size_t j = 0; j < edges_cap; j++)
        if (edges[j].count &&
            fn((uint32_t)(edges[j].key >> 32), (uint32_t)edges[j].key, edges[j].count,
               arg) < 0)
            return -1;
    return 0;
}
