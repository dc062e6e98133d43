/* snapshot.h: the profile and the threads' stacks as Python objects, for _core's
 * snapshot() and thread_stacks(), and the dict helpers they and module.c use.
 * GIL held everywhere here; never reachable from the handler.
 */
#ifndef SP_SNAPSHOT_H
#define SP_SNAPSHOT_H

#include "compat.h"
#include <stdint.h>

/* The profile so far as plain data (see _core.snapshot's docstring), after a drain.
 * New reference, or NULL with an exception set (RuntimeError before any start). */
PyObject *sp_snapshot(void);
/* {id: (qualname, filename, firstlineno)} of every code object the registry holds,
 * whether or not the profile uses it: a snapshot's functions without its stacks, for
 * naming functions by file (the command line's own frames).  New reference or NULL. */
PyObject *sp_snapshot_functions(void);
/* {thread_id: [(qualname, filename, firstlineno), ...root first]} of every live
 * thread's shadow stack; empty when no session runs.  New reference or NULL. */
PyObject *sp_snapshot_thread_stacks(void);

/* d[k] = v, stealing both (either may be NULL: an error already set).  Returns -1 with
 * an exception set. */
int sp_dict_set_steal(PyObject *d, PyObject *k, PyObject *v);
/* d[key] = v as a Python int.  Returns -1 with an exception set. */
int sp_dict_put_u64(PyObject *d, const char *key, uint64_t v);

#endif /* SP_SNAPSHOT_H */
