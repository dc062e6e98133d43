/* module.c: the shadowprof._core extension module: start, stop, snapshot.
 *
 * One profiling session per process at a time (the Python layer nests Profiler objects
 * on top of it).  Everything here runs with the GIL held.  Data flows one way:
 * hook (hook.c) -> shadow stacks (shadow.c) -> SIGPROF handler (sampler.c) -> ring
 * (ring.c) -> drain (drain.c) -> table (table.c) -> snapshot (here) -> Python.
 */
#include "compat.h"
#include "drain.h"
#include "drainer.h"
#include "dumpsig.h"
#include "export.h"
#include "backend.h"
#include "tracker.h"
#include "native.h"
#include "options.h"
#include "registry.h"
#include "ring.h"
#include "sampler.h"
#include "shadow.h"
#include "table.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

static int running;
static sp_mode_t session_mode;
static uint64_t session_interval_ns;
static uint64_t start_wall_ns, start_cpu_ns, start_unix_ns;
static uint64_t stop_wall_ns, stop_cpu_ns;
static size_t ring_records = 4096;
static int session_native;   /* start(native=True): native stacks captured */
static int fork_keep = 1;   /* a forked child keeps profiling (1) or stops (0) */
/* Bumped by start() and in a forked child: marks (export.c) of another session are
 * refused. */
static uint64_t session_generation;

void
sp_session_get(sp_session_t *out)
{
    out->generation = session_generation;
    out->running = running;
    out->native = session_native;
    out->wall = session_mode == SP_MODE_WALL;
    out->interval_ns = session_interval_ns;
    out->start_unix_ns = start_unix_ns;
    out->duration_ns = (running ? sp_clock_wall_ns() : stop_wall_ns) - start_wall_ns;
    out->cpu_ns = (running ? sp_clock_cpu_ns() : stop_cpu_ns) - start_cpu_ns;
}

static uint64_t
unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The trackers' drain callback (sp_backend_attach): a forked child's first Python code
 * arms its timer (see sampler.c), then the ring is drained.  GIL held. */
static void
hook_drain(void)
{
    if (sp_sampler_fork_rearm_pending())
        sp_sampler_fork_rearm();
    sp_drain();
}

static void
drain_if_pending(void)
{
    if (sp_drain_pending())   /* the ring or the drain thread's spill (drain.h) */
        sp_drain_quiet();
}

/* pthread_atfork child handler: the child starts a profile of its own (counts, samples
 * and times reset) on its one thread, or stops profiling.  Runs before any Python code
 * in the child; only memory stores, loops and timer system calls. */
static void
after_fork_child(void)
{
    if (!running)
        return;
    sp_shadow_after_fork_child();
    if (sp_sampler_ring)
        sp_ring_reset(sp_sampler_ring);
    sp_drain_reset();
    sp_registry_reset_counts();
    session_generation++;
    start_wall_ns = sp_clock_wall_ns();
    start_cpu_ns = sp_clock_cpu_ns();
    start_unix_ns = unix_ns();
    sp_drainer_after_fork_child(fork_keep);   /* drainer.h: restarted once Python runs */
    if (fork_keep) {
        sp_sampler_after_fork_child(1);
        /* Through the tracker's slow path on the first Python call: hook_drain. */
        sp_tracker_request_drain();
    } else {
        sp_sampler_after_fork_child(0);
        sp_tracker_disable();
        running = 0;
        stop_wall_ns = start_wall_ns;
        stop_cpu_ns = start_cpu_ns;
    }
}

static int
ensure_init(size_t ring_size, size_t max_stacks)
{
    if (sp_registry_init() < 0)
        return -1;
    sp_registry_before_free = drain_if_pending;
    if (!sp_sampler_ring || ring_size != ring_records) {
        sp_ring_t *r = sp_ring_new(ring_size);
        if (!r) {
            PyErr_NoMemory();
            return -1;
        }
        sp_ring_t *old = sp_sampler_ring;
        sp_sampler_ring = r;
        sp_ring_free(old);   /* no handler is armed between sessions */
        ring_records = ring_size;
    } else {
        sp_ring_reset(sp_sampler_ring);
    }
    sp_table_t *t = sp_table_new(max_stacks);
    if (!t) {
        PyErr_NoMemory();
        return -1;
    }
    sp_table_free(sp_drain_table);
    sp_drain_table = t;
    sp_drain_reset();
    return 0;
}

