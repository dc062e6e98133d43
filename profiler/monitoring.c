/* monitoring.c: the sys.monitoring tracker ("monitoring", CPython 3.12+; tracker.h):
 * the shadow-stack push and call counts from PY_START, PY_RESUME and PY_THROW
 * callbacks.  Owns shadowprof's sys.monitoring tool id, its callbacks and events.
 *
 * Why it exists beside pep523.c: on 3.12 and later a frame-evaluation function turns
 * off CPython's inlined Python-to-Python calls, so every Python call then recurses in
 * C and deep recursion hits the C recursion limit; sys.monitoring keeps them.
 *
 * One event per frame entry.  Pops are lazy (shadow.h): the next push drops the frames
 * that ended since (returned, yielded or unwound), finding the new frame's caller on
 * the stack by address, so PY_RETURN, PY_YIELD and PY_UNWIND are not asked for.  That
 * halves what the mechanism costs: each event is a vectorcall of our callback by
 * CPython's instrumentation.
 *
 * Turning the events off leaves CPython 3.12's code without its superinstructions;
 * uninstall has requicken.c form them again where it can: in the code on the stacks,
 * which CPython de-instruments at once.  Continuous mode asks again once the code that
 * runs again was rewritten; Profiler.stop(), after which nobody asks again, calls
 * sp_monitoring_requicken_all, which de-instruments the rest first.
 *
 * Tool id: the first free one of 3 and 4, never 0-2 (debugger, coverage, profiler:
 * cProfile takes 2) or 5 (optimizer); events are set only for that id, so other tools
 * keep theirs.  Uninstall releases the events, the callbacks and the id.
 *
 * Thread contract: CPython calls the callbacks with the GIL held on the thread whose
 * frame starts; they write only that thread's sp_thread_t and registry counters.  The
 * callbacks and their slow paths are SP_HOT (tracker.h): a sample that interrupts them
 * counts as profiler overhead.  Install and uninstall run with the GIL held
 * (backend.c).
 *
 * Per event the callback does what its signature forces (CPython calls it through its
 * vectorcall slot with the code object and an offset) plus a few loads: the thread's state
 * (kept in sp_thread_t, see sp_shadow_bind), its current frame (the frame that
 * starts), the code's registry entry, the caller on top of the stack.  No Python API
 * call.  Frames deeper than the stack's capacity are counted and not stored; with no
 * event when they end, the interpreter's own depth (py_recursion_limit -
 * py_recursion_remaining) tells a later frame whether its caller is stored.
 */
#include "monitoring.h"

#include "requicken.h"

#if SP_HAS_MONITORING

/* The tool id held while installed, else -1.  GIL. */
static int tool_id = -1;
/* The callables registered for the events (strong refs): one with the registry index
 * known to be 0, one for any index.  GIL. */
static PyObject *push_fn0, *push_fnN, *throw_fn;

static const char *const push_events[] = {"PY_START", "PY_RESUME", "PY_THROW"};
/* Events this backend asked for in earlier versions; released all the same. */
static const char *const pop_events[] = {"PY_RETURN", "PY_YIELD", "PY_UNWIND"};
#define N_EVENTS 3

/* Tool ids shadowprof may take, in order of preference. */
static const int tool_ids[] = {3, 4};
#define TOOL_NAME "shadowprof"

/* The interpreter's count of Python frames running on ts (the one starting included). */
static inline int
py_depth(PyThreadState *ts)
{
    return ts->py_recursion_limit - ts->py_recursion_remaining;
}

/* Everything the fast path leaves out: a first event, a thread state swapped or
 * cleared, a new code object, an empty or full stack, a caller not on top (ended
 * frames below it, an entry or shim frame between), overflow. */
