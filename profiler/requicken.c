/* requicken.c: gives code objects back the superinstructions that CPython 3.12's
 * sys.monitoring instrumentation took from them (CPython 3.12 only; elsewhere the
 * functions do nothing).
 *
 * Why.  CPython 3.12 forms superinstructions (LOAD_FAST__LOAD_FAST and four others:
 * one instruction that does the work of two) once, when a code object is created.
 * Instrumenting the code for sys.monitoring turns them back into their two plain
 * instructions, and removing the instrumentation does not form them again.  Continuous
 * mode switches its monitoring events on and off once per window, so after the first
 * window every function that ran in one ran without them for the rest of the process:
 * about 3% slower on call-heavy code, paid outside the windows, where the budget did
 * not see it (benchmarks/RESULTS.md, "CPython 3.12's lost superinstructions").
 * 3.13's compiler emits its superinstructions into the bytecode itself, and removing
 * the instrumentation restores them; 3.11 and earlier have no sys.monitoring.
 *
 * What.  For a code object that carries no instrumentation (no tool has local or
 * active events in it, and no instrumented instruction is left in it), the same pairs
 * are formed as at creation: the first instruction of each pair below
 * becomes the superinstruction that runs both.  Only that instruction's opcode byte
 * changes; the second instruction stays, so a jump to it still runs it alone, and a
 * frame paused anywhere in the code goes on correctly (none is ever paused between the
 * two: these instructions never release the GIL).  De-instrumentation is lazy in
 * CPython (a function is rewritten when it next starts), so the caller runs this some
 * time after the events were turned off; code not yet rewritten is left for the next
 * time (it has not run since, so it costs nothing), or, where no later pass will come
 * (Profiler.stop()), de-instrumented now by the caller's deinstrument (monitoring.c:
 * through sys.monitoring's own local events).  The code is then as CPython
 * creates it: if a tool turns events on later, CPython instruments it as it does any
 * new code object (taking the superinstructions apart again).
 *
 * Thread contract: GIL held (the bytes are the interpreter's, and every other thread
 * is between instructions); never from the signal handler.
 */
#include "requicken.h"

#include "registry.h"

#if SP_HAS_REQUICKEN

#ifndef Py_BUILD_CORE
#  define Py_BUILD_CORE 1
#endif
/* The opcode tables (cache entries per instruction, specialised -> base opcode) of
 * the CPython this is compiled against, as our own hidden copies: CPython does not
 * export its own. */
#define NEED_OPCODE_TABLES
#include "internal/pycore_opcode.h"
#undef NEED_OPCODE_TABLES
#undef Py_BUILD_CORE

/* The superinstruction for the pair (first, second) of base opcodes, or 0. */
static int
super_of(int first, int second)
{
    switch (first << 8 | second) {
    case LOAD_CONST << 8 | LOAD_FAST:
        return LOAD_CONST__LOAD_FAST;
    case LOAD_FAST << 8 | LOAD_CONST:
        return LOAD_FAST__LOAD_CONST;
    case LOAD_FAST << 8 | LOAD_FAST:
        return LOAD_FAST__LOAD_FAST;
    case STORE_FAST << 8 | LOAD_FAST:
        return STORE_FAST__LOAD_FAST;
    case STORE_FAST << 8 | STORE_FAST:
        return STORE_FAST__STORE_FAST;
    }
    return 0;
}

static int
any_tool(const uint8_t *tools)
{
    for (int e = 0; e < _PY_MONITORING_UNGROUPED_EVENTS; e++)
        if (tools[e])
            return 1;
    return 0;
}

/* Whether co may be rewritten: see the header comment. */
static int
eligible(PyCodeObject *co)
{
    _PyCoMonitoringData *m = co->_co_monitoring;
    if (m && (any_tool(m->local_monitors.tools) || any_tool(m->active_monitors.tools)))
        return 0;
    _Py_CODEUNIT *instr = _PyCode_CODE(co);
    Py_ssize_t n = Py_SIZE(co);
    for (Py_ssize_t i = 0; i < n; i++) {
        int op = instr[i].op.code;
        if (op >= MIN_INSTRUMENTED_OPCODE)
            return 0;
        i += _PyOpcode_Caches[_PyOpcode_Deopt[op]];
    }
    return 1;
}

Py_ssize_t
sp_requicken_code(PyCodeObject *co)
{
    if (!eligible(co))
        return -1;
    _Py_CODEUNIT *instr = _PyCode_CODE(co);
    Py_ssize_t n = Py_SIZE(co), formed = 0;
    int prev = 0;   /* the base opcode of instr[i - 1], 0 after cache entries */
    for (Py_ssize_t i = 0; i < n; i++) {
        int base = _PyOpcode_Deopt[instr[i].op.code];
        int caches = _PyOpcode_Caches[base];
        if (caches) {
            i += caches;
            prev = 0;
            continue;
        }
        int super = super_of(prev, base);
        if (super && instr[i - 1].op.code == prev) {
            instr[i - 1].op.code = (uint8_t)super;
            formed++;
        }
        prev = base;
    }
    return formed;
}

Py_ssize_t
sp_requicken_registry_with(int (*deinstrument)(PyCodeObject *, void *), void *ctx)
{
    Py_ssize_t changed = 0;
    uint32_t n = sp_registry_size();
    for (uint32_t id = SP_ID_FIRST_CODE; id < n; id++) {
        sp_code_t *e = sp_registry_get(id);
        if (!e || !e->code || e->quickened_version == e->code->_co_instrumentation_version)
            continue;   /* gone, or not instrumented again since the last time */
        PyCodeObject *co = e->code;
        Py_ssize_t formed = sp_requicken_code(co);
        if (formed < 0 && deinstrument) {
            /* CPython would rewrite it when it next starts: rewrite it now.  The
             * registry's reference is borrowed, and deinstrument calls into CPython,
             * whose allocations may collect garbage and run finalizers: hold it. */
            Py_INCREF(co);
            if (deinstrument(co, ctx) < 0)
                PyErr_Clear();
            else
                formed = sp_requicken_code(co);
            e = sp_registry_get(id);
            if (formed >= 0 && e && e->code == co) {
                e->quickened_version = co->_co_instrumentation_version;
                changed += formed > 0;
            }
            Py_DECREF(co);
            continue;
        }
        if (formed < 0)
            continue;   /* still instrumented: CPython rewrites it when it next starts */
        e->quickened_version = co->_co_instrumentation_version;
        changed += formed > 0;
    }
    return changed;
}

Py_ssize_t
sp_requicken_registry(void)
{
    return sp_requicken_registry_with(NULL, NULL);
}

#else /* !SP_HAS_REQUICKEN */

Py_ssize_t
sp_requicken_code(PyCodeObject *co)
{
    (void)co;
    return -1;
}

Py_ssize_t
sp_requicken_registry(void)
{
    return 0;
}

Py_ssize_t
sp_requicken_registry_with(int (*deinstrument)(PyCodeObject *, void *), void *ctx)
{
    (void)deinstrument;
    (void)ctx;
    return 0;
}

#endif