PyDoc_STRVAR(start_doc,
"start(interval_ns=10_000_000, mode='cpu', max_depth=1024, ring_size=4096,\n"
"      max_stacks=200_000, fork='continue', native=False, hook='auto')\n--\n\n"
"Start profiling this process: install the hook, seed every thread's shadow stack\n"
"from its running frames, and arm the sampling timers.  Resets all counts.\n"
"fork: in a forked child, 'continue' starts a fresh profile of the child,\n"
"'stop' stops profiling there.\n"
"native: also capture each sample's C stack with libunwind; snapshot() then has\n"
"(-1, pc) frames spliced in place of the interpreter's own frames.\n"
"hook: what keeps the shadow stacks: 'eval' (PEP 523 frame evaluation),\n"
"'monitoring' (sys.monitoring, 3.12+) or 'auto' (monitoring on 3.12+, else eval).");

static PyObject *
core_start(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"interval_ns", "mode", "max_depth", "ring_size",
                             "max_stacks", "fork", "native", "hook", NULL};
    unsigned long long interval = 10000000ull;
    const char *mode = "cpu";
    unsigned int max_depth = 1024;
    Py_ssize_t ring_size = 4096, max_stacks = 200000;
    const char *fork_mode = "continue";
    int native = 0;
    const char *hook_name = NULL;   /* "auto", "eval", "monitoring" (backend.h) */
    if (sp_backend_check_interpreter() < 0)
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|KsInnspz:start", kwlist, &interval, &mode,
                                     &max_depth, &ring_size, &max_stacks, &fork_mode,
                                     &native, &hook_name))
        return NULL;
    int hook_kind = sp_backend_parse(hook_name);
    if (hook_kind < 0)
        return NULL;
    if (strcmp(fork_mode, "continue") != 0 && strcmp(fork_mode, "stop") != 0) {
        PyErr_Format(PyExc_ValueError,
                     "shadowprof: fork must be 'continue' or 'stop', not '%s'", fork_mode);
        return NULL;
    }
    if (running) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler is already running");
        return NULL;
    }
    sp_mode_t m;
    if (strcmp(mode, "cpu") == 0) {
        m = SP_MODE_CPU;
    } else if (strcmp(mode, "wall") == 0) {
        m = SP_MODE_WALL;
    } else {
        PyErr_Format(PyExc_ValueError, "shadowprof: mode must be 'cpu' or 'wall', not '%s'",
                     mode);
        return NULL;
    }
    if (interval < SP_OPT_INTERVAL_LO || interval > SP_OPT_INTERVAL_HI) {
        PyErr_SetString(PyExc_ValueError,
                        "shadowprof: interval must be between 100us and 60s");
        return NULL;
    }
    if (max_depth < 8 || max_depth > 1000000) {
        PyErr_SetString(PyExc_ValueError, "shadowprof: max_depth must be 8..1000000");
        return NULL;
    }
    if (ring_size < 16 || ring_size > (1 << 20) || max_stacks < 16) {
        PyErr_SetString(PyExc_ValueError,
                        "shadowprof: ring_size must be 16..1048576, max_stacks >= 16");
        return NULL;
    }
    if (native && sp_native_enable() < 0)
        return NULL;
    if (ensure_init((size_t)ring_size, (size_t)max_stacks) < 0)
        return NULL;
    sp_registry_reset_counts();
    sp_shadow_capacity = max_depth;
    if (sp_shadow_seed_all() < 0)
        return NULL;
    if (sp_backend_attach(hook_kind, hook_drain) < 0)
        return NULL;
    session_mode = m;
    session_interval_ns = interval;
    session_generation++;
    fork_keep = strcmp(fork_mode, "continue") == 0;
    start_wall_ns = sp_clock_wall_ns();
    start_cpu_ns = sp_clock_cpu_ns();
    start_unix_ns = unix_ns();
    stop_wall_ns = stop_cpu_ns = 0;
    session_native = native;
    sp_native_reset_counts();
    sp_native_set(native);
    if (sp_sampler_start(interval, m) < 0) {
        sp_native_set(0);
        sp_backend_detach();
        return NULL;
    }
    if (sp_drainer_start(sp_sampler_ring) < 0) {   /* drainer.h */
        sp_sampler_stop();
        sp_native_set(0);
        sp_backend_detach();
        return NULL;
    }
    running = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stop_doc,
