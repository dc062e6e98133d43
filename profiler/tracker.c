/* tracker.c: what the two trackers share (see tracker.h): the state word, the start of
 * their slow paths, where a frame's caller is on the stack, the stack rebuilt from the
 * interpreter's frames, and the address range of their code.
 *
 * Thread contract: GIL held, on the thread whose frame is entered, except the
 * functions tracker.h marks async-signal-safe (atomic stores and an address test).
 * The slow-path functions are SP_HOT: a sample that interrupts them is overhead.
 */
#include "tracker.h"

volatile uint32_t sp_tracker_state;

/* What the slow path calls for SP_TRACKER_DRAIN; given by sp_tracker_on.  GIL. */
static void (*drain_fn)(void);

extern char __start_sp_hot_text[] __attribute__((weak, visibility("hidden")));
extern char __stop_sp_hot_text[] __attribute__((weak, visibility("hidden")));

/* async-signal-safe */
int
sp_tracker_owns_pc(uintptr_t pc)
{
    return __start_sp_hot_text && pc >= (uintptr_t)__start_sp_hot_text &&
           pc < (uintptr_t)__stop_sp_hot_text;
}

void
sp_tracker_reset_rooms(void)
{
    for (sp_thread_t *t = sp_threads; t; t = t->next)
        t->room = 0;
}

void
sp_tracker_on(void (*drain)(void))
{
    drain_fn = drain;
    __atomic_store_n(&sp_tracker_state, SP_TRACKER_ON, __ATOMIC_RELEASE);
}

void
sp_tracker_off(void)
{
    __atomic_store_n(&sp_tracker_state, 0, __ATOMIC_RELEASE);
    sp_tracker_reset_rooms();
}

/* async-signal-safe */
void
sp_tracker_disable(void)
{
    __atomic_store_n(&sp_tracker_state, 0, __ATOMIC_RELEASE);
}

/* async-signal-safe; re-entrant */
void
sp_tracker_request_drain(void)
{
    __atomic_fetch_or(&sp_tracker_state, SP_TRACKER_DRAIN, __ATOMIC_RELAXED);
}

SP_HOT sp_thread_t *
sp_tracker_enter_slow(PyThreadState *ts)
{
    uint32_t st = __atomic_load_n(&sp_tracker_state, __ATOMIC_RELAXED);
    if (!(st & SP_TRACKER_ON))
        return NULL;
    if (st & SP_TRACKER_DRAIN) {
        __atomic_fetch_and(&sp_tracker_state, ~SP_TRACKER_DRAIN, __ATOMIC_RELAXED);
        if (drain_fn)
            drain_fn();
    }
    sp_thread_t *t = sp_tls;
    if (!t)
        t = sp_shadow_attach(ts);
    return t;
}

SP_HOT uint32_t
sp_tracker_push_depth(sp_thread_t *t, sp_pyframe_t *parent)
{
    if (parent == NULL)
        return 0;
    uint32_t d = t->depth < t->cap ? t->depth : t->cap;
    sp_entry_t *below = d ? sp_shadow_find(t->stack, &t->stack[d - 1], parent) : NULL;
    if (below)
        return (uint32_t)(below - t->stack) + 1;
    /* Not on the stack (a greenlet switch, a frame entered while no tracker ran): the
     * interpreter's frames are the truth. */
    return sp_shadow_fill(t, parent);
}

SP_HOT void
sp_tracker_trim(sp_thread_t *t, sp_pyframe_t *parent)
{
    uint32_t d = t->depth < t->cap ? t->depth : t->cap;
    if (parent == NULL) {
        t->depth = 0;
    } else if (d) {
        sp_entry_t *below = sp_shadow_find(t->stack, &t->stack[d - 1], parent);
        if (below)
            t->depth = (uint32_t)(below - t->stack) + 1;
    }
}