SP_HOT __attribute__((noinline)) static PyObject *
push_slow(PyObject *const *args, Py_ssize_t nargs, int thrown)
{
    sp_thread_t *t = sp_tls;
    if (t == NULL || sp_tracker_state != SP_TRACKER_ON) {
        t = sp_tracker_enter_slow(SP_TSTATE_GET());
        if (!t)
            Py_RETURN_NONE;
    }
    if (SP_UNLIKELY(nargs < 1))
        Py_RETURN_NONE;
    /* The frame that starts is the thread's current one.  Only a call from the
     * interpreter for the frame it runs is recorded (the comparison also guards
     * against a direct call with other arguments). */
    PyThreadState *ts = t->live_tstate;
    sp_pyframe_t *f = ts ? SP_TSTATE_CURRENT(ts) : NULL;
    if (f == NULL || (PyObject *)SP_FRAME_CODE(f) != args[0]) {
        /* CPython cleared t->live_tstate, or another state was swapped in. */
        ts = sp_shadow_bind(t);
        f = ts ? SP_TSTATE_CURRENT(ts) : NULL;
        if (f == NULL || (PyObject *)SP_FRAME_CODE(f) != args[0])
            Py_RETURN_NONE;
    }
    PyCodeObject *co = SP_FRAME_CODE(f);
    sp_code_t *e = sp_code_of(co);
    if (e == NULL && (e = sp_code_register(co)) == NULL)
        Py_RETURN_NONE;
    sp_pyframe_t *parent = sp_frame_caller(f);
    if (thrown)   /* see sp_frame_suspended */
        while (parent && sp_frame_suspended(parent))
            parent = sp_frame_caller(parent);
    int depth = py_depth(ts);
    if (t->overflow) {
        /* The caller is deeper than the top stored frame (by more than an __init__
         * shim frame can account for): still overflowing. */
        if (depth - 2 > t->deep_base) {
            t->overflow = (uint32_t)(depth - t->deep_base);
            sp_code_count_call(e, sp_tracker_frame_id(parent));
            Py_RETURN_NONE;
        }
        uint32_t d = t->depth < t->cap ? t->depth : t->cap;
        if (parent == NULL || !d || !sp_shadow_find(t->stack, &t->stack[d - 1], parent)) {
            sp_code_count_call(e, sp_tracker_frame_id(parent));
            Py_RETURN_NONE;
        }
        t->overflow = 0;   /* back within the stack */
    }
    uint32_t d = sp_tracker_push_depth(t, parent);
    uint32_t caller = d ? t->stack[d - 1].code_id : SP_ID_ROOT;
    if (d >= t->cap) {
        t->room = 0;
        t->overflow = 1;
        t->deep_base = depth - 1;
        sp_code_count_call(e, caller);
        Py_RETURN_NONE;
    }
    t->room = t->cap - 1;
    sp_shadow_push_at(t, d, f, e, caller);
    Py_RETURN_NONE;
}

/* A call whose edge is not the callee's first cached one. */
SP_HOT __attribute__((noinline)) static PyObject *
count_slow(sp_code_t *e, uint32_t caller)
{
    sp_code_count_edge_slow(e, caller);
    Py_RETURN_NONE;
}

/* PY_START, PY_RESUME, PY_THROW: (code, instruction_offset[, exception]).  `idx` is
 * sp_registry_extra_index, the constant 0 in push0 (see pep523.c). */
