/* registry.c: code registry and exact call counts (see registry.h).
 *
 * Entries live in fixed-size chunks that never move, so the pointer stored in a code
 * object's co_extra stays valid for the life of the process.  The overflow edge table
 * (callers beyond the SP_EDGE_SLOTS inline cache) is a small open-addressing hash map.
 * All of it is written with the GIL held.
 *
 * Bounded memory.  Programs that create code objects without end (exec, eval,
 * namedtuple, template engines, code.replace) must not grow the registry without end:
 *  - an identity map (qualname, filename, first line) -> ids lets a new code object
 *    take over the entry of a dead one with the same identity, so a million
 *    short-lived copies of one function are one entry (and one row in the report, as
 *    pstats would merge them);
 *  - past `max_entries` ids, new code objects share the synthetic entry
 *    SP_ID_OTHER ("[functions over the limit]"): their calls and samples are still
 *    counted, under that name.
 * Ids are still never reused for a different identity within the life of the process.
 */
#include "registry.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_SHIFT 10
#define CHUNK_SIZE (1u << CHUNK_SHIFT)

Py_ssize_t sp_registry_extra_index = -1;
static void (*before_free)(void);   /* sp_registry_on_free; GIL */

void
sp_registry_on_free(void (*fn)(void))
{
    before_free = fn;
}

/* id -> entry, in chunks.  GIL. */
static sp_code_t **chunks;
static uint32_t nchunks, chunks_cap;
static uint32_t next_id = SP_ID_FIRST_CODE;
static uint32_t max_entries = SP_REGISTRY_DEFAULT_MAX;

/* (qualname, filename, firstlineno) -> list of the ids with that identity, newest
 * last.  GIL. */
static PyObject *identity_map;

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
    sp_code_t *e = (sp_code_t *)((uintptr_t)extra & ~SP_CODE_TAGS);
    if (!e)
        return;
    if (before_free)
        before_free();
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
    Py_ssize_t idx = SP_REQUEST_CODE_EXTRA_INDEX(code_freed);
    if (idx < 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: no free code-object extra slot (too many tools "
                        "using co_extra); stop another profiler or debugger first");
        return -1;
    }
    static const char *names[] = {
        NULL, "[truncated]", "[lost samples]", "[shadowprof overhead]",
        "[no Python frame]", "[stack too deep]", "[table full]",
        "[functions over the limit]",
    };
    for (uint32_t id = 1; id < SP_ID_FIRST_CODE; id++)
        if (add_synthetic(id, names[id]) < 0)
            return -1;
    if (!identity_map && !(identity_map = PyDict_New()))
        return -1;
    sp_code_t *root = new_entry(0);
    if (!root || !(root->qualname = PyUnicode_FromString("<root>")) ||
        !(root->filename = PyUnicode_FromString("<shadowprof>")))
        return -1;
    sp_registry_extra_index = idx;
    return 0;
}

void
sp_registry_set_max(uint32_t n)
{
    max_entries = n < SP_ID_FIRST_CODE + 1 ? SP_ID_FIRST_CODE + 1 : n;
}

/* Points co's slot at e, tagged (see SP_CODE_TAG_CALL). */
static int
attach(PyCodeObject *co, sp_code_t *e)
{
    uintptr_t slot = (uintptr_t)e;
    if (!(co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)))
        slot |= SP_CODE_TAG_CALL;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyUnicode_Check(co->co_name) &&
        PyUnicode_CompareWithASCIIString(co->co_name, "__init__") == 0)
        slot |= SP_CODE_TAG_INIT;
#endif
    if (SP_CODE_SET_EXTRA((PyObject *)co, sp_registry_extra_index, (void *)slot) < 0) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* The entry for a code object seen for the first time: a dead entry of the same
 * identity revived, a new entry, or SP_ID_OTHER past the limit.  Any pending exception
 * is kept as it was. */
static sp_code_t *
register_code(PyCodeObject *co)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *qualname = co->co_qualname;
#else
    PyObject *qualname = co->co_name;
#endif
    PyObject *key = Py_BuildValue("(OOi)", qualname, co->co_filename,
                                  co->co_firstlineno);
    if (!key)
        return NULL;
    /* Entries of this identity, newest last: revive a dead one (the newest few are
     * checked: more entries of one identity than that exist only while as many of its
     * code objects are alive at once, which is the program's own memory). */
    PyObject *ids = PyDict_GetItemWithError(identity_map, key);   /* borrowed */
    if (ids) {
        Py_ssize_t n = PyList_GET_SIZE(ids);
        for (Py_ssize_t i = n - 1; i >= 0 && i >= n - 16; i--) {
            sp_code_t *e = sp_registry_get(
                (uint32_t)PyLong_AsUnsignedLong(PyList_GET_ITEM(ids, i)));
            if (e && e->code == NULL) {
                Py_DECREF(key);
                if (attach(co, e) < 0)
                    return NULL;
                e->code = co;
                e->quickened_version = UINT64_MAX;
                e->creates_generator = (co->co_flags & (CO_GENERATOR | CO_COROUTINE |
                                                        CO_ASYNC_GENERATOR)) != 0;
                e->revivals++;   /* same first line, maybe other lines (a reload) */
                return e;
            }
        }
    } else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    if (next_id >= max_entries) {
        Py_DECREF(key);
        sp_code_t *other = sp_registry_get(SP_ID_OTHER);
        return attach(co, other) < 0 ? NULL : other;
    }
    sp_code_t *e = new_entry(next_id);
    if (!e) {
        Py_DECREF(key);
        return NULL;
    }
    e->qualname = Py_NewRef(qualname);
    e->filename = Py_NewRef(co->co_filename);
    e->firstlineno = co->co_firstlineno;
    e->creates_generator =
        (co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) != 0;
    next_id++;
    /* From here on the entry is complete: any failure leaves a harmless dead entry. */
    PyObject *id = PyLong_FromUnsignedLong(e->id);
    int ok = id != NULL;
    if (ok && !ids) {
        ids = PyList_New(0);
        ok = ids && PyDict_SetItem(identity_map, key, ids) == 0;
        Py_XDECREF(ids);   /* the map holds it */
    }
    if (ok)
        PyList_Append(ids, id);   /* on failure the entry just cannot be revived */
    Py_DECREF(key);
    Py_XDECREF(id);
    if (attach(co, e) < 0)
        return NULL;
    e->code = co;
    e->quickened_version = UINT64_MAX;
    return e;
}

SP_HOT sp_code_t *
sp_code_register(PyCodeObject *co)
{
    if (sp_registry_extra_index < 0)
        return NULL;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    sp_code_t *e = register_code(co);
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
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

void
sp_registry_sum_calls(void)
{
    for (uint32_t id = 0; id < next_id; id++) {
        sp_code_t *e = sp_registry_get(id);
        e->calls = 0;
        for (int i = 0; i < SP_EDGE_SLOTS; i++)
            e->calls += e->edge_count[i];
    }
    for (size_t j = 0; j < edges_cap; j++) {
        if (!edges[j].count)
            continue;
        sp_code_t *e = sp_registry_get((uint32_t)edges[j].key);
        if (e)
            e->calls += edges[j].count;
    }
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
    for (uint32_t id = SP_ID_OTHER; id < next_id; id++) {
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
