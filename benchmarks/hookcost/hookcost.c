/* hookcost.c: minimal candidate hook mechanisms for shadowprof's shadow stack, to
 * measure what each mechanism costs per Python frame entry (see measure.py).
 *
 * Modes (install(mode) / uninstall()):
 *   "eval_pass"        PEP 523 eval-frame function that only chains to
 *                      _PyEval_EvalFrameDefault (cost of the mechanism itself).
 *   "eval_push"        PEP 523 with a push/pop of (frame, code) on a per-thread array.
 *   "setprofile_push"  PyEval_SetProfile with a C profile function doing the same
 *                      push/pop on PyTrace_CALL / PyTrace_RETURN (C_* events ignored).
 *   "monitoring_push"  sys.monitoring (3.12+) with C callables (METH_FASTCALL builtins)
 *                      for PY_START/PY_RESUME/PY_THROW (push) and
 *                      PY_RETURN/PY_YIELD/PY_UNWIND (pop).
 *
 * The per-thread stack is a heap array of HC_CAP entries reached through an
 * initial-exec __thread pointer, as in shadowprof.  Depth keeps counting past the
 * capacity but entries are only stored below it (clamp; never an overflow); a pop at
 * depth 0 (frames that were running before install) is ignored.  `pushes` counts
 * pushes so that measure.py can check each mode sees every frame entry.
 *
 * Single interpreter, GIL held everywhere; not meant for anything but measuring.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000
#  error "hookcost needs CPython 3.11 or later"
#endif
#ifndef Py_BUILD_CORE
#  define Py_BUILD_CORE 1
#endif
#include "internal/pycore_frame.h"
#undef Py_BUILD_CORE
#include <frameobject.h>
#include <stdint.h>
#include <string.h>

#if PY_VERSION_HEX >= 0x030D0000
#  define HC_FRAME_CODE(f) ((PyObject *)(f)->f_executable)
#  define HC_TSTATE_CURRENT(ts) ((ts)->current_frame)
#else
#  define HC_FRAME_CODE(f) ((PyObject *)(f)->f_code)
#  define HC_TSTATE_CURRENT(ts) ((ts)->cframe->current_frame)
#endif

#if PY_VERSION_HEX < 0x030D0000
#  define PyThreadState_GetUnchecked _PyThreadState_UncheckedGet
#endif

#define HC_CAP 4096

typedef struct {
    void *frame;
    PyObject *code;
} hc_entry_t;

typedef struct {
    uint32_t depth;
    uint32_t pad_;
    uint64_t pushes;
    hc_entry_t *stack; /* HC_CAP entries */
} hc_thread_t;

static __thread hc_thread_t *hc_tls __attribute__((tls_model("initial-exec")));

static __attribute__((noinline)) hc_thread_t *
hc_attach(void)
{
    hc_thread_t *t = PyMem_RawCalloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->stack = PyMem_RawCalloc(HC_CAP, sizeof(hc_entry_t));
    if (!t->stack) {
        PyMem_RawFree(t);
        return NULL;
    }
    hc_tls = t; /* leaked at thread exit: measuring only */
    return t;
}

static inline void
hc_push(hc_thread_t *t, void *frame, PyObject *code)
{
    uint32_t d = t->depth;
    if (__builtin_expect(d < HC_CAP, 1)) {
        t->stack[d].frame = frame;
        t->stack[d].code = code;
    }
    t->depth = d + 1;
    t->pushes++;
}

static inline void
hc_pop(hc_thread_t *t)
{
    if (__builtin_expect(t->depth != 0, 1))
        t->depth--;
}

/* ---- (a), (b): PEP 523 ------------------------------------------------------- */

static PyObject *
eval_pass(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    return _PyEval_EvalFrameDefault(ts, f, throwflag);
}

static PyObject *
eval_push(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    hc_thread_t *t = hc_tls;
    if (__builtin_expect(t == NULL, 0) && (t = hc_attach()) == NULL)
        return _PyEval_EvalFrameDefault(ts, f, throwflag);
    hc_push(t, f, HC_FRAME_CODE(f));
    PyObject *res = _PyEval_EvalFrameDefault(ts, f, throwflag);
    hc_pop(t);
    return res;
}

/* ---- (c): PyEval_SetProfile ---------------------------------------------------- */

