/* drainer.c: the drain thread (see drainer.h for what it is and its lifecycle).
 *
 * Shared state and who owns it:
 *  - wake: the semaphore the thread sleeps on.  Posted by the handler (poke), by stop
 *    and by nobody else.  Initialised once per process, and again in a fork child.
 *  - poke_mark: records in the ring at which the handler posts; 0 while no thread runs.
 *    Written with the GIL held (start/stop) or in the fork child; read by the handler.
 *  - poked: set by the handler when it posts, cleared by the thread once it drained, so
 *    a full ring posts once, not once per sample.  Atomic.
 *  - generation: bumped by every start and stop; a thread whose generation is no
 *    longer current exits.  Atomic.
 *  - session: the session object (session_state.h) handed to sp_drainer_start; the
 *    thread reads its ring (fixed while the thread runs) and adds to its
 *    drainer_wakes and drainer_spills (atomic).  Written with the GIL while no thread
 *    runs.
 *  - alive, stopping, thread, restart_in_child: GIL (or the fork child handler).
 *
 * The thread never takes the GIL: it reads the ring's indexes (atomics) and moves
 * records out of the ring with sp_spill_from_ring, under the spill's lock (spill.h); it
 * touches no Python object, no registry entry and not the aggregation table.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "drainer.h"
#include "clock.h"
#include "compat.h"
#include "tracker.h"
#include "spill.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>

static sem_t wake;
static int wake_ready;
static size_t poke_mark;        /* see above; handler reads */
static int poked;               /* atomic */
static uint64_t generation;     /* atomic */
static sp_session_state_t *session;   /* see above; GIL */
static pthread_t thread;
static int alive;               /* a thread of ours runs; GIL */
static int stopping;            /* a stop is joining the thread; GIL */
static int restart_in_child;    /* fork child: start a thread once Python runs */
static int registered;          /* atexit and at-fork callbacks are in place */

static void *
drainer_main(void *arg)
{
    uint64_t gen = (uint64_t)(uintptr_t)arg;
    sp_session_state_t *s = session;
    sp_ring_t *r = s->ring;
    uint64_t seen_reserved = 0;   /* write index at the previous wake ... */
    int seen = 0;                 /* ... if records were pending then */
    for (;;) {
        /* sem_timedwait measures its deadline on CLOCK_REALTIME. */
        struct timespec deadline =
            sp_ns_timespec(sp_clock_realtime_ns() + SP_DRAINER_PERIOD_MS * 1000000ull);
        while (sem_timedwait(&wake, &deadline) < 0 && errno == EINTR)
            ;
        if (__atomic_load_n(&generation, __ATOMIC_ACQUIRE) != gen)
            break;
        __atomic_fetch_add(&s->drainer_wakes, 1, __ATOMIC_RELAXED);
        uint64_t consumed = sp_ring_consumed(r);
        uint64_t reserved = sp_ring_reserved(r);
        if (consumed == reserved) {
            seen = 0;
            continue;
        }
        if (__atomic_load_n(&poked, __ATOMIC_ACQUIRE) || (seen && consumed < seen_reserved)) {
            /* Past the fill mark, or records pending a period ago still are: no
             * Python call drained them, perhaps because a C call holds the GIL.  Move
             * them out of the ring without the GIL (spill.h); the next Python call,
             * or stop or snapshot, aggregates them. */
            if (sp_spill_from_ring(r))
                __atomic_fetch_add(&s->drainer_spills, 1, __ATOMIC_RELAXED);
            __atomic_store_n(&poked, 0, __ATOMIC_RELEASE);
            sp_tracker_request_drain();
            seen = 0;
        } else {
            /* Let the next Python call drain (cheap); check again next period. */
            sp_tracker_request_drain();
            seen_reserved = reserved;
            seen = 1;
        }
    }
    return NULL;
}

/* async-signal-safe; re-entrant */
void
sp_drainer_poke(size_t used)
{
    size_t mark = __atomic_load_n(&poke_mark, __ATOMIC_RELAXED);
    if (mark && used >= mark && !__atomic_exchange_n(&poked, 1, __ATOMIC_ACQ_REL))
        sem_post(&wake);   /* async-signal-safe (POSIX) */
}

static PyObject *
at_exit(PyObject *mod, PyObject *unused)
{
    sp_drainer_stop();
    Py_RETURN_NONE;
}

