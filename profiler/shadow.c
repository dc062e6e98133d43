/* shadow.c: per-thread shadow stack states: attach, seed, resync (see shadow.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "shadow.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

__thread sp_thread_t *sp_tls __attribute__((tls_model("initial-exec")));
sp_thread_t *sp_threads;
uint32_t sp_shadow_capacity = 1024;
void (*sp_shadow_on_attach)(sp_thread_t *t);
void (*sp_shadow_on_exit)(sp_thread_t *t);

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

/* Runs at thread exit (no GIL).  The handler can no longer find this state. */
static void
thread_exited(void *arg)
{
    sp_thread_t *t = arg;
    if (sp_shadow_on_exit)
        sp_shadow_on_exit(t);
    sp_tls = NULL;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->attached = 0;
    t->dead = 1;
}

static void
make_exit_key(void)
{
    pthread_key_create(&exit_key, thread_exited);
}

static uint64_t
tstate_tid(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030B0000
    return ts->native_thread_id;
#else
    (void)ts;
    return 0;
#endif
}

static sp_thread_t *
state_new(PyThreadState *ts, uint64_t tid)
{
    sp_thread_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cap = sp_shadow_capacity;
    t->stack = calloc(t->cap, sizeof(sp_entry_t));
    if (!t->stack) {
        free(t);
        return NULL;
    }
    t->tstate = ts;
    t->tid = tid;
    t->next = sp_threads;
    __atomic_store_n(&sp_threads, t, __ATOMIC_RELEASE);
    return t;
}

/* With a frame-evaluation hook every Python call recurses in C (CPython 3.11+ would
 * otherwise inline it), about half a kilobyte per call.  A program that recurses very
 * deep with a raised recursion limit would overflow the C stack and crash; the hook
 * raises RecursionError instead once less than this margin remains. */
#define SP_C_STACK_MARGIN (256 * 1024)

static uintptr_t
c_stack_low(void)
{
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return 0;
    int ok = pthread_attr_getstack(&attr, &addr, &size) == 0;
    pthread_attr_destroy(&attr);
    if (!ok)
        return 0;
    size_t margin = SP_C_STACK_MARGIN < size / 4 ? SP_C_STACK_MARGIN : size / 4;
    return (uintptr_t)addr + margin;
}

/* The capsule's destructor: CPython is clearing the thread state `ts` (GIL held, on
 * any thread).  No state may use the pointer any more. */
#define SP_TSTATE_CAPSULE "shadowprof.tstate"

static void
tstate_cleared(PyObject *capsule)
{
    PyThreadState *ts = PyCapsule_GetPointer(capsule, SP_TSTATE_CAPSULE);
    for (sp_thread_t *t = sp_threads; t; t = t->next)
        if (t->live_tstate == ts)
            t->live_tstate = NULL;
}

PyThreadState *
sp_shadow_bind(sp_thread_t *t)
{
    PyThreadState *ts = SP_TSTATE_GET();
    if (!ts)
        return t->live_tstate = NULL;
    t->tstate = ts;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *dict = PyThreadState_GetDict();   /* borrowed */
    int ok = dict && PyDict_GetItemString(dict, SP_TSTATE_CAPSULE) != NULL;
    if (dict && !ok) {
        PyObject *cap = PyCapsule_New(ts, SP_TSTATE_CAPSULE, tstate_cleared);
        ok = cap && PyDict_SetItemString(dict, SP_TSTATE_CAPSULE, cap) == 0;
        Py_XDECREF(cap);
    }
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
    return t->live_tstate = ok ? ts : NULL;
}

sp_thread_t *
sp_shadow_attach(PyThreadState *ts)
{
    pthread_once(&exit_key_once, make_exit_key);
    uint64_t tid = (uint64_t)syscall(SYS_gettid);
    sp_thread_t *t;
    for (t = sp_threads; t; t = t->next)
        if (!t->dead && !t->attached && t->tstate == ts)
            break;
    if (!t && !(t = state_new(ts, tid)))
        return NULL;
    t->tid = tid;
    t->pthread = pthread_self();
    t->c_stack_low = c_stack_low();
    if (SP_TSTATE_CURRENT(ts) == NULL) {
        /* A thread entering Python for the first time: nothing seeded can be live. */
        t->depth = 0;
        t->overflow = 0;
        t->cur_id = SP_ID_ROOT;
    }
    t->attached = 1;
    pthread_setspecific(exit_key, t);
    sp_tls = t;
    sp_shadow_bind(t);   /* may run Python code (GC): only once sp_tls is set */
    if (sp_shadow_on_attach)
        sp_shadow_on_attach(t);
    return t;
}

/* Fills t's stack from the interpreter's frames of its thread, keeping the innermost
 * frames if there are more than the capacity.  GIL held. */