static int
profile_push(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)arg;
    hc_thread_t *t = hc_tls;
    if (__builtin_expect(t == NULL, 0) && (t = hc_attach()) == NULL)
        return 0;
    if (what == PyTrace_CALL) {
        struct _PyInterpreterFrame *f = frame->f_frame;
        hc_push(t, f, HC_FRAME_CODE(f));
    } else if (what == PyTrace_RETURN) {
        hc_pop(t);
    }
    /* PyTrace_C_CALL, PyTrace_C_RETURN, PyTrace_C_EXCEPTION: ignored. */
    return 0;
}

/* ---- (d): sys.monitoring (3.12+) ----------------------------------------------- */

#if PY_VERSION_HEX >= 0x030C0000
#  define HC_TOOL_ID 4 /* free for tools; PROFILER_ID (2) is left to real profilers */

/* args[0] is the code object for every PY_* event. */
static PyObject *
mon_push(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)nargs;
    hc_thread_t *t = hc_tls;
    if (__builtin_expect(t == NULL, 0) && (t = hc_attach()) == NULL)
        Py_RETURN_NONE;
    PyThreadState *ts = PyThreadState_GetUnchecked();
    hc_push(t, HC_TSTATE_CURRENT(ts), args[0]);
    Py_RETURN_NONE;
}

static PyObject *
mon_pop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)args;
    (void)nargs;
    hc_thread_t *t = hc_tls;
    if (__builtin_expect(t != NULL, 1))
        hc_pop(t);
    Py_RETURN_NONE;
}

static PyMethodDef mon_push_def = {"hc_mon_push", (PyCFunction)(void (*)(void))mon_push,
                                   METH_FASTCALL, NULL};
static PyMethodDef mon_pop_def = {"hc_mon_pop", (PyCFunction)(void (*)(void))mon_pop,
                                  METH_FASTCALL, NULL};

static const char *const push_events[] = {"PY_START", "PY_RESUME", "PY_THROW"};
static const char *const pop_events[] = {"PY_RETURN", "PY_YIELD", "PY_UNWIND"};

/* Calls sys.monitoring.<name>(*args); returns a new reference or NULL. */
static PyObject *
mon_call(const char *name, const char *fmt, ...)
{
    PyObject *mon = PySys_GetObject("monitoring"); /* borrowed */
    if (!mon) {
        PyErr_SetString(PyExc_RuntimeError, "hookcost: sys.monitoring is missing");
        return NULL;
    }
    PyObject *fn = PyObject_GetAttrString(mon, name);
    if (!fn)
        return NULL;
    va_list va;
    va_start(va, fmt);
    PyObject *targs = Py_VaBuildValue(fmt, va);
    va_end(va);
    PyObject *res = NULL;
    if (targs) {
        res = PyObject_Call(fn, targs, NULL);
        Py_DECREF(targs);
    }
    Py_DECREF(fn);
    return res;
}

static long
mon_event(const char *name)
{
    PyObject *mon = PySys_GetObject("monitoring");
    if (!mon)
        return -1;
    PyObject *ev = PyObject_GetAttrString(mon, "events");
    if (!ev)
        return -1;
    PyObject *v = PyObject_GetAttrString(ev, name);
    Py_DECREF(ev);
    if (!v)
        return -1;
    long r = PyLong_AsLong(v);
    Py_DECREF(v);
    return r;
}

static int
mon_register(PyObject *push, PyObject *pop)
{
    long mask = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *const *names = pass ? pop_events : push_events;
        PyObject *cb = pass ? pop : push;
        for (int i = 0; i < 3; i++) {
            long ev = mon_event(names[i]);
            if (ev < 0)
                return -1;
            mask |= ev;
            PyObject *r = mon_call("register_callback", "(ilO)", HC_TOOL_ID, ev,
                                   cb ? cb : Py_None);
            if (!r)
                return -1;
            Py_DECREF(r);
        }
    }
    PyObject *r = mon_call("set_events", "(il)", HC_TOOL_ID, push ? mask : 0L);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int
mon_install(void)
{
    PyObject *r = mon_call("use_tool_id", "(is)", HC_TOOL_ID, "hookcost");
    if (!r)
        return -1;
    Py_DECREF(r);
    PyObject *push = PyCFunction_New(&mon_push_def, NULL);
    PyObject *pop = PyCFunction_New(&mon_pop_def, NULL);
    int rc = (push && pop) ? mon_register(push, pop) : -1;
    Py_XDECREF(push);
    Py_XDECREF(pop);
    return rc;
}

