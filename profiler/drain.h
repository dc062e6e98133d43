/* drain.h: ring -> aggregation table, with lines resolved.
 *
 * The drain consumes the sample ring with the GIL held: from the hook when the handler
 * or the drain thread asks for it, before a code object is freed, and at stop and
 * snapshot.  It shares the ring's consumer side with the drain thread's GIL-free spill
 * (spill.h), under the spill's lock: it first takes the records the spill moved out of
 * the ring, then the ring's own.  For each record it turns (code id, instruction) pairs
 * into (code id, line) location keys, adds synthetic frames for the record's flags, and
 * adds the stack to the table.  Not re-entrant (a guard makes a nested call a no-op).
 */
#ifndef SP_DRAIN_H
#define SP_DRAIN_H

#include <stdint.h>
#include "compat.h"
#include "session_state.h"

/* Hands the drain the session object (session_state.h): its ring, table, counters and
 * `draining`.  Before it nothing drains.  GIL held, no drain running; the object must
 * outlive every later drain (session.c's is never freed). */
void sp_drain_attach(sp_session_state_t *session);

/* Drains the ring into the table.  GIL held.  sp_drain also notes the names of
 * threads seen for the first time (threading._active, then threading._dangling: see
 * drain.c); sp_drain_quiet runs no Python-level lookups, for use while CPython frees a
 * code object. */
void sp_drain(void);
void sp_drain_quiet(void);
/* Whether records wait for a drain, in the ring or in the spill.  Any thread. */
int sp_drain_pending(void);
/* {kernel thread id: name} of the threads seen so far.  New reference. */
PyObject *sp_drain_thread_names(void);
/* Clears the table (keeping room for its overflow stack), the spill and (lazily, at the
 * next drain) the thread names; the counters are the session's to zero (session.c).
 * Touches no Python object: also runs in a fork child before Python can. */
void sp_drain_reset(void);

#endif /* SP_DRAIN_H */
