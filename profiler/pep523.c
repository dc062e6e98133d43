/* pep523.c: the PEP 523 tracker ("eval", tracker.h): a frame-evaluation function that
 * pushes every frame entry on the thread's shadow stack, counts the call, and
 * tail-calls the evaluation function it chains to.  Owns that function's install and
 * uninstall (chaining to, and being chained by, other evaluation functions) and the
 * C-stack guard that evaluation through it needs.
 *
 * Thread contract: the hook runs with the GIL held on the thread whose frame it
 * evaluates, and writes only that thread's sp_thread_t and registry counters.  Its
 * code and slow paths are SP_HOT (see tracker.h): a sample that interrupts them is
 * profiler overhead.  Install and uninstall run with the GIL held (backend.c).
 *
 * Cost.  The hook pushes and then tail-calls the evaluation function: it has no frame
 * of its own and nothing to do when the frame ends, because pops are lazy (shadow.h):
 * the next push drops whatever ended since.  On 3.11 its fast path is 37 instructions
 * whatever lies above the caller's entry: the caller's frame keeps the index of its
 * entry in its padding (compat.h, tracker.h: sp_tracker_caller_at), checked by one
 * compare; 35 per call over a do-nothing evaluation function (39 on generator
 * resumes), and no mispredicted branch of its own, where the search down past ended
 * frames mispredicted its exit about once per call that follows a return
 * (benchmarks/hookcost/RESULTS.md, 2026-12-04).  A hint that fails the check goes to
 * eval_search, the path of the other versions: 33 instructions when the caller's
 * entry is on top, a few more per ended frame above it (36-40 per call over a
 * do-nothing evaluation function).  The fast path reads
 * the thread's state (one TLS load, never NULL: see sp_tls_track), the C stack
 * check, the code's registry entry (co_extra, tagged so that one test tells plain code
 * from generator code, and one compare a generator's resumption from its creation or
 * a throw()), the caller on top of the stack or found below the entries of ended
 * frames, the entry, the caller->callee edge.  Anything else (first call of a thread
 * or a code object, generator creation, an empty or full stack, a caller not on the
 * stack, a drain request) goes to eval_slow.  Frames deeper than the stack's capacity
 * are counted there with a frame of ours around the call (overflow is decremented
 * when they end).
 */
#include "pep523.h"

typedef _PyFrameEvalFunction sp_eval_fn;

/* The evaluation function we chain to (NULL: CPython's default), and the one we call:
 * prev_eval or _PyEval_EvalFrameDefault, so the hook makes one indirect call.  GIL. */
static sp_eval_fn prev_eval;
static sp_eval_fn next_eval = _PyEval_EvalFrameDefault;
static int buried;   /* uninstalled while another evaluator sat on top of ours */

/* The C stack pointer, for the check against t->c_stack_low: a register read where we
 * know the register, so that the hook needs no frame of its own. */
#if defined(__GNUC__) && defined(__x86_64__)
register uintptr_t sp_rsp_ __asm__("rsp");
#  define SP_STACK_POINTER() sp_rsp_
#elif defined(__GNUC__) && defined(__aarch64__)
register uintptr_t sp_rsp_ __asm__("sp");
#  define SP_STACK_POINTER() sp_rsp_
#else
#  define SP_STACK_POINTER() ((uintptr_t)__builtin_frame_address(0))
#endif

static inline PyObject *
call_prev(PyThreadState *ts, sp_pyframe_t *f, int throwflag)
{
    return next_eval(ts, f, throwflag);
}

/* Out of C stack (see shadow.c): fail the call with RecursionError rather than crash.
 * On 3.12+ the evaluation function owns the frame (it pops it when the frame ends), so
 * the frame must still be evaluated: CPython's own C recursion check is made to fail
 * for this one call, and the default evaluator raises RecursionError, clears and pops
 * the frame (and finishes a generator whose frame it is) exactly as it does at its own
 * limit.  Before 3.12 the caller clears and pops the frame after any error. */
