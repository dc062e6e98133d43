/* drain.c: the ring's consumer (see drain.h).  Owns the table and its statistics;
 * everything here runs with the GIL held. */
#include "drain.h"
#include "registry.h"
#include "sampler.h"
#include "shadow.h"

#include <string.h>

sp_table_t *sp_drain_table;
sp_drain_stats_t sp_drain_stats;

/* Direct-mapped cache (code id, instruction) -> line.  Ids are never reused, so an
 * entry stays right for the life of the process. */
#define LINE_CACHE_SIZE 4096
static struct {
    uint64_t key;   /* id << 32 | (uint32_t)instr, + 1; 0 = empty */
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
    if (line_cache[slot].key == key)
        return line_cache[slot].line;
    sp_code_t *e = sp_registry_get(id);
    int line = e ? sp_code_line(e, instr) : 0;
    line_cache[slot].key = key;
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

SP_HOT static void
drain(int names_ok)
{
    if (draining || !sp_sampler_ring || !sp_drain_table)
        return;
    draining = 1;
    sp_sampler_draining = sp_tls;
    uint64_t locs[SP_RING_FRAMES + 2];
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
        uint64_t tid = rec->tid, weight = rec->weight_ns;
        sp_ring_pop(sp_sampler_ring);
        if (names_ok)
            note_thread(tid);
        sp_drain_stats.samples++;
        sp_drain_stats.weight_ns += weight;
        add(tid, locs, n, 1, weight);
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
