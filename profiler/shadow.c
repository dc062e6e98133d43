/* shadow.c: per-thread shadow stack states: attach, bind, seed, fill, reap, fork (see
 * shadow.h for the contract: each state is written by its own thread with the GIL, read
 * by the handler on that thread). */
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
/* Never written: every field sends the trackers to their slow paths (shadow.h). */
sp_thread_t sp_shadow_detached = {.c_stack_low = UINTPTR_MAX, .deep_base = -1};
/* Initialised with an address: each thread's copy is made from the relocated image,
 * also for threads that existed when the module was loaded (glibc copies the image
 * of static TLS into every thread at dlopen). */
__thread sp_thread_t *sp_tls_track __attribute__((tls_model("initial-exec"))) =
    &sp_shadow_detached;
sp_thread_t *sp_threads;
uint32_t sp_shadow_capacity = 1024;

void
sp_shadow_set_capacity(uint32_t frames)
{
    sp_shadow_capacity = frames;
}
/* sp_shadow_watch's callbacks.  Written with the GIL; watch_exit read at thread exit
 * (it is set once, at the first start, and never cleared). */
static void (*watch_attach)(sp_thread_t *t);
static void (*watch_exit)(sp_thread_t *t);

void
sp_shadow_watch(void (*attach_fn)(sp_thread_t *t), void (*exit_fn)(sp_thread_t *t))
{
    watch_attach = attach_fn;
    watch_exit = exit_fn;
}

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static int exit_key_made;

/* Runs at thread exit (no GIL).  The handler can no longer find this state.  `dead`
 * is written last: once it is set, nothing here touches the state again and it may be
 * freed (GIL held, see sp_shadow_reap). */
static void
thread_exited(void *arg)
{
    sp_thread_t *t = arg;
    if (watch_exit)
        watch_exit(t);
    sp_shadow_set_tls(NULL);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&t->dead, 1, __ATOMIC_RELEASE);
}

static void
make_exit_key(void)
{
    exit_key_made = pthread_key_create(&exit_key, thread_exited) == 0;
}

/* Kernel thread id of the thread that owns `ts` (another thread's), or 0 if unknown.
 * 3.11+ keep it in the thread state.  3.9 and 3.10 do not: `tids` maps the thread
 * identifiers of the threading module's threads to their native ids (see
 * threading_tids).  GIL held. */
static uint64_t
tstate_tid(PyThreadState *ts, PyObject *tids)
{
#if PY_VERSION_HEX >= 0x030B0000
    (void)tids;
    return ts->native_thread_id;
#else
    if (!tids)
        return 0;
    PyObject *key = PyLong_FromUnsignedLong(ts->thread_id);
    PyObject *v = key ? PyDict_GetItemWithError(tids, key) : NULL;   /* borrowed */
    Py_XDECREF(key);
    uint64_t tid = v ? PyLong_AsUnsignedLongLong(v) : 0;
    if (PyErr_Occurred()) {
        PyErr_Clear();
        tid = 0;
    }
    return tid;
#endif
}

#if PY_VERSION_HEX < 0x030B0000
/* {thread ident: native id} of the threading module's live threads, or NULL (no
 * threading module imported, or an error: cleared).  Each Thread records its native id
 * when it starts (threading.get_native_id, 3.8+).  GIL held. */
static PyObject *
threading_tids(void)
{
    PyObject *name = PyUnicode_FromString("threading");
    PyObject *mod = name ? PyImport_GetModule(name) : NULL;
    Py_XDECREF(name);
    PyObject *active = mod ? PyObject_GetAttrString(mod, "_active") : NULL;
    PyObject *tids = (active && PyDict_Check(active)) ? PyDict_New() : NULL;
    if (tids) {
        Py_ssize_t pos = 0;
        PyObject *ident, *thread;
        while (PyDict_Next(active, &pos, &ident, &thread)) {
            PyObject *nid = PyObject_GetAttrString(thread, "_native_id");
            if (nid && PyLong_Check(nid) && PyDict_SetItem(tids, ident, nid) < 0) {
                Py_DECREF(nid);
                Py_CLEAR(tids);
                break;
            }
            Py_XDECREF(nid);
            PyErr_Clear();
        }
    }
    Py_XDECREF(active);
    Py_XDECREF(mod);
    PyErr_Clear();
    return tids;
}
#endif

/* A stack of cap entries after its sentinel (see sp_thread_t.stack), or NULL. */
static sp_entry_t *
stack_new(uint32_t cap)
{
    sp_entry_t *s = calloc((size_t)cap + 1, sizeof(sp_entry_t));
    if (!s)
        return NULL;
    for (uint32_t i = 0; i <= cap; i++)
        s[i].pos = i;
    s[0].code_id = SP_ID_ROOT;
    return s + 1;
}

