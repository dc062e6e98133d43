/* spill.h: the way out of the ring that needs no GIL.
 *
 * The drain (drain.c) empties the ring with the GIL held.  While a C call holds the
 * GIL (a regex over a huge string, sum(range(10**9)), an extension's loop) no drain can
 * run, so a ring that fills meanwhile would lose every later sample.  The spill lets
 * the drain thread (drainer.c) move records out of the ring without the GIL: it adds
 * them, unresolved (each frame's code id and instruction, the native pcs, the flags, as
 * the handler wrote them), to a table of its own, where identical records merge.  The
 * drain takes them from there (sp_spill_take), with the GIL, resolves them like the
 * ring's own records and adds them to the aggregation table.
 *
 * Who owns what:
 *  - `lock`, a plain mutex, owns the ring's consumer side (its read index and the
 *    records being read) and the spill table.  The drain thread takes it without the
 *    GIL; the drain takes it with the GIL held (order: GIL, then lock; the drain thread
 *    never asks for the GIL, and nothing runs Python code while holding the lock, so
 *    the order cannot invert).  The signal handler never touches it: it only produces
 *    into the ring (lock-free) and reads the ring's indexes.
 *  - `pending` (records in the spill table), atomic: incremented before a record
 *    leaves the ring, so a reader that finds the ring empty and then `pending` zero
 *    knows nothing is waiting anywhere (sp_spill_pending).
 * Full: the spill table holds as many distinct stacks as the aggregation table (the
 *  profile's cap); past that, records are folded into one overflow entry, counted and
 *  reported as "[table full]" like the table's own overflow.  Allocation failure does
 *  the same.  Nothing is dropped silently.
 * Fork: a pthread_atfork prepare handler takes the lock, so a fork never copies a
 *  half-updated table or read index into the child; the parent's handler releases it,
 *  the child's re-initialises it (the child's thread is not its owner).
 * Exit: nothing to do; the drain thread is stopped before finalization (drainer.h).
 *
 * No Python dependency: unit-tested in plain C (tests/c/test_spill.c).
 */
#ifndef SP_SPILL_H
#define SP_SPILL_H

#include <stddef.h>
#include <stdint.h>
#include "ring.h"

typedef struct {
    uint64_t full;             /* records folded into the overflow entry */
    uint64_t full_weight_ns;
    uint64_t spilled;          /* records moved out of the ring */
    uint64_t spill_ns;         /* wall time the spilling took */
} sp_spill_totals_t;

/* Makes (or remakes) the spill table with room for `max_stacks` distinct stacks, and
 * registers the fork handlers once.  No thread may be spilling (the drain thread is
 * not running).  Returns -1 and sets errno. */
int sp_spill_init(size_t max_stacks);

/* Moves every published record out of `ring` into the spill table.  Any thread, no
 * GIL needed; takes the lock.  Returns the number of records moved. */
size_t sp_spill_from_ring(sp_ring_t *ring);

/* The consumer-side lock, for the drain while it reads the ring and takes the spill
 * table.  Not async-signal-safe. */
void sp_spill_lock(void);
void sp_spill_unlock(void);

/* Whether records wait in the spill table.  Any thread; see `pending` above for the
 * order in which to read it with the ring's indexes. */
int sp_spill_pending(void);

/* Calls fn for every stack waiting in the spill table, as a record with its merged
 * count and weight, then empties the table; adds the overflow entry's count and
 * weight and the spill counters since the previous take to *totals.  Caller holds the
 * lock. */
typedef void (*sp_spill_visit_t)(const sp_record_t *rec, uint64_t count, uint64_t weight_ns,
                                 void *arg);
void sp_spill_take(sp_spill_visit_t fn, void *arg, sp_spill_totals_t *totals);

/* Empties the table and zeroes the counters without taking the lock: at start, with no
 * drain thread, and in a fork child (pthread_atfork child handler; the prepare handler
 * guarantees a consistent table).  async-signal-safe (memory stores). */
void sp_spill_reset(void);

#endif /* SP_SPILL_H */
