/* monitoring.h: the sys.monitoring tracker ("monitoring", CPython 3.12+), for
 * backend.c.  See monitoring.c. */
#ifndef SP_MONITORING_H
#define SP_MONITORING_H

#include "tracker.h"

/* Takes a free sys.monitoring tool id (3 or 4), registers callbacks for PY_START,
 * PY_RESUME and PY_THROW and enables them; uninstall releases the events, callbacks
 * and id.  Before 3.12 install fails with a one-line ValueError (SP_HAS_MONITORING). */
extern const sp_tracker_t sp_tracker_monitoring;

/* CPython 3.12, events off (not installed): gives every code object of the registry
 * that the events instrumented its superinstructions back (requicken.c), the code
 * CPython has not de-instrumented yet included, which this de-instruments now through
 * a tool id taken for the purpose and released (skipped if 3 and 4 are both taken).
 * Returns how many changed; 0 elsewhere.  GIL held.  About 1.5 us per such code
 * object: for Profiler.stop(), after which no later pass comes. */
Py_ssize_t sp_monitoring_requicken_all(void);

#endif /* SP_MONITORING_H */
