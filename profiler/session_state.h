/* session_state.h: the session object, what one profiling session owns: the ring, the
 * aggregation table, the counters, the clocks and the generation.
 *
 * Its life cycle is session.h's (start, stop, fork); it is defined apart from it so
 * that the files session.c drives (the sampler, the drain, the drain thread) can be
 * handed the object without depending on session.c, which depends on them.
 *
 * One object per process: a static object in session.c, never freed, so its address
 * stays valid for every reader at every instruction, the SIGPROF handler included
 * (the handler stays installed after stop, sampler.c).  session.c hands it to
 * sp_sampler_start, sp_drain_attach and sp_drainer_start, which each keep it in a
 * private static pointer; everything else reads the table through sp_session_table()
 * and the counters through the owners' accessors (session.h, sampler.h, drainer.h).
 * No file assigns another file's globals to wire these pieces (tests/test_c_layout.py).
 *
 * Who writes each field, and who reads it:
 *  - ring: made or replaced by start() (GIL) while no timer is armed, no handler is
 *    past its `armed` check (sp_sampler_stop waited for them) and no drain thread runs
 *    (sp_drainer_stop joined it); never freed while the process may sample into it.
 *    Reset in a fork child.  Its records: produced by the handler (lock-free),
 *    consumed by the drain (GIL) and by the drain thread's spill, under the spill's
 *    lock (spill.h).
 *  - table: made by start() (GIL); written by the drain (GIL); read with the GIL by
 *    snapshot(), the exporter and module.c through sp_session_table().
 *  - draining: the thread state running the drain, whose samples are profiler
 *    overhead.  Written by the drain (GIL); read by the handler.
 *  - stats: the drain's counters.  Written by the drain (GIL).
 *  - signals, handler_ns: written by the handler (atomic adds).
 *  - drainer_wakes, drainer_spills: written by the drain thread (atomic adds).
 *  - the rest (generation, facts, clocks): session.c, with the GIL or in the
 *    pthread_atfork child handler.
 * Every counter is zeroed in one place, at start() and in a forked child that keeps
 * profiling (session.c).
 */
#ifndef SP_SESSION_STATE_H
#define SP_SESSION_STATE_H

#include <stddef.h>
#include <stdint.h>
#include "ring.h"
#include "shadow.h"
#include "table.h"

typedef enum { SP_MODE_CPU = 0, SP_MODE_WALL = 1 } sp_mode_t;

/* The drain's counters (drain.h). */
typedef struct {
    uint64_t samples;        /* records aggregated, lost ones included */
    uint64_t weight_ns;
    uint64_t lost;           /* samples that found the ring full */
    uint64_t lost_weight_ns;
    uint64_t overhead;       /* samples that interrupted shadowprof's own code */
    uint64_t overhead_weight_ns;
    uint64_t table_full;     /* samples folded into "[table full]" */
    uint64_t drain_ns;       /* time spent draining (resolving and aggregating), the
                                drain thread's spilling included */
} sp_drain_stats_t;

typedef struct {
    /* Storage (see above for who writes). */
    sp_ring_t *ring;
    size_t ring_records;             /* the ring's size as asked for */
    sp_table_t *table;
    sp_thread_t *volatile draining;

    /* Counters. */
    sp_drain_stats_t stats;          /* drain; GIL */
    uint64_t signals;                /* handler: SIGPROFs of ours handled; atomic */
    uint64_t handler_ns;             /* handler: time spent in it; atomic */
    uint64_t drainer_wakes;          /* drain thread: wakes; atomic */
    uint64_t drainer_spills;         /* drain thread: spills that moved records; atomic */

    /* Facts and clocks: session.c. */
    uint64_t generation;             /* changes at start() and in a forked child */
    int running;
    int native;                      /* native stacks captured */
    int fork_keep;                   /* a forked child keeps profiling */
    sp_mode_t mode;
    uint64_t interval_ns;
    uint64_t start_wall_ns, start_cpu_ns, start_unix_ns;
    uint64_t stop_wall_ns, stop_cpu_ns;
} sp_session_state_t;

#endif /* SP_SESSION_STATE_H */
