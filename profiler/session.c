/* session.c: the profiling session's life cycle (see session.h): start, stop, the
 * forked child, and the session object (session_state.h) that holds the ring, the
 * table, the counters and the clocks.
 *
 * Shared state: `session`, one static object, never freed.  Its storage, facts and
 * clocks are written here with the GIL held by start(), stop() and _set_interval(), or
 * by the pthread_atfork child handler before the child runs any Python code; the
 * sampler, the drain and the drain thread are handed its address and write only what
 * session_state.h gives them.  Nothing here assigns another file's globals.
 */
#include "session.h"
#include "backend.h"
#include "clock.h"
#include "drain.h"
#include "drainer.h"
#include "native.h"
#include "registry.h"
#include "ring.h"
#include "sampler.h"
#include "shadow.h"
#include "table.h"
#include "tracker.h"

#include <pthread.h>
#include <string.h>

/* The session object (session_state.h).  Its address is handed to the sampler's
 * handler, which may read it at any instruction for the life of the process: it is
 * never freed nor moved. */
static sp_session_state_t session = {.ring_records = 4096, .fork_keep = 1};

/* The session's clocks start now.  Memory stores and clock reads only
 * (async-signal-safe: also the fork child's). */
static void
clocks_start(void)
{
    session.start_wall_ns = sp_clock_monotonic_ns();
    session.start_cpu_ns = sp_clock_process_cpu_ns();
    session.start_unix_ns = sp_clock_realtime_ns();
}

/* Zeroes every counter of the session, the drain's, the handler's and the drain
 * thread's.  Memory stores only (also the fork child's).  No handler of ours may be
 * sampling (start: no timer armed; fork child: the only thread). */
static void
counters_reset(void)
{
    memset(&session.stats, 0, sizeof(session.stats));
    __atomic_store_n(&session.signals, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&session.handler_ns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&session.drainer_wakes, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&session.drainer_spills, 0, __ATOMIC_RELAXED);
}

void
sp_session_get(sp_session_t *out)
{
    const sp_session_state_t *s = &session;
    out->generation = s->generation;
    out->running = s->running;
    out->native = s->native;
    out->wall = s->mode == SP_MODE_WALL;
    out->interval_ns = s->interval_ns;
    out->start_unix_ns = s->start_unix_ns;
    out->duration_ns =
        (s->running ? sp_clock_monotonic_ns() : s->stop_wall_ns) - s->start_wall_ns;
    out->cpu_ns = (s->running ? sp_clock_process_cpu_ns() : s->stop_cpu_ns) - s->start_cpu_ns;
}

sp_table_t *
sp_session_table(void)
{
    return session.table;
}

sp_drain_stats_t *
sp_session_stats(void)
{
    return &session.stats;
}

int
sp_session_running(void)
{
    return session.running;
}

/* What a tracker's slow path calls when the ring is to be drained (backend.h): a
 * forked child's first Python code arms its timer (see sampler.c), then the ring is
 * drained.  GIL held. */
static void
drain_requested(void)
{
    if (sp_sampler_fork_rearm_pending())
        sp_sampler_fork_rearm();
    sp_drain();
}

/* The registry's callback before a code object is freed: pending samples resolve
 * their lines against it first.  GIL held, inside CPython's dealloc. */
static void
drain_before_free(void)
{
    if (sp_drain_pending())   /* the ring or the drain thread's spill (drain.h) */
        sp_drain_quiet();
}

/* pthread_atfork child handler: the child starts a profile of its own (counts, samples
 * and times reset) on its one thread, or stops profiling.  Runs before any Python code
 * in the child; only memory stores, loops and timer system calls. */
static void
after_fork_child(void)
{
    if (!session.running)
        return;
    sp_shadow_after_fork_child();
    if (session.ring)
        sp_ring_reset(session.ring);
    sp_drain_reset();
    counters_reset();
    sp_registry_reset_counts();
    session.generation++;
    clocks_start();
    /* drainer.h: restarted once Python runs, with the same session object. */
    sp_drainer_after_fork_child(session.fork_keep);
    if (session.fork_keep) {
        sp_sampler_after_fork_child(1);
        /* Through the tracker's slow path on the first Python call: drain_requested. */
        sp_tracker_request_drain();
    } else {
        sp_sampler_after_fork_child(0);
        sp_tracker_disable();
        session.running = 0;
        session.stop_wall_ns = session.start_wall_ns;
        session.stop_cpu_ns = session.start_cpu_ns;
    }
}

