/* monitoring.h: the sys.monitoring tracker ("monitoring", CPython 3.12+), for
 * backend.c.  See monitoring.c. */
#ifndef SP_MONITORING_H
#define SP_MONITORING_H

#include "tracker.h"

/* Takes a free sys.monitoring tool id (3 or 4), registers callbacks for PY_START,
 * PY_RESUME and PY_THROW and enables them; uninstall releases the events, callbacks
 * and id.  Before 3.12 install fails with a one-line ValueError (SP_HAS_MONITORING). */
extern const sp_tracker_t sp_tracker_monitoring;

#endif /* SP_MONITORING_H */
