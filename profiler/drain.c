/* drain.c: the ring's consumer (see drain.h).  Fills the session's table and its
 * counters (session_state.h), through the object sp_drain_attach handed it;
 * everything here runs with the GIL held. */
#include "drain.h"
#include "backend.h"
#include "clock.h"
#include "native.h"
#include "registry.h"
#include "shadow.h"
#include "spill.h"

#include <string.h>

/* The session object (session_state.h), handed by sp_drain_attach.  GIL. */
static sp_session_state_t *session;

void
sp_drain_attach(sp_session_state_t *s)
{
    session = s;
}

/* Direct-mapped cache (code id, instruction) -> line.  An id outlives its code object
 * and is revived by a new one of the same identity (registry.h), e.g. after
 * importlib.reload of a module where the function's body moved: its instructions then
 * have other lines, so an entry also holds the id's revival count and is right only
 * while that count is unchanged. */
#define LINE_CACHE_SIZE 4096
static struct {
    uint64_t key;   /* id << 32 | (uint32_t)instr, + 1; 0 = empty */
    uint32_t revivals;
    int line;
} line_cache[LINE_CACHE_SIZE];

static int draining;

/* Kernel thread id -> thread name, noted the first time a thread's samples are drained
 * (the drain thread, drainer.c, drains within half a second even when no Python call
 * does, so most threads are still alive then): from threading._active, or, for a
 * thread that has ended meanwhile, from threading._dangling (every Thread object still
 * referenced, e.g. by whoever joined it).  Strong references; GIL.  Cleared at start
 * (lazily: sp_drain_reset may run in a fork child before Python can) and when it
 * reaches SP_MAX_THREAD_NAMES, so a long continuous session with thread churn holds a
 * bounded number.  No lookup here runs Python code or allocates a garbage-collected
 * object: the drain thread must never run a Python frame (a collection could). */
#define SP_MAX_THREAD_NAMES 4096
static PyObject *thread_names;
static int thread_names_stale;
static uint64_t last_tid;   /* the tid noted last: most records repeat it */

/* The name of `thread` (a threading.Thread) if its native id is tid; new reference or
 * NULL, no exception.  Plain instance attributes, read without __getattr__ hooks. */
static PyObject *
name_if_tid(PyObject *thread, uint64_t tid)
{
    static PyObject *native_id_str, *name_str;
    if (!native_id_str && !(native_id_str = PyUnicode_InternFromString("_native_id")))
        return NULL;
    if (!name_str && !(name_str = PyUnicode_InternFromString("_name")))
        return NULL;
    PyObject *name = NULL;
    PyObject *nid = PyObject_GenericGetAttr(thread, native_id_str);
    if (nid && PyLong_Check(nid) && PyLong_AsUnsignedLongLong(nid) == tid) {
        name = PyObject_GenericGetAttr(thread, name_str);
        if (name && !PyUnicode_Check(name))
            Py_CLEAR(name);
    }
    Py_XDECREF(nid);
    PyErr_Clear();
    return name;
}

#if PY_VERSION_HEX >= 0x030D0000
/* Exported, declared in an internal header since 3.13. */
PyAPI_FUNC(int) _PySet_NextEntry(PyObject *set, Py_ssize_t *pos, PyObject **key,
                                 Py_hash_t *hash);
#endif

/* The name of the thread with native id tid: live threads first, then ended ones whose
 * Thread object is still referenced.  New reference or NULL, no exception. */
static PyObject *
lookup_thread_name(uint64_t tid)
{
    static PyObject *threading_str;
    if (!threading_str && !(threading_str = PyUnicode_InternFromString("threading")))
        return NULL;
    PyObject *threading = PyImport_GetModule(threading_str);
    if (!threading)
        return NULL;
    PyObject *name = NULL, *k, *v;
    PyObject *active = PyObject_GetAttrString(threading, "_active");
    if (active && PyDict_Check(active)) {
        Py_ssize_t pos = 0;
        while (!name && PyDict_Next(active, &pos, &k, &v))
            name = name_if_tid(v, tid);
    }
    Py_XDECREF(active);
    PyErr_Clear();
    PyObject *dangling = name ? NULL : PyObject_GetAttrString(threading, "_dangling");
    PyObject *refs = dangling ? PyObject_GetAttrString(dangling, "data") : NULL;
    if (refs && PySet_Check(refs)) {
        Py_ssize_t pos = 0;
        Py_hash_t hash;
        while (!name && _PySet_NextEntry(refs, &pos, &k, &hash)) {
            if (!PyWeakref_CheckRef(k))
                continue;
            PyObject *thread = PyObject_CallNoArgs(k);   /* the referent, or None */
            if (thread && thread != Py_None)
                name = name_if_tid(thread, tid);
            Py_XDECREF(thread);
        }
    }
    Py_XDECREF(refs);
    Py_XDECREF(dangling);
    Py_DECREF(threading);
    PyErr_Clear();
    return name;
}

