/* snapshot.c: the profile (the table, the registry's calls and edges, the drain's
 * counters, the session's facts) and the threads' shadow stacks as Python objects.
 *
 * Thread contract: GIL held.  With it no shadow stack moves (only a thread running
 * Python code pushes) and the drain does not run unless called from here.
 */
#include "snapshot.h"
#include "backend.h"
#include "drain.h"
#include "drainer.h"
#include "native.h"
#include "registry.h"
#include "sampler.h"
#include "session.h"
#include "shadow.h"
#include "table.h"

int
sp_dict_set_steal(PyObject *d, PyObject *k, PyObject *v)
{
    int r = (k && v) ? PyDict_SetItem(d, k, v) : -1;
    Py_XDECREF(k);
    Py_XDECREF(v);
    return r;
}

int
sp_dict_put_u64(PyObject *d, const char *key, uint64_t v)
{
    return sp_dict_set_steal(d, PyUnicode_FromString(key), PyLong_FromUnsignedLongLong(v));
}

/* A key of the snapshot and its value: a new reference, or NULL if it could not be
 * made (an exception is set). */
typedef struct {
    const char *key;
    PyObject *value;
} item_t;

#define U64(v) PyLong_FromUnsignedLongLong(v)

/* d[key] = value for each item, stealing every value (all of them, even after a
 * failure).  Returns -1 with an exception set. */
static int
put_items(PyObject *d, item_t *items, size_t n)
{
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        if (r == 0 && (!items[i].value ||
                       PyDict_SetItemString(d, items[i].key, items[i].value) < 0))
            r = -1;
        Py_XDECREF(items[i].value);
    }
    return r;
}

static int
visit_edge(uint32_t caller, uint32_t callee, uint64_t n, void *arg)
{
    PyObject *edges = arg;
    return sp_dict_set_steal(edges, Py_BuildValue("(II)", caller, callee),
                             PyLong_FromUnsignedLongLong(n));
}

static int
mark_used(uint32_t caller, uint32_t callee, uint64_t n, void *arg)
{
    unsigned char *used = arg;
    used[caller] = used[callee] = 1;
    (void)n;
    return 0;
}

/* functions[id] = (qualname, filename, firstlineno) of registry entry id. */
static int
put_function(PyObject *functions, uint32_t id)
{
    sp_code_t *e = sp_registry_get(id);
    return sp_dict_set_steal(functions, PyLong_FromUnsignedLong(id),
                             Py_BuildValue("(OOi)", e->qualname, e->filename,
                                           e->firstlineno));
}

PyObject *
sp_snapshot_functions(void)
{
    PyObject *functions = PyDict_New();
    if (!functions)
        return NULL;
    uint32_t nids = sp_registry_size();
    for (uint32_t id = SP_ID_FIRST_CODE; id < nids; id++) {
        if (put_function(functions, id) < 0) {
            Py_DECREF(functions);
            return NULL;
        }
    }
    return functions;
}