void
sp_session_init(void)
{
    static int atfork_done;
    if (!atfork_done && pthread_atfork(NULL, NULL, after_fork_child) == 0)
        atfork_done = 1;
}

/* The registry, a ring of ring_size records (kept if the size is unchanged) and a new
 * table in the session object, handed to the drain.  -1 with an exception set. */
static int
storage_init(size_t ring_size, size_t max_stacks)
{
    if (sp_registry_init() < 0)
        return -1;
    sp_registry_on_free(drain_before_free);
    if (!session.ring || ring_size != session.ring_records) {
        sp_ring_t *r = sp_ring_new(ring_size);
        if (!r) {
            PyErr_NoMemory();
            return -1;
        }
        /* No handler is past its `armed` check between sessions (sp_sampler_stop
         * waited for them) and no drain thread runs (sp_drainer_stop joined it), so
         * nothing holds the old ring. */
        sp_ring_t *old = session.ring;
        session.ring = r;
        sp_ring_free(old);
        session.ring_records = ring_size;
    } else {
        sp_ring_reset(session.ring);
    }
    sp_table_t *t = sp_table_new(max_stacks);
    if (!t) {
        PyErr_NoMemory();
        return -1;
    }
    sp_table_free(session.table);
    session.table = t;
    sp_drain_attach(&session);
    sp_drain_reset();
    counters_reset();
    return 0;
}

int
sp_session_start(const sp_session_config_t *c)
{
    if (session.running) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler is already running");
        return -1;
    }
    if (c->native && sp_native_enable() < 0)
        return -1;
    if (storage_init(c->ring_size, c->max_stacks) < 0)
        return -1;
    sp_registry_reset_counts();
    sp_shadow_set_capacity(c->max_depth);
    if (sp_shadow_seed_all() < 0)
        return -1;
    if (sp_backend_attach(c->backend, drain_requested) < 0)
        return -1;
    session.mode = c->mode;
    session.interval_ns = c->interval_ns;
    session.generation++;
    session.fork_keep = c->fork_keep;
    clocks_start();
    session.stop_wall_ns = session.stop_cpu_ns = 0;
    session.native = c->native;
    sp_native_reset_counts();
    sp_native_set(session.native);
    if (sp_sampler_start(&session, session.interval_ns, session.mode, sp_drainer_poke) < 0) {
        sp_native_set(0);
        sp_backend_detach();
        return -1;
    }
    if (sp_drainer_start(&session) < 0) {   /* drainer.h */
        sp_sampler_stop();
        sp_native_set(0);
        sp_backend_detach();
        return -1;
    }
    session.running = 1;
    return 0;
}

void
sp_session_stop(void)
{
    if (!session.running) {
        sp_backend_detach();   /* e.g. left attached in a child forked with fork='stop' */
        return;
    }
    sp_sampler_stop();
    sp_native_set(0);
    sp_backend_detach();
    session.stop_wall_ns = sp_clock_monotonic_ns();
    session.stop_cpu_ns = sp_clock_process_cpu_ns();
    sp_drainer_stop();   /* drainer.h: joined (GIL released meanwhile) before the last drain */
    sp_drain();
    session.running = 0;
}

int
sp_session_track_only(int on, int backend)
{
    if (session.running) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler is running");
        return -1;
    }
    if (!on) {
        sp_backend_detach();
        return 0;
    }
    /* Only the registry: the ring and the table keep the last session's data. */
    if (sp_backend_check_interpreter() < 0 || sp_registry_init() < 0 ||
        sp_shadow_seed_all() < 0)
        return -1;
    return sp_backend_attach(backend, drain_requested);
}

int
sp_session_set_interval(uint64_t ns)
{
    if (!session.running || sp_sampler_set_interval(ns) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler is not running");
        return -1;
    }
    session.interval_ns = ns;
    return 0;
}