static void
note_thread(uint64_t tid)
{
    if (thread_names_stale) {
        thread_names_stale = 0;
        last_tid = 0;
        if (thread_names)
            PyDict_Clear(thread_names);
    }
    if (tid == last_tid || tid == 0)
        return;
    last_tid = tid;
    if (!thread_names && !(thread_names = PyDict_New())) {
        PyErr_Clear();
        return;
    }
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *key = PyLong_FromUnsignedLongLong(tid);
    if (key && !PyDict_GetItem(thread_names, key)) {
        PyObject *name = lookup_thread_name(tid);
        if (name) {
            if (PyDict_GET_SIZE(thread_names) >= SP_MAX_THREAD_NAMES)
                PyDict_Clear(thread_names);
            PyDict_SetItem(thread_names, key, name);
            Py_DECREF(name);
        }
    }
    Py_XDECREF(key);
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

PyObject *
sp_drain_thread_names(void)
{
    if (!thread_names || thread_names_stale)
        return PyDict_New();
    return PyDict_Copy(thread_names);
}

static int
resolve_line(uint32_t id, int32_t instr)
{
    uint64_t key = ((uint64_t)id << 32 | (uint32_t)instr) + 1;
    size_t slot = (key * 0x9E3779B97F4A7C15ull) >> 52;
    sp_code_t *e = sp_registry_get(id);
    uint32_t revivals = e ? e->revivals : 0;
    if (line_cache[slot].key == key && line_cache[slot].revivals == revivals)
        return line_cache[slot].line;
    int line = e ? sp_code_line(e, instr) : 0;
    line_cache[slot].key = key;
    line_cache[slot].revivals = revivals;
    line_cache[slot].line = line;
    return line;
}

static inline uint64_t
loc(uint32_t id, int line)
{
    return (uint64_t)id << 32 | (uint32_t)line;
}

static void
add(uint64_t tid, const uint64_t *locs, uint32_t n, uint64_t count, uint64_t weight)
{
    if (sp_table_add(session->table, tid, locs, n, count, weight) != 0) {
        uint64_t full = loc(SP_ID_TABLE_FULL, 0);
        session->stats.table_full += count;
        /* The overflow stack must always fit: it was made at start (see reset). */
        sp_table_add(session->table, 0, &full, 1, count, weight);
    }
}

static inline uint64_t
native_loc(uint64_t pc)
{
    return SP_NATIVE_LOC_TAG | pc;
}

/* Splices a record's native pcs (innermost first) with its Python locations py[0..m)
 * (root first) into out, root first.  The anchor: every Python frame the PEP 523 hook
 * pushed has one evaluation-loop frame of its own (the hook tail-calls the loop, so it
 * leaves no frame of its own), so those frames, matched from the leaf, each get their
 * Python frame just outside them, 1:1.  Python frames
 * without a hook frame (seeded when profiling started inside them) go right after the
 * innermost evaluation-loop frame outside the first matched hook frame.  Records whose
 * Python part was truncated keep it whole and add only the native frames inside the
 * innermost hook frame.  Returns the number of locations written. */
static uint32_t
splice(const sp_record_t *rec, const uint64_t *py, uint32_t m, uint64_t *out)
{
    uint32_t nn = rec->nnative > SP_RING_NATIVE ? SP_RING_NATIVE : rec->nnative;
    const uint64_t *pc = rec->native;
    /* Anchors only where each tracked frame has its own evaluation-loop frame. */
    int by_eval = sp_backend_kind() == SP_BACKEND_EVAL;
#define ANCHOR(p) (by_eval && sp_native_is_eval(p))
    uint32_t n = 0, hooks = 0, innermost_hook = nn;
    for (uint32_t i = 0; i < nn; i++) {
        if (ANCHOR(pc[i])) {
            if (!hooks)
                innermost_hook = i;
            hooks++;
        }
    }
    if (rec->flags & (SP_SAMPLE_TRUNCATED | SP_SAMPLE_DEEP)) {
        memcpy(out, py, m * sizeof(uint64_t));
        n = m;
        if (!(rec->flags & SP_SAMPLE_DEEP))
            for (uint32_t i = innermost_hook + (innermost_hook < nn); i-- > 0;)
                out[n++] = native_loc(pc[i]);
        return n;
    }
    uint32_t h = hooks < m ? hooks : m, seeded = m - h;
    /* Native index of the outermost matched hook frame, and the anchor after which the
     * seeded frames go (nn: before everything). */
    uint32_t outer_hook = nn, anchor = nn, rank = 0;
    for (uint32_t i = 0; i < nn && rank < h; i++)
        if (ANCHOR(pc[i]) && ++rank == h)
            outer_hook = i;
    for (uint32_t i = (h ? outer_hook + 1 : 0); i < nn; i++)
        if (sp_native_is_eval(pc[i])) {
            anchor = i;
            break;
        }
    int seeded_done = 0;
    if (seeded && anchor == nn && h == 0) {
        memcpy(out, py, seeded * sizeof(uint64_t));
        n = seeded;
        seeded_done = 1;
    }
    uint32_t seen = 0;   /* hook frames passed, outermost first */
    for (uint32_t i = nn; i-- > 0;) {
        if (!seeded_done && i == outer_hook && anchor == nn) {
            memcpy(out + n, py, seeded * sizeof(uint64_t));
            n += seeded;
            seeded_done = 1;
        }
        if (ANCHOR(pc[i])) {
            uint32_t r = hooks - 1 - seen++;   /* rank from the innermost */
            if (r < h)
                out[n++] = py[m - 1 - r];
        }
        out[n++] = native_loc(pc[i]);
        if (!seeded_done && i == anchor) {
            memcpy(out + n, py, seeded * sizeof(uint64_t));
            n += seeded;
            seeded_done = 1;
        }
    }
    if (!seeded_done) {
        memcpy(out + n, py, seeded * sizeof(uint64_t));
        n += seeded;
    }
    return n;
#undef ANCHOR
}

/* Resolves one record (a ring slot, or `count` merged records from the spill) and adds
 * it to the table. */
static void
aggregate(const sp_record_t *rec, uint64_t count, uint64_t weight)
{
    static uint64_t locs[SP_RING_FRAMES + 2];
    static uint64_t spliced[SP_RING_FRAMES + 2 + SP_RING_NATIVE + 1];
    uint32_t n = 0;
    if (rec->flags & SP_SAMPLE_OVERHEAD) {
        locs[n++] = loc(SP_ID_OVERHEAD, 0);
        session->stats.overhead += count;
        session->stats.overhead_weight_ns += weight;
    } else if (rec->flags & SP_SAMPLE_NOPY) {
        locs[n++] = loc(SP_ID_NOPY, 0);
    } else {
        uint32_t nf = rec->nframes > SP_RING_FRAMES ? SP_RING_FRAMES : rec->nframes;
        for (uint32_t i = 0; i < nf; i++) {
            if ((rec->flags & SP_SAMPLE_TRUNCATED) && i == SP_RING_ROOT_FRAMES)
                locs[n++] = loc(SP_ID_TRUNCATED, 0);
            locs[n++] = loc(rec->frames[i].code_id,
                            resolve_line(rec->frames[i].code_id, rec->frames[i].instr));
        }
        if (rec->flags & SP_SAMPLE_DEEP)
            locs[n++] = loc(SP_ID_DEEP, 0);
        if (n == 0)
            locs[n++] = loc(SP_ID_NOPY, 0);
    }
    const uint64_t *stack = locs;
    if (rec->nnative && !(rec->flags & SP_SAMPLE_OVERHEAD)) {
        if (rec->flags & SP_SAMPLE_NOPY) {
            /* No Python frame: the marker, then the native stack root first. */
            uint32_t nn = rec->nnative > SP_RING_NATIVE ? SP_RING_NATIVE : rec->nnative;
            spliced[0] = locs[0];
            for (uint32_t i = 0; i < nn; i++)
                spliced[1 + i] = native_loc(rec->native[nn - 1 - i]);
            n = nn + 1;
        } else {
            n = splice(rec, locs, n, spliced);
        }
        stack = spliced;
    }
    session->stats.samples += count;
    session->stats.weight_ns += weight;
    add(rec->tid, stack, n, count, weight);
}

/* Threads seen by one drain, named once the spill lock is released (naming calls into
 * Python objects; nothing under the lock may).  Past the limit a thread is named by a
 * later drain that sees it again. */
#define TIDS_PER_DRAIN 256
static uint64_t drained_tids[TIDS_PER_DRAIN];
static size_t ndrained_tids;

static void
remember_tid(uint64_t tid)
{
    if (ndrained_tids && drained_tids[ndrained_tids - 1] == tid)
        return;
    for (size_t i = 0; i < ndrained_tids; i++)
        if (drained_tids[i] == tid)
            return;
    if (ndrained_tids < TIDS_PER_DRAIN)
        drained_tids[ndrained_tids++] = tid;
}

static void
aggregate_spilled(const sp_record_t *rec, uint64_t count, uint64_t weight, void *arg)
{
    remember_tid(rec->tid);
    aggregate(rec, count, weight);
}

SP_HOT static void
drain(int names_ok)
{
    if (draining || !session || !session->ring || !session->table)
        return;
    draining = 1;
    session->draining = sp_tls;   /* the handler counts its samples as overhead */
    uint64_t started_ns = sp_clock_monotonic_ns();
    ndrained_tids = 0;
    sp_spill_totals_t spill = {0};
    /* The consumer side is shared with the drain thread's spill (spill.h).  Nothing
     * below runs Python code until the unlock. */
    sp_spill_lock();
    /* Spilled records first: they are older than the ring's. */
    sp_spill_take(aggregate_spilled, NULL, &spill);
    sp_record_t *rec;
    while ((rec = sp_ring_peek(session->ring)) != NULL) {
        remember_tid(rec->tid);
        aggregate(rec, 1, rec->weight_ns);
        sp_ring_pop(session->ring);
    }
    uint64_t lost, lost_weight;
    sp_ring_take_lost(session->ring, &lost, &lost_weight);
    sp_spill_unlock();
    if (lost) {
        uint64_t l = loc(SP_ID_LOST, 0);
        session->stats.samples += lost;
        session->stats.weight_ns += lost_weight;
        session->stats.lost += lost;
        session->stats.lost_weight_ns += lost_weight;
        add(0, &l, 1, lost, lost_weight);
    }
    if (spill.full) {
        /* Records the spill could not keep apart: the table's cap, reached early. */
        uint64_t full = loc(SP_ID_TABLE_FULL, 0);
        session->stats.samples += spill.full;
        session->stats.weight_ns += spill.full_weight_ns;
        session->stats.table_full += spill.full;
        sp_table_add(session->table, 0, &full, 1, spill.full, spill.full_weight_ns);
    }
    if (names_ok)
        for (size_t i = 0; i < ndrained_tids; i++)
            note_thread(drained_tids[i]);
    session->stats.drain_ns += sp_clock_monotonic_ns() - started_ns + spill.spill_ns;
    session->draining = NULL;
    draining = 0;
}

int
sp_drain_pending(void)
{
    /* The ring first: a record leaves it only after the spill counted it. */
    return (session && session->ring && sp_ring_used(session->ring)) || sp_spill_pending();
}

SP_HOT void
sp_drain(void)
{
    drain(1);
}

void
sp_drain_quiet(void)
{
    drain(0);
}

void
sp_drain_reset(void)
{
    if (session && session->table) {
        sp_table_clear(session->table);
        /* Reserve the overflow stack first so that it always has room. */
        uint64_t full = loc(SP_ID_TABLE_FULL, 0);
        sp_table_add(session->table, 0, &full, 1, 0, 0);
    }
    sp_spill_reset();
    thread_names_stale = 1;   /* no Python object may be touched here (fork child) */
}
