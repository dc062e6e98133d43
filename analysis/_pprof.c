/* _pprof.c: shadowprof.analysis._pprof, a Profile model into the one pprof encoder.
 *
 * analysis/pprof.py's encode() and write_pprof() call encode() here: it reads the
 * Profile (functions, stacks, edges, calls, threads, native) into the plain-C
 * profile of profiler/pprof_enc.h and lets sp_pprof_emit encode it (and gzip it)
 * with the GIL released: the bytes the live writer (profiler/export.c) produces, from
 * the same source file, gzipped with zlib (the same bytes on every machine).  This
 * module links pprof_enc.c and deflate.c alone: analysis/ never loads the runtime
 * (shadowprof._core).
 *
 * The walk follows the order in which profile.proto names things (pprof.py's
 * docstring): one sample per stack, one per call edge [caller, callee], one per
 * callee whose calls exceed its edges' (caller=unknown).  A function id that the
 * Profile does not name gets the placeholder function "<id N>" in "?", added to the
 * function table in the order the encoder first meets it (leaf first within a
 * stack, callee before caller).
 *
 * Errors: TypeError/ValueError for a Profile that does not have the model's shape,
 * MemoryError, OSError from compression.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "deflate.h"
#include "pprof_enc.h"
#include "pprof_text.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* pprof ids of the model's synthetic functions (ids <= 0): SYNTHETIC_ID_BASE - id. */
#define SYNTHETIC_ID_BASE (1ll << 62)

typedef struct {
    sp_pprof_t *out;
    PyObject *index;        /* model function id -> function number (int) */
    PyObject *native;       /* model function id -> NativeInfo, or NULL */
    sp_u64map_t threads;    /* thread id -> thread number */
    PyObject *names;        /* profile.threads */
    PyObject *zero;         /* 0: the caller of calls from the root */
} fill_t;

/* The UTF-8 of a str (lone surrogates as with surrogateescape) into the encoder's
 * text.  -1 with an exception set. */
static int
text_of(sp_pprof_t *out, PyObject *s, sp_span_t *sp)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "pprof: expected str, not %.100s",
                     Py_TYPE(s)->tp_name);
        return -1;
    }
    return sp_pprof_text_of_str(out, s, sp);
}

/* An int as the 64 bits protobuf writes (negative numbers as two's complement). */
static int
u64_of(PyObject *v, uint64_t *out)
{
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "pprof: expected int, not %.100s",
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    *out = PyLong_AsUnsignedLongLongMask(v);
    return *out == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
}

static int
attr_u64(PyObject *o, const char *name, uint64_t *out)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (!v)
        return -1;
    int r = u64_of(v, out);
    Py_DECREF(v);
    return r;
}

static int
attr_text(sp_pprof_t *out, PyObject *o, const char *name, sp_span_t *sp)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (!v)
        return -1;
    int r = text_of(out, v, sp);
    Py_DECREF(v);
    return r;
}

/* Appends function number nfuncs for model id fid (fn: its Function, or NULL for
 * the placeholder), with its native object if the profile has one. */
