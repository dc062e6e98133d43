/* sampler.c: SIGPROF timers and handler.
 *
 * The signal path (everything reachable from on_signal) is async-signal-safe: no
 * malloc, no locks, no Python API (one pthread_getspecific, see tstate_alive), no
 * stdio; it saves and restores errno.  It reads the interrupted thread's shadow stack
 * (written only by that same thread, which it has interrupted, so the stack cannot
 * change underneath it) and the interpreter's frames that are ancestors of the thread's
 * current frame (alive for as long as the thread is stopped in the handler), and writes
 * one record into the preallocated ring.  That is all it writes, apart from atomic
 * counters, the thread's own last clock reading and the SP_HOOK_DRAIN request bit.
 *
 * Timers: one POSIX timer per thread that runs Python, aimed at that thread
 * (SIGEV_THREAD_ID), so every thread is sampled and sampled by itself: in CPU mode on
 * the thread's own CPU-time clock, so each thread is sampled in proportion to its own
 * CPU time (a process-wide ITIMER_PROF under-samples busy multi-threaded programs); in
 * wall mode on CLOCK_MONOTONIC, so threads blocked in I/O, locks or sleep are sampled
 * where they wait.  Each sample weighs the time its thread's clock advanced since that
 * thread's previous sample: CPU timers fire at most at the kernel tick rate whatever
 * interval was asked for.  Threads get their timer when profiling starts or when they
 * first run Python code; it is deleted when they exit or profiling stops.  If the
 * kernel refuses per-thread timers, CPU mode falls back to one process-wide
 * ITIMER_PROF weighted by process CPU time.
 *
 * Start/stop: start installs the handler with SA_RESTART (interrupted system calls
 * restart; Python retries the others itself, PEP 475) and refuses, rather than silently
 * replace, another SIGPROF handler or a running ITIMER_PROF timer.  Stop deletes the
 * timers, then waits until no handler is running before it returns, so the caller may
 * read the ring and free state.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "sampler.h"
#include "hook.h"
#include "registry.h"
#include "native.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

sp_ring_t *sp_sampler_ring;
sp_thread_t *volatile sp_sampler_draining;

#define SP_DRAIN_AFTER 32

static struct sigaction old_action;   /* also the handler we chain to, if chaining */
static int chain_policy;              /* set before start: chain, don't refuse */
static int chaining;                  /* a handler was there at start: forward to it */
#define SP_TIMER_MAGIC 0x5350524f     /* si_value of our timers' signals */
static volatile int armed;
static volatile int running_handlers;
static uint64_t last_ns;            /* clock reading at the previous sample; atomic */
static uint64_t signals;            /* atomic */
static uint64_t handler_ns;         /* time spent in the handler; atomic */
static sp_mode_t cur_mode;
static uint64_t cur_interval_ns;
static int process_timer;           /* fallback: one ITIMER_PROF for the process */
static uint64_t timer_failures;

uint64_t
sp_clock_cpu_ns(void)   /* async-signal-safe */
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
sp_clock_wall_ns(void)  /* async-signal-safe */
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
sp_sampler_signals(void)
{
    return __atomic_load_n(&signals, __ATOMIC_RELAXED);
}

uint64_t
sp_sampler_handler_ns(void)
{
    return __atomic_load_n(&handler_ns, __ATOMIC_RELAXED);
}

static uint64_t
thread_cpu_ns(void)   /* async-signal-safe */
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uintptr_t
context_pc(void *ucv)   /* async-signal-safe */
{
    ucontext_t *uc = ucv;
    if (!uc)
        return 0;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    return 0;
#endif
}

/* Whether the thread's interpreter state may be read.  A thread's PyThreadState is
 * freed before the thread itself exits (and before our TLS destructor runs); CPython
 * clears the thread's autoTSS slot before freeing it, so compare against that.
 * PyGILState_GetThisThreadState is a pthread_getspecific: async-signal-safe in
 * practice (glibc reads a per-thread array). */
static int
tstate_alive(sp_thread_t *t)   /* async-signal-safe */
{
    return PyGILState_GetThisThreadState() == t->tstate;
}

/* Copies the thread's live shadow stack into rec, root first.  Entries above the
 * interpreter's current frame are stale (a frame seeded at start() returned without
 * passing through the hook) and are left out.  async-signal-safe; not re-entrant for
 * the same record. */
