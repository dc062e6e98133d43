/* hook.c: PEP 523 evaluation hook: push/pop of the shadow stack and call counts; and
 * the choice between it and sys.monitoring (monitor.c): sp_hook_attach/detach.
 *
 * Thread contract: the hook runs with the GIL held on the thread whose frame it
 * evaluates, and writes only that thread's sp_thread_t and registry counters.  The
 * code in the "sp_hot_text" section (this hook and its slow paths) is recognised by the
 * signal handler from the interrupted program counter and reported as profiler
 * overhead rather than charged to the user's function.
 */
#include "hook.h"
#include "monitor.h"
#include "registry.h"
#include "shadow.h"

#include <string.h>

volatile uint32_t sp_hook_state;
void (*sp_hook_drain)(void);

typedef _PyFrameEvalFunction sp_eval_fn;

/* The evaluation function we chain to (NULL: CPython's default), and the one we call:
 * prev_eval or _PyEval_EvalFrameDefault, so the hook makes one indirect call.  GIL. */
static sp_eval_fn prev_eval;
static sp_eval_fn next_eval = _PyEval_EvalFrameDefault;
static int installed;
static int buried;   /* uninstalled while another evaluator sat on top of ours */

extern char __start_sp_hot_text[] __attribute__((weak, visibility("hidden")));
extern char __stop_sp_hot_text[] __attribute__((weak, visibility("hidden")));

/* async-signal-safe */
int
sp_hook_owns_pc(uintptr_t pc)
{
    return __start_sp_hot_text && pc >= (uintptr_t)__start_sp_hot_text &&
           pc < (uintptr_t)__stop_sp_hot_text;
}

static inline PyObject *
call_prev(PyThreadState *ts, sp_pyframe_t *f, int throwflag)
{
    return next_eval(ts, f, throwflag);
}

/* Entered when there is no state for this thread yet or sp_hook_state has a bit other
 * than ON.  Returns the thread's state, or NULL to pass the call through untracked. */
SP_HOT static sp_thread_t *
enter_slow(PyThreadState *ts)
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
        t = sp_shadow_attach(ts);
    return t;
}

/* Out of C stack (see shadow.c): fail the call with RecursionError rather than crash.
 * The frame was pushed by our caller, which clears and pops it as after any error. */
SP_HOT static PyObject *
c_stack_exhausted(PyThreadState *ts, sp_pyframe_t *f, int throwflag)
{
    (void)ts;
    (void)f;
    (void)throwflag;
    PyErr_SetString(PyExc_RecursionError,
                    "maximum recursion depth exceeded: the C stack is nearly full "
                    "(every Python call uses C stack while shadowprof profiles)");
    return NULL;
}

SP_HOT static PyObject *
sp_eval_frame(PyThreadState *ts, sp_pyframe_t *f, int throwflag)
{
    sp_thread_t *t = sp_tls;
    if (SP_UNLIKELY(t == NULL || sp_hook_state != SP_HOOK_ON)) {
        t = enter_slow(ts);
        if (!t)
            return call_prev(ts, f, throwflag);
    }
    if (SP_UNLIKELY((uintptr_t)__builtin_frame_address(0) < t->c_stack_low))
        return c_stack_exhausted(ts, f, throwflag);
    PyCodeObject *co = SP_FRAME_CODE(f);
    sp_code_t *e = sp_code_of(co);
    if (SP_UNLIKELY(e == NULL) && (e = sp_code_register(co)) == NULL)
        return call_prev(ts, f, throwflag);
    if (SP_UNLIKELY(e->creates_generator) && SP_FRAME_IS_CREATION(f))
        return call_prev(ts, f, throwflag);

    /* push */
    uint32_t d = t->depth;
    if (SP_LIKELY(t->overflow == 0)) {
        sp_pyframe_t *parent = SP_TSTATE_CURRENT(ts);
        if (d && SP_UNLIKELY(t->stack[d - 1].frame != parent))
            d = sp_shadow_resync(t, parent);
    }
    uint32_t caller = sp_shadow_push(t, d, f, e);

    PyObject *result = call_prev(ts, f, throwflag);

    /* pop */
    t->cur_id = caller;
    if (SP_UNLIKELY(t->overflow)) {
        t->overflow--;
    } else {
        d = t->depth;
        if (SP_LIKELY(d && t->stack[d - 1].frame == f))
            t->depth = d - 1;
        else
            sp_shadow_pop_slow(t, f);
    }
    return result;
}