static void
stack_free(sp_entry_t *s)
{
    if (s)
        free(s - 1);
}

static sp_thread_t *
state_new(PyThreadState *ts, uint64_t tid)
{
    sp_thread_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cap = sp_shadow_capacity;
    t->stack = stack_new(t->cap);
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
    for (sp_thread_t *t = sp_threads; t; t = t->next) {
        if (t->live_tstate != ts)
            continue;
        t->live_tstate = NULL;
        /* Cleared by its own thread (thread exit, PyGILState_Release of a C thread):
         * the next hook call on this thread attaches again and binds the new state. */
        if (t == sp_tls)
            sp_shadow_set_tls(NULL);
    }
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
    /* This thread's own state, if it had one (a C thread that makes a new thread state
     * per callback keeps its one state); else one seeded for `ts` at start(). */
    sp_thread_t *t = pthread_getspecific(exit_key);
    if (t && t->ignored)
        return NULL;
    if (!t) {
        for (t = sp_threads; t; t = t->next)
            if (!t->dead && !t->attached && !t->ignored && t->tstate == ts)
                break;
        if (t && t->tid != 0 && t->tid != tid) {
            /* Seeded for a thread that has since exited; its thread state's memory now
             * belongs to this thread.  Its timer and stack were the old thread's. */
            if (watch_exit)
                watch_exit(t);
            t->depth = 0;
            t->overflow = 0;
            t->cur_id = SP_ID_ROOT;
        }
    }
    if (!t && !(t = state_new(ts, tid)))
        return NULL;
    t->tid = tid;
    if (!t->c_stack_low)
        t->c_stack_low = c_stack_low();
    if (SP_TSTATE_CURRENT(ts) == NULL) {
        /* A thread entering Python for the first time: nothing seeded can be live. */
        t->depth = 0;
        t->overflow = 0;
        t->cur_id = SP_ID_ROOT;
    }
    t->in_session = 1;
    t->attached = 1;
    pthread_setspecific(exit_key, t);
    sp_shadow_set_tls(t);
    sp_shadow_bind(t);   /* may run Python code (GC): only once sp_tls is set */
    if (watch_attach)
        watch_attach(t);
    return t;
}

int
sp_shadow_ignore_self(void)
{
    pthread_once(&exit_key_once, make_exit_key);
    sp_thread_t *t = pthread_getspecific(exit_key);
    if (!t) {
        PyThreadState *ts = SP_TSTATE_GET();
        if (!(t = state_new(ts, (uint64_t)syscall(SYS_gettid)))) {
            PyErr_NoMemory();
            return -1;
        }
        t->attached = 1;
        pthread_setspecific(exit_key, t);
    }
    if (watch_exit)
        watch_exit(t);   /* no timer for it */
    t->ignored = 1;
    t->in_session = 0;
    t->depth = 0;
    t->overflow = 0;
    t->cur_id = SP_ID_ROOT;
    if (sp_tls == t)
        sp_shadow_set_tls(NULL);   /* the hook passes this thread's calls through */
    sp_shadow_bind(t);          /* so that start() knows its thread state */
    return 0;
}

