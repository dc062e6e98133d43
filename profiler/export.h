/* export.h: the live profile straight to a pprof file: marks and write_pprof.
 *
 * snapshot() turns the whole table into Python objects, which Profile.from_snapshot()
 * and pprof.encode() then walk: seconds at the table's cap.  The writer here reads
 * the table (table.c), the registry (registry.c) and the drain's counters directly
 * into the encoder's plain-C profile (pprof_enc.h's sp_pprof_t), then encodes,
 * compresses and writes it with the GIL released (sp_pprof_emit).  analysis/pprof.py's
 * encode() fills the same sp_pprof_t from a Profile (analysis/_pprof.c): for the
 * Profile that Profile.from_snapshot() builds from the same data (with base, the
 * per-call overhead correction and, for the command line, its own outer frames
 * stripped) the two give the same bytes; tests/test_pprof_writer.py compares them.
 *
 * A mark is a copy of every counter (stack counts and times by table entry, calls and
 * edges by code id, the drain's totals, the clocks): what a cumulative snapshot holds
 * apart from names and frames, which never change within a session.  A profile
 * between two marks is their difference, so continuous mode keeps the mark that
 * write_pprof returns as the base of its next file, and a Profiler keeps marks of its
 * start and stop.  Marks belong to one session (start() or a fork starts another);
 * write_pprof refuses a mark of another session.
 *
 * Threading: the marks, the differences and the filling of the encoder's profile run
 * with the GIL held (frames are copied: the table's storage moves when the drain adds
 * a stack); encoding, compression and file I/O touch only what the call owns and run
 * with the GIL released.  Never reachable from the signal handler.
 */
#ifndef SP_EXPORT_H
#define SP_EXPORT_H

#include "compat.h"
#include "session.h"   /* sp_session_get: the running session's facts */
#include <stdint.h>

PyObject *sp_export_mark(PyObject *mod, PyObject *args);
PyObject *sp_export_write_pprof(PyObject *mod, PyObject *args, PyObject *kw);
PyObject *sp_export_session(PyObject *mod, PyObject *unused);
PyObject *sp_export_table_add(PyObject *mod, PyObject *args);

extern const char sp_export_mark_doc[], sp_export_write_pprof_doc[],
    sp_export_session_doc[], sp_export_table_add_doc[];

#define SP_EXPORT_METHODS                                                           \
    {"mark", sp_export_mark, METH_VARARGS, sp_export_mark_doc},                      \
    {"write_pprof", (PyCFunction)(void (*)(void))sp_export_write_pprof,             \
     METH_VARARGS | METH_KEYWORDS, sp_export_write_pprof_doc},                      \
    {"_session", sp_export_session, METH_NOARGS, sp_export_session_doc},            \
    {"_table_add", sp_export_table_add, METH_VARARGS, sp_export_table_add_doc},

#endif /* SP_EXPORT_H */
