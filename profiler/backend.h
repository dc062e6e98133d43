/* backend.h: which tracker (tracker.h) keeps the shadow stacks: the user's choice
 * (hook='auto', 'eval' or 'monitoring'), the one attached, and the test that the
 * caller is in the main interpreter.  Everything here runs with the GIL held.
 */
#ifndef SP_BACKEND_H
#define SP_BACKEND_H

#include "compat.h"

/* EVAL is the PEP 523 tracker (pep523.c); MONITORING is sys.monitoring (monitoring.c,
 * 3.12+).  AUTO picks the cheapest exact one for this CPython (SP_BACKEND_DEFAULT):
 * measured in benchmarks/hookcost/RESULTS.md, and on 3.12+ the only one that keeps
 * CPython's inlined Python calls (deep recursion). */
typedef enum {
    SP_BACKEND_AUTO = 0,
    SP_BACKEND_EVAL = 1,
    SP_BACKEND_MONITORING = 2
} sp_backend_kind_t;
#ifndef SP_BACKEND_DEFAULT   /* a build may choose: -DSP_BACKEND_DEFAULT=SP_BACKEND_EVAL */
#  if SP_HAS_MONITORING
#    define SP_BACKEND_DEFAULT SP_BACKEND_MONITORING
#  else
#    define SP_BACKEND_DEFAULT SP_BACKEND_EVAL
#  endif
#endif

/* "auto", "eval" or "monitoring" -> the kind, with auto resolved for this CPython.
 * Returns -1 with a one-line ValueError for an unknown name or for "monitoring"
 * before 3.12.  NULL means "auto". */
int sp_backend_parse(const char *name);
/* Name of a resolved kind: "eval" or "monitoring". */
const char *sp_backend_name(int kind);

/* Returns 0 in the main interpreter, else -1 with a one-line RuntimeError: the only
 * interpreter shadowprof profiles. */
int sp_backend_check_interpreter(void);

/* Detaches the attached tracker if any, then installs the tracker `kind` and turns
 * recording on; `drain` is what a tracker's slow path calls when the handler asks for
 * the ring to be drained (tracker.h).  Returns -1 with an exception set if it cannot
 * (nothing is attached then). */
int sp_backend_attach(int kind, void (*drain)(void));
/* Turns recording off and uninstalls the attached tracker; no-op if none. */
void sp_backend_detach(void);
/* The kind last attached (resolved), for reports and the drain.  Any thread. */
int sp_backend_kind(void);

#endif /* SP_BACKEND_H */
