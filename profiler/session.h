/* session.h: the profiling session's life cycle: start, stop, a forked child, and the
 * facts other files report about it.
 *
 * One session per process at a time (the Python layer nests Profiler objects on top of
 * it).  Its state is one object (session_state.h: the ring, the table, the counters,
 * the clocks and the generation), owned by session.c and handed to the sampler
 * (sp_sampler_start), the drain (sp_drain_attach) and the drain thread
 * (sp_drainer_start).  A session sets up in order, and stop() takes down in reverse:
 * the registry's drain-before-free callback, the ring and the table, the shadow stacks
 * (seeded), the tracker (backend.h), the sampler's timers, the drain thread.  Its clocks
 * and counters start at start() and, in a forked child that keeps profiling, again at
 * the fork.
 *
 * Thread contract: GIL held, main interpreter, except the pthread_atfork child handler
 * (memory stores and timer system calls only, before any Python code in the child).
 */
#ifndef SP_SESSION_H
#define SP_SESSION_H

#include "compat.h"
#include "session_state.h"
#include <stdint.h>

/* What start() was given, validated by the caller (module.c). */
typedef struct {
    uint64_t interval_ns;
    sp_mode_t mode;
    uint32_t max_depth;
    size_t ring_size, max_stacks;
    int fork_keep;           /* a forked child keeps profiling (1) or stops (0) */
    int native;              /* native stacks captured (native.h) */
    int backend;             /* the tracker: backend.h's kind */
} sp_session_config_t;

/* The running (or last) session's facts.  GIL held. */
typedef struct {
    uint64_t generation;     /* changes at start() and in a forked child */
    int running, native, wall;
    uint64_t interval_ns, start_unix_ns;
    uint64_t duration_ns, cpu_ns;   /* since the session started (to stop if stopped) */
} sp_session_t;

void sp_session_get(sp_session_t *out);

/* The session's aggregation table: the one way to it for every file but the drain
 * (handed the session object).  NULL before the first start; after stop it keeps the
 * last session's data until the next start.  GIL held. */
sp_table_t *sp_session_table(void);
/* The session's drain counters (session_state.h); never NULL.  Written by the drain,
 * and by export.c's _table_add for tests, as the drain would.  GIL held. */
sp_drain_stats_t *sp_session_stats(void);

/* Starts a session: resets every count, seeds the shadow stacks, attaches the tracker,
 * arms the timers and starts the drain thread.  Returns -1 with an exception set (and
 * nothing left running) if it cannot, or if a session runs. */
int sp_session_start(const sp_session_config_t *config);
/* Stops it: timers, tracker, drain thread, then a last drain.  The data stays for
 * snapshot() until the next start.  Not running: detaches a tracker left attached (a
 * child forked with fork='stop'). */
void sp_session_stop(void);
/* Attaches (on) or detaches only the tracker `backend`, without sampling (calibration).
 * Returns -1 with an exception set; refused while a session runs. */
int sp_session_track_only(int on, int backend);
/* Changes the running session's sampling interval; -1 with an exception if none runs. */
int sp_session_set_interval(uint64_t interval_ns);
int sp_session_running(void);

/* Registers the fork handler, once per process. */
void sp_session_init(void);

#endif /* SP_SESSION_H */
