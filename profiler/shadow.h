/* shadow.h: per-thread shadow stacks.
 *
 * Each thread that runs Python code under the profiler owns one sp_thread_t: a
 * fixed-capacity array of (frame, code id) entries mirroring the interpreter's frames,
 * pushed by a tracker (tracker.h: pep523.c or monitoring.c) on every frame entry, and read by the
 * SIGPROF handler (sampler.c) when it interrupts that same thread.
 *
 * Pops are lazy.  The trackers see frames start, not end: a frame that returned (or
 * yielded, or unwound) stays on top of the stack until the next push drops it,
 * finding the new frame's caller by address from the top (sp_tracker_caller_below,
 * sp_tracker_push_depth).  So entries 0..depth-1 are the live frames of the thread's
 * current chain (those that were pushed), root first, possibly followed by stale
 * entries of frames that ended.  A stale entry's frame pointer may point at freed or
 * reused memory: readers other than the trackers take only the entries up to the
 * current frame's nearest ancestor that is on the stack, matched by frame address and
 * code (sp_shadow_live_depth), and never dereference a stale pointer.  Why the address
 * alone suffices for the trackers: every stale entry above a live frame's entry was
 * pushed while that frame was alive, so it cannot have the live frame's address; and
 * below it lie its ancestors, live and elsewhere.  So a live frame has one entry at
 * most, and the trackers may find it by any route.
 *
 * On 3.11 the search is mostly skipped: each push also writes the entry's index into
 * the frame's padding (compat.h, sp_frame_hint), and the PEP 523 hook looks the
 * caller up there first (tracker.h, sp_tracker_caller_at): one compare that
 * validates it, whatever number of ended frames lies above.  The search's exit, taken
 * after a varying number of steps, was mispredicted about once per call that follows
 * a return (benchmarks/hookcost/RESULTS.md, 2026-12-04).  A hint that fails the check
 * (a frame we did not push, a stack since rebuilt) falls back to the search.
 *
 * Contract:
 * - Only the owning thread writes its entries, depth, room and overflow, always with
 *   the GIL held; an entry is fully written before depth is raised over it (a compiler
 *   fence orders them), so a signal arriving at any instruction sees a consistent
 *   prefix.
 * - The handler finds its thread's state through the initial-exec TLS pointer sp_tls
 *   (one load, no __tls_get_addr) or, for a thread seeded at start() that has not run
 *   a tracker since, by kernel thread id in the all-threads list.
 * - start() re-seeds every thread's stack from the interpreter's frames (GIL held);
 *   while it rewrites a thread's stack it sets `busy`, and the handler skips that
 *   thread's sample rather than read a torn stack.
 * - Stack invariant: below any entry lie the tracked ancestors of its frame, in order
 *   (every push checks that the new frame's parent is on top; when it is not on the
 *   stack at all, e.g. after a greenlet switch, the stack is rebuilt from the
 *   interpreter's frames).  Entries above the interpreter's current frame may be stale
 *   (frames seeded at start() that returned without a tracker) and are never read
 *   through their frame pointer.
 * - Identity: a state is bound to one pthread (the exit key of its thread points to
 *   it once attached) and, while that thread has a Python thread state, to that state
 *   (live_tstate; CPython tells us when it clears it).  A thread state's address can
 *   be reused by a new thread as soon as the old one is deleted, so nothing keeps a
 *   pthread_t: timers are aimed by kernel thread id, which the kernel checks.
 * - States are freed only when no handler can be reading them: dead states (the TLS
 *   destructor marks them, last) at start(), or while running by sp_shadow_reap()
 *   once no handler is running.
 * - Deeper than capacity: frames are counted in `overflow` and not stored; samples
 *   taken then are marked, never overflow the array.  `room` is cap - 1 while frames
 *   are stored and 0 while they are counted (or not known yet): the trackers' one test
 *   `depth - 1 >= room` sends the empty stack, the full stack and overflow to their
 *   slow paths.  room never exceeds cap - 1; whoever changes cap zeroes it first.
 */
#ifndef SP_SHADOW_H
#define SP_SHADOW_H

#include "compat.h"
#include "registry.h"
#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef struct {
    sp_pyframe_t *frame;
    uint32_t code_id;
    uint32_t pos;            /* the depth when this entry is the top one (index + 1):
                                written when the array is made, never after */
} sp_entry_t;

