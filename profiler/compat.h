/* compat.h: the few facts about CPython's frames that shadowprof reads, per version.
 *
 * Owns: which frame type the PEP 523 hook receives, how to get a frame's code object,
 * its caller as the interpreter sees it, and its current instruction; the one field
 * shadowprof writes into a frame (3.11's position hint in the frame's padding,
 * sp_frame_hint); and the feature tests the trackers make (SP_HAS_MONITORING,
 * SP_EVAL_OWNS_FRAME, SP_FRAME_HAS_HINT).  The frame
 * accessors are here, so that a new CPython version is mostly one block in this file;
 * under those feature tests the trackers also read a few recursion counters and frame
 * owners directly (pep523.c, monitoring.c, shadow.h).  Other files test PY_VERSION_HEX
 * only where an API was renamed or a thread-state field appeared (drain.c, drainer.c,
 * registry.c, shadow.c: `grep -n PY_VERSION_HEX profiler/`), each beside its one use.
 *
 * Contract: the SP_FRAME_* accessors are plain loads from live frames and are
 * async-signal-safe when the frame is alive (the signal handler only reads frames that
 * are ancestors of the thread's current frame).
 */
#ifndef SP_COMPAT_H
#define SP_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>

#if PY_VERSION_HEX >= 0x030B0000
#  ifndef Py_BUILD_CORE
#    define Py_BUILD_CORE 1
#  endif
#  include "internal/pycore_frame.h"
#  undef Py_BUILD_CORE
typedef struct _PyInterpreterFrame sp_pyframe_t;
#else
#  include <frameobject.h>
typedef PyFrameObject sp_pyframe_t;
#endif

/* The code object's scratch space, laid out as CPython's codeobject.c defines it
 * (unchanged from 3.6 to 3.13); read inline by the hook to avoid a call per event. */
typedef struct {
    Py_ssize_t ce_size;
    void *ce_extras[1];
} sp_code_extra_t;

#if PY_VERSION_HEX >= 0x030D0000
/* 3.13: f_executable, instr_ptr points at the next instruction. */
#  define SP_FRAME_CODE(f) ((PyCodeObject *)(f)->f_executable)
#  define SP_FRAME_INSTR(f) \
    ((int)((f)->instr_ptr - _PyCode_CODE(SP_FRAME_CODE(f))))
#  define SP_TSTATE_CURRENT(ts) ((ts)->current_frame)
#  define SP_FRAME_PREVIOUS(f) ((f)->previous)
#  define SP_FRAME_IS_INCOMPLETE(f) _PyFrame_IsIncomplete(f)
#elif PY_VERSION_HEX >= 0x030B0000
/* 3.11, 3.12: f_code, prev_instr is the last instruction started. */
#  define SP_FRAME_CODE(f) ((f)->f_code)
#  define SP_FRAME_INSTR(f) \
    ((int)((f)->prev_instr - _PyCode_CODE(SP_FRAME_CODE(f))))
#  define SP_TSTATE_CURRENT(ts) ((ts)->cframe->current_frame)
#  define SP_FRAME_PREVIOUS(f) ((f)->previous)
#  define SP_FRAME_IS_INCOMPLETE(f) _PyFrame_IsIncomplete(f)
#else
/* 3.9, 3.10: frame objects; f_lasti counts code units on 3.10, bytes on 3.9. */
#  define SP_FRAME_CODE(f) ((f)->f_code)
#  if PY_VERSION_HEX >= 0x030A0000
#    define SP_FRAME_INSTR(f) ((f)->f_lasti)
#  else
#    define SP_FRAME_INSTR(f) ((f)->f_lasti / 2)
#  endif
#  define SP_TSTATE_CURRENT(ts) ((ts)->frame)
#  define SP_FRAME_PREVIOUS(f) ((f)->f_back)
#  define SP_FRAME_IS_INCOMPLETE(f) 0
#endif

#include <opcode.h>   /* YIELD_VALUE and friends, for sp_frame_suspended */

/* sys.monitoring exists (3.12+): the "monitoring" tracker (monitoring.c). */
#if PY_VERSION_HEX >= 0x030C0000
#  define SP_HAS_MONITORING 1
#else
#  define SP_HAS_MONITORING 0
#endif

/* The evaluation function owns the frame it is given and pops it when the frame ends
 * (3.12+); before, the caller clears and pops it after any error (pep523.c). */
#define SP_EVAL_OWNS_FRAME SP_HAS_MONITORING

/* Whether the calling thread runs in the main interpreter, the only one shadowprof
 * profiles (backend.c says so to the user).  GIL held. */
static inline int
sp_is_main_interpreter(void)
{
    return PyThreadState_Get()->interp == PyInterpreterState_Main();
}

