/* monitor.c: sys.monitoring backend (3.12+): push/pop of the shadow stack and call
 * counts from PY_START/PY_RESUME/PY_THROW and PY_RETURN/PY_YIELD/PY_UNWIND callbacks.
 *
 * Thread contract: CPython calls the callbacks with the GIL held on the thread whose
 * frame starts or ends; they write only that thread's sp_thread_t and registry
 * counters, exactly as the PEP 523 hook does (hook.c).  The callbacks and their slow
 * paths sit in the "sp_hot_text" section, so a sample that interrupts them counts as
 * profiler overhead.  Install and uninstall run with the GIL held from start()/stop().
 *
 * Per event the callback does what its signature forces (CPython calls a METH_FASTCALL
 * builtin with the code object and an offset) plus a few loads: the thread's state
 * (kept in sp_thread_t, see sp_shadow_bind), its current frame (the frame that starts
 * or ends), the code's registry entry, the parent check.  No Python API call.
 */
#include "monitor.h"
#include "hook.h"
#include "registry.h"
#include "shadow.h"

#if SP_MONITOR_AVAILABLE

/* The tool id held while installed, else -1.  GIL. */
static int tool_id = -1;
/* The callables registered for the push and pop events (strong refs).  GIL. */
static PyObject *push_fn, *pop_fn;

static const char *const push_events[] = {"PY_START", "PY_RESUME", "PY_THROW"};
static const char *const pop_events[] = {"PY_RETURN", "PY_YIELD", "PY_UNWIND"};
#define N_EVENTS 3

/* Tool ids shadowprof may take, in order of preference. */
static const int tool_ids[] = {3, 4};
#define TOOL_NAME "shadowprof"

/* Entered when the thread has no state yet or sp_hook_state has a bit other than ON.
 * Returns the thread's state, or NULL to ignore the event. */
SP_HOT static sp_thread_t *
enter_slow(void)
{
    uint32_t st = __atomic_load_n(&sp_hook_state, __ATOMIC_RELAXED);
    if (!(st & SP_HOOK_ON))
        return NULL;
    if (st & SP_HOOK_DRAIN) {
        __atomic_fetch_and(&sp_hook_state, ~SP_HOOK_DRAIN, __ATOMIC_RELAXED);
        if (sp_hook_drain)
            sp_hook_drain();
    }
    sp_thread_t *t = sp_tls;
    if (!t)
        t = sp_shadow_attach(SP_TSTATE_GET());
    return t;
}

/* The frame running on the calling thread, re-reading which thread state is current
 * (CPython cleared t->live_tstate, or another state was swapped in). */
SP_HOT static sp_pyframe_t *
current_frame_slow(sp_thread_t *t)
{
    PyThreadState *ts = sp_shadow_bind(t);
    return ts ? SP_TSTATE_CURRENT(ts) : NULL;
}

/* The frame running on the calling thread: t->live_tstate is the thread's state as
 * long as CPython has not cleared it (see sp_shadow_bind), which saves a call into CPython
 * per event.  The callers check the frame they get and fall back to the slow path. */
static inline sp_pyframe_t *
current_frame(sp_thread_t *t)
{
    PyThreadState *ts = t->live_tstate;
    return SP_LIKELY(ts != NULL) ? SP_TSTATE_CURRENT(ts) : current_frame_slow(t);
}

/* PY_START, PY_RESUME, PY_THROW: (code, instruction_offset[, exception]).  The frame
 * that starts is the thread's current frame. */
SP_HOT static PyObject *
on_push(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    sp_thread_t *t = sp_tls;
    if (SP_UNLIKELY(t == NULL || sp_hook_state != SP_HOOK_ON)) {
        t = enter_slow();
        if (!t)
            Py_RETURN_NONE;
    }
    if (SP_UNLIKELY(nargs < 1))
        Py_RETURN_NONE;
    sp_pyframe_t *f = current_frame(t);
    /* Only a call from the interpreter for the frame it runs is recorded (the pointer
     * comparison also guards against a direct call with other arguments). */
    if (SP_UNLIKELY(f == NULL || (PyObject *)SP_FRAME_CODE(f) != args[0])) {
        f = current_frame_slow(t);
        if (f == NULL || (PyObject *)SP_FRAME_CODE(f) != args[0])
            Py_RETURN_NONE;
    }
    PyCodeObject *co = SP_FRAME_CODE(f);
    sp_code_t *e = sp_code_of(co);
    if (SP_UNLIKELY(e == NULL) && (e = sp_code_register(co)) == NULL)
        Py_RETURN_NONE;

    uint32_t d = t->depth;
    if (SP_LIKELY(t->overflow == 0)) {
        /* The stack holds complete frames only, so a top equal to f's previous frame
         * is its caller; otherwise skip incomplete (entry, shim) frames first. */
        if (d && SP_UNLIKELY(t->stack[d - 1].frame != SP_FRAME_PREVIOUS(f))) {
            sp_pyframe_t *parent = sp_frame_caller(f);
            if (t->stack[d - 1].frame != parent)
                d = sp_shadow_resync(t, parent);
        }
    }
    sp_shadow_push(t, d, f, e);
    Py_RETURN_NONE;
}