typedef struct sp_thread {
    uint32_t depth;          /* entries in use; owner thread, GIL */
    uint32_t overflow;       /* frames entered beyond capacity; owner thread, GIL */
    uint32_t cur_id;         /* code id of the running frame when seeded; the trackers take
                                the caller from the entry below instead; GIL */
    uint32_t cap;            /* capacity of stack */
    uint32_t room;           /* cap - 1, or 0 to send the trackers to their slow path (see
                                above); owner thread, GIL */
    int deep_base;           /* overflowing under sys.monitoring: the interpreter's
                                depth of the frame stored on top (monitoring.c); -1 under
                                the PEP 523 tracker; owner thread, GIL */
    sp_entry_t *stack;       /* cap entries, and below stack[0] the sentinel stack[-1]
                                (pos 0, code id SP_ID_ROOT) that ends the trackers'
                                searches (sp_tracker_caller_below) */
    PyThreadState *tstate;   /* the interpreter's state of this thread */
    PyThreadState *live_tstate;  /* tstate until CPython clears it, then NULL (see
                                    sp_shadow_bind); read by monitoring.c; GIL */
    uint64_t tid;            /* kernel thread id */
    uintptr_t c_stack_low;   /* below it the PEP 523 tracker refuses to recurse */
    timer_t timer;           /* this thread's sampling timer (sampler.c) */
    int has_timer;           /* atomic: whoever clears it deletes the timer */
    uint64_t last_clock_ns;  /* clock at the previous sample; the thread's own handler */
    volatile int busy;       /* start() is rewriting the stack */
    volatile int attached;   /* sp_tls of the owning thread points here */
    volatile int dead;       /* the thread exited; the last write of the TLS destructor */
    int in_session;          /* seeded or attached since the last start(): gets a timer */
    int ignored;             /* the profiler's own thread: never tracked nor sampled */
    struct sp_thread *next;  /* all states; GIL (append at head, published atomically) */
} sp_thread_t;

extern __thread sp_thread_t *sp_tls __attribute__((tls_model("initial-exec")));

/* The trackers' view of sp_tls: the same state, or instead of NULL sp_shadow_detached,
 * a state that sends every tracker fast path to its slow path (its c_stack_low is the
 * top of the address space, its live_tstate NULL, its room 0), so that the fast paths
 * need no NULL test.  Set only through sp_shadow_set_tls.  Owner thread. */
extern __thread sp_thread_t *sp_tls_track __attribute__((tls_model("initial-exec")));
extern sp_thread_t sp_shadow_detached;

/* Sets sp_tls and sp_tls_track.  Owner thread; async-signal-safe. */
static inline void
sp_shadow_set_tls(sp_thread_t *t)
{
    sp_tls = t;
    sp_tls_track = t ? t : &sp_shadow_detached;
}

/* Head of the list of all thread states.  Written with the GIL held; read by the
 * handler (the list is only ever prepended to while profiling runs). */
extern sp_thread_t *sp_threads;

/* Registers what the sampler does when a thread attaches (GIL held; NULL: nothing,
 * while no session samples) and when a thread exits or leaves the session (no GIL:
 * at thread exit; its timer is deleted).  GIL held. */
void sp_shadow_watch(void (*on_attach)(sp_thread_t *t), void (*on_exit)(sp_thread_t *t));

/* Capacity of new stacks (frames).  Set by start() through sp_shadow_set_capacity;
 * GIL. */
extern uint32_t sp_shadow_capacity;
void sp_shadow_set_capacity(uint32_t frames);

/* Attaches the calling thread (GIL held): finds the state seeded for `ts` or makes a
 * new one, and sets sp_tls.  Returns NULL if memory runs out. */
sp_thread_t *sp_shadow_attach(PyThreadState *ts);

/* Sets t->tstate and t->live_tstate to the calling thread's current state and has
 * CPython tell us when it clears that state (a capsule in the state's dict sets
 * live_tstate to NULL), so that the monitoring callbacks can read t->live_tstate
 * instead of calling into CPython for it.  Owner thread, GIL held.  Returns
 * t->live_tstate (NULL if memory ran out). */
PyThreadState *sp_shadow_bind(sp_thread_t *t);

/* Rebuilds every thread's stack from the interpreter's frames and frees states of
 * threads that are gone.  GIL held, no tracker attached yet, no handler armed.
 * Returns -1 with an exception set on failure. */
int sp_shadow_seed_all(void);

/* Frees the states of threads that have exited, if no handler is running right now
 * (else leaves them for a later call).  GIL held; callable while profiling runs.
 * `running_handlers` is the sampler's count of handlers in progress. */
void sp_shadow_reap(volatile int *running_handlers);

/* Marks the calling thread as the profiler's own (GIL held): it is never tracked,
 * seeded or given a timer, in this session and the next ones.  Returns -1 with an
 * exception set if memory runs out. */
int sp_shadow_ignore_self(void);