static int
add_function(fill_t *f, PyObject *fid, PyObject *fn)
{
    sp_pprof_t *out = f->out;
    long long id = PyLong_AsLongLong(fid);
    if (id == -1 && PyErr_Occurred())
        return -1;
    if (id <= -SYNTHETIC_ID_BASE || id >= SYNTHETIC_ID_BASE) {
        PyErr_Format(PyExc_ValueError, "pprof: function id %lld out of range", id);
        return -1;
    }
    PyObject *num = PyLong_FromSize_t(out->nfuncs);
    if (!num || PyDict_SetItem(f->index, fid, num) < 0) {
        Py_XDECREF(num);
        return -1;
    }
    Py_DECREF(num);
    sp_pfunc_t *pf = SP_PPROF_PUSH(out, funcs);
    if (!pf)
        return PyErr_NoMemory(), -1;
    memset(pf, 0, sizeof(*pf));
    pf->present = 1;
    pf->id = id > 0 ? (uint64_t)id : (uint64_t)(SYNTHETIC_ID_BASE - id);
    if (fn) {
        /* Function(id, name, filename, firstlineno) */
        PyObject *fields = PySequence_Tuple(fn);
        if (!fields)
            return -1;
        if (PyTuple_GET_SIZE(fields) < 4) {
            Py_DECREF(fields);
            PyErr_SetString(PyExc_TypeError, "pprof: a Function has 4 fields");
            return -1;
        }
        PyObject *name = PyTuple_GET_ITEM(fields, 1), *file = PyTuple_GET_ITEM(fields, 2);
        uint64_t line;
        int r = text_of(out, name, &pf->name) < 0 || text_of(out, file, &pf->filename) < 0 ||
                u64_of(PyTuple_GET_ITEM(fields, 3), &line) < 0;
        if (!r) {
            pf->start_line = (int64_t)line;
            pf->synthetic = PyUnicode_CompareWithASCIIString(file, "<shadowprof>") == 0;
        }
        Py_DECREF(fields);
        if (r)
            return -1;
    } else {
        char buf[48];
        int n = snprintf(buf, sizeof(buf), "<id %lld>", id);
        pf->name = sp_pprof_text(out, buf, (size_t)n);
        pf->filename = sp_pprof_text(out, "?", 1);
    }
    PyObject *info = f->native ? PyDict_GetItemWithError(f->native, fid) : NULL;
    if (info) {
        sp_pnative_t *n = SP_PPROF_PUSH(out, natives);
        if (!n)
            return PyErr_NoMemory(), -1;
        pf = &out->funcs[out->nfuncs - 1];
        pf->native = (uint32_t)out->nnatives;
        if (attr_text(out, info, "path", &n->path) < 0 ||
            attr_text(out, info, "build_id", &n->build_id) < 0 ||
            attr_u64(info, "address", &n->address) < 0 ||
            attr_u64(info, "map_start", &n->map_start) < 0 ||
            attr_u64(info, "map_limit", &n->map_limit) < 0 ||
            attr_u64(info, "map_offset", &n->map_offset) < 0)
            return -1;
    } else if (PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* The function number of model id fid, a placeholder added if the profile does not
 * name it.  -1 with an exception set. */
static Py_ssize_t
function_of(fill_t *f, PyObject *fid)
{
    PyObject *num = PyDict_GetItemWithError(f->index, fid);
    if (!num) {
        if (PyErr_Occurred() || add_function(f, fid, NULL) < 0)
            return -1;
        return (Py_ssize_t)f->out->nfuncs - 1;
    }
    return PyLong_AsSsize_t(num);
}

static int
frame_of(fill_t *f, PyObject *fid, PyObject *line_obj, uint64_t *frame)
{
    long line = 0;
    if (line_obj != Py_None) {
        line = PyLong_AsLong(line_obj);
        if (line == -1 && PyErr_Occurred())
            return -1;
        if (line < INT32_MIN || line > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "pprof: line %ld out of range", line);
            return -1;
        }
    }
    Py_ssize_t k = function_of(f, fid);
    if (k < 0)
        return -1;
    *frame = sp_pprof_frame((uint32_t)k, (int32_t)line);
    return 0;
}

/* The first line of function number k (0 for a placeholder). */
static inline int32_t
first_line(const fill_t *f, Py_ssize_t k)
{
    return (int32_t)f->out->funcs[k].start_line;
}

/* The thread number of tid, added (named if profile.threads has it) on first use. */
static int64_t
thread_of(fill_t *f, PyObject *tid_obj)
{
    uint64_t tid;
    if (u64_of(tid_obj, &tid) < 0)
        return -1;
    int created;
    uint64_t *slot = sp_u64map_put(&f->threads, tid, &created);
    if (!slot)
        return PyErr_NoMemory(), -1;
    if (!created)
        return (int64_t)*slot;
    sp_pthread_t *t = SP_PPROF_PUSH(f->out, threads);
    if (!t)
        return PyErr_NoMemory(), -1;
    *slot = f->out->nthreads - 1;
    memset(t, 0, sizeof(*t));
    t->tid = tid;
    PyObject *name = PyObject_GetItem(f->names, tid_obj);
    if (!name) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError))
            return -1;
        PyErr_Clear();
    } else if (name != Py_None) {
        t->named = 1;
        int r = text_of(f->out, name, &t->name);
        Py_DECREF(name);
        if (r < 0)
            return -1;
    } else {
        Py_DECREF(name);
    }
    return (int64_t)*slot;
}

