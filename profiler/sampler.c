/* sampler.c: SIGPROF timers and handler.
 *
 * The signal path (everything reachable from on_signal) is async-signal-safe: no
 * malloc, no locks, no Python API (one pthread_getspecific, see tstate_alive), no
 * stdio; it saves and restores errno.  It reads the interrupted thread's shadow stack
 * (written only by that same thread, which it has interrupted, so the stack cannot
 * change underneath it) and the interpreter's frames that are ancestors of the thread's
 * current frame (alive for as long as the thread is stopped in the handler), and writes
 * one record into the preallocated ring.  That is all it writes, apart from atomic
 * counters, the thread's own last clock reading and the drain request (the
 * SP_TRACKER_DRAIN bit, tracker.h, and the interrupted thread's `room`, shadow.h).
 *
 * Session: sp_sampler_start is handed the session object (session_state.h), which
 * owns the ring the handler writes to, the `draining` thread state it compares with
 * and the counters it adds to; this file keeps it in a private static pointer and
 * assigns no other file's state.
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
 * Timers are aimed by kernel thread id (SIGEV_THREAD_ID, and the thread's CPU clock
 * made from its id): the kernel refuses an id that is not a live thread of this
 * process, so a thread that exits at any moment costs a failed timer_create, never a
 * read of freed memory (a pthread_t of an exited thread is dangling).
 *
 * Start/stop: start installs the handler with SA_RESTART (interrupted system calls
 * restart; Python retries the others itself, PEP 475) and refuses, rather than silently
 * replace, another SIGPROF handler or a running ITIMER_PROF timer.  Stop deletes the
 * timers, then waits until no handler is running before it returns, so the caller may
 * read the ring and free state.
 *
 * The handler stays installed after stop, for the life of the process: a timer signal
 * can still be queued to some thread when its timer is deleted, and the default action
 * of SIGPROF kills the process.  Our own signals (si_value SP_TIMER_MAGIC) are then
 * dropped; any other SIGPROF goes to the disposition the program had before the first
 * start, the default action included (re-raised with SIG_DFL), so the program sees no
 * difference.  A later start() recognises the handler as its own.
 *
 * Fork: a child inherits no timer and only the forking thread.  If it keeps profiling,
 * its timer is armed when it first runs Python code (sp_sampler_fork_rearm), not in the
 * atfork handler: a child that only execs (subprocess) never gets one, so no signal can
 * be pending across its execve.  The process-wide fallback timer is a POSIX timer too
 * (deleted by execve), setitimer only where POSIX timers are missing altogether.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "sampler.h"
#include "clock.h"
#include "tracker.h"
#include "registry.h"
#include "native.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

/* The session object (session_state.h): its ring, `draining` and counters.  Stored
 * (atomically) by sp_sampler_start before the handler is first installed, never
 * cleared, and the object is never freed: the handler loads it with an atomic load
 * (async-signal-safe) and may use it at every instruction, after stop too. */
static sp_session_state_t *session;

#define SP_DRAIN_AFTER 32

/* The program's SIGPROF disposition before our first start (never our own handler):
 * where signals that are not ours go.  Written with the GIL, before the handler is
 * installed or while it is; read by the handler. */
static struct sigaction old_action;
static int chain_policy;              /* set before start: chain, don't refuse */
static int chaining;                  /* a handler was there at start: forward to it */
#define SP_TIMER_MAGIC 0x5350524f     /* si_value of our timers' signals */
/* Timers run: the handler samples.  Cleared by stop, which then waits until
 * running_handlers is 0.  Both sides use sequentially consistent operations (the
 * handler's increment of running_handlers, then its load of armed; stop's store, then
 * its load): either stop sees the handler and waits for it, or the handler sees armed
 * clear and leaves the session's ring alone, which start may then replace. */
static volatile int armed;
static volatile int running_handlers;
static int process_timer_kind;      /* PROCESS_TIMER_POSIX or _ITIMER when process_timer */
#define PROCESS_TIMER_POSIX 1
#define PROCESS_TIMER_ITIMER 2
static timer_t process_posix_timer;
static volatile int fork_rearm;     /* a forked child arms its timer on first Python code */
static int fork_process_timer;      /* ... and the parent used the process-wide timer */
static uint64_t last_ns;            /* clock reading at the previous sample; atomic */
static sp_mode_t cur_mode;
static uint64_t cur_interval_ns;
static int process_timer;           /* fallback: one ITIMER_PROF for the process */
/* Called by the handler after each sample with the ring's fill: given to
 * sp_sampler_start (the session passes the drain thread's poke).  Written with the GIL
 * while no timer is armed; read by the handler. */