"stop()\n--\n\nStop profiling: disarm the timer, remove the hook, drain pending samples.\n"
"The data stays available to snapshot() until the next start().");

static PyObject *
core_stop(PyObject *mod, PyObject *unused)
{
    if (!sp_is_main_interpreter())
        Py_RETURN_NONE;   /* e.g. a sub-interpreter's atexit: not its profiler */
    if (!running) {
        sp_backend_detach();   /* e.g. left attached in a child forked with fork='stop' */
        Py_RETURN_NONE;
    }
    sp_sampler_stop();
    sp_native_set(0);
    sp_backend_detach();
    stop_wall_ns = sp_clock_wall_ns();
    stop_cpu_ns = sp_clock_cpu_ns();
    sp_drainer_stop();   /* drainer.h: joined (GIL released meanwhile) before the last drain */
    sp_drain();
    running = 0;
    Py_RETURN_NONE;
}

static PyObject *
core_is_running(PyObject *mod, PyObject *unused)
{
    return PyBool_FromLong(running);
}

/* snapshot building */

static int
set_item_steal(PyObject *d, PyObject *k, PyObject *v)
{
    int r = (k && v) ? PyDict_SetItem(d, k, v) : -1;
    Py_XDECREF(k);
    Py_XDECREF(v);
    return r;
}

static int
put_u64(PyObject *d, const char *key, uint64_t v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (!o)
        return -1;
    int r = PyDict_SetItemString(d, key, o);
    Py_DECREF(o);
    return r;
}