int
sp_hook_install(void)
{
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    if (interp != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: sub-interpreters are not supported; profile from "
                        "the main interpreter");
        return -1;
    }
    sp_eval_fn cur = _PyInterpreterState_GetEvalFrameFunc(interp);
    if (buried && cur != sp_eval_frame) {
        /* A tool installed itself over our hook and still chains to it: installing
         * again would make a loop. */
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: another frame-evaluation function (a debugger?) was "
                        "installed over shadowprof's and still calls it; remove it "
                        "before starting shadowprof again");
        return -1;
    }
    buried = 0;
    if (cur != sp_eval_frame) {
        prev_eval = (cur == _PyEval_EvalFrameDefault) ? NULL : cur;
        next_eval = prev_eval ? prev_eval : _PyEval_EvalFrameDefault;
        _PyInterpreterState_SetEvalFrameFunc(interp, sp_eval_frame);
    }
    installed = 1;
    __atomic_store_n(&sp_hook_state, SP_HOOK_ON, __ATOMIC_RELEASE);
    return 0;
}

void
sp_hook_uninstall(void)
{
    __atomic_store_n(&sp_hook_state, 0, __ATOMIC_RELEASE);
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    if (_PyInterpreterState_GetEvalFrameFunc(interp) == sp_eval_frame) {
        _PyInterpreterState_SetEvalFrameFunc(
            interp, prev_eval ? prev_eval : _PyEval_EvalFrameDefault);
        prev_eval = NULL;
        next_eval = _PyEval_EvalFrameDefault;
    } else {
        /* Another tool installed itself over us and chains to us; our hook stays in
         * its chain but, with sp_hook_state 0, passes every call straight through. */
        buried = 1;
    }
    installed = 0;
}

int
sp_hook_installed(void)
{
    return installed;
}

/* Mechanism selection: which of the hook above and monitor.c feeds the stacks. */

static int attached_kind = SP_HOOK_DEFAULT;   /* GIL */
static int attached;                          /* GIL */

int
sp_hook_kind_parse(const char *name)
{
    if (name == NULL || strcmp(name, "auto") == 0)
        return SP_HOOK_DEFAULT;
    if (strcmp(name, "eval") == 0)
        return SP_HOOK_EVAL;
    if (strcmp(name, "monitoring") == 0) {
        if (!SP_MONITOR_AVAILABLE) {
            PyErr_Format(PyExc_ValueError,
                         "shadowprof: hook 'monitoring' needs CPython 3.12 or later "
                         "(this is %s); use hook 'eval' or 'auto'", PY_VERSION);
            return -1;
        }
        return SP_HOOK_MONITORING;
    }
    PyErr_Format(PyExc_ValueError,
                 "shadowprof: hook must be 'auto', 'eval' or 'monitoring', not '%s'", name);
    return -1;
}

const char *
sp_hook_kind_name(int kind)
{
    return kind == SP_HOOK_MONITORING ? "monitoring" : "eval";
}

int
sp_hook_attach(int kind)
{
    if (kind == SP_HOOK_AUTO)
        kind = SP_HOOK_DEFAULT;
    sp_hook_detach();
    int r = kind == SP_HOOK_MONITORING ? sp_monitor_install() : sp_hook_install();
    if (r < 0)
        return -1;
    attached_kind = kind;
    attached = 1;
    return 0;
}

void
sp_hook_detach(void)
{
    if (!attached)
        return;
    if (attached_kind == SP_HOOK_MONITORING)
        sp_monitor_uninstall();
    else
        sp_hook_uninstall();
    attached = 0;
}

int
sp_hook_kind(void)
{
    return attached_kind;
}