SP_HOT static PyObject *
c_stack_exhausted(PyThreadState *ts, sp_pyframe_t *f, int throwflag)
{
#if SP_EVAL_OWNS_FRAME
    int saved = ts->c_recursion_remaining;
    ts->c_recursion_remaining = 0;
    PyObject *result = _PyEval_EvalFrameDefault(ts, f, throwflag);
    ts->c_recursion_remaining = saved;
    if (result == NULL && PyErr_ExceptionMatches(PyExc_RecursionError)) {
        PyErr_Clear();
#else
    (void)f;
    (void)throwflag;
    PyObject *result = NULL;
    {
#endif
        PyErr_SetString(PyExc_RecursionError,
                        "maximum recursion depth exceeded: the C stack is nearly full "
                        "(every Python call uses C stack while shadowprof profiles)");
    }
    return result;
}

/* The caller of a generator resumed by throw(): `parent`, or if that is a delegating
 * generator that CPython made current without resuming it (sp_frame_suspended), the
 * frame that resumed it, as cProfile counts it.  3.9 and 3.10 do not link the
 * delegating frame to that frame: there it is the entry below the delegating frame's
 * own entry, the frame that resumed it last. */
SP_HOT static sp_pyframe_t *
thrower(sp_thread_t *t, sp_pyframe_t *parent)
{
    sp_pyframe_t *last = NULL;
    while (parent && sp_frame_suspended(parent)) {
        last = parent;
        parent = SP_FRAME_PREVIOUS(parent);
    }
    if (parent == NULL && last) {
        uint32_t d = t->depth < t->cap ? t->depth : t->cap;
        sp_entry_t *e = d ? sp_shadow_find(t->stack, &t->stack[d - 1], last) : NULL;
        if (e && e > t->stack)
            parent = e[-1].frame;
    }
    return parent;
}

/* A frame past the stack's capacity: counted, not stored, with our frame around its
 * evaluation so that overflow drops when it ends. */
SP_HOT static PyObject *
eval_overflow(sp_thread_t *t, PyThreadState *ts, sp_pyframe_t *f, int throwflag,
              sp_code_t *e, uint32_t caller)
{
    t->room = 0;
    t->deep_base = -1;   /* see shadow.h */
    t->overflow++;
    sp_code_count_call(e, caller);
    PyObject *result = call_prev(ts, f, throwflag);
    if (--t->overflow == 0)
        t->room = t->cap - 1;
    return result;
}

/* Everything the fast path below leaves out.  Tail-called with its arguments. */
SP_HOT __attribute__((noinline)) static PyObject *
eval_slow(PyThreadState *ts, sp_pyframe_t *f, int throwflag)
{
    sp_thread_t *t = sp_tls;
    if (t == NULL || sp_tracker_state != SP_TRACKER_ON) {
        t = sp_tracker_enter_slow(ts);
        if (!t)
            return call_prev(ts, f, throwflag);
    }
    if (SP_UNLIKELY(SP_STACK_POINTER() < t->c_stack_low))
        return c_stack_exhausted(ts, f, throwflag);
    PyCodeObject *co = SP_FRAME_CODE(f);
    sp_code_t *e = sp_code_of(co);
    if (e == NULL && (e = sp_code_register(co)) == NULL)
        return call_prev(ts, f, throwflag);
    sp_pyframe_t *parent = SP_TSTATE_CURRENT(ts);
    if (e->creates_generator && SP_FRAME_IS_CREATION(f)) {
        /* Creating a generator is not a call.  Drop ended frames from the top all the
         * same: the new frame may reuse the memory of one of them. */
        sp_tracker_trim(t, parent);
        return call_prev(ts, f, throwflag);
    }
    if (throwflag)
        parent = thrower(t, parent);
    if (t->overflow)
        return eval_overflow(t, ts, f, throwflag, e, sp_tracker_frame_id(parent));
    uint32_t d = sp_tracker_push_depth(t, parent);
    uint32_t caller = d ? t->stack[d - 1].code_id : SP_ID_ROOT;
    if (d >= t->cap)
        return eval_overflow(t, ts, f, throwflag, e, caller);
    t->room = t->cap - 1;
    sp_shadow_push_at(t, d, f, e, caller);
    return call_prev(ts, f, throwflag);
}

/* A call whose edge is not the callee's first cached one. */
SP_HOT __attribute__((noinline)) static PyObject *
eval_count_slow(PyThreadState *ts, sp_pyframe_t *f, int throwflag, sp_code_t *e,
                uint32_t caller)
{
    sp_code_count_edge_slow(e, caller);
    return call_prev(ts, f, throwflag);
}

/* The fast path's end, once the caller's entry `top` (at depth d - 1) is known: push,
 * count the edge, tail-call the evaluation function.  Inlined at both its uses. */
static inline __attribute__((always_inline)) PyObject *
eval_record(PyThreadState *ts, sp_pyframe_t *f, int throwflag, sp_thread_t *t,
            sp_entry_t *top, uint32_t d, sp_code_t *e)
{
    sp_shadow_push(t, top, d, f, e);
    uint32_t caller = top->code_id;
    if (SP_LIKELY(e->edge_caller[0] == caller)) {
        e->edge_count[0]++;
        return call_prev(ts, f, throwflag);
    }
    return eval_count_slow(ts, f, throwflag, e, caller);
}

/* The fast path's end once the caller's entry is not known yet: on top of the stack
 * (depth d), or below the entries of frames that ended since the last push (shadow.h),
 * or not on the stack (eval_slow). */
static inline __attribute__((always_inline)) PyObject *
eval_find(PyThreadState *ts, sp_pyframe_t *f, int throwflag, sp_thread_t *t, uint32_t d,
          sp_code_t *e)
{
    sp_entry_t *top = &t->stack[d - 1];
    sp_pyframe_t *parent = SP_TSTATE_CURRENT(ts);
    if (SP_LIKELY(top->frame == parent))
        return eval_record(ts, f, throwflag, t, top, d, e);
    /* Frames that ended since the last push are still on top (shadow.h). */
    top = sp_tracker_caller_below(t->stack, top, parent);
    if (top == NULL)
        return eval_slow(ts, f, throwflag);
    return eval_record(ts, f, throwflag, t, top, top->pos, e);
}

#if SP_FRAME_HAS_HINT
/* 3.11: the fast path's end when the caller's hint missed (tracker.h: an empty, full,
 * overflowing or draining stack, a frame we did not push, a stack since rebuilt; rare
 * once a thread runs), out of line so that the hinted path keeps every value in a
 * scratch register.  Tail-called with its arguments. */
SP_HOT SP_NO_FRAME static PyObject *
eval_search(PyThreadState *ts, sp_pyframe_t *f, int throwflag, sp_code_t *e,
            sp_thread_t *t)
{
    uint32_t d = t->depth;
    if (SP_UNLIKELY(d - 1 >= t->room))   /* empty, full, overflowing, or drain */
        return eval_slow(ts, f, throwflag);
    return eval_find(ts, f, throwflag, t, d, e);
}
#endif

/* The hook.  `idx` is sp_registry_extra_index: the constant 0 in sp_eval_frame0 (the
 * common case: shadowprof is the first co_extra user), which saves the size check.
 * Every exit is a tail call, so that it needs no frame of its own. */
static inline __attribute__((always_inline)) PyObject *
eval_frame(PyThreadState *ts, sp_pyframe_t *f, int throwflag, Py_ssize_t idx)
{
    /* The arguments stay where the tail call passes them: without this hint GCC
     * moves one out and back (x86-64 argument registers; elsewhere a no-op). */
#if defined(__x86_64__)
    __asm__("" : "+D"(ts), "+S"(f), "+d"(throwflag));
#endif
    /* Also sends a thread with no state (sp_shadow_detached) to the slow path. */
    sp_thread_t *t = sp_tls_track;
    if (SP_UNLIKELY(SP_STACK_POINTER() < t->c_stack_low))
        return eval_slow(ts, f, throwflag);
    uintptr_t slot = sp_code_slot(SP_FRAME_CODE(f), idx);
    sp_code_t *e;
    if (SP_LIKELY(slot & SP_CODE_TAG_CALL)) {
        e = (sp_code_t *)(slot & ~SP_CODE_TAGS);
    } else {
        /* No entry yet, or generator code: its resumptions are calls, its creation
         * is not, and a throw() needs the slow path's caller. */
        if (slot == 0 || !SP_FRAME_IS_PLAIN_RESUME(f, throwflag))
            return eval_slow(ts, f, throwflag);
#if PY_VERSION_HEX >= 0x030D0000
        e = (sp_code_t *)(slot & ~SP_CODE_TAGS);
#else
        e = (sp_code_t *)slot;   /* untagged: not CALL, and INIT is 3.13's */
#endif
    }
#if SP_FRAME_HAS_HINT
    /* 3.11: the caller's entry at the index its push left in its frame (tracker.h),
     * however many ended frames lie above it: no search, no data-dependent exit.  The
     * hint's test against room replaces the room test below. */
    sp_entry_t *top = sp_tracker_caller_at(t, SP_TSTATE_CURRENT(ts));
    if (SP_LIKELY(top != NULL))
        return eval_record(ts, f, throwflag, t, top, top->pos, e);
    return eval_search(ts, f, throwflag, e, t);
#else
    uint32_t d = t->depth;
    if (SP_UNLIKELY(d - 1 >= t->room))   /* empty, full, overflowing, or drain */
        return eval_slow(ts, f, throwflag);
    return eval_find(ts, f, throwflag, t, d, e);
#endif
}

SP_HOT SP_NO_FRAME static PyObject *
sp_eval_frame0(PyThreadState *ts, sp_pyframe_t *f, int throwflag)
{
    return eval_frame(ts, f, throwflag, 0);
}

SP_HOT SP_NO_FRAME static PyObject *
sp_eval_frameN(PyThreadState *ts, sp_pyframe_t *f, int throwflag)
{
    return eval_frame(ts, f, throwflag, sp_registry_extra_index);
}

/* The variant installed (GIL); both are ours. */
static sp_eval_fn our_eval = sp_eval_frameN;

static int
is_ours(sp_eval_fn fn)
{
    return fn == sp_eval_frame0 || fn == sp_eval_frameN;
}

static int
install(void)
{
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    sp_eval_fn cur = _PyInterpreterState_GetEvalFrameFunc(interp);
    if (buried && !is_ours(cur)) {
        /* A tool installed itself over our hook and still chains to it: installing
         * again would make a loop. */
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: another frame-evaluation function (a debugger?) was "
                        "installed over shadowprof's and still calls it; remove it "
                        "before starting shadowprof again");
        return -1;
    }
    buried = 0;
    our_eval = sp_registry_extra_index == 0 ? sp_eval_frame0 : sp_eval_frameN;
    if (!is_ours(cur)) {
        prev_eval = (cur == _PyEval_EvalFrameDefault) ? NULL : cur;
        next_eval = prev_eval ? prev_eval : _PyEval_EvalFrameDefault;
        _PyInterpreterState_SetEvalFrameFunc(interp, our_eval);
    } else if (cur != our_eval) {
        _PyInterpreterState_SetEvalFrameFunc(interp, our_eval);
    }
    return 0;
}

static void
uninstall(void)
{
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    if (is_ours(_PyInterpreterState_GetEvalFrameFunc(interp))) {
        _PyInterpreterState_SetEvalFrameFunc(
            interp, prev_eval ? prev_eval : _PyEval_EvalFrameDefault);
        prev_eval = NULL;
        next_eval = _PyEval_EvalFrameDefault;
    } else {
        /* Another tool installed itself over us and chains to us; our hook stays in
         * its chain but, with recording off, passes every call straight through. */
        buried = 1;
    }
}

const sp_tracker_t sp_tracker_pep523 = {"eval", install, uninstall};