static void
copy_stack(sp_thread_t *t, sp_record_t *rec)
{
    uint32_t d = t->depth;
    if (d > t->cap)
        d = t->cap;
    if (t->overflow) {
        rec->flags |= SP_SAMPLE_DEEP;
    } else if (d) {
        sp_pyframe_t *cur = SP_TSTATE_CURRENT(t->tstate);
        if (t->stack[d - 1].frame != cur) {
            uint32_t k = d;
            while (k > 0 && t->stack[k - 1].frame != cur)
                k--;
            if (k)
                d = k;
        }
    }
    uint32_t first_leaf = 0, n = d;
    if (d > SP_RING_FRAMES) {
        rec->flags |= SP_SAMPLE_TRUNCATED;
        first_leaf = d - (SP_RING_FRAMES - SP_RING_ROOT_FRAMES);
        n = SP_RING_FRAMES;
    }
    uint32_t j = 0;
    for (uint32_t i = 0; i < d; i++) {
        if (first_leaf && i >= SP_RING_ROOT_FRAMES && i < first_leaf)
            continue;
        sp_pyframe_t *f = t->stack[i].frame;
        rec->frames[j].code_id = t->stack[i].code_id;
        rec->frames[j].instr = f ? SP_FRAME_INSTR(f) : -1;
        j++;
    }
    rec->nframes = n;
}

/* Hands a SIGPROF that is not ours to the handler that was there before us.
 * async-signal-safe as far as that handler is. */
static void
forward(int sig, siginfo_t *info, void *ucv)
{
    if (old_action.sa_flags & SA_SIGINFO) {
        if (old_action.sa_sigaction)
            old_action.sa_sigaction(sig, info, ucv);
    } else if (old_action.sa_handler != SIG_DFL && old_action.sa_handler != SIG_IGN) {
        old_action.sa_handler(sig);
    }
}

/* The SIGPROF handler.  async-signal-safe; saves errno. */
static void
on_signal(int sig, siginfo_t *info, void *ucv)
{
    int saved_errno = errno;
    /* Chaining: our per-thread timers' signals carry SP_TIMER_MAGIC; any other SIGPROF
     * (the program's own ITIMER_PROF, kill) belongs to the program's handler. */
    if (chaining && !process_timer &&
        !(info && info->si_code == SI_TIMER && info->si_value.sival_int == SP_TIMER_MAGIC)) {
        forward(sig, info, ucv);
        errno = saved_errno;
        return;
    }
    __atomic_fetch_add(&running_handlers, 1, __ATOMIC_ACQ_REL);
    uint64_t entered_ns = sp_clock_wall_ns();
    if (!armed || !sp_sampler_ring)
        goto out;
    __atomic_fetch_add(&signals, 1, __ATOMIC_RELAXED);
    sp_thread_t *t = sp_shadow_self();
    uint64_t now, prev;
    if (process_timer) {
        now = sp_clock_cpu_ns();
        prev = __atomic_exchange_n(&last_ns, now, __ATOMIC_ACQ_REL);
    } else if (t) {
        now = cur_mode == SP_MODE_CPU ? thread_cpu_ns() : sp_clock_wall_ns();
        prev = t->last_clock_ns;
        t->last_clock_ns = now;
    } else {
        now = prev = 0;   /* a timer of a thread state already gone */
    }
    uint64_t weight = now > prev ? now - prev : 0;

    sp_record_t *rec = sp_ring_reserve(sp_sampler_ring, weight);
    if (rec) {
        rec->tid = t ? t->tid : (uint64_t)syscall(SYS_gettid);
        if (sp_hook_owns_pc(context_pc(ucv)) || (t && sp_sampler_draining == t))
            rec->flags |= SP_SAMPLE_OVERHEAD;
        else if (!t || t->busy || t->depth == 0 || !tstate_alive(t))
            rec->flags |= SP_SAMPLE_NOPY;
        else
            copy_stack(t, rec);
        /* --native: the interrupted thread's C stack too (native.h). */
        if (sp_native_on && !(rec->flags & SP_SAMPLE_OVERHEAD))
            rec->nnative = sp_native_capture(ucv, rec->native, SP_RING_NATIVE);
        sp_ring_commit(sp_sampler_ring, rec);
    }
    /* Ask for a drain early (a few dozen records): it keeps the ring far from full
     * and lets the drain see threads while they still have their names. */
    if (sp_ring_used(sp_sampler_ring) >= SP_DRAIN_AFTER)
        __atomic_fetch_or(&sp_hook_state, SP_HOOK_DRAIN, __ATOMIC_RELAXED);
out:
    __atomic_fetch_add(&handler_ns, sp_clock_wall_ns() - entered_ns, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&running_handlers, 1, __ATOMIC_ACQ_REL);
    errno = saved_errno;
}