static inline __attribute__((always_inline)) PyObject *
on_push(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t idx)
{
    /* t->live_tstate is the thread's state as long as CPython has not cleared it (see
     * sp_shadow_bind), which saves a call into CPython per event; NULL also for a
     * thread with no state (sp_shadow_detached). */
    sp_thread_t *t = sp_tls_track;
    PyThreadState *ts = t->live_tstate;
    if (SP_UNLIKELY(ts == NULL || nargs < 1))
        return push_slow(args, nargs, 0);
    sp_pyframe_t *f = SP_TSTATE_CURRENT(ts);
    if (SP_UNLIKELY(f == NULL || (PyObject *)SP_FRAME_CODE(f) != args[0]))
        return push_slow(args, nargs, 0);
    /* Every PY_START/PY_RESUME/PY_THROW is an entry to count, generator code too
     * (creating a generator fires none of them). */
    uintptr_t slot = sp_code_slot(SP_FRAME_CODE(f), idx);
    if (SP_UNLIKELY(slot == 0 || (slot & SP_CODE_TAG_INIT)))
        return push_slow(args, nargs, 0);
    sp_code_t *e = (sp_code_t *)(slot & ~SP_CODE_TAGS);
    uint32_t d = t->depth;
    if (SP_UNLIKELY(d - 1 >= t->room))   /* empty, full, or overflowing */
        return push_slow(args, nargs, 0);
    /* The caller is f's previous frame, or the one before it if that is an entry
     * frame (a call or a generator resumed from C: the frame that called into C is
     * running, hence complete).  Other incomplete frames (3.13's __init__ shim) are
     * not on the stack, so the search sends them to push_slow. */
    sp_entry_t *top = &t->stack[d - 1];
    sp_pyframe_t *parent = SP_FRAME_PREVIOUS(f);
    if (SP_UNLIKELY(top->frame != parent)) {
        if (parent == NULL)
            return push_slow(args, nargs, 0);
        if (parent->owner == FRAME_OWNED_BY_CSTACK) {
            parent = parent->previous;
            if (parent == NULL)
                return push_slow(args, nargs, 0);
        }
        if (top->frame != parent) {
            top = sp_tracker_caller_below(t->stack, top, parent);
            if (top == NULL)
                return push_slow(args, nargs, 0);
            d = top->pos;
        }
    }
    sp_shadow_push(t, top, d, f, e);
    uint32_t caller = top->code_id;
    if (SP_LIKELY(e->edge_caller[0] == caller)) {
        e->edge_count[0]++;
        Py_RETURN_NONE;
    }
    return count_slow(e, caller);
}

/* The callbacks are objects of our own callable type, called through their vectorcall
 * slot: CPython's instrumentation calls the C function directly, without the
 * argument and recursion checks of a builtin function (about 30 instructions per
 * event on 3.12).  They never recurse: the slow path's Python code (registering code
 * objects) runs under its own events. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
} callback_t;

static PyTypeObject callback_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shadowprof._monitor_callback",
    .tp_doc = "shadowprof: a frame starts, resumes, or resumes to raise",
    .tp_basicsize = sizeof(callback_t),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(callback_t, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* CPython passes (code, instruction_offset[, exception]) and no keywords; a direct
 * call with keywords is not refused (the fast path records only the frame that is
 * running anyway, see on_push). */
#define CB_NARGS(nargsf, kwnames) ((void)(kwnames), (Py_ssize_t)PyVectorcall_NARGS(nargsf))

/* PY_THROW: (code, instruction_offset, exception).  Rare: always the slow path. */
SP_HOT static PyObject *
on_throw(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    (void)self;
    return push_slow(args, CB_NARGS(nargsf, kwnames), 1);
}

SP_HOT SP_NO_FRAME static PyObject *
push0(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    (void)self;
    return on_push(args, CB_NARGS(nargsf, kwnames), 0);
}

SP_HOT SP_NO_FRAME static PyObject *
pushN(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    (void)self;
    return on_push(args, CB_NARGS(nargsf, kwnames), sp_registry_extra_index);
}

/* A new callback calling fn, or NULL with an exception set. */
static PyObject *
callback_new(vectorcallfunc fn)
{
    if (!(callback_type.tp_flags & Py_TPFLAGS_READY) && PyType_Ready(&callback_type) < 0)
        return NULL;
    callback_t *cb = PyObject_New(callback_t, &callback_type);
    if (cb)
        cb->vectorcall = fn;
    return (PyObject *)cb;
}

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