static int
visit_edge(uint32_t caller, uint32_t callee, uint64_t n, void *arg)
{
    PyObject *edges = arg;
    return set_item_steal(edges, Py_BuildValue("(II)", caller, callee),
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

PyDoc_STRVAR(snapshot_doc,
"snapshot() -> dict\n--\n\n"
"The profile so far (since start()) as plain data:\n"
"  functions: {id: (qualname, filename, firstlineno)} for every id used below\n"
"  stacks:    [(thread_id, ((id, line), ...root first), count, weight_ns)]\n"
"  calls:     {id: exact calls};  edges: {(caller_id, callee_id): calls}\n"
"             (caller 0 is '<root>': no Python caller)\n"
"  samples, weight_ns, lost, lost_weight_ns, overhead, overhead_weight_ns,\n"
"  table_full, signals, interval_ns, mode, start_unix_ns, duration_ns, cpu_ns,\n"
"  running, max_depth, hook (the mechanism: 'eval' or 'monitoring'),\n"
"  drainer_drains (drains made by the drain thread since start: no Python call did).");

static PyObject *
core_snapshot(PyObject *mod, PyObject *unused)
{
    if (!sp_drain_table) {
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

    size_t n = sp_table_size(sp_drain_table);
    for (size_t i = 0; i < n; i++) {
        sp_stack_view_t v;
        sp_table_get(sp_drain_table, i, &v);
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
            if (set_item_steal(calls, PyLong_FromUnsignedLong(id),
                               PyLong_FromUnsignedLongLong(e->calls)) < 0)
                goto fail;
        }
    }
    if (sp_registry_visit_edges(visit_edge, edges) < 0)
        goto fail;
    sp_registry_visit_edges(mark_used, used);
    for (uint32_t id = 0; id < nids; id++) {
        if (!used[id])
            continue;
        sp_code_t *e = sp_registry_get(id);
        if (set_item_steal(functions, PyLong_FromUnsignedLong(id),
                           Py_BuildValue("(OOi)", e->qualname, e->filename,
                                         e->firstlineno)) < 0)
            goto fail;
    }
    uint64_t wall_end = running ? sp_clock_wall_ns() : stop_wall_ns;
    uint64_t cpu_end = running ? sp_clock_cpu_ns() : stop_cpu_ns;
    if (PyDict_SetItemString(res, "functions", functions) < 0 ||
        PyDict_SetItemString(res, "stacks", stacks) < 0 ||
        PyDict_SetItemString(res, "calls", calls) < 0 ||
        PyDict_SetItemString(res, "edges", edges) < 0 ||
        put_u64(res, "samples", sp_drain_stats.samples) < 0 ||
        put_u64(res, "weight_ns", sp_drain_stats.weight_ns) < 0 ||
        put_u64(res, "lost", sp_drain_stats.lost) < 0 ||
        put_u64(res, "lost_weight_ns", sp_drain_stats.lost_weight_ns) < 0 ||
        put_u64(res, "overhead", sp_drain_stats.overhead) < 0 ||
        put_u64(res, "overhead_weight_ns", sp_drain_stats.overhead_weight_ns) < 0 ||
        put_u64(res, "table_full", sp_drain_stats.table_full) < 0 ||
        put_u64(res, "signals", sp_sampler_signals()) < 0 ||
        put_u64(res, "handler_ns", sp_sampler_handler_ns()) < 0 ||
        put_u64(res, "drain_ns", sp_drain_stats.drain_ns) < 0 ||
        put_u64(res, "drainer_drains", sp_drainer_drains()) < 0 ||   /* drainer.h */
        put_u64(res, "interval_ns", session_interval_ns) < 0 ||
        put_u64(res, "start_unix_ns", start_unix_ns) < 0 ||
        put_u64(res, "duration_ns", wall_end - start_wall_ns) < 0 ||
        put_u64(res, "cpu_ns", cpu_end - start_cpu_ns) < 0 ||
        put_u64(res, "max_depth", sp_shadow_capacity) < 0 ||
        put_u64(res, "timer_failures", sp_sampler_timer_failures()) < 0 ||
        put_u64(res, "process_timer", (uint64_t)sp_sampler_process_timer()) < 0 ||
        set_item_steal(res, PyUnicode_FromString("mode"),
                       PyUnicode_FromString(session_mode == SP_MODE_CPU ? "cpu" : "wall")) < 0 ||
        set_item_steal(res, PyUnicode_FromString("running"), PyBool_FromLong(running)) < 0 ||
        set_item_steal(res, PyUnicode_FromString("hook"),
                       PyUnicode_FromString(sp_backend_name(sp_backend_kind()))) < 0 ||
        set_item_steal(res, PyUnicode_FromString("threads"), sp_drain_thread_names()) < 0 ||
        set_item_steal(res, PyUnicode_FromString("native"), PyBool_FromLong(session_native)) < 0 ||
        put_u64(res, "native_skipped", sp_native_skipped()) < 0 ||
        put_u64(res, "native_failed", sp_native_failed()) < 0)
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

PyDoc_STRVAR(set_hook_doc,
"_set_hook(on, hook='auto')\n--\n\nInstall or remove only the hook (the mechanism\n"
"named as for start()), without sampling (used to calibrate the per-call cost).\n"
"Refused while the profiler runs.");

static PyObject *
core_set_hook(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"on", "hook", NULL};
    int on;
    const char *hook_name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "p|z:_set_hook", kwlist, &on, &hook_name))
        return NULL;
    int hook_kind = sp_backend_parse(hook_name);
    if (hook_kind < 0)
        return NULL;
    if (running) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler is running");
        return NULL;
    }
    if (on) {
        /* Only the registry: the ring and the table keep the last session's data. */
        if (sp_registry_init() < 0 || sp_shadow_seed_all() < 0 ||
            sp_backend_attach(hook_kind, hook_drain) < 0)
            return NULL;
    } else {
        sp_backend_detach();
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ignore_thread_doc,
"_ignore_thread()\n--\n\nMark the calling thread as the profiler's own (its writer or dump\n"
"thread): it is never tracked, seeded or sampled, now and in later sessions.");

