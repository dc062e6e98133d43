/* native.h: capture of the native (C) stack in the signal handler, with libunwind.
 *
 * libunwind (libunwind8, headers from libunwind-dev) is loaded with dlopen when native
 * capture is first enabled, so the extension builds and imports without it and only
 * --native needs it.  sp_native_enable runs with the GIL held, before the timers are
 * armed: it loads the library, sets the caching policy and unwinds once to warm every
 * lazy initialisation up, so the handler never runs libunwind's first-time setup.
 *
 * Signal contract: sp_native_capture is async-signal-safe (libunwind's local unwinder is
 * documented signal-safe; it allocates nothing; it never waits for the loader lock, see
 * native.c) and writes only the caller's buffer and two atomic counters.  It unwinds from the
 * interrupted context, so the first frame is the interrupted instruction.
 */
#ifndef SP_NATIVE_H
#define SP_NATIVE_H

#include <stdint.h>

/* Location keys of native frames in the aggregation table: the tag bit, then the pc
 * (user-space addresses are far below 2^63).  Python frames are code id << 32 | line
 * with ids below 2^31, so the two never collide. */
#define SP_NATIVE_LOC_TAG (1ull << 63)

/* Nonzero while the handler should capture native stacks.  Written with the GIL held
 * before the timers start and after they stop; read by the handler. */
extern volatile int sp_native_on;

/* Loads libunwind and prepares it.  Returns 0, or -1 with a Python exception set
 * (RuntimeError naming the missing piece and the fix).  GIL held; idempotent. */
int sp_native_enable(void);
/* Turns capture on or off (after sp_native_enable succeeded).  GIL held. */
void sp_native_set(int on);

/* Whether pc lies in the interpreter's evaluation loop (_PyEval_EvalFrameDefault), as
 * found at enable time.  Plain loads. */
int sp_native_is_eval(uint64_t pc);

/* Unwinds the interrupted thread from the signal's ucontext into pcs, innermost first:
 * pcs[0] is the interrupted instruction, each later pc is a return address minus one
 * (an address inside the call instruction, ready for symbol lookup).  Returns the
 * number of pcs written (at most max; 0 if capture is off, skipped or failed).
 * async-signal-safe; re-entrant (state on the caller's stack). */
uint32_t sp_native_capture(void *ucontext, uint64_t *pcs, uint32_t max);

/* Samples whose native stack was skipped because unwinding could have waited for the
 * dynamic loader's lock (held by another thread, changing hands, or the loader
 * changing its list of objects: see native.c), and unwinds that failed at the first
 * frame.  Atomic reads. */
uint64_t sp_native_skipped(void);
uint64_t sp_native_failed(void);
void sp_native_reset_counts(void);

#endif /* SP_NATIVE_H */