static int
install(void)
{
    if (tool_id >= 0)
        return 0;
    PyObject *mon = monitoring_module();
    if (!mon)
        return -1;
    Py_INCREF(mon);
    if (!push_fn0 && !(push_fn0 = callback_new(push0)))
        goto fail;
    if (!push_fnN && !(push_fnN = callback_new(pushN)))
        goto fail;
    if (!throw_fn && !(throw_fn = callback_new(on_throw)))
        goto fail;
    PyObject *push_fn = sp_registry_extra_index == 0 ? push_fn0 : push_fnN;
    int id = pick_tool_id(mon);
    if (id < 0)
        goto fail;
    if (call_mon(mon, "use_tool_id", "(is)", id, TOOL_NAME) < 0)
        goto fail;
    long mask = 0;
    for (int i = 0; i < N_EVENTS; i++) {
        long a = event_bit(mon, push_events[i]);
        if (a < 0 || call_mon(mon, "register_callback", "(ilO)", id, a,
                              i == 2 ? throw_fn : push_fn) < 0)
            goto rollback;
        mask |= a;
    }
    if (call_mon(mon, "set_events", "(il)", id, mask) < 0)
        goto rollback;
    tool_id = id;
    Py_DECREF(mon);
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

static void
uninstall(void)
{
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
    /* CPython took the instrumentation out of the code on the stacks just now (the
     * rest when it next starts): give that code its superinstructions back. */
    sp_requicken_registry();
}

#if SP_HAS_REQUICKEN
/* deinstrument for sp_requicken_registry_with: a local event of the tool id in ctx set
 * on co and cleared again makes CPython instrument co to match every tool's events,
 * now rather than when co next starts; with ours off, that takes ours out. */
typedef struct {
    PyObject *mon;   /* sys.monitoring, borrowed */
    int id;          /* the tool id taken for the pass */
    long start;      /* PY_START's bit */
} deinstrument_ctx;

static int
deinstrument(PyCodeObject *co, void *ctx)
{
    deinstrument_ctx *c = ctx;
    if (call_mon(c->mon, "set_local_events", "(iOl)", c->id, (PyObject *)co, c->start) < 0)
        return -1;
    return call_mon(c->mon, "set_local_events", "(iOi)", c->id, (PyObject *)co, 0);
}
#endif

Py_ssize_t
sp_monitoring_requicken_all(void)
{
#if SP_HAS_REQUICKEN
    if (tool_id >= 0)
        return 0;   /* installed: the events are on, nothing to give back yet */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    Py_ssize_t changed = 0;
    deinstrument_ctx c = {PySys_GetObject("monitoring"), -1, -1};
    if (c.mon) {
        Py_INCREF(c.mon);
        c.start = event_bit(c.mon, "PY_START");
        c.id = c.start >= 0 ? pick_tool_id(c.mon) : -1;
    }
    if (c.id >= 0 && call_mon(c.mon, "use_tool_id", "(is)", c.id, TOOL_NAME) == 0) {
        changed = sp_requicken_registry_with(deinstrument, &c);
        release(c.mon, c.id);
    } else {
        /* both ids taken: the code CPython has not rewritten yet stays without its
         * superinstructions (what a plain sp_requicken_registry leaves) */
        PyErr_Clear();
        changed = sp_requicken_registry();
    }
    Py_XDECREF(c.mon);
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
    return changed;
#else
    return 0;
#endif
}

#else /* before 3.12: no sys.monitoring */

Py_ssize_t
sp_monitoring_requicken_all(void)
{
    return 0;
}

static int
install(void)
{
    PyErr_Format(PyExc_ValueError,
                 "shadowprof: hook 'monitoring' needs CPython 3.12 or later (this is "
                 "%s); use hook='eval' or 'auto'", PY_VERSION);
    return -1;
}

static void
uninstall(void)
{
}

#endif

const sp_tracker_t sp_tracker_monitoring = {"monitoring", install, uninstall};