static PyObject *
core_ignore_thread(PyObject *mod, PyObject *unused)
{
    if (sp_shadow_ignore_self() < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
core_set_sigprof_policy(PyObject *mod, PyObject *arg)
{
    const char *policy = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!policy || (strcmp(policy, "refuse") != 0 && strcmp(policy, "chain") != 0)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError,
                            "bad sigprof policy: choose 'refuse' or 'chain'");
        return NULL;
    }
    sp_sampler_set_chain(strcmp(policy, "chain") == 0);
    Py_RETURN_NONE;
}

static PyObject *
core_set_max_functions(PyObject *mod, PyObject *arg)
{
    unsigned long n = PyLong_AsUnsignedLong(arg);
    if (n == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (n < 16 || n > UINT32_MAX / 2) {
        PyErr_Format(PyExc_ValueError,
                     "bad max_functions %lu: choose between 16 and %u", n, UINT32_MAX / 2);
        return NULL;
    }
    sp_registry_set_max((uint32_t)n);
    Py_RETURN_NONE;
}

static PyObject *
core_memory(PyObject *mod, PyObject *unused)
{
    size_t thread_bytes = 0;
    size_t nthreads = sp_shadow_count(&thread_bytes);
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:I}", "table_bytes",
        (Py_ssize_t)(sp_drain_table ? sp_table_bytes(sp_drain_table) : 0), "table_stacks",
        (Py_ssize_t)(sp_drain_table ? sp_table_size(sp_drain_table) : 0), "threads",
        (Py_ssize_t)nthreads, "thread_bytes", (Py_ssize_t)thread_bytes, "code_ids",
        sp_registry_size());
}

static PyObject *
core_code_id(PyObject *mod, PyObject *code)
{
    if (!PyCode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "code object expected");
        return NULL;
    }
    sp_code_t *e = sp_registry_extra_index >= 0 ? sp_code_of((PyCodeObject *)code) : NULL;
    if (!e)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(e->id);
}

/* Option strings (options.c), the dump signal (dumpsig.c), thread stacks and the
 * interval, for -X shadowprof / SHADOWPROF (shadowprof/_startup.py). */

/* The Python value of option `code` as options.c parsed it; a new reference. */
static PyObject *
option_value(int code, const sp_optval_t *v)
{
    switch (sp_options_desc[code].kind) {
    case SP_OPTK_SHARE:
        return PyFloat_FromDouble(v->d);
    case SP_OPTK_BOOL:
        return PyBool_FromLong((long)v->u);
    case SP_OPTK_CHOICE:
    case SP_OPTK_PATH:
        return PyUnicode_DecodeFSDefaultAndSize(v->s.s, (Py_ssize_t)v->s.len);
    default:   /* durations (ns), integers, signal numbers */
        return PyLong_FromUnsignedLongLong(v->u);
    }
}

PyDoc_STRVAR(parse_options_doc,
"parse_options(text) -> dict\n--\n\n"
"Parse an option string such as 'interval=5ms,mode=wall,output=p.pb.gz' (the grammar\n"
"of -X shadowprof and SHADOWPROF; the keys of shadowprof._options.OPTIONS).  Returns\n"
"only the keys given, durations as KEY_ns in ns, signal as a number (0: off), shares\n"
"as floats.  Raises ValueError with a one-line message.");

static PyObject *
core_parse_options(PyObject *mod, PyObject *arg)
{
    PyObject *bytes = NULL;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "parse_options() takes a str");
        return NULL;
    }
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    sp_options_t o;
    char err[512];
    if (sp_options_parse(PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes), &o,
                         err, sizeof(err)) < 0) {
        PyErr_SetString(PyExc_ValueError, err);
        Py_DECREF(bytes);
        return NULL;
    }
    PyObject *d = PyDict_New();
    int r = d ? 0 : -1;
    for (int k = 0; k < SP_OPT_COUNT && r == 0; k++)
        if (o.given & (1u << k))
            r = set_item_steal(d, PyUnicode_FromString(sp_options_desc[k].dest),
                               option_value(k, &o.value[k]));
    Py_DECREF(bytes);
    if (r < 0) {
        Py_XDECREF(d);
        return NULL;
    }
    return d;
}

PyDoc_STRVAR(option_defaults_doc,
"option_defaults() -> dict\n--\n\n"
"The defaults of the option string's keys as parse_options() gives values; None for\n"
"a key without one (output, format, budget).");