static PyObject *
after_fork_in_child(PyObject *mod, PyObject *unused)
{
    if (restart_in_child) {
        restart_in_child = 0;
        if (sp_drainer_start(session) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef at_exit_def = {"_shadowprof_drainer_at_exit", at_exit, METH_NOARGS,
                                  NULL};
static PyMethodDef after_fork_def = {"_shadowprof_drainer_after_fork", after_fork_in_child,
                                     METH_NOARGS, NULL};

/* atexit.register(at_exit) and os.register_at_fork(after_in_child=...).  GIL. */
static int
register_callbacks(void)
{
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *f = atexit ? PyCFunction_New(&at_exit_def, NULL) : NULL;
    PyObject *r = f ? PyObject_CallMethod(atexit, "register", "O", f) : NULL;
    Py_XDECREF(f);
    Py_XDECREF(atexit);
    if (!r)
        return -1;
    Py_DECREF(r);
    PyObject *os = PyImport_ImportModule("os");
    if (!os)
        return -1;
    if (PyObject_HasAttrString(os, "register_at_fork")) {
        PyObject *g = PyCFunction_New(&after_fork_def, NULL);
        PyObject *meth = PyObject_GetAttrString(os, "register_at_fork");
        PyObject *args = PyTuple_New(0);
        PyObject *kw = g ? Py_BuildValue("{sO}", "after_in_child", g) : NULL;
        r = (meth && args && kw) ? PyObject_Call(meth, args, kw) : NULL;
        Py_XDECREF(g);
        Py_XDECREF(meth);
        Py_XDECREF(args);
        Py_XDECREF(kw);
        if (!r) {
            Py_DECREF(os);
            return -1;
        }
        Py_DECREF(r);
    }
    Py_DECREF(os);
    return 0;
}

int
sp_drainer_start(sp_session_state_t *the_session)
{
    if (alive)
        return 0;
    if (!registered) {
        if (register_callbacks() < 0)
            return -1;
        registered = 1;
    }
    if (!wake_ready) {
        if (sem_init(&wake, 0, 0) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        wake_ready = 1;
    }
    /* Empty: stop drained it. */
    if (sp_spill_init(sp_table_max(the_session->table)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    session = the_session;
    __atomic_store_n(&poked, 0, __ATOMIC_RELAXED);
    uint64_t gen = __atomic_add_fetch(&generation, 1, __ATOMIC_ACQ_REL);
    /* The thread starts with every signal blocked: the program's signals go to its own
     * threads, and a process-wide SIGPROF never lands here. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&thread, NULL, drainer_main, (void *)(uintptr_t)gen);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_setname_np(thread, "sp-drain");   /* 15 characters at most */
    /* A quarter of the ring, but above the hook's own request (the handler asks the
     * hook at a few dozen records) while the ring is small enough for that to matter. */
    size_t cap = sp_ring_capacity(the_session->ring), mark = cap / 4;
    size_t floor = SP_DRAINER_MIN_MARK < cap * 3 / 4 ? SP_DRAINER_MIN_MARK : cap * 3 / 4;
    if (mark < floor)
        mark = floor;
    __atomic_store_n(&poke_mark, mark ? mark : 1, __ATOMIC_RELEASE);
    alive = 1;
    return 0;
}

void
sp_drainer_stop(void)
{
    restart_in_child = 0;
    if (!alive) {
        /* Another thread may be joining it with the GIL released: do not return
         * before it is gone (the caller may go on to free the ring). */
        while (stopping) {
            Py_BEGIN_ALLOW_THREADS
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
            Py_END_ALLOW_THREADS
        }
        return;
    }
    alive = 0;
    stopping = 1;
    __atomic_store_n(&poke_mark, 0, __ATOMIC_RELEASE);
    __atomic_add_fetch(&generation, 1, __ATOMIC_ACQ_REL);
    pthread_t t = thread;
    sem_post(&wake);
    /* The thread never waits for the GIL; other threads may run meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    pthread_join(t, NULL);
    Py_END_ALLOW_THREADS
    stopping = 0;
}

/* async-signal-safe (memory stores, sem_init) */
void
sp_drainer_after_fork_child(int keep)
{
    int was = alive;
    alive = 0;
    stopping = 0;
    __atomic_store_n(&poke_mark, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&poked, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&generation, 1, __ATOMIC_RELAXED);
    if (wake_ready)
        sem_init(&wake, 0, 0);   /* the parent's waiter count means nothing here */
    restart_in_child = was && keep;
}

uint64_t
sp_drainer_wakes(void)
{
    return session ? __atomic_load_n(&session->drainer_wakes, __ATOMIC_RELAXED) : 0;
}

uint64_t
sp_drainer_spills(void)
{
    return session ? __atomic_load_n(&session->drainer_spills, __ATOMIC_RELAXED) : 0;
}
