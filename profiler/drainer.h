/* drainer.h: a thread of shadowprof's own that drains the sample ring when no Python
 * call does.
 *
 * The ring is normally drained by the hook: the handler sets SP_TRACKER_DRAIN and the next
 * Python call drains (drain.c).  A program that makes no Python call for a while (a
 * long C call, sleep(), join(), a blocking accept()) would fill the ring and lose every
 * later sample.  The drainer is a plain pthread (no Python frames, so never attached,
 * never given a sampling timer, never in a profile; named "sp-drain" in /proc; every
 * signal blocked, so no process-directed signal is delivered to it) that sleeps on a
 * semaphore and wakes
 *  - when the handler finds the ring past a fill mark (sp_drainer_poke, a sem_post: a
 *    quarter of the ring, at least SP_DRAINER_MIN_MARK records), and
 *  - every SP_DRAINER_PERIOD_MS.
 * On a timed wake with records pending it first asks the tracker (SP_TRACKER_DRAIN); only if
 * records it saw pending one period earlier are still there, or on a poke, does it
 * move them out of the ring itself, without the GIL, into the spill (spill.h), and ask
 * the tracker again: the next Python call, stop() or snapshot() aggregates them.  The
 * thread never takes the GIL, so a C call that holds it (a regex over a huge input, an
 * extension's loop) loses no sample either: the spill holds as many distinct stacks as
 * the profile may (max_stacks), then counts the rest as "[table full]".  A program
 * that calls Python functions pays a few futex wakes a second and nothing else.  The
 * thread's spilling time is added to the drain time (overhead statistics).
 *
 * Lifecycle (GIL held unless said otherwise):
 *  - sp_drainer_start at start(), after the timers are armed; sp_drainer_stop at stop(),
 *    after the timers are stopped and before the final drain.  stop releases the GIL
 *    while it joins the thread.
 *  - fork: the thread does not exist in the child.  sp_drainer_after_fork_child (in the
 *    pthread_atfork child handler) forgets it; an os.register_at_fork(after_in_child)
 *    callback, which runs once the child's interpreter is usable, starts a new one if
 *    the child keeps profiling.
 *  - finalization: an atexit callback (registered at the first start, so it runs after
 *    the Profiler's own) stops the thread before finalization begins.
 */
#ifndef SP_DRAINER_H
#define SP_DRAINER_H

#include "session_state.h"

#define SP_DRAINER_PERIOD_MS 250
#define SP_DRAINER_MIN_MARK 64   /* above the hook's SP_DRAIN_AFTER (sampler.c) */

/* Starts the thread for `session` (session_state.h): it spills the session's ring,
 * sizes the spill by its table and adds to its drainer_* counters (no-op if a thread
 * runs).  The object must outlive the thread (session.c's is never freed), and its
 * ring must not be replaced until sp_drainer_stop.  Returns -1 with a Python exception
 * set if the thread cannot be made.  GIL held. */
int sp_drainer_start(sp_session_state_t *session);
/* Stops and joins the thread (no-op if none).  GIL held; releases it while joining
 * (for other threads: the drain thread itself never waits for the GIL). */
void sp_drainer_stop(void);
/* In a forked child (pthread_atfork child handler): the thread is gone; start a new
 * one once Python runs again if `keep`.  async-signal-safe (memory stores). */
void sp_drainer_after_fork_child(int keep);
/* The handler's wake-up: posts the semaphore once `used` records reach the fill mark
 * (once until the thread has drained).  async-signal-safe; re-entrant. */
void sp_drainer_poke(size_t used);

/* The session's counters for tests and reports, since start() or the fork: the
 * thread's wakes, and its spills, the wakes on which it moved records out of the ring
 * into the spill itself because no Python call had drained them (snapshot key
 * "drainer_drains").  Any thread. */
uint64_t sp_drainer_wakes(void);
uint64_t sp_drainer_spills(void);

#endif /* SP_DRAINER_H */