/* 3.13 made _PyLong_AsInt public as PyLong_AsInt and removed the old name. */
#if PY_VERSION_HEX >= 0x030D0000 && !defined(_PyLong_AsInt)
#  define _PyLong_AsInt PyLong_AsInt
#endif

/* Code-object extra slots: public (unstable) API from 3.12, which deprecates the
 * underscore names. */
#if PY_VERSION_HEX >= 0x030C0000
#  define SP_REQUEST_CODE_EXTRA_INDEX PyUnstable_Eval_RequestCodeExtraIndex
#  define SP_CODE_SET_EXTRA PyUnstable_Code_SetExtra
#else
#  define SP_REQUEST_CODE_EXTRA_INDEX _PyEval_RequestCodeExtraIndex
#  define SP_CODE_SET_EXTRA _PyCode_SetExtra
#endif

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *
sp_new_ref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#  define Py_NewRef(o) sp_new_ref((PyObject *)(o))
#endif

/* The running thread's state, without the check PyThreadState_Get() makes (one call
 * that reads a thread-local).  GIL held. */
#if PY_VERSION_HEX >= 0x030D0000
#  define SP_TSTATE_GET() PyThreadState_GetUnchecked()
#else
#  define SP_TSTATE_GET() _PyThreadState_UncheckedGet()
#endif

/* The frame that called f, as the shadow stack records frames: the nearest older frame
 * that is complete.  On 3.12+ this skips the interpreter's entry frames (owned by the C
 * stack) and 3.13's __init__ shim frame, which are never pushed.  GIL held. */
static inline sp_pyframe_t *
sp_frame_caller(sp_pyframe_t *f)
{
    f = SP_FRAME_PREVIOUS(f);
    while (f && SP_FRAME_IS_INCOMPLETE(f))
        f = SP_FRAME_PREVIOUS(f);
    return f;
}

/* On 3.11+ calling a generator function runs its frame briefly (RETURN_GENERATOR) to
 * create the generator; that entry is not a call of the generator's body (cProfile does
 * not count it either).  Resumptions run frames owned by the generator. */
#if PY_VERSION_HEX >= 0x030B0000
#  define SP_FRAME_IS_CREATION(f) ((f)->owner != FRAME_OWNED_BY_GENERATOR)
#else
#  define SP_FRAME_IS_CREATION(f) 0
#endif

/* For the PEP 523 hook, given a frame of generator code and the hook's throwflag (0
 * or 1): whether it is an ordinary resumption (neither the creation nor a throw()), in
 * one compare on 3.11+: a frame being evaluated is owned by its thread or by its
 * generator, never by a frame object (FRAME_OWNED_BY_GENERATOR + 1), so owner equals
 * GENERATOR + throwflag only for a generator's frame with throwflag 0. */
#if PY_VERSION_HEX >= 0x030B0000
_Static_assert(FRAME_OWNED_BY_GENERATOR + 1 == FRAME_OWNED_BY_FRAME_OBJECT,
               "SP_FRAME_IS_PLAIN_RESUME relies on the order of the frame owners");
#  define SP_FRAME_IS_PLAIN_RESUME(f, throwflag) \
    ((unsigned char)(f)->owner == (unsigned char)(FRAME_OWNED_BY_GENERATOR + (throwflag)))
#else
#  define SP_FRAME_IS_PLAIN_RESUME(f, throwflag) ((throwflag) == 0)
#endif

/* Whether the generator frame f is suspended at a yield.  CPython's throw() into a
 * generator that delegates (yield from, await) makes the delegating frame current
 * without resuming it, while the exception is thrown into the sub-generator; the
 * profilers (cProfile too) do not count the delegating frame as the caller then.
 * GIL held; f is alive. */