/* One sample per Stack(thread_id, frames, count, weight_ns): frames root first,
 * the time rounded to whole ns as round() does. */
static int
fill_stacks(fill_t *f, PyObject *stacks)
{
    PyObject *it = PyObject_GetIter(stacks);
    if (!it)
        return -1;
    uint64_t *frames = NULL;
    size_t frames_cap = 0;
    PyObject *s;
    int rc = -1;
    while ((s = PyIter_Next(it))) {
        PyObject *fields = PySequence_Tuple(s);
        Py_DECREF(s);
        if (!fields)
            goto done;
        if (PyTuple_GET_SIZE(fields) < 4) {
            Py_DECREF(fields);
            PyErr_SetString(PyExc_TypeError, "pprof: a Stack has 4 fields");
            goto done;
        }
        PyObject *seq = PySequence_Fast(PyTuple_GET_ITEM(fields, 1),
                                        "pprof: a Stack's frames are a sequence");
        if (!seq) {
            Py_DECREF(fields);
            goto done;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if ((size_t)n > frames_cap) {
            uint64_t *fr = realloc(frames, (size_t)n * sizeof(uint64_t));
            if (!fr) {
                Py_DECREF(seq);
                Py_DECREF(fields);
                PyErr_NoMemory();
                goto done;
            }
            frames = fr;
            frames_cap = (size_t)n;
        }
        int bad = 0;
        /* leaf first: the order the encoder meets (and names) the functions */
        for (Py_ssize_t k = n; k-- > 0 && !bad;) {
            PyObject *fr = PySequence_Fast_GET_ITEM(seq, k);
            if (!PyTuple_Check(fr) || PyTuple_GET_SIZE(fr) != 2) {
                PyErr_SetString(PyExc_TypeError, "pprof: a frame is (function id, line)");
                bad = 1;
            } else {
                bad = frame_of(f, PyTuple_GET_ITEM(fr, 0), PyTuple_GET_ITEM(fr, 1),
                               &frames[k]) < 0;
            }
        }
        Py_DECREF(seq);
        uint64_t count, weight = 0;
        int64_t thread = -1;
        if (!bad) {
            PyObject *w = PyTuple_GET_ITEM(fields, 3);
            if (PyFloat_Check(w)) {
                /* round(): half to even, which nearbyint does in the default mode */
                double d = nearbyint(PyFloat_AS_DOUBLE(w));
                if (!isfinite(d)) {
                    PyErr_SetString(PyExc_ValueError, "pprof: a stack's time is not finite");
                    bad = 1;
                } else {
                    weight = (uint64_t)(int64_t)d;
                }
            } else {
                bad = u64_of(w, &weight) < 0;
            }
            bad = bad || u64_of(PyTuple_GET_ITEM(fields, 2), &count) < 0 ||
                  (thread = thread_of(f, PyTuple_GET_ITEM(fields, 0))) < 0;
        }
        Py_DECREF(fields);
        if (bad)
            goto done;
        sp_psample_t *smp = sp_pprof_push_sample(f->out, frames, (uint32_t)n,
                                                 (int64_t)count, (int64_t)weight, 0);
        if (!smp) {
            PyErr_NoMemory();
            goto done;
        }
        smp->label = SP_PLABEL_THREAD;
        smp->thread = (uint32_t)thread;
    }
    rc = PyErr_Occurred() ? -1 : 0;
done:
    Py_DECREF(it);
    free(frames);
    return rc;
}

/* One sample per call edge {(caller, callee): n}, then one per callee of calls
 * {fid: n} with calls on no edge (caller=unknown). */
static int
fill_calls(fill_t *f, PyObject *edges, PyObject *calls)
{
    sp_u64map_t into;   /* function number -> calls on its edges */
    sp_u64map_init(&into);
    int rc = -1;
    PyObject *key, *val;
    Py_ssize_t pos = 0;
    while (PyDict_Next(edges, &pos, &key, &val)) {
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2) {
            PyErr_SetString(PyExc_TypeError, "pprof: an edge is (caller, callee)");
            goto done;
        }
        PyObject *caller = PyTuple_GET_ITEM(key, 0), *callee = PyTuple_GET_ITEM(key, 1);
        uint64_t n;
        if (u64_of(val, &n) < 0)
            goto done;
        Py_ssize_t ce = function_of(f, callee);
        if (ce < 0)
            goto done;
        int created;
        uint64_t *slot = sp_u64map_put(&into, (uint64_t)ce, &created);
        if (!slot) {
            PyErr_NoMemory();
            goto done;
        }
        *slot += n;
        uint64_t fr[2];
        fr[1] = sp_pprof_frame((uint32_t)ce, first_line(f, ce));
        int root = PyObject_RichCompareBool(caller, f->zero, Py_EQ);
        if (root < 0)
            goto done;
        sp_psample_t *s;
        if (root) {
            s = sp_pprof_push_sample(f->out, fr + 1, 1, 0, 0, (int64_t)n);
        } else {
            Py_ssize_t cr = function_of(f, caller);
            if (cr < 0)
                goto done;
            fr[0] = sp_pprof_frame((uint32_t)cr, first_line(f, cr));
            s = sp_pprof_push_sample(f->out, fr, 2, 0, 0, (int64_t)n);
        }
        if (!s) {
            PyErr_NoMemory();
            goto done;
        }
    }
    pos = 0;
    while (PyDict_Next(calls, &pos, &key, &val)) {
        uint64_t n, on_edges = 0;
        if (u64_of(val, &n) < 0)
            goto done;
        PyObject *num = PyDict_GetItemWithError(f->index, key);
        if (!num && PyErr_Occurred())
            goto done;
        if (num) {
            const uint64_t *e = sp_u64map_get(&into, (uint64_t)PyLong_AsSsize_t(num));
            on_edges = e ? *e : 0;
        }
        uint64_t rest = n - on_edges;
        if (!rest)
            continue;
        Py_ssize_t k = function_of(f, key);
        if (k < 0)
            goto done;
        uint64_t fr = sp_pprof_frame((uint32_t)k, first_line(f, k));
        sp_psample_t *s = sp_pprof_push_sample(f->out, &fr, 1, 0, 0, (int64_t)rest);
        if (!s) {
            PyErr_NoMemory();
            goto done;
        }
        s->label = SP_PLABEL_UNKNOWN_CALLER;
    }
    rc = 0;
done:
    sp_u64map_free(&into);
    return rc;
}

