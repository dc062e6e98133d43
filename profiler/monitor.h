/* monitor.h: the sys.monitoring backend (CPython 3.12+) that keeps the shadow stacks.
 *
 * The alternative to the PEP 523 hook (hook.c) on 3.12 and later, where a
 * frame-evaluation function turns off CPython's inlined Python-to-Python calls, so
 * that every Python call then recurses in C and deep recursion hits the C recursion
 * limit.  sys.monitoring keeps the inlined calls: it calls shadowprof's C callables on
 * PY_START, PY_RESUME and PY_THROW (push) and on PY_RETURN, PY_YIELD and PY_UNWIND
 * (pop), with the GIL held, on the thread whose frame starts or ends.  The bookkeeping
 * is the hook's: the same registry call and edge counts, the same shadow-stack entries
 * (the frame is the thread state's current _PyInterpreterFrame), the same parent check
 * and resync.
 *
 * shadowprof takes a tool id of its own, the first free one of SP_MONITOR_TOOL_IDS
 * (3, 4), never 0-2 (debugger, coverage, profiler: cProfile takes 2) or 5 (optimizer),
 * and sets events only for that id, so other tools keep theirs.  stop releases the
 * events, the callbacks and the id.
 *
 * The callbacks read sp_hook_state (hook.h) like the hook: SP_HOOK_ON to record,
 * SP_HOOK_DRAIN to drain the ring first.  GIL held everywhere here.
 */
#ifndef SP_MONITOR_H
#define SP_MONITOR_H

#include "compat.h"

#if PY_VERSION_HEX >= 0x030C0000
#  define SP_MONITOR_AVAILABLE 1
#else
#  define SP_MONITOR_AVAILABLE 0
#endif

/* Takes a free tool id, registers the callbacks and enables the events.  Returns -1
 * with an exception set (a one-line message) if no id is free, if sys.monitoring is
 * missing (before 3.12), or if a call into it fails.  GIL held. */
int sp_monitor_install(void);

/* Disables the events, unregisters the callbacks and frees the tool id, if installed;
 * any pending Python exception is kept.  GIL held. */
void sp_monitor_uninstall(void);

/* The tool id in use, or -1 when not installed.  GIL held. */
int sp_monitor_tool_id(void);

#endif /* SP_MONITOR_H */