static void
seed(sp_thread_t *t)
{
    t->busy = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    uint32_t n = 0;
    for (sp_pyframe_t *f = SP_TSTATE_CURRENT(t->tstate); f; f = SP_FRAME_PREVIOUS(f)) {
        if (SP_FRAME_IS_INCOMPLETE(f))
            continue;
        PyCodeObject *co = SP_FRAME_CODE(f);
        if (!sp_code_of(co))
            sp_code_register(co);
        n++;
    }
    uint32_t keep = n < t->cap ? n : t->cap;
    uint32_t i = keep;
    for (sp_pyframe_t *f = SP_TSTATE_CURRENT(t->tstate); f && i; f = SP_FRAME_PREVIOUS(f)) {
        if (SP_FRAME_IS_INCOMPLETE(f))
            continue;
        sp_code_t *e = sp_code_of(SP_FRAME_CODE(f));
        i--;
        t->stack[i].frame = f;
        t->stack[i].code_id = e ? e->id : SP_ID_ROOT;
    }
    t->depth = keep;
    t->overflow = 0;
    t->cur_id = keep ? t->stack[keep - 1].code_id : SP_ID_ROOT;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = 0;
}

int
sp_shadow_seed_all(void)
{
    /* Free states of threads that have exited.  The handler is not armed yet. */
    sp_thread_t **link = &sp_threads;
    while (*link) {
        sp_thread_t *t = *link;
        if (t->dead) {
            *link = t->next;
            free(t->stack);
            free(t);
        } else {
            link = &t->next;
        }
    }
    PyThreadState *self = PyThreadState_Get();
    PyInterpreterState *interp = self->interp;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts;
         ts = PyThreadState_Next(ts)) {
        sp_thread_t *t;
        for (t = sp_threads; t; t = t->next)
            if (!t->dead && t->tstate == ts)
                break;
        if (!t) {
            if (ts == self) {
                t = sp_shadow_attach(ts);
            } else {
                t = state_new(ts, tstate_tid(ts));
                if (t)
                    t->pthread = (pthread_t)ts->thread_id;
            }
            if (!t) {
                PyErr_NoMemory();
                return -1;
            }
        }
        if (t->cap != sp_shadow_capacity) {
            sp_entry_t *s = calloc(sp_shadow_capacity, sizeof(sp_entry_t));
            if (!s) {
                PyErr_NoMemory();
                return -1;
            }
            t->busy = 1;
            __atomic_signal_fence(__ATOMIC_SEQ_CST);
            sp_entry_t *old = t->stack;
            t->stack = s;
            t->cap = sp_shadow_capacity;
            t->depth = 0;
            free(old);
        }
        seed(t);
    }
    return 0;
}

SP_HOT uint32_t
sp_shadow_resync(sp_thread_t *t, sp_pyframe_t *parent)
{
    uint32_t d = t->depth;
    if (parent == NULL) {
        d = 0;
    } else {
        uint32_t k = d;
        while (k > 0 && t->stack[k - 1].frame != parent)
            k--;
        if (k == 0)
            return d;   /* parent untracked: keep what we have */
        d = k;
    }
    t->depth = d;
    t->cur_id = d ? t->stack[d - 1].code_id : SP_ID_ROOT;
    return d;
}

SP_HOT void
sp_shadow_pop_slow(sp_thread_t *t, sp_pyframe_t *f)
{
    uint32_t k = t->depth;
    while (k > 0 && t->stack[k - 1].frame != f)
        k--;
    if (k > 0)
        t->depth = k - 1;
}

/* async-signal-safe */
sp_thread_t *
sp_shadow_self(void)
{
    sp_thread_t *t = sp_tls;
    if (t)
        return t;
    uint64_t tid = (uint64_t)syscall(SYS_gettid);
    for (t = __atomic_load_n(&sp_threads, __ATOMIC_ACQUIRE); t; t = t->next)
        if (t->tid == tid && !t->dead)
            return t;
    return NULL;
}

size_t
sp_shadow_count(size_t *bytes)
{
    size_t n = 0, b = 0;
    for (sp_thread_t *t = sp_threads; t; t = t->next) {
        n++;
        b += sizeof(*t) + t->cap * sizeof(sp_entry_t);
    }
    if (bytes)
        *bytes = b;
    return n;
}

void
sp_shadow_after_fork_child(void)
{
    /* Only the forking thread exists in the child; no timer is inherited. */
    for (sp_thread_t *t = sp_threads; t; t = t->next) {
        t->has_timer = 0;
        if (t != sp_tls) {
            t->dead = 1;
            t->attached = 0;
        }
    }
    if (sp_tls) {
        sp_tls->tid = (uint64_t)syscall(SYS_gettid);
        sp_tls->pthread = pthread_self();
    }
}