static PyObject *
attr_dict(PyObject *o, const char *name)
{
    PyObject *d = PyObject_GetAttrString(o, name);
    if (d && !PyDict_Check(d)) {
        PyErr_Format(PyExc_TypeError, "pprof: Profile.%s must be a dict", name);
        Py_CLEAR(d);
    }
    return d;
}

static int
fill(fill_t *f, PyObject *profile, PyObject *comments, PyObject *interpreter)
{
    sp_pprof_t *out = f->out;
    PyObject *functions = NULL, *stacks = NULL, *edges = NULL, *calls = NULL,
             *mode = NULL, *seq = NULL;
    int rc = -1;
    if (!(functions = attr_dict(profile, "functions")) ||
        !(edges = attr_dict(profile, "edges")) || !(calls = attr_dict(profile, "calls")) ||
        !(f->names = attr_dict(profile, "threads")) ||
        !(stacks = PyObject_GetAttrString(profile, "stacks")) ||
        !(mode = PyObject_GetAttrString(profile, "mode")))
        goto done;
    f->native = PyObject_GetAttrString(profile, "native");
    if (!f->native) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            goto done;
        PyErr_Clear();
    } else if (!PyDict_Check(f->native) || !PyDict_GET_SIZE(f->native)) {
        Py_CLEAR(f->native);   /* None or empty: no native frames */
    }
    out->wall = PyUnicode_Check(mode) && PyUnicode_CompareWithASCIIString(mode, "wall") == 0;
    PyObject *key, *val;
    Py_ssize_t pos = 0;
    while (PyDict_Next(functions, &pos, &key, &val))
        if (add_function(f, key, val) < 0)
            goto done;
    if (fill_stacks(f, stacks) < 0 || fill_calls(f, edges, calls) < 0 ||
        text_of(out, interpreter, &out->interpreter) < 0)
        goto done;
    uint64_t v;
    if (attr_u64(profile, "start_unix_ns", &v) < 0)
        goto done;
    out->time_nanos = (int64_t)v;
    if (attr_u64(profile, "duration_ns", &v) < 0)
        goto done;
    out->duration_nanos = (int64_t)v;
    if (attr_u64(profile, "interval_ns", &v) < 0)
        goto done;
    out->period = (int64_t)v;
    if (!(seq = PySequence_Fast(comments, "pprof: comments must be a list of str")))
        goto done;
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        sp_span_t *c = SP_PPROF_PUSH(out, comments);
        if (!c) {
            PyErr_NoMemory();
            goto done;
        }
        if (text_of(out, PySequence_Fast_GET_ITEM(seq, k), c) < 0)
            goto done;
    }
    if (out->oom) {
        PyErr_NoMemory();
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(functions);
    Py_XDECREF(stacks);
    Py_XDECREF(edges);
    Py_XDECREF(calls);
    Py_XDECREF(mode);
    Py_XDECREF(seq);
    return rc;
}