/* A frame beyond the stack's capacity ends: the running code is then its caller's. */
SP_HOT static void
pop_overflow(sp_thread_t *t, sp_pyframe_t *f)
{
    if (--t->overflow) {
        sp_pyframe_t *parent = f ? sp_frame_caller(f) : NULL;
        sp_code_t *e = parent ? sp_code_of(SP_FRAME_CODE(parent)) : NULL;
        t->cur_id = e ? e->id : SP_ID_ROOT;
    } else {
        uint32_t d = t->depth;
        t->cur_id = d ? t->stack[d - 1].code_id : SP_ID_ROOT;
    }
}

/* PY_RETURN, PY_YIELD, PY_UNWIND: the frame that ends is still the current one. */
SP_HOT static PyObject *
on_pop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)args;
    (void)nargs;
    sp_thread_t *t = sp_tls;
    if (SP_UNLIKELY(t == NULL || sp_hook_state != SP_HOOK_ON)) {
        t = enter_slow();
        if (!t)
            Py_RETURN_NONE;
    }
    sp_pyframe_t *f = current_frame(t);
    if (SP_UNLIKELY(t->overflow)) {
        pop_overflow(t, f);
        Py_RETURN_NONE;
    }
    uint32_t d = t->depth;
    if (SP_LIKELY(d && t->stack[d - 1].frame == f)) {
        t->depth = --d;
    } else {
        sp_shadow_pop_slow(t, current_frame_slow(t));
        d = t->depth;
    }
    t->cur_id = d ? t->stack[d - 1].code_id : SP_ID_ROOT;
    Py_RETURN_NONE;
}

static PyMethodDef push_def = {"_monitor_push", (PyCFunction)(void (*)(void))on_push,
                               METH_FASTCALL, "shadowprof: a frame starts or resumes"};
static PyMethodDef pop_def = {"_monitor_pop", (PyCFunction)(void (*)(void))on_pop,
                              METH_FASTCALL, "shadowprof: a frame returns or yields"};