/* Gives thread t its own timer.  GIL held, or from start() for every thread. */
static int
thread_timer_start(sp_thread_t *t)
{
    if (!armed || process_timer || t->dead || t->tid == 0 ||
        __atomic_load_n(&t->has_timer, __ATOMIC_ACQUIRE))
        return 0;
    clockid_t clock = CLOCK_MONOTONIC;
    if (cur_mode == SP_MODE_CPU && pthread_getcpuclockid(t->pthread, &clock) != 0)
        return -1;
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev.sigev_value.sival_int = SP_TIMER_MAGIC;
    sev._sigev_un._tid = (pid_t)t->tid;
    if (timer_create(clock, &sev, &t->timer) < 0)
        return -1;
    struct timespec now;
    clock_gettime(clock, &now);
    t->last_clock_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    __atomic_store_n(&t->has_timer, 1, __ATOMIC_RELEASE);
    struct itimerspec its;
    its.it_interval.tv_sec = cur_interval_ns / 1000000000u;
    its.it_interval.tv_nsec = cur_interval_ns % 1000000000u;
    its.it_value = its.it_interval;
    if (timer_settime(t->timer, 0, &its, NULL) < 0) {
        if (__atomic_exchange_n(&t->has_timer, 0, __ATOMIC_ACQ_REL))
            timer_delete(t->timer);
        return -1;
    }
    return 0;
}

static void
thread_timer_stop(sp_thread_t *t)
{
    if (__atomic_exchange_n(&t->has_timer, 0, __ATOMIC_ACQ_REL))
        timer_delete(t->timer);
}

static void
on_attach(sp_thread_t *t)
{
    if (thread_timer_start(t) < 0)
        timer_failures++;
}

int
sp_sampler_start(uint64_t interval_ns, sp_mode_t mode)
{
    struct sigaction sa, prev;
    if (sigaction(SIGPROF, NULL, &prev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int has_handler = (prev.sa_flags & SA_SIGINFO) ? prev.sa_sigaction != NULL
                                                   : (prev.sa_handler != SIG_DFL &&
                                                      prev.sa_handler != SIG_IGN);
    if (has_handler && !chain_policy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: SIGPROF already has a handler (another profiler?); "
                        "stop it before starting shadowprof, or chain to it "
                        "(sigprof='chain', --sigprof chain)");
        return -1;
    }
    struct itimerval it;
    int has_itimer = getitimer(ITIMER_PROF, &it) == 0 &&
                     (it.it_value.tv_sec || it.it_value.tv_usec);
    if (has_itimer && !chain_policy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: an ITIMER_PROF timer is already running (another "
                        "profiler?); stop it before starting shadowprof, or chain to "
                        "it (sigprof='chain', --sigprof chain)");
        return -1;
    }
    chaining = has_handler;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, &old_action) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    cur_mode = mode;
    cur_interval_ns = interval_ns;
    timer_failures = 0;
    process_timer = 0;
    __atomic_store_n(&signals, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&handler_ns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&last_ns, sp_clock_cpu_ns(), __ATOMIC_RELEASE);
    armed = 1;
    sp_shadow_on_attach = on_attach;
    sp_shadow_on_exit = thread_timer_stop;
    int started = 0, failed = 0;
    for (sp_thread_t *t = sp_threads; t; t = t->next) {
        if (t->dead)
            continue;
        if (thread_timer_start(t) == 0)
            started++;
        else
            failed++;
    }
    timer_failures = failed;
    if (started == 0 && failed) {
        if (mode != SP_MODE_CPU)
            goto fail;
        if (has_itimer || chaining) {
            /* The fallback would take over the program's ITIMER_PROF or its signals. */
            PyErr_SetString(PyExc_RuntimeError,
                            "shadowprof: per-thread timers are not available and the "
                            "program uses SIGPROF itself: cannot chain; stop its timer "
                            "first");
            sp_sampler_stop();
            return -1;
        }
        /* No per-thread timers: one process-wide CPU timer instead. */
        process_timer = 1;
        it.it_interval.tv_sec = interval_ns / 1000000000u;
        it.it_interval.tv_usec = (interval_ns % 1000000000u) / 1000u;
        if (!it.it_interval.tv_sec && !it.it_interval.tv_usec)
            it.it_interval.tv_usec = 1;
        it.it_value = it.it_interval;
        if (setitimer(ITIMER_PROF, &it, NULL) < 0)
            goto fail;
    }
    return 0;
fail:
    PyErr_SetFromErrno(PyExc_OSError);
    sp_sampler_stop();
    return -1;
}

