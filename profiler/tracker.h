/* tracker.h: what every tracker shares.  A tracker keeps the shadow stacks (shadow.h)
 * from the interpreter's frame entries; there are two, each in its own file, and
 * neither knows the other:
 *   pep523.c      a PEP 523 frame-evaluation function ("eval"; every version)
 *   monitoring.c  sys.monitoring callbacks ("monitoring"; 3.12+)
 * Each exports one sp_tracker_t; backend.c chooses which one runs and attaches it.
 * This file owns the interface, the state word both read, their common slow path
 * (entering a thread, finding the caller's depth, rebuilding a stack) and the test of
 * the handler for "this pc is the trackers' code".
 *
 * Per frame entry a tracker does, on its fast path, a few loads and stores: find the
 * code's registry entry (co_extra), drop the frames that ended since its last push
 * from the top of the stack (pops are lazy, see shadow.h), push (frame, id), count the
 * caller->callee edge.  Everything else goes to its slow path, which starts with
 * sp_tracker_enter_slow.
 *
 * sp_tracker_state: SP_TRACKER_ON while a tracker is attached and profiling, plus
 * SP_TRACKER_DRAIN when the signal handler or the drain thread asks for the ring to be
 * drained (the next slow path drains it, with the GIL, through the function given to
 * sp_tracker_on).  The fast paths do not read it: whoever changes it also zeroes the
 * threads' `room` (shadow.h), which sends them to the slow path: sp_tracker_off and
 * sp_tracker_reset_rooms zero every thread's, the handler that asks for a drain zeroes
 * the interrupted thread's.
 *
 * Thread and signal contract: the trackers run with the GIL held on the thread whose
 * frame they see and write only that thread's sp_thread_t and registry counters.
 * Their code, and the slow path here, sit in the "sp_hot_text" section (SP_HOT): the
 * handler reports a sample whose pc is in it as profiler overhead
 * (sp_tracker_owns_pc).  sp_tracker_request_drain, sp_tracker_disable and
 * sp_tracker_owns_pc are async-signal-safe; everything else needs the GIL.
 */
#ifndef SP_TRACKER_H
#define SP_TRACKER_H

#include "compat.h"
#include "registry.h"
#include "shadow.h"

/* A tracker.  Both functions run with the GIL held, on the main interpreter. */
typedef struct {
    const char *name;           /* "eval" or "monitoring": the user's name for it */
    /* Starts feeding the stacks.  Returns -1 with a one-line exception set if it
     * cannot (nothing is left installed then). */
    int (*install)(void);
    /* Stops; any pending Python exception is kept.  No-op if not installed. */
    void (*uninstall)(void);
} sp_tracker_t;

#define SP_TRACKER_ON 1u
#define SP_TRACKER_DRAIN 2u

extern volatile uint32_t sp_tracker_state;

/* Zeroes every thread's room: the stacks may have been reseeded or reallocated since
 * the tracker last ran.  GIL held. */
void sp_tracker_reset_rooms(void);
/* Turns recording on (after the tracker is installed); `drain` is what the slow path
 * calls, with the GIL, when SP_TRACKER_DRAIN is set.  GIL held. */
void sp_tracker_on(void (*drain)(void));
/* Turns recording off and zeroes every room (before the tracker is uninstalled): the
 * tracker passes every call through.  GIL held. */
void sp_tracker_off(void);
/* Recording off without touching the rooms, in a forked child that stops profiling
 * (the slow path sees the state: rooms are zeroed by whoever sets SP_TRACKER_DRAIN).
 * async-signal-safe. */
void sp_tracker_disable(void);
/* Asks the next slow path to drain the ring.  The caller zeroes the room of the thread
 * it wants to drain (the handler: the interrupted one), or waits for a slow path.
 * async-signal-safe; re-entrant. */
void sp_tracker_request_drain(void);

/* The start of every slow path: if recording is off returns NULL (pass the call
 * through); drains first if asked; returns the calling thread's state, attaching it
 * if it has none yet (NULL: the profiler's own thread, or out of memory).  `ts` is
 * the calling thread's state.  GIL held. */