PyObject *
sp_snapshot(void)
{
    sp_table_t *table = sp_session_table();
    if (!table) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler has not been started");
        return NULL;
    }
    sp_drain();
    uint32_t nids = sp_registry_size();
    unsigned char *used = PyMem_Calloc(nids ? nids : 1, 1);
    PyObject *res = PyDict_New(), *functions = PyDict_New(), *stacks = PyList_New(0),
             *calls = PyDict_New(), *edges = PyDict_New();
    if (!used || !res || !functions || !stacks || !calls || !edges)
        goto fail;

    size_t n = sp_table_size(table);
    for (size_t i = 0; i < n; i++) {
        sp_stack_view_t v;
        sp_table_get(table, i, &v);
        if (!v.count)
            continue;
        PyObject *frames = PyTuple_New(v.nlocs);
        if (!frames)
            goto fail;
        for (uint32_t k = 0; k < v.nlocs; k++) {
            uint32_t id = (uint32_t)(v.locs[k] >> 32);
            int line = (int)(uint32_t)v.locs[k];
            if (id < nids)
                used[id] = 1;
            /* A native frame (--native) is (-1, pc); see native.h. */
            PyObject *fr = (v.locs[k] & SP_NATIVE_LOC_TAG)
                ? Py_BuildValue("(iK)", -1,
                                (unsigned long long)(v.locs[k] & ~SP_NATIVE_LOC_TAG))
                : Py_BuildValue("(Ii)", id, line);
            if (!fr) {
                Py_DECREF(frames);
                goto fail;
            }
            PyTuple_SET_ITEM(frames, k, fr);
        }
        PyObject *item = Py_BuildValue("(KNKK)", (unsigned long long)v.tid, frames,
                                       (unsigned long long)v.count,
                                       (unsigned long long)v.weight_ns);
        if (!item || PyList_Append(stacks, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    sp_registry_sum_calls();
    for (uint32_t id = SP_ID_OTHER; id < nids; id++) {
        sp_code_t *e = sp_registry_get(id);
        if (e->calls) {
            used[id] = 1;
            if (sp_dict_set_steal(calls, PyLong_FromUnsignedLong(id),
                                  PyLong_FromUnsignedLongLong(e->calls)) < 0)
                goto fail;
        }
    }
    if (sp_registry_visit_edges(visit_edge, edges) < 0)
        goto fail;
    sp_registry_visit_edges(mark_used, used);
    for (uint32_t id = 0; id < nids; id++) {
        if (used[id] && put_function(functions, id) < 0)
            goto fail;
    }
    sp_session_t sess;
    sp_session_get(&sess);
    const sp_drain_stats_t *st = sp_session_stats();
    if (PyDict_SetItemString(res, "functions", functions) < 0 ||
        PyDict_SetItemString(res, "stacks", stacks) < 0 ||
        PyDict_SetItemString(res, "calls", calls) < 0 ||
        PyDict_SetItemString(res, "edges", edges) < 0)
        goto fail;
    /* Counters and facts: each value is made here and stolen by put_items. */
    item_t items[] = {
        {"samples", U64(st->samples)},
        {"weight_ns", U64(st->weight_ns)},
        {"lost", U64(st->lost)},
        {"lost_weight_ns", U64(st->lost_weight_ns)},
        {"overhead", U64(st->overhead)},
        {"overhead_weight_ns", U64(st->overhead_weight_ns)},
        {"table_full", U64(st->table_full)},
        {"signals", U64(sp_sampler_signals())},
        {"handler_ns", U64(sp_sampler_handler_ns())},
        {"drain_ns", U64(st->drain_ns)},
        /* The key's old name: the drain thread's spills (drainer.h). */
        {"drainer_drains", U64(sp_drainer_spills())},
        {"interval_ns", U64(sess.interval_ns)},
        {"start_unix_ns", U64(sess.start_unix_ns)},
        {"duration_ns", U64(sess.duration_ns)},
        {"cpu_ns", U64(sess.cpu_ns)},
        {"max_depth", U64(sp_shadow_capacity)},
        {"timer_failures", U64(sp_sampler_timer_failures())},
        {"process_timer", U64((uint64_t)sp_sampler_process_timer())},
        {"mode", PyUnicode_FromString(sess.wall ? "wall" : "cpu")},
        {"running", PyBool_FromLong(sess.running)},
        {"hook", PyUnicode_FromString(sp_backend_name(sp_backend_kind()))},
        {"threads", sp_drain_thread_names()},
        {"native", PyBool_FromLong(sess.native)},
        {"native_skipped", U64(sp_native_skipped())},
        {"native_failed", U64(sp_native_failed())},
    };
    if (put_items(res, items, sizeof(items) / sizeof(items[0])) < 0)
        goto fail;
    Py_DECREF(functions);
    Py_DECREF(stacks);
    Py_DECREF(calls);
    Py_DECREF(edges);
    PyMem_Free(used);
    return res;
fail:
    PyMem_Free(used);
    Py_XDECREF(res);
    Py_XDECREF(functions);
    Py_XDECREF(stacks);
    Py_XDECREF(calls);
    Py_XDECREF(edges);
    if (!PyErr_Occurred())
        PyErr_NoMemory();
    return NULL;
}

/* Whether ts is still one of the main interpreter's thread states.  GIL held. */
static int
tstate_listed(PyThreadState *ts)
{
    for (PyThreadState *p = PyInterpreterState_ThreadHead(PyInterpreterState_Main()); p;
         p = PyThreadState_Next(p))
        if (p == ts)
            return 1;
    return 0;
}

PyObject *
sp_snapshot_thread_stacks(void)
{
    PyObject *res = PyDict_New();
    if (!res || !sp_session_running())
        return res;
    /* With the GIL held no other thread runs Python code, so no shadow stack moves. */
    for (sp_thread_t *t = sp_threads; t; t = t->next) {
        if (t->dead || t->busy)
            continue;
        /* Pops are lazy: only the entries on the thread's current chain count. */
        int deep = 0;
        uint32_t depth = 0;
        if (tstate_listed(t->tstate))
            depth = sp_shadow_live_depth(t, t->tstate, &deep);
        PyObject *frames = PyList_New(0);
        if (!frames)
            goto fail;
        for (uint32_t i = 0; i < depth; i++) {
            sp_code_t *e = sp_registry_get(t->stack[i].code_id);
            PyObject *fr = e ? Py_BuildValue("(OOi)", e->qualname, e->filename,
                                             e->firstlineno)
                             : Py_BuildValue("(ssi)", "?", "", 0);
            if (!fr || PyList_Append(frames, fr) < 0) {
                Py_XDECREF(fr);
                Py_DECREF(frames);
                goto fail;
            }
            Py_DECREF(fr);
        }
        if (deep) {
            PyObject *fr = PyUnicode_FromFormat("[%u frames not kept]", t->overflow);
            PyObject *item = fr ? Py_BuildValue("(Nsi)", fr, "", 0) : NULL;
            if (!item || PyList_Append(frames, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(frames);
                goto fail;
            }
            Py_DECREF(item);
        }
        if (sp_dict_set_steal(res, PyLong_FromUnsignedLongLong(t->tid), frames) < 0)
            goto fail;
    }
    return res;
fail:
    Py_DECREF(res);
    return NULL;
}

