/* session.c: the profiling session's life cycle (see session.h): start, stop, the
 * forked child, and the session's clocks and counters.
 *
 * Shared state: everything here is written with the GIL held by start(), stop() and
 * _set_interval(), or by the pthread_atfork child handler before the child runs any
 * Python code; it is read with the GIL.  The signal handler reads none of it.
 */
#include "session.h"
#include "backend.h"
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
#include <time.h>

static int running;
static sp_mode_t mode;
static uint64_t interval_ns;
static uint64_t start_wall_ns, start_cpu_ns, start_unix_ns;
static uint64_t stop_wall_ns, stop_cpu_ns;
static size_t ring_records = 4096;
static int native;       /* native stacks captured */
static int fork_keep = 1;
/* Bumped by start() and in a forked child: marks (export.c) of another session are
 * refused. */
static uint64_t generation;

static uint64_t
unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The session's clocks start now.  Memory stores and clock reads only. */
static void
clocks_start(void)
{
    start_wall_ns = sp_clock_wall_ns();
    start_cpu_ns = sp_clock_cpu_ns();
    start_unix_ns = unix_ns();
}

void
sp_session_get(sp_session_t *out)
{
    out->generation = generation;
    out->running = running;
    out->native = native;
    out->wall = mode == SP_MODE_WALL;
    out->interval_ns = interval_ns;
    out->start_unix_ns = start_unix_ns;
    out->duration_ns = (running ? sp_clock_wall_ns() : stop_wall_ns) - start_wall_ns;
    out->cpu_ns = (running ? sp_clock_cpu_ns() : stop_cpu_ns) - start_cpu_ns;
}

int
sp_session_running(void)
{
    return running;
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
    if (!running)
        return;
    sp_shadow_after_fork_child();
    if (sp_sampler_ring)
        sp_ring_reset(sp_sampler_ring);
    sp_drain_reset();
    sp_registry_reset_counts();
    generation++;
    clocks_start();
    sp_drainer_after_fork_child(fork_keep);   /* drainer.h: restarted once Python runs */
    if (fork_keep) {
        sp_sampler_after_fork_child(1);
        /* Through the tracker's slow path on the first Python call: drain_requested. */
        sp_tracker_request_drain();
    } else {
        sp_sampler_after_fork_child(0);
        sp_tracker_disable();
        running = 0;
        stop_wall_ns = start_wall_ns;
        stop_cpu_ns = start_cpu_ns;
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
 * table.  -1 with an exception set. */
static int
storage_init(size_t ring_size, size_t max_stacks)
{
    if (sp_registry_init() < 0)
        return -1;
    sp_registry_on_free(drain_before_free);
    if (!sp_sampler_ring || ring_size != ring_records) {
        sp_ring_t *r = sp_ring_new(ring_size);
        if (!r) {
            PyErr_NoMemory();
            return -1;
        }
        sp_ring_t *old = sp_sampler_ring;
        sp_sampler_ring = r;
        sp_ring_free(old);   /* no handler is armed between sessions */
        ring_records = ring_size;
    } else {
        sp_ring_reset(sp_sampler_ring);
    }
    sp_table_t *t = sp_table_new(max_stacks);
    if (!t) {
        PyErr_NoMemory();
        return -1;
    }
    sp_table_free(sp_drain_table);
    sp_drain_table = t;
    sp_drain_reset();
    return 0;
}

int
sp_session_start(const sp_session_config_t *c)
{
    if (running) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler is already running");
        return -1;
    }
    if (c->native && sp_native_enable() < 0)
        return -1;
    if (storage_init(c->ring_size, c->max_stacks) < 0)
        return -1;
    sp_registry_reset_counts();
    sp_shadow_capacity = c->max_depth;
    if (sp_shadow_seed_all() < 0)
        return -1;
    if (sp_backend_attach(c->backend, drain_requested) < 0)
        return -1;
    mode = c->mode;
    interval_ns = c->interval_ns;
    generation++;
    fork_keep = c->fork_keep;
    clocks_start();
    stop_wall_ns = stop_cpu_ns = 0;
    native = c->native;
    sp_native_reset_counts();
    sp_native_set(native);
    if (sp_sampler_start(interval_ns, mode, sp_drainer_poke) < 0) {
        sp_native_set(0);
        sp_backend_detach();
        return -1;
    }
    if (sp_drainer_start(sp_sampler_ring) < 0) {   /* drainer.h */
        sp_sampler_stop();
        sp_native_set(0);
        sp_backend_detach();
        return -1;
    }
    running = 1;
    return 0;
}

void
sp_session_stop(void)
{
    if (!running) {
        sp_backend_detach();   /* e.g. left attached in a child forked with fork='stop' */
        return;
    }
    sp_sampler_stop();
    sp_native_set(0);
    sp_backend_detach();
    stop_wall_ns = sp_clock_wall_ns();
    stop_cpu_ns = sp_clock_cpu_ns();
    sp_drainer_stop();   /* drainer.h: joined (GIL released meanwhile) before the last drain */
    sp_drain();
    running = 0;
}

int
sp_session_track_only(int on, int backend)
{
    if (running) {
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
    if (!running || sp_sampler_set_interval(ns) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler is not running");
        return -1;
    }
    interval_ns = ns;
    return 0;
}