static int
mon_uninstall(void)
{
    if (mon_register(NULL, NULL) < 0) /* None callbacks, no events */
        return -1;
    PyObject *r = mon_call("free_tool_id", "(i)", HC_TOOL_ID);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}
#endif

/* ---- module ---------------------------------------------------------------------- */

enum { M_NONE, M_EVAL_PASS, M_EVAL_PUSH, M_SETPROFILE_PUSH, M_MONITORING_PUSH };
static int cur_mode = M_NONE;

static PyObject *
hc_uninstall(PyObject *mod, PyObject *unused)
{
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    switch (cur_mode) {
    case M_EVAL_PASS:
    case M_EVAL_PUSH:
        _PyInterpreterState_SetEvalFrameFunc(interp, _PyEval_EvalFrameDefault);
        break;
    case M_SETPROFILE_PUSH:
        PyEval_SetProfile(NULL, NULL);
        break;
#if PY_VERSION_HEX >= 0x030C0000
    case M_MONITORING_PUSH:
        if (mon_uninstall() < 0)
            return NULL;
        break;
#endif
    default:
        break;
    }
    cur_mode = M_NONE;
    Py_RETURN_NONE;
}

static PyObject *
hc_install(PyObject *mod, PyObject *arg)
{
    const char *mode = PyUnicode_AsUTF8(arg);
    if (!mode)
        return NULL;
    if (cur_mode != M_NONE) {
        PyErr_SetString(PyExc_RuntimeError, "hookcost: already installed");
        return NULL;
    }
    if (!hc_tls && !hc_attach())
        return PyErr_NoMemory();
    hc_tls->depth = 0;
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    if (strcmp(mode, "eval_pass") == 0) {
        _PyInterpreterState_SetEvalFrameFunc(interp, eval_pass);
        cur_mode = M_EVAL_PASS;
    } else if (strcmp(mode, "eval_push") == 0) {
        _PyInterpreterState_SetEvalFrameFunc(interp, eval_push);
        cur_mode = M_EVAL_PUSH;
    } else if (strcmp(mode, "setprofile_push") == 0) {
        PyEval_SetProfile(profile_push, NULL);
        cur_mode = M_SETPROFILE_PUSH;
    } else if (strcmp(mode, "monitoring_push") == 0) {
#if PY_VERSION_HEX >= 0x030C0000
        if (mon_install() < 0) {
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            cur_mode = M_MONITORING_PUSH;
            PyObject *r = hc_uninstall(mod, NULL);
            Py_XDECREF(r);
            PyErr_Clear();
            PyErr_Restore(et, ev, tb);
            return NULL;
        }
        cur_mode = M_MONITORING_PUSH;
#else
        PyErr_SetString(PyExc_NotImplementedError,
                        "hookcost: monitoring_push needs sys.monitoring (3.12+)");
        return NULL;
#endif
    } else {
        PyErr_Format(PyExc_ValueError, "hookcost: unknown mode %R", arg);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
hc_pushes(PyObject *mod, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(hc_tls ? hc_tls->pushes : 0);
}

static PyObject *
hc_depth(PyObject *mod, PyObject *unused)
{
    return PyLong_FromUnsignedLong(hc_tls ? hc_tls->depth : 0);
}

static PyMethodDef hc_methods[] = {
    {"install", hc_install, METH_O, "install(mode): install one candidate hook."},
    {"uninstall", hc_uninstall, METH_NOARGS, "uninstall(): remove it."},
    {"pushes", hc_pushes, METH_NOARGS, "pushes(): pushes so far on this thread."},
    {"depth", hc_depth, METH_NOARGS, "depth(): current stack depth on this thread."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hc_module = {
    PyModuleDef_HEAD_INIT, "hookcost", "Candidate hook mechanisms for shadowprof.", -1,
    hc_methods,
};

PyMODINIT_FUNC
PyInit_hookcost(void)
{
    PyObject *m = PyModule_Create(&hc_module);
    if (!m)
        return NULL;
    PyObject *modes = Py_BuildValue("(ssss)", "eval_pass", "eval_push", "setprofile_push",
                                    "monitoring_push");
    if (!modes || PyModule_AddObject(m, "MODES", modes) < 0) {
        Py_XDECREF(modes);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
