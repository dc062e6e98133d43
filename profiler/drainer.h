/* drainer.h: a thread of shadowprof's own that drains the sample ring when no Python
 * call does.
 *
 * The ring is normally drained by the hook: the handler sets SP_HOOK_DRAIN and the next
 * Python call drains (drain.c).  A program that makes no Python call for a while (a
 * long C call, sleep(), join(), a blocking accept()) would fill the ring and lose every
 * later sample.  The drainer is a plain pthread (no Python frames, so never attached,
 * never given a sampling timer, never in a profile; named "sp-drain" in /proc; every
 * signal blocked, so no process-directed signal is delivered to it) that sleeps on a
 * semaphore and wakes
 *  - when the handler finds the ring past a fill mark (sp_drainer_poke, a sem_post: a
 *    quarter of the ring, at least SP_DRAINER_MIN_MARK records), and
 *  - every SP_DRAINER_PERIOD_MS.
 * On a timed wake with records pending it first asks the hook (SP_HOOK_DRAIN); only if
 * records it saw pending one period earlier are still there, or on a poke, does it take
 * the GIL (PyGILState_Ensure) and drain itself.  A program that calls Python functions
 * therefore pays a few futex wakes a second and no GIL acquisition.  Its CPU time while
 * it holds the GIL is added to the drain time (overhead statistics).
 *
 * Limit: the thread drains with the GIL, so a C call that holds the GIL (a regex over a
 * huge input) for longer than the ring lasts (ring_size x interval / threads) still
 * loses the samples past it, counted as "[lost samples]".
 *
 * Lifecycle (GIL held unless said otherwise):
 *  - sp_drainer_start at start(), after the timers are armed; sp_drainer_stop at stop(),
 *    after the timers are stopped and before the final drain.  stop releases the GIL
 *    while it joins the thread (the thread may be waiting for the GIL).
 *  - fork: the thread does not exist in the child.  sp_drainer_after_fork_child (in the
 *    pthread_atfork child handler) forgets it; an os.register_at_fork(after_in_child)
 *    callback, which runs once the child's interpreter is usable, starts a new one if
 *    the child keeps profiling.
 *  - finalization: a thread that asks for the GIL once the interpreter is finalizing is
 *    killed (3.9-3.13) or hangs (3.14), so the thread never asks once Python says it is
 *    finalizing, and an atexit callback (registered at the first start, so it runs after
 *    the Profiler's own) stops it before finalization begins.
 */
#ifndef SP_DRAINER_H
#define SP_DRAINER_H

#include "ring.h"

#define SP_DRAINER_PERIOD_MS 250
#define SP_DRAINER_MIN_MARK 64   /* above the hook's SP_DRAIN_AFTER (sampler.c) */

/* Starts the thread for `ring` (no-op if it runs).  Returns -1 with a Python exception
 * set if the thread cannot be made.  GIL held. */
int sp_drainer_start(sp_ring_t *ring);
/* Stops and joins the thread (no-op if none).  GIL held; releases it while joining. */
void sp_drainer_stop(void);
/* In a forked child (pthread_atfork child handler): the thread is gone; start a new
 * one once Python runs again if `keep`.  async-signal-safe (memory stores). */
void sp_drainer_after_fork_child(int keep);
/* The handler's wake-up: posts the semaphore once `used` records reach the fill mark
 * (once until the thread has drained).  async-signal-safe; re-entrant. */
void sp_drainer_poke(size_t used);

/* Counters for tests and reports since the thread was started (start(), or the fork
 * child's restart): wakes, and drains done by the thread.  Any thread. */
uint64_t sp_drainer_wakes(void);
uint64_t sp_drainer_drains(void);

#endif /* SP_DRAINER_H */
