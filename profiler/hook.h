/* hook.h: the PEP 523 frame-evaluation hook that keeps the shadow stacks.
 *
 * The hook runs on every Python frame entry (calls, generator and coroutine resumes,
 * class bodies, module code) with the GIL held.  Per call it does a few loads and
 * stores: find the code's registry entry (co_extra), drop the frames that ended since
 * the last call from the top of the stack (pops are lazy, see shadow.h), count the
 * caller->callee edge, push (frame, id), and tail-call the previous evaluation
 * function.
 *
 * sp_hook_state is read by the hooks' slow paths: SP_HOOK_ON while profiling, plus
 * SP_HOOK_DRAIN when the signal handler asks for the ring to be drained (the next slow
 * path drains it, with the GIL).  The handler only ever sets bits atomically.  The
 * fast paths do not read it: whoever changes it also zeroes the threads' `room`
 * (shadow.h), which sends them to the slow path: uninstall zeroes every thread's, the
 * handler that asks for a drain zeroes the interrupted thread's.
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

/* The mechanism that feeds the shadow stacks.  EVAL is the PEP 523 hook below;
 * MONITORING is sys.monitoring (monitor.c, 3.12+).  AUTO picks the cheapest exact one
 * for this CPython (SP_HOOK_DEFAULT): measured in benchmarks/hookcost/RESULTS.md, and
 * on 3.12+ the only one that keeps CPython's inlined Python calls (deep recursion). */
typedef enum { SP_HOOK_AUTO = 0, SP_HOOK_EVAL = 1, SP_HOOK_MONITORING = 2 } sp_hook_kind_t;
#ifndef SP_HOOK_DEFAULT   /* a build may choose: -DSP_HOOK_DEFAULT=SP_HOOK_EVAL */
#  if PY_VERSION_HEX >= 0x030C0000
#    define SP_HOOK_DEFAULT SP_HOOK_MONITORING
#  else
#    define SP_HOOK_DEFAULT SP_HOOK_EVAL
#  endif
#endif

/* "auto", "eval" or "monitoring" -> the kind, with auto resolved for this CPython.
 * Returns -1 with a one-line ValueError for an unknown name or for "monitoring"
 * before 3.12.  NULL means "auto". */
int sp_hook_kind_parse(const char *name);
/* Name of a resolved kind: "eval" or "monitoring". */
const char *sp_hook_kind_name(int kind);

/* Installs the mechanism `kind` (resolved) and remembers it; -1 with an exception set
 * if it cannot.  sp_hook_detach removes whichever is installed (no-op if none).
 * GIL held. */
int sp_hook_attach(int kind);
void sp_hook_detach(void);
/* The kind last attached (resolved), for reports. */
int sp_hook_kind(void);

/* The push's slow path, shared with monitor.c (GIL held, owner thread).
 * sp_push_depth_slow: the depth at which a frame whose caller is `parent` (a complete
 * frame, or NULL) goes: the parent's entry found below ended frames, or else the stack
 * rebuilt from the interpreter's frames (parent and its callers; this may run Python
 * code, registering their code objects).  The result may equal t->cap: no room.
 * sp_push_trim: drops ended frames above parent's entry, if it is on the stack. */
struct sp_thread;
uint32_t sp_push_depth_slow(struct sp_thread *t, sp_pyframe_t *parent);
void sp_push_trim(struct sp_thread *t, sp_pyframe_t *parent);

/* Address range of shadowprof's per-call code, for the handler's overhead test.
 * async-signal-safe. */
int sp_hook_owns_pc(uintptr_t pc);

#endif /* SP_HOOK_H */