static void (*wake_reader)(size_t used);
static uint64_t timer_failures;

uint64_t
sp_sampler_signals(void)
{
    sp_session_state_t *s = __atomic_load_n(&session, __ATOMIC_ACQUIRE);
    return s ? __atomic_load_n(&s->signals, __ATOMIC_RELAXED) : 0;
}

uint64_t
sp_sampler_handler_ns(void)
{
    sp_session_state_t *s = __atomic_load_n(&session, __ATOMIC_ACQUIRE);
    return s ? __atomic_load_n(&s->handler_ns, __ATOMIC_RELAXED) : 0;
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

/* Copies the thread's live shadow stack into rec, root first: the entries up to the
 * current frame's own (sp_shadow_live_depth).  Entries above it are frames that ended
 * (pops are lazy, shadow.h) or seeded frames that returned without the hook, and are
 * left out.  The current frame pointer is read only when it is on the stack with its
 * code (the interpreter publishes it before the frame is initialised, and on 3.11 and
 * 3.12 it is uninitialised C stack for a few instructions of each call).  If it is not
 * on the stack (that window, a frame starting under sys.monitoring before its
 * PY_START, an untracked frame, a switch of greenlets not yet seen by the hook), the
 * sample has no Python frame: the entries on top may have ended.
 * async-signal-safe; not re-entrant for the same record. */
static void
copy_stack(sp_thread_t *t, sp_record_t *rec)
{
    int deep;
    uint32_t d = sp_shadow_live_depth(t, t->tstate, &deep);
    if (deep)
        rec->flags |= SP_SAMPLE_DEEP;
    if (d == 0) {
        rec->flags |= SP_SAMPLE_NOPY;
        return;
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

/* Hands a SIGPROF that is not ours to the disposition the program had before us: its
 * handler, nothing for SIG_IGN, and for SIG_DFL the default action (the signal is
 * re-raised with the default disposition: it is delivered, and kills the process, as
 * soon as this handler returns).  async-signal-safe as far as that handler is. */
static void
forward(int sig, siginfo_t *info, void *ucv)
{
    if (old_action.sa_flags & SA_SIGINFO) {
        if (old_action.sa_sigaction)
            old_action.sa_sigaction(sig, info, ucv);
    } else if (old_action.sa_handler == SIG_DFL) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        raise(sig);
    } else if (old_action.sa_handler != SIG_IGN) {
        old_action.sa_handler(sig);
    }
}

/* Whether a SIGPROF was sent by one of our timers.  async-signal-safe. */
static int
is_ours(const siginfo_t *info)
{
    if (!info)
        return 0;
    if (info->si_code == SI_TIMER)
        return info->si_value.sival_int == SP_TIMER_MAGIC;
    /* setitimer's signals carry nothing of ours: while our ITIMER_PROF fallback runs
     * (only when the program had no SIGPROF use of its own), they are ours. */
    return info->si_code == SI_KERNEL && process_timer &&
           process_timer_kind == PROCESS_TIMER_ITIMER;
}

/* The SIGPROF handler.  async-signal-safe; saves errno. */
static void
on_signal(int sig, siginfo_t *info, void *ucv)
{
    int saved_errno = errno;
    /* Our timers' signals carry SP_TIMER_MAGIC; any other SIGPROF (the program's own
     * ITIMER_PROF, kill) belongs to the program, and so does every SIGPROF after stop
     * but our timers' last ones, which are dropped. */
    if (!is_ours(info)) {
        forward(sig, info, ucv);
        errno = saved_errno;
        return;
    }
    __atomic_fetch_add(&running_handlers, 1, __ATOMIC_SEQ_CST);
    /* Valid at every instruction: see `session` above. */
    sp_session_state_t *s = __atomic_load_n(&session, __ATOMIC_ACQUIRE);
    uint64_t entered_ns = sp_clock_monotonic_ns();
    /* The ring only after `armed`: start replaces it while no timer is armed. */
    sp_ring_t *ring = NULL;
    if (!__atomic_load_n(&armed, __ATOMIC_SEQ_CST) || !s || !(ring = s->ring))
        goto out;
    __atomic_fetch_add(&s->signals, 1, __ATOMIC_RELAXED);
    sp_thread_t *t = sp_shadow_self();
    uint64_t now, prev;
    if (process_timer) {
        now = sp_clock_process_cpu_ns();
        prev = __atomic_exchange_n(&last_ns, now, __ATOMIC_ACQ_REL);
    } else if (t) {
        now = cur_mode == SP_MODE_CPU ? sp_clock_thread_cpu_ns() : sp_clock_monotonic_ns();
        prev = t->last_clock_ns;
        t->last_clock_ns = now;
    } else {
        now = prev = 0;   /* a timer of a thread state already gone */
    }
    uint64_t weight = now > prev ? now - prev : 0;

    sp_record_t *rec = sp_ring_reserve(ring, weight);
    if (rec) {
        rec->tid = t ? t->tid : (uint64_t)syscall(SYS_gettid);
        if (sp_tracker_owns_pc(context_pc(ucv)) || (t && s->draining == t))
            rec->flags |= SP_SAMPLE_OVERHEAD;
        else if (!t || t->busy || t->depth == 0 || !tstate_alive(t))
            rec->flags |= SP_SAMPLE_NOPY;
        else
            copy_stack(t, rec);
        /* --native: the interrupted thread's C stack too (native.h). */
        if (sp_native_on && !(rec->flags & SP_SAMPLE_OVERHEAD))
            rec->nnative = sp_native_capture(ucv, rec->native, SP_RING_NATIVE);
        sp_ring_commit(ring, rec);
    }
    /* Ask for a drain early (a few dozen records): it keeps the ring far from full
     * and lets the drain see threads while they still have their names. */
    if (sp_ring_used(ring) >= SP_DRAIN_AFTER) {
        sp_tracker_request_drain();
        if (t)
            t->room = 0;   /* this thread's next call takes the tracker's slow path */
    } else if (t && (__atomic_load_n(&sp_tracker_state, __ATOMIC_RELAXED) & SP_TRACKER_DRAIN)) {
        /* The drain thread asked (drainer.h): the trackers' fast paths do not read
         * sp_tracker_state, so send this thread's next call to the slow path too. */
        t->room = 0;
    }
    if (wake_reader)   /* the drain thread, past its fill mark (drainer.h) */
        wake_reader(sp_ring_used(ring));
out:
    if (s)
        __atomic_fetch_add(&s->handler_ns, sp_clock_monotonic_ns() - entered_ns,
                           __ATOMIC_RELAXED);
    __atomic_fetch_sub(&running_handlers, 1, __ATOMIC_ACQ_REL);
    errno = saved_errno;
}

/* The CPU-time clock of the thread with kernel id `tid`, as the kernel encodes it
 * (what pthread_getcpuclockid returns for a live thread: ~tid << 3 | CPUCLOCK_SCHED |
 * CPUCLOCK_PERTHREAD).  Checked against pthread_getcpuclockid at start. */
static clockid_t
thread_cpu_clock(uint64_t tid)
{
    return (clockid_t)((~(clockid_t)(pid_t)tid) * 8) | 6;
}

/* Gives thread t its own timer.  GIL held, or from start() for every thread.  A thread
 * that has exited makes timer_create fail (its id is checked by the kernel). */
static int
thread_timer_start(sp_thread_t *t)
{
    if (!armed || process_timer || t->dead || t->ignored || !t->in_session ||
        t->tid == 0 || __atomic_load_n(&t->has_timer, __ATOMIC_ACQUIRE))
        return 0;
    clockid_t clock = cur_mode == SP_MODE_CPU ? thread_cpu_clock(t->tid) : CLOCK_MONOTONIC;
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev.sigev_value.sival_int = SP_TIMER_MAGIC;
    sev._sigev_un._tid = (pid_t)t->tid;
    if (timer_create(clock, &sev, &t->timer) < 0)
        return -1;
    struct timespec now;
    if (sp_clock_read(clock, &now) < 0) {
        timer_delete(t->timer);
        return -1;
    }
    t->last_clock_ns = sp_timespec_ns(&now);
    __atomic_store_n(&t->has_timer, 1, __ATOMIC_RELEASE);
    struct itimerspec its;
    its.it_interval = sp_ns_timespec(cur_interval_ns);
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

/* A thread attaches (GIL held): states of threads that have exited since the last
 * attach are freed, so a long session with thread churn holds only live threads. */
static void
on_attach(sp_thread_t *t)
{
    sp_shadow_reap(&running_handlers);
    if (thread_timer_start(t) < 0)
        timer_failures++;
}

/* Arms the process-wide CPU timer: a POSIX timer on the process CPU clock (deleted by
 * execve), else ITIMER_PROF.  Returns -1 and sets errno. */
static int forced_fallback;   /* FORCE_*, see the fallback section below; GIL */
#define FORCE_PROCESS 1
#define FORCE_ITIMER 2
static void itimer_watch_exec(void);

/* ITIMER_PROF's interval and first expiry: interval_ns, at least 1 us. */
static struct itimerval
itimer_of(uint64_t interval_ns)
{
    struct itimerval it;
    it.it_interval.tv_sec = interval_ns / SP_NS_PER_SEC;
    it.it_interval.tv_usec = (interval_ns % SP_NS_PER_SEC) / 1000u;
    if (!it.it_interval.tv_sec && !it.it_interval.tv_usec)
        it.it_interval.tv_usec = 1;
    it.it_value = it.it_interval;
    return it;
}

static int
process_timer_arm(uint64_t interval_ns)
{
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGPROF;
    sev.sigev_value.sival_int = SP_TIMER_MAGIC;
    if (forced_fallback != FORCE_ITIMER &&
        timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &process_posix_timer) == 0) {
        struct itimerspec its;
        its.it_interval = sp_ns_timespec(interval_ns);
        its.it_value = its.it_interval;
        process_timer_kind = PROCESS_TIMER_POSIX;
        process_timer = 1;
        if (timer_settime(process_posix_timer, 0, &its, NULL) == 0)
            return 0;
        timer_delete(process_posix_timer);
        process_timer = 0;
        return -1;
    }
    struct itimerval it = itimer_of(interval_ns);
    process_timer_kind = PROCESS_TIMER_ITIMER;
    process_timer = 1;
    itimer_watch_exec();
    if (setitimer(ITIMER_PROF, &it, NULL) == 0)
        return 0;
    process_timer = 0;
    return -1;
}

static void
process_timer_disarm(void)
{
    if (!process_timer)
        return;
    if (process_timer_kind == PROCESS_TIMER_POSIX) {
        timer_delete(process_posix_timer);
    } else {
        struct itimerval zero;
        memset(&zero, 0, sizeof(zero));
        setitimer(ITIMER_PROF, &zero, NULL);
    }
    process_timer = 0;
}

static int
is_our_handler(const struct sigaction *sa)
{
    return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_signal;
}

static int
is_handler(const struct sigaction *sa)
{
    return (sa->sa_flags & SA_SIGINFO) ? sa->sa_sigaction != NULL
                                       : (sa->sa_handler != SIG_DFL &&
                                          sa->sa_handler != SIG_IGN);
}

/* --- The process-wide fallback: a knob for tests, and exec (issue 12, item 12) ---
 *
 * SHADOWPROF_TEST_TIMER, for tests only (read at each start, CPU mode only): "process"
 * refuses every per-thread timer as a kernel without them would, so the process-wide
 * POSIX timer is used; "itimer" also refuses POSIX timers, so ITIMER_PROF is used, as
 * where POSIX timers are missing altogether.
 *
 * Exec: unlike POSIX timers, an interval timer survives execve, and the new program
 * would die of its first SIGPROF.  While ours runs, an audit hook (added once, the
 * first time it is armed) disarms it at the "os.exec" event, just before os.exec*
 * replaces the process; if the exec fails, the thread's next Python call arms it again
 * (the fork child's path: sp_sampler_fork_rearm through the tracker's slow path).  An
 * execve made from C (a preexec_fn child of subprocess, ctypes) raises no event and is
 * not covered.
 */
static int
read_forced_fallback(void)
{
    const char *v = getenv("SHADOWPROF_TEST_TIMER");
    if (v && strcmp(v, "process") == 0)
        return FORCE_PROCESS;
    if (v && strcmp(v, "itimer") == 0)
        return FORCE_ITIMER;
    return 0;
}

/* Audit hook.  GIL held (the thread about to exec). */
static int
before_exec(const char *event, PyObject *args, void *data)
{
    if (strcmp(event, "os.exec") != 0 || !process_timer ||
        process_timer_kind != PROCESS_TIMER_ITIMER)
        return 0;
    process_timer_disarm();
    fork_process_timer = 1;
    fork_rearm = 1;
    sp_tracker_request_drain();
    if (sp_tls)
        sp_tls->room = 0;   /* this thread's next call takes the slow path (shadow.h) */
    return 0;
}

/* GIL held. */
static void
itimer_watch_exec(void)
{
    static int added;
    if (!added)
        added = PySys_AddAuditHook(before_exec, NULL) == 0;
}
/* --- end of the fallback section --- */

int
sp_sampler_start(sp_session_state_t *s, uint64_t interval_ns, sp_mode_t mode,
                 void (*wake)(size_t used))
{
    struct sigaction sa, prev;
    /* Before the handler can be installed (one object per process: a later start
     * stores the same address). */
    __atomic_store_n(&session, s, __ATOMIC_RELEASE);
    if (sigaction(SIGPROF, NULL, &prev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    /* Our handler, left from an earlier session: the program's own disposition is
     * still the one saved then. */
    int ours = is_our_handler(&prev);
    int has_handler = is_handler(ours ? &old_action : &prev);
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
    /* The kernel's encoding of thread CPU clocks, checked once on this live thread. */
    clockid_t mine;
    if (mode == SP_MODE_CPU &&
        (pthread_getcpuclockid(pthread_self(), &mine) != 0 ||
         mine != thread_cpu_clock((uint64_t)syscall(SYS_gettid)))) {
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: this system's thread CPU clocks are not the Linux "
                        "kernel's; use mode='wall'");
        return -1;
    }
    chaining = has_handler;
    if (!ours) {
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        /* old_action is read by the handler: while it is being replaced no handler of
         * ours is installed (the program's own disposition is). */
        if (sigaction(SIGPROF, &sa, &old_action) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    cur_mode = mode;
    cur_interval_ns = interval_ns;
    wake_reader = wake;
    timer_failures = 0;
    process_timer = 0;
    fork_rearm = 0;
    __atomic_store_n(&last_ns, sp_clock_process_cpu_ns(), __ATOMIC_RELEASE);
    __atomic_store_n(&armed, 1, __ATOMIC_RELEASE);   /* after the ring (see `armed`) */
    sp_shadow_watch(on_attach, thread_timer_stop);
    forced_fallback = mode == SP_MODE_CPU ? read_forced_fallback() : 0;
    int started = 0, failed = 0;
    for (sp_thread_t *t = sp_threads; t; t = t->next) {
        if (t->dead || t->ignored || !t->in_session || t->tid == 0)
            continue;
        if (!forced_fallback && thread_timer_start(t) == 0)
            started++;
        else
            failed++;   /* refused, or the thread exited since it was seeded */
    }
    timer_failures = failed;
    /* The calling thread is live: if its timer failed, per-thread timers are missing. */
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
        if (process_timer_arm(interval_ns) < 0)
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
    /* Only this thread exists in the child: no handler is running here, whatever the
     * parent's threads were doing at the fork. */
    __atomic_store_n(&running_handlers, 0, __ATOMIC_RELEASE);
    fork_rearm = 0;
    if (!armed)
        return;
    /* The parent's timers are not inherited (POSIX and ITIMER_PROF alike). */
    fork_process_timer = process_timer;
    process_timer = 0;
    if (!keep) {
        armed = 0;
        return;
    }
    __atomic_store_n(&last_ns, sp_clock_process_cpu_ns(), __ATOMIC_RELEASE);
    fork_rearm = 1;
}

int
sp_sampler_fork_rearm_pending(void)
{
    return fork_rearm;
}

void
sp_sampler_fork_rearm(void)
{
    if (!fork_rearm)
        return;
    fork_rearm = 0;
    if (!armed)
        return;
    __atomic_store_n(&last_ns, sp_clock_process_cpu_ns(), __ATOMIC_RELEASE);
    if (fork_process_timer) {
        if (process_timer_arm(cur_interval_ns) < 0)
            timer_failures++;
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
    return process_timer ? process_timer_kind : 0;
}

void
sp_sampler_set_chain(int chain)
{
    chain_policy = chain != 0;
}

void
sp_sampler_stop(void)
{
    process_timer_disarm();
    sp_shadow_watch(NULL, thread_timer_stop);
    for (sp_thread_t *t = sp_threads; t; t = t->next)
        thread_timer_stop(t);
    __atomic_store_n(&armed, 0, __ATOMIC_SEQ_CST);
    fork_rearm = 0;
    /* A handler may still be running on another thread: wait for it (see `armed`). */
    while (__atomic_load_n(&running_handlers, __ATOMIC_SEQ_CST))
        sched_yield();
    /* The handler stays installed (see the top of this file): a signal of ours still
     * queued to some thread is dropped when it arrives. */
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
    struct itimerspec its;
    its.it_interval = sp_ns_timespec(interval_ns);
    its.it_value = its.it_interval;
    if (process_timer) {
        if (process_timer_kind == PROCESS_TIMER_POSIX)
            return timer_settime(process_posix_timer, 0, &its, NULL);
        struct itimerval it = itimer_of(interval_ns);
        return setitimer(ITIMER_PROF, &it, NULL);
    }
    for (sp_thread_t *t = sp_threads; t; t = t->next)
        if (__atomic_load_n(&t->has_timer, __ATOMIC_ACQUIRE))
            timer_settime(t->timer, 0, &its, NULL);
    return 0;
}