static inline int
sp_frame_suspended(sp_pyframe_t *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    /* YIELD_VALUE moves instr_ptr past itself. */
    if (f->owner != FRAME_OWNED_BY_GENERATOR || f->instr_ptr <= _PyCode_CODE(SP_FRAME_CODE(f)))
        return 0;
    int op = f->instr_ptr[-1].op.code;
    return op == YIELD_VALUE || op == INSTRUMENTED_YIELD_VALUE;
#elif PY_VERSION_HEX >= 0x030C0000
    if (f->owner != FRAME_OWNED_BY_GENERATOR || f->prev_instr < _PyCode_CODE(SP_FRAME_CODE(f)))
        return 0;
    int op = f->prev_instr->op.code;
    return op == YIELD_VALUE || op == INSTRUMENTED_YIELD_VALUE;
#elif PY_VERSION_HEX >= 0x030B0000
    if (f->owner != FRAME_OWNED_BY_GENERATOR || f->prev_instr < _PyCode_CODE(SP_FRAME_CODE(f)))
        return 0;
    return _Py_OPCODE(*f->prev_instr) == YIELD_VALUE;
#elif PY_VERSION_HEX >= 0x030A0000
    /* A YIELD_FROM that yields steps f_lasti back onto the instruction before it. */
    if (f->f_lasti < 0)
        return 0;
    const _Py_CODEUNIT *code = (const _Py_CODEUNIT *)PyBytes_AS_STRING(f->f_code->co_code);
    Py_ssize_t n = PyBytes_GET_SIZE(f->f_code->co_code) / 2;
    return _Py_OPCODE(code[f->f_lasti]) == YIELD_VALUE ||
           (f->f_lasti + 1 < n && _Py_OPCODE(code[f->f_lasti + 1]) == YIELD_FROM);
#else
    return !f->f_executing;
#endif
}

/* 3.11 only: a frame's position hint, 16 bits kept in the 2 bytes of padding of
 * `_PyInterpreterFrame` between `char owner` (offset 69) and `localsplus` (72) on
 * 64-bit builds.  The PEP 523 hook writes there the shadow-stack index of the frame's
 * entry when it pushes it (shadow.h, sp_shadow_push*, sp_shadow_fill), and reads the
 * caller's back instead of searching down the stack (tracker.h,
 * sp_tracker_caller_at).  CPython never reads those bytes: it initialises a frame
 * field by field (_PyFrame_InitializeSpecials) and copies a whole frame only with
 * memcpy (_PyFrame_Copy: a generator's frame at its creation, a frame object taking
 * over an ended frame), which carries the hint along.  So the bytes hold whatever the
 * memory held before for every frame we did not push (pushed before the hook ran, by
 * another evaluator, past the stack's capacity, a generator's creation): a hint is a
 * guess that its reader validates.  The asserts break the build, not the host, should
 * a 3.11 build lay the frame out otherwise.  3.12+ frames have other fields there and
 * 3.12+ run sys.monitoring by default: no hint (SP_FRAME_HAS_HINT 0, and
 * sp_frame_set_hint does nothing). */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#  define SP_FRAME_HAS_HINT 1
#  define SP_FRAME_HINT_OFFSET (offsetof(sp_pyframe_t, owner) + 1)
_Static_assert(sizeof(((sp_pyframe_t *)0)->owner) == 1, "3.11 frame layout: owner is a char");
_Static_assert(SP_FRAME_HINT_OFFSET + 2 <= offsetof(sp_pyframe_t, localsplus),
               "3.11 frame layout: no 2 bytes of padding after owner (sp_frame_hint)");
#  if __SIZEOF_POINTER__ == 8
_Static_assert(offsetof(sp_pyframe_t, owner) == 69, "3.11 frame layout: owner moved");
_Static_assert(offsetof(sp_pyframe_t, localsplus) == 72, "3.11 frame layout: localsplus moved");
#  endif
/* The hint of the live frame f (any 16 bits).  GIL held. */
static inline uint32_t
sp_frame_hint(const sp_pyframe_t *f)
{
    uint16_t h;
    memcpy(&h, (const char *)f + SP_FRAME_HINT_OFFSET, sizeof h);
    return h;
}
/* Stores index i (mod 2^16) as f's hint.  GIL held, f alive. */
static inline void
sp_frame_set_hint(sp_pyframe_t *f, uint32_t i)
{
    uint16_t h = (uint16_t)i;
    memcpy((char *)f + SP_FRAME_HINT_OFFSET, &h, sizeof h);
}
#else
#  define SP_FRAME_HAS_HINT 0
#  define sp_frame_set_hint(f, i) ((void)(f), (void)(i))
#endif

/* Code units are 2 bytes on every supported version. */
#define SP_INSTR_TO_ADDR(i) ((i) * 2)

#if defined(__GNUC__)
#  define SP_LIKELY(x) __builtin_expect(!!(x), 1)
#  define SP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#  define SP_HOT __attribute__((section("sp_hot_text"), noinline))
/* A hook whose every exit is a tail call needs no frame pointer: it never appears in a
 * native backtrace, and a sample that interrupts it counts as overhead.  Its search
 * loop is entered once per call at most: no padding executed before it. */
#  define SP_NO_FRAME __attribute__((optimize("omit-frame-pointer", "align-loops=1", "no-crossjumping")))
#else
#  define SP_NO_FRAME
#  define SP_LIKELY(x) (x)
#  define SP_UNLIKELY(x) (x)
#  define SP_HOT
#endif

#endif /* SP_COMPAT_H */