static PyObject *
core_option_defaults(PyObject *mod, PyObject *unused)
{
    sp_options_t o;
    char err[512];
    if (sp_options_defaults(&o, err, sizeof(err)) < 0) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    PyObject *d = PyDict_New();
    int r = d ? 0 : -1;
    for (int k = 0; k < SP_OPT_COUNT && r == 0; k++) {
        PyObject *v = Py_None;
        if (o.given & (1u << k))
            v = option_value(k, &o.value[k]);
        else
            Py_INCREF(v);
        r = set_item_steal(d, PyUnicode_FromString(sp_options_desc[k].dest), v);
    }
    if (r < 0) {
        Py_XDECREF(d);
        return NULL;
    }
    return d;
}

PyDoc_STRVAR(parse_option_doc,
"parse_option(key, value) -> value\n--\n\n"
"Parse one value of option KEY as the option string would ('interval', '5ms' ->\n"
"5000000).  VALUE may also be a number (a duration's number is seconds) or a bool.\n"
"Raises ValueError with a one-line message.");

static PyObject *
core_parse_option(PyObject *mod, PyObject *args)
{
    const char *key;
    Py_ssize_t keylen;
    PyObject *value, *text, *bytes = NULL;
    if (!PyArg_ParseTuple(args, "s#O:parse_option", &key, &keylen, &value))
        return NULL;
    int code = sp_options_code(key, (size_t)keylen);
    if (code < 0)
        return PyErr_Format(PyExc_ValueError, "unknown option '%s'", key);
    int is_bool = sp_options_desc[code].kind == SP_OPTK_BOOL;
    if (PyBool_Check(value) && is_bool)
        text = PyUnicode_FromString(value == Py_True ? "on" : "off");
    else if ((PyLong_Check(value) || PyFloat_Check(value)) && !PyBool_Check(value))
        text = PyObject_Repr(value);   /* 5, 0.01, 1e-05: the grammar's numbers */
    else if (PyUnicode_Check(value))
        Py_INCREF(value), text = value;
    else
        return PyErr_Format(PyExc_ValueError, "bad option %s=%R: give a str or a number",
                            key, value);
    if (!text || !PyUnicode_FSConverter(text, &bytes)) {
        Py_XDECREF(text);
        return NULL;
    }
    Py_DECREF(text);
    const char *v = PyBytes_AS_STRING(bytes);
    size_t n = (size_t)PyBytes_GET_SIZE(bytes);
    while (n && Py_ISSPACE(*v))
        v++, n--;
    while (n && Py_ISSPACE(v[n - 1]))
        n--;
    sp_optval_t out;
    char err[512];
    PyObject *res = NULL;
    if (sp_options_parse_value(code, v, n, &out, err, sizeof(err)) < 0)
        PyErr_SetString(PyExc_ValueError, err);
    else
        res = option_value(code, &out);
    Py_DECREF(bytes);
    return res;
}

PyDoc_STRVAR(parse_interval_doc,
"parse_interval(value) -> ns\n--\n\n"
"A sampling interval in ns from '10ms', '500us', '0.01s', '100hz' or a number of\n"
"seconds below 1; the grammar of interval= (options.c).  ValueError otherwise.");

static PyObject *
core_parse_interval(PyObject *mod, PyObject *value)
{
    PyObject *args = Py_BuildValue("(sO)", "interval", value);
    PyObject *res = args ? core_parse_option(mod, args) : NULL;
    Py_XDECREF(args);
    return res;
}

PyDoc_STRVAR(thread_stacks_doc,
"thread_stacks() -> {thread_id: [(qualname, filename, firstlineno), ...root first]}\n"
"--\n\nThe functions on every live thread's shadow stack right now (a thread that\n"
"has not run Python code under the profiler has none).  Frames deeper than max_depth\n"
"are counted, not kept: the list then ends with ('[N frames not kept]', '', 0).\n"
"Empty when the profiler is not running.");

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

static PyObject *
core_thread_stacks(PyObject *mod, PyObject *unused)
{
    PyObject *res = PyDict_New();
    if (!res || !running)
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
        if (set_item_steal(res, PyLong_FromUnsignedLongLong(t->tid), frames) < 0)
            goto fail;
    }
    return res;