/* Rebuilds t's stack from the interpreter's frames `top` and its callers, keeping the
 * innermost if there are more than the capacity; returns the new depth.  Code objects
 * are registered first (that may run Python code, which pushes), then the entries are
 * written with the stack emptied meanwhile, so that a sample sees either nothing or
 * the new stack.  On 3.11 each stored frame gets its index as hint (compat.h): frames
 * that were running at start() are found without a search too.  Owner thread (or
 * start(), before any handler is armed), GIL held. */
uint32_t sp_shadow_fill(sp_thread_t *t, sp_pyframe_t *top);

/* The entry of `parent` on t's stack, given the top entry `top` (the stack is not
 * empty): normally the top entry itself; otherwise frames that ended since the last
 * push are still above it, and the search goes down past them.  Returns NULL if the
 * parent is not on the stack (the tracker's slow path then handles it: an untracked or
 * incomplete parent, a switched or reseeded stack).  Owner thread, GIL held. */
static inline sp_entry_t *
sp_shadow_find(sp_entry_t *stack, sp_entry_t *top, const sp_pyframe_t *parent)
{
    while (top->frame != parent) {
        if (top == stack)
            return NULL;
        top--;
    }
    return top;
}

/* The push shared by the two trackers, once the tracker has found the entry `below` of the
 * frame's caller, at depth d - 1 (d < cap): stores the entry of f above it (dropping
 * whatever was there), complete before the new depth is published (the handler reads
 * the stack), and on 3.11 the entry's index d in f's padding (compat.h,
 * sp_frame_hint), where f's callees' pushes look for it.  The tracker then counts the
 * call of e from below->code_id (it does so itself, to keep its slow edge path a tail
 * call).  Owner thread, GIL held. */
static inline void
sp_shadow_push(sp_thread_t *t, sp_entry_t *below, uint32_t d, sp_pyframe_t *f,
               sp_code_t *e)
{
    below[1].frame = f;
    below[1].code_id = e->id;
    sp_frame_set_hint(f, d);
    __atomic_signal_fence(__ATOMIC_RELEASE);
    t->depth = d + 1;
}

/* The same at depth 0, or with the caller's id given.  Owner thread, GIL held. */
static inline void
sp_shadow_push_at(sp_thread_t *t, uint32_t d, sp_pyframe_t *f, sp_code_t *e,
                  uint32_t caller)
{
    t->stack[d].frame = f;
    t->stack[d].code_id = e->id;
    sp_frame_set_hint(f, d);
    __atomic_signal_fence(__ATOMIC_RELEASE);
    t->depth = d + 1;
    sp_code_count_call(e, caller);
}

/* For readers other than the trackers (the handler, thread_stacks): how many of t's
 * entries are live, given the thread's state ts: the entries up to and including the
 * one of the current frame, found by address and code id (the stack invariant puts
 * its tracked ancestors below it).  The current frame pointer is dereferenced only
 * once it is found on the stack (see sampler.c: it may be uninitialised).  *deep is set
 * when the current frame is beyond the stack's capacity: then every entry is one of
 * its callers (under sys.monitoring, whose overflow ends lazily too, as long as the
 * interpreter is deeper than the top entry).  Returns 0 when the current frame is not
 * on the stack and not beyond it: the entries on top may be frames that ended.
 * async-signal-safe when run by the handler on the interrupted owner thread;
 * otherwise GIL held. */
static inline uint32_t
sp_shadow_live_depth(const sp_thread_t *t, PyThreadState *ts, int *deep)
{
    uint32_t d = t->depth < t->cap ? t->depth : t->cap;
    *deep = 0;
    if (d == 0)
        return 0;
    sp_pyframe_t *cur = SP_TSTATE_CURRENT(ts);
    uint32_t k = d;
    while (k > 0 && t->stack[k - 1].frame != cur)
        k--;
    if (k) {
        /* A frame that ended may have left its entry at the new frame's address. */
        sp_code_t *e = sp_code_of(SP_FRAME_CODE(cur));
        if (e && e->id == t->stack[k - 1].code_id)
            return k;
    }
#if SP_HAS_MONITORING
    if (t->overflow &&
        ts->py_recursion_limit - ts->py_recursion_remaining > t->deep_base) {
#else
    if (t->overflow) {
#endif
        *deep = 1;
        return d;
    }
    return 0;
}

/* Finds the state of the calling thread in the handler.  async-signal-safe. */
sp_thread_t *sp_shadow_self(void);

/* Number of live states, and bytes they hold.  GIL held. */
size_t sp_shadow_count(size_t *bytes);

/* After fork, in the child: only the calling thread survives; the others' states are
 * marked dead (freed at the next start), and no thread has a timer any more.
 * async-signal-safe (runs in a pthread_atfork child handler). */
void sp_shadow_after_fork_child(void);

#endif /* SP_SHADOW_H */
