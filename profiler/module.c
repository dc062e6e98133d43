/* module.c: the shadowprof._core extension module: its functions' Python signatures,
 * argument checks and docstrings, and the small calls for tools and tests (memory,
 * code_id, _set_hook, _ignore_thread, _dump_signal, parse_options ...).  The work is
 * elsewhere: the session's life cycle in session.c, the snapshot in snapshot.c.
 *
 * Everything here runs with the GIL held.  Data flows one way: tracker (tracker.h:
 * pep523.c or monitoring.c, chosen by backend.c) -> shadow stacks (shadow.c) ->
 * SIGPROF handler (sampler.c) -> ring (ring.c) -> drain (drain.c) -> table (table.c)
 * -> snapshot (snapshot.c) or pprof file (export.c) -> Python.
 */
#include "compat.h"
#include "backend.h"
#include "drain.h"
#include "dumpsig.h"
#include "export.h"
#include "monitoring.h"
#include "options.h"
#include "registry.h"
#include "requicken.h"
#include "sampler.h"
#include "session.h"
#include "shadow.h"
#include "snapshot.h"
#include "table.h"

#include <signal.h>
#include <string.h>

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
    if (sp_session_running()) {
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
    sp_session_config_t c = {
        .interval_ns = interval,
        .mode = m,
        .max_depth = max_depth,
        .ring_size = (size_t)ring_size,
        .max_stacks = (size_t)max_stacks,
        .fork_keep = strcmp(fork_mode, "continue") == 0,
        .native = native,
        .backend = hook_kind,
    };
    if (sp_session_start(&c) < 0)
        return NULL;
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
    sp_session_stop();
    Py_RETURN_NONE;
}

static PyObject *
core_is_running(PyObject *mod, PyObject *unused)
{
    return PyBool_FromLong(sp_session_running());
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
"  drainer_drains (spills by the drain thread since start: the times it moved\n"
"  records out of the ring itself, without the GIL, because no Python call had\n"
"  drained them; they are aggregated by the next drain).");

static PyObject *
core_snapshot(PyObject *mod, PyObject *unused)
{
    return sp_snapshot();
}

PyDoc_STRVAR(functions_doc,
"functions() -> dict\n--\n\n{id: (qualname, filename, firstlineno)} of every code object\n"
"the profiler has seen, used by the profile or not: snapshot()'s functions without\n"
"its stacks (which take about as long to build as the rest of the profile).");

static PyObject *
core_functions(PyObject *mod, PyObject *unused)
{
    return sp_snapshot_functions();
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
    if (sp_session_track_only(on, hook_kind) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(requicken_doc,
"_requicken(code=None, all=False)\n--\n\nCPython 3.12: form again the superinstructions\n"
"that sys.monitoring's instrumentation removed (requicken.c), in *code* (returns the\n"
"pairs formed, -1 if it is still instrumented or monitored by some tool) or in every\n"
"code object shadowprof has seen (returns how many changed); with *all*, that code\n"
"which CPython has not de-instrumented yet is de-instrumented first (monitoring.h).\n"
"Elsewhere -1 and 0.");

static PyObject *
core_requicken(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"code", "all", NULL};
    PyObject *code = Py_None;
    int all = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|Op:_requicken", kwlist, &code, &all))
        return NULL;
    if (code == Py_None)
        return PyLong_FromSsize_t(all ? sp_monitoring_requicken_all()
                                      : sp_requicken_registry());
    if (!PyCode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "_requicken: code must be a code object or None");
        return NULL;
    }
    return PyLong_FromSsize_t(sp_requicken_code((PyCodeObject *)code));
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
    sp_table_t *table = sp_session_table();
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:I}", "table_bytes",
        (Py_ssize_t)(table ? sp_table_bytes(table) : 0), "table_stacks",
        (Py_ssize_t)(table ? sp_table_size(table) : 0), "threads",
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
            r = sp_dict_set_steal(d, PyUnicode_FromString(sp_options_desc[k].dest),
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
        r = sp_dict_set_steal(d, PyUnicode_FromString(sp_options_desc[k].dest), v);
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

static PyObject *
core_thread_stacks(PyObject *mod, PyObject *unused)
{
    return sp_snapshot_thread_stacks();
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
    if (sp_session_set_interval(ns) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"start", (PyCFunction)(void (*)(void))core_start, METH_VARARGS | METH_KEYWORDS,
     start_doc},
    {"stop", core_stop, METH_NOARGS, stop_doc},
    {"is_running", core_is_running, METH_NOARGS, "is_running() -> bool"},
    {"snapshot", core_snapshot, METH_NOARGS, snapshot_doc},
    {"functions", core_functions, METH_NOARGS, functions_doc},
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
    {"_requicken", (PyCFunction)(void (*)(void))core_requicken,
     METH_VARARGS | METH_KEYWORDS, requicken_doc},
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
    sp_session_init();
    if (PyModule_AddIntConstant(m, "FIRST_CODE_ID", SP_ID_FIRST_CODE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