fail:
    Py_DECREF(res);
    return NULL;
}

PyDoc_STRVAR(dump_signal_doc,
"_dump_signal(signo) -> read fd or None\n--\n\n"
"Install the dump-signal handler on signo (0: remove it) and return the read end of\n"
"its self-pipe: one byte arrives per signal.  None if the application already\n"
"handles or ignores signo (it is left alone).");

static PyObject *
core_dump_signal(PyObject *mod, PyObject *arg)
{
    int signo = _PyLong_AsInt(arg);
    if (signo == -1 && PyErr_Occurred())
        return NULL;
    if (signo == 0) {
        sp_dumpsig_uninstall();
        Py_RETURN_NONE;
    }
    if (signo < 1 || signo >= NSIG || signo == SIGPROF) {
        PyErr_Format(PyExc_ValueError, "shadowprof: cannot use signal %d for dumps", signo);
        return NULL;
    }
    int fd = sp_dumpsig_install(signo);
    if (fd == -2)
        Py_RETURN_NONE;
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(fd);
}

PyDoc_STRVAR(set_interval_doc,
"_set_interval(interval_ns)\n--\n\nChange the sampling interval of the running\n"
"profiler (100us..60s); later samples weigh what they stand for as before.");

static PyObject *
core_set_interval(PyObject *mod, PyObject *arg)
{
    unsigned long long ns = PyLong_AsUnsignedLongLong(arg);
    if (ns == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (ns < SP_OPT_INTERVAL_LO || ns > SP_OPT_INTERVAL_HI) {
        PyErr_SetString(PyExc_ValueError,
                        "shadowprof: interval must be between 100us and 60s");
        return NULL;
    }
    if (!running || sp_sampler_set_interval(ns) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler is not running");
        return NULL;
    }
    session_interval_ns = ns;
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"start", (PyCFunction)(void (*)(void))core_start, METH_VARARGS | METH_KEYWORDS,
     start_doc},
    {"stop", core_stop, METH_NOARGS, stop_doc},
    {"is_running", core_is_running, METH_NOARGS, "is_running() -> bool"},
    {"snapshot", core_snapshot, METH_NOARGS, snapshot_doc},
    {"memory", core_memory, METH_NOARGS, "memory() -> dict of what the profiler holds"},
    {"code_id", core_code_id, METH_O, "code_id(code) -> registry id or None"},
    {"set_sigprof_policy", core_set_sigprof_policy, METH_O,
     "set_sigprof_policy('refuse'|'chain'): what start() does when the program "
     "already uses SIGPROF"},
    {"set_max_functions", core_set_max_functions, METH_O,
     "set_max_functions(n): registry ids past n share '[functions over the limit]'"},
    {"_set_hook", (PyCFunction)(void (*)(void))core_set_hook, METH_VARARGS | METH_KEYWORDS,
     set_hook_doc},
    {"_ignore_thread", core_ignore_thread, METH_NOARGS, ignore_thread_doc},
    {"parse_options", core_parse_options, METH_O, parse_options_doc},
    {"parse_option", core_parse_option, METH_VARARGS, parse_option_doc},
    {"option_defaults", core_option_defaults, METH_NOARGS, option_defaults_doc},
    {"parse_interval", core_parse_interval, METH_O, parse_interval_doc},
    {"thread_stacks", core_thread_stacks, METH_NOARGS, thread_stacks_doc},
    {"_dump_signal", core_dump_signal, METH_O, dump_signal_doc},
    {"_set_interval", core_set_interval, METH_O, set_interval_doc},
    SP_EXPORT_METHODS
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "shadowprof._core",
    "shadowprof's C core: shadow-stack hook, SIGPROF sampler, aggregation.", -1,
    core_methods,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    PyObject *m = PyModule_Create(&core_module);
    if (!m)
        return NULL;
    static int atfork_done;
    if (!atfork_done && pthread_atfork(NULL, NULL, after_fork_child) == 0)
        atfork_done = 1;
    if (PyModule_AddIntConstant(m, "FIRST_CODE_ID", SP_ID_FIRST_CODE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
