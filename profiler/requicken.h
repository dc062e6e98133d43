/* requicken.h: gives code objects back the superinstructions that CPython 3.12's
 * sys.monitoring instrumentation took from them (requicken.c).  GIL held. */
#ifndef SP_REQUICKEN_H
#define SP_REQUICKEN_H

#include "compat.h"

/* Whether this CPython loses superinstructions to instrumentation (3.12). */
#define SP_HAS_REQUICKEN (PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000)

/* Forms co's superinstructions again if no tool monitors it and its instrumentation
 * is gone; returns the number of pairs formed, or -1 if co is not eligible (still
 * instrumented, or monitored by some tool).  Always -1 where SP_HAS_REQUICKEN is 0. */
Py_ssize_t sp_requicken_code(PyCodeObject *co);

/* sp_requicken_code on every live code object of the registry that was instrumented
 * since its last pass; returns how many changed.  0 where SP_HAS_REQUICKEN is 0. */
Py_ssize_t sp_requicken_registry(void);

/* The same, and code that CPython has not de-instrumented yet (it does so when the
 * code next starts) is first de-instrumented by deinstrument(co, ctx): 0, or -1 with
 * an exception set (cleared; that code is left as it is).  See monitoring.h. */
Py_ssize_t sp_requicken_registry_with(int (*deinstrument)(PyCodeObject *, void *),
                                      void *ctx);

#endif /* SP_REQUICKEN_H */