PyDoc_STRVAR(encode_doc,
"encode(profile, comments, interpreter, level=0) -> bytes\n--\n\n"
"The perftools.profiles.Profile message of the Profile *profile* with the\n"
"comment strings *comments* and *interpreter* as the Python frames' mapping,\n"
"gzipped with zlib at *level* (1-9; 0: not compressed).");

static PyObject *
encode(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"profile", "comments", "interpreter", "level", NULL};
    PyObject *profile, *comments, *interpreter;
    int level = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOU|i:encode", kwlist, &profile,
                                     &comments, &interpreter, &level))
        return NULL;
    if (level < 0 || level > 9) {
        PyErr_Format(PyExc_ValueError, "pprof: bad gzip level %d: choose 0..9", level);
        return NULL;
    }
    sp_pprof_t out;
    sp_pprof_init(&out);
    fill_t f = {&out, PyDict_New(), NULL, {0}, NULL, PyLong_FromLong(0)};
    sp_u64map_init(&f.threads);
    PyObject *result = NULL;
    sp_buf_t bytes;
    sp_buf_init(&bytes);
    if (!f.index || !f.zero || fill(&f, profile, comments, interpreter) < 0)
        goto done;
    sp_pprof_emit_t st;
    int failed, err;
    Py_BEGIN_ALLOW_THREADS
    failed = sp_pprof_emit(&out, level, SP_DEFLATE_ZLIB, NULL, 0, -1, &bytes, &st);
    err = errno;
    Py_END_ALLOW_THREADS
    if (failed) {
        errno = err;
        PyErr_SetFromErrno(err == ENOMEM ? PyExc_MemoryError : PyExc_OSError);
        goto done;
    }
    result = PyBytes_FromStringAndSize((const char *)bytes.p, (Py_ssize_t)bytes.len);
done:
    Py_XDECREF(f.index);
    Py_XDECREF(f.native);
    Py_XDECREF(f.names);
    Py_XDECREF(f.zero);
    sp_u64map_free(&f.threads);
    sp_pprof_free(&out);
    sp_buf_free(&bytes);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_VARARGS | METH_KEYWORDS,
     encode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "shadowprof.analysis._pprof",
    "pprof's profile.proto from a Profile model, by the encoder the live writer uses.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__pprof(void)
{
    return PyModule_Create(&module);
}