sp_thread_t *sp_tracker_enter_slow(PyThreadState *ts);

/* The depth at which a frame whose caller is `parent` (a complete frame, or NULL) goes
 * on t's stack: the parent's entry found below ended frames, or else the stack rebuilt
 * from the interpreter's frames (parent and its callers; this may run Python code,
 * registering their code objects).  The result may equal t->cap: no room.  Owner
 * thread, GIL held. */
uint32_t sp_tracker_push_depth(sp_thread_t *t, sp_pyframe_t *parent);
/* Drops the ended frames above parent's entry, if it is on the stack (parent NULL:
 * all of them).  Owner thread, GIL held. */
void sp_tracker_trim(sp_thread_t *t, sp_pyframe_t *parent);

/* The fast paths' search under lazy pops: the entry of `parent` below `top` (whose
 * frame is not parent: frames that ended since the last push are still on top), or
 * NULL if it is not on the stack (the slow path then handles it).  `stack` is the
 * thread's stack: the search writes parent into its sentinel (shadow.h), which ends
 * it, so each step is one compare.  The entry's depth is its `pos`.  Owner thread,
 * GIL held. */
static inline __attribute__((always_inline)) sp_entry_t *
sp_tracker_caller_below(sp_entry_t *stack, sp_entry_t *top, const sp_pyframe_t *parent)
{
    stack[-1].frame = (sp_pyframe_t *)parent;
    do
        top--;
    while (top->frame != parent);
    return top >= stack ? top : NULL;
}

#if SP_FRAME_HAS_HINT
/* 3.11, the fast path's lookup before any search: the entry of `parent` (the
 * interpreter's current frame, or NULL) on t's stack, at the index its push left in
 * the frame's padding (compat.h), if that index is below both t's depth and room and
 * the entry there is parent's; else NULL (then the room test and the search:
 * sp_tracker_caller_below).  Below room (cap - 1, or 0: shadow.h) the push above the
 * entry fits, and an empty, overflowing or draining stack misses.  The entry's depth
 * is its `pos`.
 *
 * Why an entry found so is the one the search would find: any 16 bits may sit in the
 * padding (a frame we never pushed holds what the memory held before, e.g. the hint of
 * an ended frame at the same address), so the hint is taken only if it is below depth
 * and the entry there holds parent's address, the one thing the search compares.  A
 * live frame has one entry at most (shadow.h): above it lie entries pushed while it was
 * alive, below it its ancestors.  So the entry found is parent's, and a push above it
 * drops exactly the entries the search would have walked past.  An index of 2^16 or
 * more is stored truncated and fails the check (the entry there is one of the frame's
 * ancestors).  Owner thread, GIL held; reads only the live frame parent and t. */
static inline __attribute__((always_inline)) sp_entry_t *
sp_tracker_caller_at(const sp_thread_t *t, const sp_pyframe_t *parent)
{
    if (SP_UNLIKELY(parent == NULL))
        return NULL;
    uint32_t h = sp_frame_hint(parent);
    if (SP_UNLIKELY(h >= t->depth) || SP_UNLIKELY(h >= t->room))
        return NULL;
    /* The offset in 32 bits (h < 2^16): x86-64 then scales h in place. */
    sp_entry_t *e = (sp_entry_t *)((char *)t->stack + (uint32_t)(h * sizeof(sp_entry_t)));
    return SP_LIKELY(e->frame == parent) ? e : NULL;
}
#endif

/* The code id of the complete frame f, or SP_ID_ROOT (f NULL or untracked).  GIL. */
static inline uint32_t
sp_tracker_frame_id(sp_pyframe_t *f)
{
    sp_code_t *e = f ? sp_code_of(SP_FRAME_CODE(f)) : NULL;
    return e ? e->id : SP_ID_ROOT;
}

/* Whether pc is in the trackers' per-call code.  async-signal-safe. */
int sp_tracker_owns_pc(uintptr_t pc);

#endif /* SP_TRACKER_H */
