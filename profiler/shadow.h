/* shadow.h: per-thread shadow stacks.
 *
 * Each thread that runs Python code under the profiler owns one sp_thread_t: a
 * fixed-capacity array of (frame, code id) entries mirroring the interpreter's frames,
 * pushed and popped by the hook (hook.c) on every call and return, and read by the
 * SIGPROF handler (sampler.c) when it interrupts that same thread.
 *
 * Contract:
 * - Only the owning thread writes its entries, depth, overflow and cur_id, always with
 *   the GIL held; an entry is fully written before depth is raised (a compiler fence
 *   orders them), so a signal arriving at any instruction sees a consistent prefix.
 * - The handler finds its thread's state through the initial-exec TLS pointer sp_tls
 *   (one load, no __tls_get_addr) or, for a thread seeded at start() that has not run
 *   the hook since, by kernel thread id in the all-threads list.
 * - start() re-seeds every thread's stack from the interpreter's frames (GIL held);
 *   while it rewrites a thread's stack it sets `busy`, and the handler skips that
 *   thread's sample rather than read a torn stack.
 * - Stack invariant: below any entry lie the tracked ancestors of its frame, in order
 *   (every push checks that the new frame's parent is on top; when it is not on the
 *   stack at all, e.g. after a greenlet switch, the stack is rebuilt from the
 *   interpreter's frames).  Entries above the interpreter's current frame may be stale
 *   (frames seeded at start() that returned without the hook) and are never read
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
 *   taken then are marked, never overflow the array.
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
    uint32_t pad_;
} sp_entry_t;

typedef struct sp_thread {
    uint32_t depth;          /* entries in use; owner thread, GIL */
    uint32_t overflow;       /* frames entered beyond capacity; owner thread, GIL */
    uint32_t cur_id;         /* code id of the running frame; owner thread, GIL */
    uint32_t cap;            /* capacity of stack */
    sp_entry_t *stack;
    PyThreadState *tstate;   /* the interpreter's state of this thread */
    PyThreadState *live_tstate;  /* tstate until CPython clears it, then NULL (see
                                    sp_shadow_bind); read by monitor.c; GIL */
    uint64_t tid;            /* kernel thread id */
    uintptr_t c_stack_low;   /* below this C stack address the hook refuses to recurse */
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

/* Head of the list of all thread states.  Written with the GIL held; read by the
 * handler (the list is only ever prepended to while profiling runs). */
extern sp_thread_t *sp_threads;

/* Called (GIL held) when a thread attaches while profiling runs, and (no GIL) when
 * a thread exits; set by the sampler. */
extern void (*sp_shadow_on_attach)(sp_thread_t *t);
extern void (*sp_shadow_on_exit)(sp_thread_t *t);

/* Capacity of new stacks (frames).  Set by start(). */
extern uint32_t sp_shadow_capacity;

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
 * threads that are gone.  GIL held, hook not yet installed, no handler armed.
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

/* Slow paths of the hook; GIL held, owner thread. */
uint32_t sp_shadow_resync(sp_thread_t *t, sp_pyframe_t *parent);
void sp_shadow_pop_slow(sp_thread_t *t, sp_pyframe_t *f);

/* The push shared by the two hooks (hook.c, monitor.c), once the hook has found the
 * depth d at which frame f goes (its parent on top): stores the entry, or counts it as
 * overflow past the stack's capacity; t->overflow != 0 already means "past it".  The
 * entry is complete before the new depth is published (the handler reads the stack).
 * Then counts the call of e from the code that was running.  Returns that caller's
 * id.  Owner thread, GIL held. */
static inline uint32_t
sp_shadow_push(sp_thread_t *t, uint32_t d, sp_pyframe_t *f, sp_code_t *e)
{
    if (SP_LIKELY(t->overflow == 0)) {
        if (SP_LIKELY(d < t->cap)) {
            t->stack[d].frame = f;
            t->stack[d].code_id = e->id;
            __atomic_signal_fence(__ATOMIC_RELEASE);
            t->depth = d + 1;
        } else {
            t->overflow = 1;
        }
    } else {
        t->overflow++;
    }
    uint32_t caller = t->cur_id;
    t->cur_id = e->id;
    sp_code_count_call(e, caller);
    return caller;
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