SP_HOT uint32_t
sp_shadow_fill(sp_thread_t *t, sp_pyframe_t *top)
{
    uint32_t n = 0;
    for (sp_pyframe_t *f = top; f; f = SP_FRAME_PREVIOUS(f)) {
        if (SP_FRAME_IS_INCOMPLETE(f))
            continue;
        PyCodeObject *co = SP_FRAME_CODE(f);
        if (!sp_code_of(co))
            sp_code_register(co);
        n++;
    }
    uint32_t keep = n < t->cap ? n : t->cap;
    t->depth = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    uint32_t i = keep;
    for (sp_pyframe_t *f = top; f && i; f = SP_FRAME_PREVIOUS(f)) {
        if (SP_FRAME_IS_INCOMPLETE(f))
            continue;
        sp_code_t *e = sp_code_of(SP_FRAME_CODE(f));
        i--;
        t->stack[i].frame = f;
        t->stack[i].code_id = e ? e->id : SP_ID_ROOT;
        sp_frame_set_hint(f, i);   /* 3.11: see compat.h */
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->depth = keep;
    return keep;
}

/* sp_shadow_fill at start(), with `busy` set (the handler skips the thread meanwhile)
 * and the overflow count and running frame reset.  GIL held. */
static void
seed_from(sp_thread_t *t, sp_pyframe_t *top)
{
    t->busy = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    uint32_t keep = sp_shadow_fill(t, top);
    t->overflow = 0;
    t->cur_id = keep ? t->stack[keep - 1].code_id : SP_ID_ROOT;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = 0;
}

/* Fills t's stack from its thread's running frames.  GIL held. */
static void
seed(sp_thread_t *t)
{
    seed_from(t, SP_TSTATE_CURRENT(t->tstate));
}

static void
state_free(sp_thread_t *t)
{
    stack_free(t->stack);
    free(t);
}

/* The state bound to `ts`: one whose thread is still attached to that very thread
 * state (CPython has not cleared it since), or NULL. */
static sp_thread_t *
bound_state(PyThreadState *ts)
{
    for (sp_thread_t *t = sp_threads; t; t = t->next)
        if (!t->dead && t->attached && t->live_tstate == ts)
            return t;
    return NULL;
}

int
sp_shadow_seed_all(void)
{
    /* Free the states of threads that have exited, and the states seeded at an earlier
     * start() that no thread attached to: their thread state may be gone and its
     * memory reused.  Nothing else refers to them (no thread's TLS; the handler is not
     * armed).  The others leave the session until seeded again below. */
    sp_thread_t **link = &sp_threads;
    while (*link) {
        sp_thread_t *t = *link;
        if (__atomic_load_n(&t->dead, __ATOMIC_ACQUIRE) || !t->attached) {
            *link = t->next;
            state_free(t);
        } else {
            t->in_session = 0;
            link = &t->next;
        }
    }
    PyThreadState *self = PyThreadState_Get();
    PyInterpreterState *interp = self->interp;
    PyObject *tids = NULL;
#if PY_VERSION_HEX < 0x030B0000
    tids = threading_tids();
#endif
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts;
         ts = PyThreadState_Next(ts)) {
        sp_thread_t *t = bound_state(ts);
        if (t && t->ignored)
            continue;
        if (!t) {
            if (ts == self) {
                t = sp_shadow_attach(ts);
                if (!t && pthread_getspecific(exit_key))
                    continue;   /* the calling thread is the profiler's own */
            } else {
                t = state_new(ts, tstate_tid(ts, tids));
            }
            if (!t) {
                Py_XDECREF(tids);
                PyErr_NoMemory();
                return -1;
            }
        }
        if (t->cap != sp_shadow_capacity) {
            sp_entry_t *s = stack_new(sp_shadow_capacity);
            if (!s) {
                Py_XDECREF(tids);
                PyErr_NoMemory();
                return -1;
            }
            t->busy = 1;
            __atomic_signal_fence(__ATOMIC_SEQ_CST);
            sp_entry_t *old = t->stack;
            t->stack = s;
            t->cap = sp_shadow_capacity;
            t->depth = 0;
            stack_free(old);
        }
        t->tstate = ts;
        t->in_session = 1;
        seed(t);
    }
    Py_XDECREF(tids);
    return 0;
}

void
sp_shadow_reap(volatile int *running_handlers)
{
    /* Unlink first: a handler that starts after this cannot reach the states; one
     * that is already walking the list still can (an unlinked state keeps its next),
     * so free only if no handler is running at all once they are unlinked. */
    sp_thread_t *graveyard = NULL, **link = &sp_threads;
    while (*link) {
        sp_thread_t *t = *link;
        if (__atomic_load_n(&t->dead, __ATOMIC_ACQUIRE)) {
            __atomic_store_n(link, t->next, __ATOMIC_RELEASE);
            t->busy = 1;   /* reused below as the graveyard's link: see next_dead */
            t->c_stack_low = (uintptr_t)graveyard;
            graveyard = t;
        } else {
            link = &t->next;
        }
    }
    if (!graveyard)
        return;
    if (__atomic_load_n(running_handlers, __ATOMIC_ACQUIRE) == 0) {
        while (graveyard) {
            sp_thread_t *next = (sp_thread_t *)graveyard->c_stack_low;
            state_free(graveyard);
            graveyard = next;
        }
        return;
    }
    /* A handler is running: put them back, dead, for a later call. */
    while (graveyard) {
        sp_thread_t *next = (sp_thread_t *)graveyard->c_stack_low;
        graveyard->next = sp_threads;
        __atomic_store_n(&sp_threads, graveyard, __ATOMIC_RELEASE);
        graveyard = next;
    }
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
        b += sizeof(*t) + ((size_t)t->cap + 1) * sizeof(sp_entry_t);
    }
    if (bytes)
        *bytes = b;
    return n;
}

void
sp_shadow_after_fork_child(void)
{
    /* Only the forking thread exists in the child; no timer is inherited. */
    sp_thread_t *self = sp_tls;
    if (!self && exit_key_made)
        self = pthread_getspecific(exit_key);   /* e.g. the profiler's own thread */
    for (sp_thread_t *t = sp_threads; t; t = t->next) {
        t->has_timer = 0;
        if (t != self)
            t->dead = 1;
    }
    if (self)
        self->tid = (uint64_t)syscall(SYS_gettid);
}
