/* drain.c: the ring's consumer (see drain.h).  Owns the table and its statistics;
 * everything here runs with the GIL held. */
#include "drain.h"
#include "hook.h"
#include "native.h"
#include "registry.h"
#include "sampler.h"
#include "shadow.h"

#include <string.h>

sp_table_t *sp_drain_table;
sp_drain_stats_t sp_drain_stats;

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

/* Kernel thread id -> thread name, looked up in threading._active the first time a
 * thread's samples are drained (threads that end before the profile is read keep their
 * names).  Strong references; GIL. */
static PyObject *thread_names;

static void
note_thread(uint64_t tid)
{
    static uint64_t last_tid;
    if (tid == last_tid || tid == 0)
        return;
    last_tid = tid;
    if (!thread_names && !(thread_names = PyDict_New())) {
        PyErr_Clear();
        return;
    }
    PyObject *key = PyLong_FromUnsignedLongLong(tid);
    if (!key) {
        PyErr_Clear();
        return;
    }
    if (PyDict_GetItem(thread_names, key)) {
        Py_DECREF(key);
        return;
    }
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *threading = PyImport_GetModule(PyUnicode_InternFromString("threading"));
    PyObject *active = threading ? PyObject_GetAttrString(threading, "_active") : NULL;
    PyObject *name = NULL;
    if (active && PyDict_Check(active)) {
        Py_ssize_t pos = 0;
        PyObject *k, *thread;
        while (!name && PyDict_Next(active, &pos, &k, &thread)) {
            PyObject *nid = PyObject_GetAttrString(thread, "_native_id");
            if (nid && PyLong_Check(nid) && PyLong_AsUnsignedLongLong(nid) == tid)
                name = PyObject_GetAttrString(thread, "_name");
            Py_XDECREF(nid);
            PyErr_Clear();
        }
    }
    if (name && PyUnicode_Check(name))
        PyDict_SetItem(thread_names, key, name);
    Py_XDECREF(name);
    Py_XDECREF(active);
    Py_XDECREF(threading);
    Py_DECREF(key);
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

PyObject *
sp_drain_thread_names(void)
{
    if (!thread_names)
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
    if (sp_table_add(sp_drain_table, tid, locs, n, count, weight) != 0) {
        uint64_t full = loc(SP_ID_TABLE_FULL, 0);
        sp_drain_stats.table_full += count;
        /* The overflow stack must always fit: it was made at start (see reset). */
        sp_table_add(sp_drain_table, 0, &full, 1, count, weight);
    }
}

static inline uint64_t
native_loc(uint64_t pc)
{
    return SP_NATIVE_LOC_TAG | pc;
}

/* Splices a record's native pcs (innermost first) with its Python locations py[0..m)
 * (root first) into out, root first.  The anchor: every Python frame the hook pushed
 * has one native frame of the hook's own (sp_eval_frame) below it, so the hook frames,
 * matched from the leaf, take the place of the Python frames 1:1.  Python frames
 * without a hook frame (seeded when profiling started inside them) go right after the
 * innermost evaluation-loop frame outside the first matched hook frame.  Records whose
 * Python part was truncated keep it whole and add only the native frames inside the
 * innermost hook frame.  Returns the number of locations written. */
static uint32_t
splice(const sp_record_t *rec, const uint64_t *py, uint32_t m, uint64_t *out)
{
    uint32_t nn = rec->nnative > SP_RING_NATIVE ? SP_RING_NATIVE : rec->nnative;
    const uint64_t *pc = rec->native;
    uint32_t n = 0, hooks = 0, innermost_hook = nn;
    for (uint32_t i = 0; i < nn; i++) {
        if (sp_hook_owns_pc((uintptr_t)pc[i])) {
            if (!hooks)
                innermost_hook = i;
            hooks++;
        }
    }
    if (rec->flags & (SP_SAMPLE_TRUNCATED | SP_SAMPLE_DEEP)) {
        memcpy(out, py, m * sizeof(uint64_t));
        n = m;
        if (!(rec->flags & SP_SAMPLE_DEEP))
            for (uint32_t i = innermost_hook; i-- > 0;)
                out[n++] = native_loc(pc[i]);
        return n;
    }
    uint32_t h = hooks < m ? hooks : m, seeded = m - h;
    /* Native index of the outermost matched hook frame, and the anchor after which the
     * seeded frames go (nn: before everything). */
    uint32_t outer_hook = nn, anchor = nn, rank = 0;
    for (uint32_t i = 0; i < nn && rank < h; i++)
        if (sp_hook_owns_pc((uintptr_t)pc[i]) && ++rank == h)
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
        if (sp_hook_owns_pc((uintptr_t)pc[i])) {
            uint32_t r = hooks - 1 - seen++;   /* rank from the innermost */
            if (r < h)
                out[n++] = py[m - 1 - r];
        } else {
            out[n++] = native_loc(pc[i]);
        }
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
}

SP_HOT static void
drain(int names_ok)
{
    if (draining || !sp_sampler_ring || !sp_drain_table)
        return;
    draining = 1;
    sp_sampler_draining = sp_tls;
    uint64_t started_ns = sp_clock_wall_ns();
    uint64_t locs[SP_RING_FRAMES + 2];
    uint64_t spliced[SP_RING_FRAMES + 2 + SP_RING_NATIVE + 1];
    sp_record_t *rec;
    while ((rec = sp_ring_peek(sp_sampler_ring)) != NULL) {
        uint32_t n = 0;
        if (rec->flags & SP_SAMPLE_OVERHEAD) {
            locs[n++] = loc(SP_ID_OVERHEAD, 0);
            sp_drain_stats.overhead++;
            sp_drain_stats.overhead_weight_ns += rec->weight_ns;
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
        uint64_t tid = rec->tid, weight = rec->weight_ns;
        sp_ring_pop(sp_sampler_ring);
        if (names_ok)
            note_thread(tid);
        sp_drain_stats.samples++;
        sp_drain_stats.weight_ns += weight;
        add(tid, stack, n, 1, weight);
    }
    uint64_t lost, lost_weight;
    sp_ring_take_lost(sp_sampler_ring, &lost, &lost_weight);
    if (lost) {
        uint64_t l = loc(SP_ID_LOST, 0);
        sp_drain_stats.samples += lost;
        sp_drain_stats.weight_ns += lost_weight;
        sp_drain_stats.lost += lost;
        sp_drain_stats.lost_weight_ns += lost_weight;
        add(0, &l, 1, lost, lost_weight);
    }
    sp_drain_stats.drain_ns += sp_clock_wall_ns() - started_ns;
    sp_sampler_draining = NULL;
    draining = 0;
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
    if (sp_drain_table) {
        sp_table_clear(sp_drain_table);
        /* Reserve the overflow stack first so that it always has room. */
        uint64_t full = loc(SP_ID_TABLE_FULL, 0);
        sp_table_add(sp_drain_table, 0, &full, 1, 0, 0);
    }
    memset(&sp_drain_stats, 0, sizeof(sp_drain_stats));
}