void
sp_sampler_after_fork_child(int keep)
{
    if (!armed)
        return;
    if (!keep) {
        armed = 0;
        return;
    }
    __atomic_store_n(&last_ns, sp_clock_cpu_ns(), __ATOMIC_RELEASE);
    if (process_timer) {
        struct itimerval it;
        it.it_interval.tv_sec = cur_interval_ns / 1000000000u;
        it.it_interval.tv_usec = (cur_interval_ns % 1000000000u) / 1000u;
        if (!it.it_interval.tv_sec && !it.it_interval.tv_usec)
            it.it_interval.tv_usec = 1;
        it.it_value = it.it_interval;
        setitimer(ITIMER_PROF, &it, NULL);
    } else if (sp_tls && thread_timer_start(sp_tls) < 0) {
        timer_failures++;
    }
}

uint64_t
sp_sampler_timer_failures(void)
{
    return timer_failures;
}

int
sp_sampler_process_timer(void)
{
    return process_timer;
}

void
sp_sampler_set_chain(int chain)
{
    chain_policy = chain != 0;
}

void
sp_sampler_stop(void)
{
    if (process_timer) {
        struct itimerval zero;
        memset(&zero, 0, sizeof(zero));
        setitimer(ITIMER_PROF, &zero, NULL);
    }
    sp_shadow_on_attach = NULL;
    for (sp_thread_t *t = sp_threads; t; t = t->next)
        thread_timer_stop(t);
    armed = 0;
    /* A handler may still be running on another thread: wait for it. */
    while (__atomic_load_n(&running_handlers, __ATOMIC_ACQUIRE))
        sched_yield();
    /* Consume a SIGPROF that was generated before the timers stopped and is still
     * pending here, so restoring the default action cannot kill the process. */
    sigset_t set, oldset;
    sigemptyset(&set);
    sigaddset(&set, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &set, &oldset);
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPROF)) {
        struct timespec zero_ts = {0, 0};
        while (sigtimedwait(&set, NULL, &zero_ts) == SIGPROF)
            ;
    }
    sigaction(SIGPROF, &old_action, NULL);
    pthread_sigmask(SIG_SETMASK, &oldset, NULL);
}

/* Changes the interval of the running timers (the overhead budget raises it).  Threads
 * that get their timer later use the new interval too.  GIL held.  A thread exiting
 * concurrently may delete its timer first; its timer_settime then fails harmlessly.
 * Returns -1 if not armed. */
int
sp_sampler_set_interval(uint64_t interval_ns)
{
    if (!armed)
        return -1;
    cur_interval_ns = interval_ns;
    if (process_timer) {
        struct itimerval it;
        it.it_interval.tv_sec = interval_ns / 1000000000u;
        it.it_interval.tv_usec = (interval_ns % 1000000000u) / 1000u;
        if (!it.it_interval.tv_sec && !it.it_interval.tv_usec)
            it.it_interval.tv_usec = 1;
        it.it_value = it.it_interval;
        return setitimer(ITIMER_PROF, &it, NULL);
    }
    struct itimerspec its;
    its.it_interval.tv_sec = interval_ns / 1000000000u;
    its.it_interval.tv_nsec = interval_ns % 1000000000u;
    its.it_value = its.it_interval;
    for (sp_thread_t *t = sp_threads; t; t = t->next)
        if (__atomic_load_n(&t->has_timer, __ATOMIC_ACQUIRE))
            timer_settime(t->timer, 0, &its, NULL);
    return 0;
}