/* sys.monitoring (borrowed), or NULL with an exception set. */
static PyObject *
monitoring_module(void)
{
    PyObject *mon = PySys_GetObject("monitoring");
    if (!mon && !PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: sys.monitoring is missing; use hook='eval'");
    return mon;
}

/* sys.monitoring.events.NAME as a C long, or -1 with an exception set. */
static long
event_bit(PyObject *mon, const char *name)
{
    PyObject *events = PyObject_GetAttrString(mon, "events");
    if (!events)
        return -1;
    PyObject *v = PyObject_GetAttrString(events, name);
    Py_DECREF(events);
    if (!v)
        return -1;
    long bit = PyLong_AsLong(v);
    Py_DECREF(v);
    return bit;
}

/* Calls sys.monitoring.NAME(args...) and drops the result; -1 with an exception set. */
static int
call_mon(PyObject *mon, const char *name, const char *fmt, ...)
{
    PyObject *fn = PyObject_GetAttrString(mon, name);
    if (!fn)
        return -1;
    va_list va;
    va_start(va, fmt);
    PyObject *args = Py_VaBuildValue(fmt, va);
    va_end(va);
    PyObject *r = args ? PyObject_CallObject(fn, args) : NULL;
    Py_DECREF(fn);
    Py_XDECREF(args);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The name of the tool holding `id` (new ref), Py_None if free, NULL on error. */
static PyObject *
tool_owner(PyObject *mon, int id)
{
    return PyObject_CallMethod(mon, "get_tool", "i", id);
}

/* Turns our events off, unregisters our callbacks and frees `id`, if we still hold it.
 * Errors are cleared: this is also the rollback of a failed install. */
static void
release(PyObject *mon, int id)
{
    PyObject *owner = tool_owner(mon, id);
    int ours = owner && PyUnicode_Check(owner) &&
               PyUnicode_CompareWithASCIIString(owner, TOOL_NAME) == 0;
    Py_XDECREF(owner);
    PyErr_Clear();
    if (!ours)
        return;   /* freed, or taken since by someone else: not ours to touch */
    if (call_mon(mon, "set_events", "(ii)", id, 0) < 0)
        PyErr_Clear();
    for (int i = 0; i < N_EVENTS; i++) {
        long a = event_bit(mon, push_events[i]);
        if (a >= 0 && call_mon(mon, "register_callback", "(ilO)", id, a, Py_None) < 0)
            PyErr_Clear();
        long b = event_bit(mon, pop_events[i]);
        if (b >= 0 && call_mon(mon, "register_callback", "(ilO)", id, b, Py_None) < 0)
            PyErr_Clear();
        PyErr_Clear();
    }
    if (call_mon(mon, "free_tool_id", "(i)", id) < 0)
        PyErr_Clear();
}

/* The first free id of tool_ids, or -1 with a one-line error naming the holders. */
static int
pick_tool_id(PyObject *mon)
{
    PyObject *owners[2] = {NULL, NULL};
    int id = -1;
    for (int i = 0; i < 2; i++) {
        owners[i] = tool_owner(mon, tool_ids[i]);
        if (!owners[i])
            goto done;
        if (owners[i] == Py_None) {
            id = tool_ids[i];
            goto done;
        }
    }
    PyErr_Format(PyExc_RuntimeError,
                 "shadowprof: sys.monitoring tool ids %d and %d are both taken (by %R "
                 "and %R); free one (sys.monitoring.free_tool_id) or use hook='eval'",
                 tool_ids[0], tool_ids[1], owners[0], owners[1]);
done:
    Py_XDECREF(owners[0]);
    Py_XDECREF(owners[1]);
    return id;
}

int
sp_monitor_install(void)
{
    if (tool_id >= 0)
        return 0;
    if (PyThreadState_Get()->interp != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: sub-interpreters are not supported; profile from "
                        "the main interpreter");
        return -1;
    }
    PyObject *mon = monitoring_module();
    if (!mon)
        return -1;
    Py_INCREF(mon);
    if (!push_fn && !(push_fn = PyCFunction_New(&push_def, NULL)))
        goto fail;
    if (!pop_fn && !(pop_fn = PyCFunction_New(&pop_def, NULL)))
        goto fail;
    int id = pick_tool_id(mon);
    if (id < 0)
        goto fail;
    if (call_mon(mon, "use_tool_id", "(is)", id, TOOL_NAME) < 0)
        goto fail;
    long mask = 0;
    for (int i = 0; i < N_EVENTS; i++) {
        long a = event_bit(mon, push_events[i]);
        long b = event_bit(mon, pop_events[i]);
        if (a < 0 || b < 0 ||
            call_mon(mon, "register_callback", "(ilO)", id, a, push_fn) < 0 ||
            call_mon(mon, "register_callback", "(ilO)", id, b, pop_fn) < 0)
            goto rollback;
        mask |= a | b;
    }
    if (call_mon(mon, "set_events", "(il)", id, mask) < 0)
        goto rollback;
    tool_id = id;
    Py_DECREF(mon);
    __atomic_store_n(&sp_hook_state, SP_HOOK_ON, __ATOMIC_RELEASE);
    return 0;
rollback: {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        release(mon, id);
        PyErr_Restore(et, ev, tb);
    }
fail:
    Py_DECREF(mon);
    return -1;
}

void
sp_monitor_uninstall(void)
{
    __atomic_store_n(&sp_hook_state, 0, __ATOMIC_RELEASE);
    if (tool_id < 0)
        return;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *mon = PySys_GetObject("monitoring");
    if (mon)
        release(mon, tool_id);
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
    tool_id = -1;
}

int
sp_monitor_tool_id(void)
{
    return tool_id;
}

#else /* before 3.12: no sys.monitoring */

int
sp_monitor_install(void)
{
    PyErr_Format(PyExc_ValueError,
                 "shadowprof: hook 'monitoring' needs CPython 3.12 or later (this is "
                 "%s); use hook='eval' or 'auto'", PY_VERSION);
    return -1;
}

void
sp_monitor_uninstall(void)
{
}

int
sp_monitor_tool_id(void)
{
    return -1;
}

#endif
