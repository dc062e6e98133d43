/* sampler.h: the timer, the SIGPROF handler, and what a sample stands for.
 *
 * See sampler.c for the signal-path contract.
 */
#ifndef SP_SAMPLER_H
#define SP_SAMPLER_H

#include <stdint.h>
#include "session_state.h"

/* Installs the handler and arms the timer for `session` (session_state.h): the handler
 * writes into its ring, reads its `draining` and adds to its signals and handler_ns;
 * the object must outlive the process's handler (session.c's is never freed).  After
 * each sample the handler calls `wake` (NULL: nothing) with the number of records in
 * the ring, so that the ring's reader may wake up; it must be async-signal-safe and
 * re-entrant.  Returns -1 with a Python exception set (e.g. another SIGPROF handler or
 * ITIMER_PROF timer is in place).  GIL held. */
int sp_sampler_start(sp_session_state_t *session, uint64_t interval_ns, sp_mode_t mode,
                     void (*wake)(size_t used));
/* What start does when the program already has a SIGPROF handler or ITIMER_PROF
 * timer: refuse (0, the default) or chain (1): install ours, and hand every SIGPROF
 * that our timers did not send to the handler that was there.  GIL held. */
void sp_sampler_set_chain(int chain);
/* Disarms the timers and waits for handlers still running.  The handler stays
 * installed (see sampler.c).  GIL held. */
void sp_sampler_stop(void);
/* In a forked child (pthread_atfork child handler; async-signal-safe): forget the
 * parent's handlers in progress (the session zeroes the counters); if `keep`, leave the timer to be armed
 * by sp_sampler_fork_rearm when the child first runs Python code, else stop sampling. */
void sp_sampler_after_fork_child(int keep);
/* Whether a forked child still has to arm its timer; arms it.  GIL held. */
int sp_sampler_fork_rearm_pending(void);
void sp_sampler_fork_rearm(void);

/* Threads whose timer could not be created; the process-wide fallback timer in use:
 * 0 none, 1 a POSIX timer, 2 ITIMER_PROF. */
uint64_t sp_sampler_timer_failures(void);
int sp_sampler_process_timer(void);
/* Signals of ours handled (sampled or not) since start; nanoseconds spent inside the
 * handler since start (wall clock; the handler does not block, so this is its CPU cost
 * too): the session's counters.  Any thread. */
uint64_t sp_sampler_signals(void);
uint64_t sp_sampler_handler_ns(void);
/* Re-arms the running timers with a new interval (overhead budget).  GIL held.
 * Returns -1 if sampling is not running. */
int sp_sampler_set_interval(uint64_t interval_ns);

#endif /* SP_SAMPLER_H */
