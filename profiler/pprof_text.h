/* pprof_text.h: a Python str as UTF-8 text of a profile to encode (pprof_enc.h).
 *
 * The one definition for both fillers of an sp_pprof_t: export.c (the live session)
 * and analysis/_pprof.c (profiles read from files), which links pprof_enc.c alone
 * and so takes this as a header.  Lone surrogates are written as surrogateescape
 * writes them.
 *
 * Thread contract: GIL held (Python API).  Not reachable from the signal handler.
 */
#ifndef SP_PPROF_TEXT_H
#define SP_PPROF_TEXT_H

#include <Python.h>

#include "pprof_enc.h"

/* *s* (a str: the caller checks) into *out*'s text as *sp*.  -1 with an exception
 * set. */
static inline int
sp_pprof_text_of_str(sp_pprof_t *out, PyObject *s, sp_span_t *sp)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u) {
        *sp = sp_pprof_text(out, u, (size_t)n);
        return 0;
    }
    PyErr_Clear();
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "surrogateescape");
    if (!b)
        return -1;
    *sp = sp_pprof_text(out, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
    Py_DECREF(b);
    return 0;
}

#endif /* SP_PPROF_TEXT_H */
