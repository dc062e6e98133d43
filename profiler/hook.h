/* hook.h: the PEP 523 frame-evaluation hook that keeps the shadow stacks.
 *
 * The hook runs on every Python frame entry (calls, generator and coroutine resumes,
 * class bodies, module code) with the GIL held.  Per call it does a few loads and
 * stores: find the code's registry entry (co_extra), count the call and the
 * caller->callee edge, push (frame, id), chain to the previous evaluation function,
 * pop.  Exceptions unwind through the same return path, so bookkeeping is exact.
 *
 * sp_hook_state is read by the hook on every call: SP_HOOK_ON while profiling, plus
 * SP_HOOK_DRAIN when the signal handler asks for the ring to be drained (the next call
 * drains it, with the GIL).  The handler only ever sets bits atomically.
 */
#ifndef SP_HOOK_H
#define SP_HOOK_H

#include "compat.h"

#define SP_HOOK_ON 1u
#define SP_HOOK_DRAIN 2u

extern volatile uint32_t sp_hook_state;

/* Called by the hook (GIL held) when SP_HOOK_DRAIN is seen. */
extern void (*sp_hook_drain)(void);

/* Installs the hook on the calling thread's interpreter, chaining to whatever
 * evaluation function is installed.  Returns -1 with an exception set if it cannot.
 * GIL held. */
int sp_hook_install(void);
/* Uninstalls it if it is still the interpreter's evaluation function; otherwise (a
 * later tool chained to us) leaves it in place, passing every call straight through.
 * Frames entered through the hook still return through it afterwards; that is safe.
 * GIL held. */
void sp_hook_uninstall(void);
int sp_hook_installed(void);

/* Address range of shadowprof's per-call code, for the handler's overhead test.
 * async-signal-safe. */
int sp_hook_owns_pc(uintptr_t pc);

#endif /* SP_HOOK_H */
