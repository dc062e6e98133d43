/* export.c: the live profile straight to a pprof file (see export.h).
 *
 * prof_build() and the steps after it make the Profile of the table between two
 * marks; prof_fill() hands it to the encoder in the order analysis/_pprof.c walks a
 * Profile: one sample per stack (table order), one per call edge, one per callee with
 * calls on no edge (caller=unknown); functions (ids in order, then the synthetic
 * overhead function if this writer made one).
 * Numbers follow Profile.from_snapshot() and Profile._correct_per_call_overhead() in
 * analysis/model.py, in the same floating-point operations in the same order.
 */
#include "export.h"

#include "clock.h"
#include "drain.h"
#include "native.h"
#include "deflate.h"
#include "pprof_enc.h"
#include "pprof_text.h"
#include "registry.h"
#include "sampler.h"
#include "table.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The synthetic "[shadowprof overhead]" function a writer adds when the registry's
 * own (SP_ID_OVERHEAD) is not in the profile (the model's id -1) is the code id just
 * past the registry's: prof_t.nids. */
/* pprof ids of synthetic model ids (<= 0): SYNTHETIC_ID_BASE - id (pprof.py). */
#define SYNTHETIC_ID_BASE (1ull << 62)

/* The running session's aggregation table, or NULL before the first start(): every
 * read of the table goes through here. */
static inline sp_table_t *
session_table(void)
{
    return sp_session_table();
}

static inline uint64_t
loc_key(uint32_t id, int32_t line)
{
    return (uint64_t)id << 32 | (uint32_t)line;
}

/* ------------------------------------------------------------------ marks */

typedef struct {
    uint64_t generation;
    size_t nstacks;
    uint64_t *count, *weight;       /* by table entry */
    uint32_t nids;
    uint64_t *calls;                /* by code id */
    size_t nedges;
    uint64_t *edge_key, *edge_n;    /* caller << 32 | callee, in registry visit order */
    sp_u64map_t edge_index;         /* edge key -> calls */
    sp_drain_stats_t stats;
    uint64_t handler_ns, duration_ns, cpu_ns, interval_ns;
    int running;
} mark_t;

static const char MARK_NAME[] = "shadowprof._core.mark";

static void
mark_free(mark_t *m)
{
    if (!m)
        return;
    free(m->count);
    free(m->weight);
    free(m->calls);
    free(m->edge_key);
    free(m->edge_n);
    sp_u64map_free(&m->edge_index);
    free(m);
}

static void
mark_capsule_free(PyObject *cap)
{
    mark_free(PyCapsule_GetPointer(cap, MARK_NAME));
}

typedef struct {
    mark_t *m;
    size_t cap;
    int oom;
} edge_collect_t;

static int
collect_edge(uint32_t caller, uint32_t callee, uint64_t n, void *arg)
{
    edge_collect_t *c = arg;
    mark_t *m = c->m;
    if (m->nedges == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        uint64_t *k = realloc(m->edge_key, cap * sizeof(uint64_t));
        if (k)
            m->edge_key = k;
        uint64_t *v = realloc(m->edge_n, cap * sizeof(uint64_t));
        if (v)
            m->edge_n = v;
        if (!k || !v) {
            c->oom = 1;
            return -1;
        }
        c->cap = cap;
    }
    uint64_t key = (uint64_t)caller << 32 | callee;
    m->edge_key[m->nedges] = key;
    m->edge_n[m->nedges++] = n;
    return 0;
}

/* A copy of every counter now (after draining the ring if drain).  NULL with an
 * exception set on failure.  GIL held. */
static mark_t *
mark_take(int drain)
{
    if (!session_table()) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler has not been started");
        return NULL;
    }
    if (drain)
        sp_drain();
    mark_t *m = calloc(1, sizeof(*m));
    if (!m)
        return (mark_t *)PyErr_NoMemory();
    sp_session_t s;
    sp_session_get(&s);
    m->generation = s.generation;
    m->running = s.running;
    m->duration_ns = s.duration_ns;
    m->cpu_ns = s.cpu_ns;
    m->interval_ns = s.interval_ns;
    m->stats = *sp_session_stats();
    m->handler_ns = sp_sampler_handler_ns();
    m->nstacks = sp_table_size(session_table());
    m->nids = sp_registry_size();
    m->count = malloc((m->nstacks ? m->nstacks : 1) * sizeof(uint64_t));
    m->weight = malloc((m->nstacks ? m->nstacks : 1) * sizeof(uint64_t));
    m->calls = malloc((m->nids ? m->nids : 1) * sizeof(uint64_t));
    if (!m->count || !m->weight || !m->calls)
        goto oom;
    for (size_t i = 0; i < m->nstacks; i++) {
        sp_stack_view_t v;
        sp_table_get(session_table(), i, &v);
        m->count[i] = v.count;
        m->weight[i] = v.weight_ns;
    }
    sp_registry_sum_calls();   /* the hooks count edges; calls are their sums */
    for (uint32_t id = 0; id < m->nids; id++)
        m->calls[id] = sp_registry_get(id)->calls;
    edge_collect_t c = {m, 0, 0};
    sp_registry_visit_edges(collect_edge, &c);
    if (c.oom)
        goto oom;
    /* the index sized once, after the edges are known */
    if (sp_u64map_reserve(&m->edge_index, m->nedges) < 0)
        goto oom;
    for (size_t j = 0; j < m->nedges; j++) {
        int created;
        uint64_t *slot = sp_u64map_put(&m->edge_index, m->edge_key[j], &created);
        if (!slot)
            goto oom;
        *slot += m->edge_n[j];
    }
    return m;
oom:
    mark_free(m);
    return (mark_t *)PyErr_NoMemory();
}

static PyObject *
mark_capsule(mark_t *m)
{
    PyObject *cap = PyCapsule_New(m, MARK_NAME, mark_capsule_free);
    if (!cap)
        mark_free(m);
    return cap;
}

static int
u64_item(PyObject *d, const char *key, uint64_t *out)
{
    PyObject *v = PyDict_GetItemString(d, key);   /* borrowed */
    if (!v) {
        PyErr_Format(PyExc_KeyError, "snapshot has no %s", key);
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(v);
    return PyErr_Occurred() ? -1 : 0;
}

const char sp_export_mark_doc[] =
    "mark(snapshot=False) -> mark, or (mark, snapshot dict)\n--\n\n"
    "A copy of every counter of the session now (stack counts and times, calls, edges,\n"
    "totals, clocks): the base or the end of a profile for write_pprof().  With\n"
    "snapshot, also snapshot() of the same moment (same samples, calls and clocks).";

PyObject *
sp_export_mark(PyObject *mod, PyObject *args)
{
    int with_snapshot = 0;
    if (args && !PyArg_ParseTuple(args, "|p:mark", &with_snapshot))
        return NULL;
    if (!with_snapshot) {
        mark_t *m = mark_take(1);
        return m ? mark_capsule(m) : NULL;
    }
    /* snapshot() drains; with the GIL held nothing reaches the table or the registry
     * until we return, and the clocks and the handler's time are the snapshot's. */
    PyObject *snap = PyObject_CallMethod(mod, "snapshot", NULL);
    if (!snap)
        return NULL;
    mark_t *m = mark_take(0);
    if (!m || u64_item(snap, "duration_ns", &m->duration_ns) < 0 ||
        u64_item(snap, "cpu_ns", &m->cpu_ns) < 0 ||
        u64_item(snap, "handler_ns", &m->handler_ns) < 0 ||
        u64_item(snap, "interval_ns", &m->interval_ns) < 0) {
        mark_free(m);
        Py_DECREF(snap);
        return NULL;
    }
    PyObject *cap = mark_capsule(m);
    PyObject *res = cap ? PyTuple_Pack(2, cap, snap) : NULL;
    Py_XDECREF(cap);
    Py_DECREF(snap);
    return res;
}

/* The mark in a capsule of this session; NULL with an exception set otherwise. */
static mark_t *
mark_arg(PyObject *obj, const char *what)
{
    mark_t *m = PyCapsule_IsValid(obj, MARK_NAME) ? PyCapsule_GetPointer(obj, MARK_NAME)
                                                   : NULL;
    if (!m) {
        PyErr_Format(PyExc_TypeError, "shadowprof: %s must come from _core.mark() or "
                     "write_pprof(), not %.100s", what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    sp_session_t s;
    sp_session_get(&s);
    if (m->generation != s.generation) {
        PyErr_Format(PyExc_ValueError, "shadowprof: %s belongs to an earlier profiling "
                     "session (restarted, or forked since); take a new mark", what);
        return NULL;
    }
    return m;
}

static inline uint64_t
base_count(const mark_t *b, size_t i)
{
    return b && i < b->nstacks ? b->count[i] : 0;
}

static inline uint64_t
base_weight(const mark_t *b, size_t i)
{
    return b && i < b->nstacks ? b->weight[i] : 0;
}

static inline uint64_t
base_calls(const mark_t *b, uint32_t id)
{
    return b && id < b->nids ? b->calls[id] : 0;
}

static inline uint64_t
base_edge(const mark_t *b, uint64_t key)
{
    const uint64_t *n = b ? sp_u64map_get(&b->edge_index, key) : NULL;
    return n ? *n : 0;
}

/* ------------------------------------------------------------------ the profile */

typedef struct {
    const uint64_t *locs;   /* root first */
    uint32_t nlocs;
    uint64_t tid;
    uint64_t count;
    int64_t weight;         /* exact, while !is_float */
    double weight_f;        /* after the per-call overhead correction moved time */
    int is_float;
} stack_t;

typedef struct {
    uint32_t caller, callee;
    int64_t n;
} edge_t;

typedef struct {
    uint32_t id;
    int64_t n;
} calls_t;

typedef struct {
    stack_t *stacks;
    size_t nstacks, stacks_cap;
    calls_t *calls;
    size_t ncalls;
    edge_t *edges;
    size_t nedges;
    unsigned char *used;    /* by code id: in the profile's function table */
    uint32_t nids;
    int extra_overhead;     /* the writer added "[shadowprof overhead]" as id nids */
    uint64_t overhead_loc;  /* the location of that function's synthetic stack */
    double corrected_ns;
    uint64_t total_calls;   /* exact calls in the profile, shadowprof's own included */
    /* delta of the totals */
    sp_drain_stats_t stats;
    uint64_t duration_ns, cpu_ns, handler_ns;
    sp_u64map_t named_tids; /* threads of the profile's stacks (they get a name) */
    uint64_t *frames;       /* stacks with frames taken out of their middle point here */
    uint64_t *frames_pth;   /* the same, for the .pth lines under addpackage */
} prof_t;

/* The last few distinct thread ids met, each with a value: the stacks of a profile
 * belong to a few threads, and a scan of these costs a fraction of a map lookup. */
typedef struct {
    uint64_t tid[8];
    int64_t val[8];
    int n, next;
} recent_t;

static inline int64_t *
recent_find(recent_t *r, uint64_t tid)
{
    for (int k = 0; k < r->n; k++)
        if (r->tid[k] == tid)
            return &r->val[k];
    return NULL;
}

static inline void
recent_add(recent_t *r, uint64_t tid, int64_t val)
{
    int k = r->next;
    r->next = (k + 1) & 7;
    if (r->n < 8)
        r->n++;
    r->tid[k] = tid;
    r->val[k] = val;
}

static void
prof_free(prof_t *p)
{
    free(p->stacks);
    free(p->calls);
    free(p->edges);
    free(p->used);
    free(p->frames);
    free(p->frames_pth);
    sp_u64map_free(&p->named_tids);
}

static int
push_stack(prof_t *p, stack_t s)
{
    if (p->nstacks == p->stacks_cap) {
        size_t cap = p->stacks_cap ? p->stacks_cap * 2 : 256;
        stack_t *n = realloc(p->stacks, cap * sizeof(stack_t));
        if (!n)
            return -1;
        p->stacks = n;
        p->stacks_cap = cap;
    }
    p->stacks[p->nstacks++] = s;
    return 0;
}

/* Model.from_snapshot(cur, base): stacks, calls and edges with a positive difference,
 * the functions a cumulative snapshot of cur names.  -1 when out of memory, or -2 if
 * the table holds native frames (named by the Python layer only). */
static int
prof_build(prof_t *p, const mark_t *cur, const mark_t *base)
{
    memset(p, 0, sizeof(*p));
    sp_u64map_init(&p->named_tids);
    p->nids = cur->nids;
    p->used = calloc(cur->nids ? cur->nids : 1, 1);
    p->stacks = malloc((cur->nstacks ? cur->nstacks : 1) * sizeof(stack_t));
    if (!p->used || !p->stacks)
        return -1;
    p->stacks_cap = cur->nstacks ? cur->nstacks : 1;
    recent_t recent = {.n = 0};
    /* locals: the byte stores into used[] would otherwise reload p's fields */
    unsigned char *used = p->used;
    const uint32_t nids = p->nids;
    for (size_t i = 0; i < cur->nstacks; i++) {
        if (!cur->count[i])
            continue;
        sp_stack_view_t v;
        sp_table_get(session_table(), i, &v);
        uint64_t any = 0;
        const uint64_t *locs = v.locs, *end = v.locs + v.nlocs;
        for (; locs < end; locs++) {
            uint64_t loc = *locs;
            uint32_t id = (uint32_t)(loc >> 32);
            any |= loc;
            if (id < nids)
                used[id] = 1;
        }
        if (any & SP_NATIVE_LOC_TAG)
            return -2;
        int64_t c = (int64_t)(cur->count[i] - base_count(base, i));
        if (c <= 0)
            continue;
        stack_t s = {v.locs, v.nlocs, v.tid, (uint64_t)c,
                     (int64_t)(cur->weight[i] - base_weight(base, i)), 0.0, 0};
        int created;
        if (push_stack(p, s) < 0)
            return -1;
        if (!recent_find(&recent, v.tid)) {
            if (!sp_u64map_put(&p->named_tids, v.tid, &created))
                return -1;
            recent_add(&recent, v.tid, 0);
        }
    }
    p->calls = malloc((cur->nids ? cur->nids : 1) * sizeof(calls_t));
    if (!p->calls)
        return -1;
    for (uint32_t id = SP_ID_OTHER; id < cur->nids; id++) {
        if (!cur->calls[id])
            continue;
        p->used[id] = 1;
        int64_t n = (int64_t)(cur->calls[id] - base_calls(base, id));
        if (n > 0) {
            p->calls[p->ncalls++] = (calls_t){id, n};
            p->total_calls += (uint64_t)n;
        }
    }
    p->edges = malloc((cur->nedges ? cur->nedges : 1) * sizeof(edge_t));
    if (!p->edges)
        return -1;
    for (size_t j = 0; j < cur->nedges; j++) {
        uint64_t key = cur->edge_key[j];
        uint32_t caller = (uint32_t)(key >> 32), callee = (uint32_t)key;
        if (caller < p->nids)
            p->used[caller] = 1;
        if (callee < p->nids)
            p->used[callee] = 1;
        int64_t n = (int64_t)(cur->edge_n[j] - base_edge(base, key));
        if (n > 0)
            p->edges[p->nedges++] = (edge_t){caller, callee, n};
    }
#define DELTA(f) p->stats.f = cur->stats.f - (base ? base->stats.f : 0)
    DELTA(samples);
    DELTA(weight_ns);
    DELTA(lost);
    DELTA(lost_weight_ns);
    DELTA(overhead);
    DELTA(overhead_weight_ns);
    DELTA(table_full);
    DELTA(drain_ns);
#undef DELTA
    p->duration_ns = cur->duration_ns - (base ? base->duration_ns : 0);
    p->cpu_ns = cur->cpu_ns - (base ? base->cpu_ns : 0);
    p->handler_ns = cur->handler_ns - (base ? base->handler_ns : 0);
    return 0;
}

/* Profile._function_id("[shadowprof overhead]"): the registry's synthetic function if
 * the profile names it, else one the writer adds. */
static uint32_t
overhead_id(prof_t *p)
{
    if (SP_ID_OVERHEAD < p->nids && p->used[SP_ID_OVERHEAD])
        return SP_ID_OVERHEAD;
    p->extra_overhead = 1;
    return p->nids;
}

static inline uint32_t
leaf_id(const stack_t *s)
{
    return (uint32_t)(s->locs[s->nlocs - 1] >> 32);
}

/* Profile._correct_per_call_overhead(), operation for operation. */
static int
prof_correct(prof_t *p, double per_call_ns, double cap)
{
    int64_t total_calls = 0;
    for (size_t i = 0; i < p->ncalls; i++)
        total_calls += p->calls[i].n;
    if (!total_calls)
        return 0;
    double budget = (double)total_calls * per_call_ns - (double)p->stats.overhead_weight_ns;
    if (budget <= 0)
        return 0;
    uint32_t n_ids = p->nids;
    int64_t *leaf_weight = calloc(n_ids ? n_ids : 1, sizeof(int64_t));
    double *removed = calloc(n_ids ? n_ids : 1, sizeof(double));
    unsigned char *has_removed = calloc(n_ids ? n_ids : 1, 1);
    size_t *first = calloc((size_t)n_ids + 1, sizeof(size_t));
    edge_t *by_callee = malloc((p->nedges ? p->nedges : 1) * sizeof(edge_t));
    int rc = -1;
    if (!leaf_weight || !removed || !has_removed || !first || !by_callee)
        goto done;
    for (size_t i = 0; i < p->nstacks; i++)
        if (p->stacks[i].nlocs)
            leaf_weight[leaf_id(&p->stacks[i])] += p->stacks[i].weight;
    /* callers[callee]: its edges in edge order (a stable counting sort). */
    for (size_t j = 0; j < p->nedges; j++)
        first[p->edges[j].callee + 1]++;
    for (uint32_t id = 0; id < n_ids; id++)
        first[id + 1] += first[id];
    {
        size_t *fill = malloc(((size_t)n_ids + 1) * sizeof(size_t));
        if (!fill)
            goto done;
        memcpy(fill, first, ((size_t)n_ids + 1) * sizeof(size_t));
        for (size_t j = 0; j < p->nedges; j++)
            by_callee[fill[p->edges[j].callee]++] = p->edges[j];
        free(fill);
    }
#define TAKE(fid, amount, got)                                                   \
    do {                                                                         \
        double avail_ = cap * (double)leaf_weight[fid] - removed[fid];           \
        double m_ = avail_ < (amount) ? avail_ : (amount);                       \
        got = m_ > 0.0 ? m_ : 0.0;                                               \
        if (got != 0.0) {                                                        \
            removed[fid] = has_removed[fid] ? removed[fid] + got : got;          \
            has_removed[fid] = 1;                                                \
        }                                                                        \
    } while (0)
    for (size_t i = 0; i < p->ncalls; i++) {
        uint32_t fid = p->calls[i].id;
        int64_t n = p->calls[i].n;
        double want = budget * (double)n / (double)total_calls, got;
        TAKE(fid, want, got);
        double left = want - got;
        if (left > 0) {
            for (size_t j = first[fid]; j < first[fid + 1]; j++) {
                double amount = left * (double)by_callee[j].n / (double)n, ignored;
                TAKE(by_callee[j].caller, amount, ignored);
                (void)ignored;
            }
        }
    }
#undef TAKE
    double moved = 0.0;
    for (size_t i = 0; i < p->nstacks; i++) {
        stack_t *s = &p->stacks[i];
        if (!s->nlocs)
            continue;
        uint32_t fid = leaf_id(s);
        if (has_removed[fid] && leaf_weight[fid]) {
            double cut = (double)s->weight * removed[fid] / (double)leaf_weight[fid];
            moved += cut;
            s->weight_f = (double)s->weight - cut;
            s->is_float = 1;
        }
    }
    if (moved != 0.0) {
        p->overhead_loc = loc_key(overhead_id(p), 0);
        stack_t s = {&p->overhead_loc, 1, 0, 0, 0, moved, 1};
        if (push_stack(p, s) < 0)
            goto done;
    }
    p->corrected_ns = moved;
    rc = 0;
done:
    free(leaf_weight);
    free(removed);
    free(has_removed);
    free(first);
    free(by_callee);
    return rc;
}

static inline int
marked(const prof_t *p, const unsigned char *mask, uint64_t loc)
{
    return (uint32_t)(loc >> 32) < p->nids && mask[loc >> 32];
}

static uint32_t
count_marked(const prof_t *p, const unsigned char *mask, const stack_t *s)
{
    uint32_t m = 0;
    for (uint32_t k = 0; k < s->nlocs; k++)
        m += marked(p, mask, s->locs[k]);
    return m;
}

static void
overhead_stack(prof_t *p, stack_t *s)
{
    if (!p->overhead_loc)
        p->overhead_loc = loc_key(overhead_id(p), 0);
    s->locs = &p->overhead_loc;
    s->nlocs = 1;
}

/* model.strip_outer_frames() (anywhere 0: from the root end of each stack) and
 * model.strip_pth_lines() (anywhere 1: wherever they are, and out of the function
 * table; once per profile): outer[id] marks the functions to strip.  A stack left
 * with no frame becomes [shadowprof overhead].  -1 when out of memory. */
static int
prof_strip(prof_t *p, const unsigned char *outer, int anywhere)
{
    if (anywhere) {
        /* stacks that keep some frames get a copy without the others */
        size_t need = 0;
        for (size_t i = 0; i < p->nstacks; i++) {
            uint32_t m = count_marked(p, outer, &p->stacks[i]);
            if (m && m < p->stacks[i].nlocs)
                need += p->stacks[i].nlocs - m;
        }
        if (need && !(p->frames = malloc(need * sizeof(uint64_t))))
            return -1;
        uint64_t *to = p->frames;
        for (size_t i = 0; i < p->nstacks; i++) {
            stack_t *s = &p->stacks[i];
            uint32_t m = count_marked(p, outer, s);
            if (!m)
                continue;
            if (m == s->nlocs) {
                overhead_stack(p, s);
                continue;
            }
            const uint64_t *from = s->locs;
            s->locs = to;
            for (uint32_t k = 0; k < s->nlocs; k++)
                if (!marked(p, outer, from[k]))
                    *to++ = from[k];
            s->nlocs -= m;
        }
        for (uint32_t id = 0; id < p->nids; id++)
            if (outer[id])
                p->used[id] = 0;
    } else {
        for (size_t i = 0; i < p->nstacks; i++) {
            stack_t *s = &p->stacks[i];
            uint32_t k = 0;
            while (k < s->nlocs && marked(p, outer, s->locs[k]))
                k++;
            if (s->nlocs && k == s->nlocs) {
                overhead_stack(p, s);
            } else {
                s->locs += k;
                s->nlocs -= k;
            }
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < p->ncalls; i++)
        if (!outer[p->calls[i].id])
            p->calls[n++] = p->calls[i];
    p->ncalls = n;
    /* Edges: drop those into outer functions, calls from them come from the root;
     * merged in first-seen order. */
    sp_u64map_t pos;
    sp_u64map_init(&pos);
    n = 0;
    for (size_t j = 0; j < p->nedges; j++) {
        edge_t e = p->edges[j];
        if (e.callee < p->nids && outer[e.callee])
            continue;
        if (e.caller < p->nids && outer[e.caller])
            e.caller = 0;
        int created;
        uint64_t *slot = sp_u64map_put(&pos, (uint64_t)e.caller << 32 | e.callee, &created);
        if (!slot) {
            sp_u64map_free(&pos);
            return -1;
        }
        if (created) {
            *slot = n;
            p->edges[n++] = e;
        } else {
            p->edges[*slot].n += e.n;
        }
    }
    p->nedges = n;
    sp_u64map_free(&pos);
    return 0;
}

/* model.strip_pth_lines() for shared functions: the frames of `shared` directly
 * under a frame of `site` (in the stack as it is), and the calls `site` made to them,
 * taken out.  A stack left with no frame becomes [shadowprof overhead].  -1 when out
 * of memory. */
static int
prof_strip_under(prof_t *p, const unsigned char *site, const unsigned char *shared)
{
#define UNDER(s, k) ((k) > 0 && marked(p, shared, (s)->locs[k]) &&                  \
                     marked(p, site, (s)->locs[(k) - 1]))
    size_t need = 0;
    for (size_t i = 0; i < p->nstacks; i++)
        for (uint32_t k = 0; k < p->stacks[i].nlocs; k++)
            need += !UNDER(&p->stacks[i], k);
    if (!(p->frames_pth = malloc((need ? need : 1) * sizeof(uint64_t))))
        return -1;
    uint64_t *to = p->frames_pth;
    for (size_t i = 0; i < p->nstacks; i++) {
        stack_t *s = &p->stacks[i];
        uint32_t n = 0, k;
        for (k = 0; k < s->nlocs && !UNDER(s, k); k++)
            ;
        if (k == s->nlocs)
            continue;   /* nothing under addpackage */
        const uint64_t *from = s->locs;
        for (k = 0; k < s->nlocs; k++)
            if (!UNDER(s, k))
                to[n++] = from[k];
        if (!n) {
            overhead_stack(p, s);
            continue;
        }
        s->locs = to;
        s->nlocs = n;
        to += n;
    }
#undef UNDER
    size_t n = 0;
    for (size_t j = 0; j < p->nedges; j++) {
        edge_t e = p->edges[j];
        if (e.callee < p->nids && shared[e.callee] && e.caller < p->nids && site[e.caller]) {
            for (size_t i = 0; i < p->ncalls; i++)
                if (p->calls[i].id == e.callee)
                    p->calls[i].n -= e.n;
            continue;
        }
        p->edges[n++] = e;
    }
    p->nedges = n;
    return 0;
}

/* model.strip_pth_lines(): the functions of .pth lines (code site.addpackage exec's,
 * "<module>" in "<string>"), which site runs again after profiling began at start-up
 * when it sees a directory twice (a venv's lib and lib64), taken out of the profile:
 * wholly if addpackage alone calls them, else (the program's own code compiled from
 * strings is the same function) only their frames under addpackage.  -1 with an
 * exception set. */
static int
prof_strip_pth(prof_t *p)
{
    static PyObject *site_py;   /* "site.py"; created once, GIL held */
    if (!site_py && !(site_py = PyUnicode_InternFromString("site.py")))
        return -1;
    size_t n_ids = p->nids ? p->nids : 1;
    unsigned char *site = calloc(n_ids, 1), *pth = calloc(n_ids, 1),
                  *from_site = calloc(n_ids, 1), *from_other = calloc(n_ids, 1),
                  *shared = calloc(n_ids, 1);
    int any_site = 0, any_pth = 0, any_shared = 0, rc = -1;
    if (!site || !pth || !from_site || !from_other || !shared) {
        PyErr_NoMemory();
        goto done;
    }
    for (uint32_t id = 1; id < p->nids; id++) {
        if (!p->used[id])
            continue;
        sp_code_t *c = sp_registry_get(id);
        PyObject *name = c->qualname, *file = c->filename;
        if (!PyUnicode_Check(name) || !PyUnicode_Check(file))
            continue;
        if (PyUnicode_CompareWithASCIIString(name, "addpackage") == 0 &&
            (PyUnicode_CompareWithASCIIString(file, "<frozen site>") == 0 ||
             PyUnicode_Tailmatch(file, site_py, 0, PY_SSIZE_T_MAX, 1) == 1))
            site[id] = any_site = 1;
        else if (PyUnicode_CompareWithASCIIString(name, "<module>") == 0 &&
                 PyUnicode_CompareWithASCIIString(file, "<string>") == 0)
            pth[id] = any_pth = 1;
    }
    if (any_site && any_pth) {
        for (size_t j = 0; j < p->nedges; j++) {
            const edge_t *e = &p->edges[j];
            if (e->callee < p->nids && pth[e->callee]) {
                if (e->caller < p->nids && site[e->caller])
                    from_site[e->callee] = 1;
                else
                    from_other[e->callee] = 1;
            }
        }
        any_pth = 0;
        for (uint32_t id = 1; id < p->nids; id++) {
            if (pth[id] && from_other[id]) {
                pth[id] = 0;
                shared[id] = from_site[id];
                any_shared |= shared[id];
            }
            any_pth |= pth[id];
        }
        if ((any_shared && prof_strip_under(p, site, shared) < 0) ||
            (any_pth && prof_strip(p, pth, 1) < 0)) {
            PyErr_NoMemory();
            goto done;
        }
    }
    rc = 0;
done:
    free(site);
    free(pth);
    free(from_site);
    free(from_other);
    free(shared);
    return rc;
}

/* ------------------------------------------------------------------ the encoder's profile */

/* The UTF-8 of a str into the encoder's text (lone surrogates as with
 * surrogateescape; "?" for anything else).  -1 with an exception set. */
static int
text_of(sp_pprof_t *out, PyObject *s, sp_span_t *sp)
{
    if (!PyUnicode_Check(s)) {
        *sp = sp_pprof_text(out, "?", 1);
        return 0;
    }
    return sp_pprof_text_of_str(out, s, sp);
}

static inline int
first_line(uint32_t id)
{
    sp_code_t *c = sp_registry_get(id);
    return c ? c->firstlineno : 0;
}

/* The function table: registry id i is function i; the writer's own
 * "[shadowprof overhead]" (extra_overhead) is function nids.  GIL held. */
static int
fill_functions(sp_pprof_t *out, const prof_t *p)
{
    if (sp_pprof_reserve(out, (void **)&out->funcs, &out->funcs_cap, 0,
                         (size_t)p->nids + 1, sizeof(sp_pfunc_t)) < 0)
        return PyErr_NoMemory(), -1;
    out->nfuncs = (size_t)p->nids + 1;
    /* The code objects of one module share their co_filename: its text and the
     * "<shadowprof>" test once for a run of them (one span for the encoder too). */
    PyObject *last_file = NULL;
    sp_span_t file = {0, 0};
    uint8_t synthetic = 0;
    for (uint32_t id = 0; id < p->nids; id++) {
        sp_pfunc_t *f = &out->funcs[id];
        if (!p->used[id]) {
            memset(f, 0, sizeof(*f));
            continue;
        }
        sp_code_t *c = sp_registry_get(id);
        if (c->filename != last_file || !last_file) {
            synthetic = PyUnicode_Check(c->filename) &&
                        PyUnicode_CompareWithASCIIString(c->filename, "<shadowprof>") == 0;
            if (text_of(out, c->filename, &file) < 0)
                return -1;
            last_file = c->filename;
        }
        *f = (sp_pfunc_t){.id = id > 0 ? id : SYNTHETIC_ID_BASE, .filename = file,
                          .start_line = c->firstlineno, .present = 1,
                          .synthetic = synthetic};
        if (text_of(out, c->qualname, &f->name) < 0)
            return -1;
    }
    memset(&out->funcs[p->nids], 0, sizeof(sp_pfunc_t));
    if (p->extra_overhead) {
        sp_pfunc_t *f = &out->funcs[p->nids];
        f->id = SYNTHETIC_ID_BASE + 1;   /* model id -1 */
        f->present = f->synthetic = 1;
        f->name = sp_pprof_text(out, "[shadowprof overhead]", 21);
        f->filename = sp_pprof_text(out, "<shadowprof>", 12);
    }
    return 0;
}

/* The thread number of tid in out->threads, added (and named: the caller's names,
 * then the drain's, then thread-<id>) on first use.  -1 with an exception set. */
static int64_t
fill_thread(sp_pprof_t *out, const prof_t *p, sp_u64map_t *seen, uint64_t tid,
            PyObject *names_py, PyObject *names_core)
{
    int created;
    uint64_t *slot = sp_u64map_put(seen, tid, &created);
    if (!slot)
        return PyErr_NoMemory(), -1;
    if (!created)
        return (int64_t)*slot;
    sp_pthread_t *t = SP_PPROF_PUSH(out, threads);
    if (!t)
        return PyErr_NoMemory(), -1;
    *slot = out->nthreads - 1;
    memset(t, 0, sizeof(*t));
    t->tid = tid;
    if (sp_u64map_get(&p->named_tids, tid)) {
        PyObject *key = PyLong_FromUnsignedLongLong(tid);
        if (!key)
            return -1;
        PyObject *name = names_py ? PyDict_GetItemWithError(names_py, key) : NULL;
        if (!name && !PyErr_Occurred() && names_core)
            name = PyDict_GetItemWithError(names_core, key);
        Py_DECREF(key);
        if (!name && PyErr_Occurred())
            return -1;
        t->named = 1;
        if (name) {
            if (text_of(out, name, &t->name) < 0)
                return -1;
        } else {
            char buf[48];
            int n = snprintf(buf, sizeof(buf), "thread-%llu", (unsigned long long)tid);
            t->name = sp_pprof_text(out, buf, (size_t)n);
        }
    }
    return (int64_t)*slot;
}

static inline int64_t
rounded_weight(const stack_t *s)
{
    /* Python's round(): half to even, which nearbyint does in the default mode. */
    return s->is_float ? (int64_t)nearbyint(s->weight_f) : s->weight;
}

/* Everything of the profile but its comments, in the order pprof.py's encode() walks
 * a Profile: one sample per stack (frames copied: the table's storage may move once
 * the GIL is released), one per call edge [caller, callee], one per callee with
 * calls on no edge (caller=unknown); functions, the interpreter, times and period.
 * GIL held; -1 with an exception set. */
static int
prof_fill(sp_pprof_t *out, const prof_t *p, const sp_session_t *sess, const mark_t *cur,
          PyObject *names_py)
{
    out->wall = sess->wall;
    size_t nframes = 0;
    for (size_t i = 0; i < p->nstacks; i++)
        nframes += p->stacks[i].nlocs;
    if (sp_pprof_reserve(out, (void **)&out->frames, &out->frames_cap, 0,
                         nframes + 2 * p->nedges + p->ncalls, sizeof(uint64_t)) < 0 ||
        sp_pprof_reserve(out, (void **)&out->samples, &out->samples_cap, 0,
                         p->nstacks + p->nedges + p->ncalls, sizeof(sp_psample_t)) < 0)
        return PyErr_NoMemory(), -1;

    /* The stacks' frames first, before anything that may run Python code (a
     * collection's finalizer may release the GIL and let the drain move the table).
     * Every sample was reserved above: written in place (sp_pprof_push_sample's work
     * without its checks). */
    uint64_t *frames = out->frames;
    sp_psample_t *smp = out->samples;
    size_t off = 0;
    for (size_t i = 0; i < p->nstacks; i++) {
        const stack_t *s = &p->stacks[i];
        memcpy(frames + off, s->locs, (size_t)s->nlocs * sizeof(uint64_t));
        smp[i] = (sp_psample_t){off, s->nlocs, 0, SP_PLABEL_THREAD,
                                {(int64_t)s->count, rounded_weight(s), 0}};
        off += s->nlocs;
    }
    out->nsamples = p->nstacks;
    int64_t *into = calloc(p->nids ? p->nids : 1, sizeof(int64_t));
    if (!into)
        return PyErr_NoMemory(), -1;
    for (size_t j = 0; j < p->nedges; j++) {
        const edge_t *ed = &p->edges[j];
        if (ed->callee < p->nids)
            into[ed->callee] += ed->n;
        uint32_t n = 0;
        if (ed->caller != 0)
            frames[off + n++] = sp_pprof_frame(ed->caller, first_line(ed->caller));
        frames[off + n++] = sp_pprof_frame(ed->callee, first_line(ed->callee));
        smp[out->nsamples++] = (sp_psample_t){off, n, 0, SP_PLABEL_NONE, {0, 0, ed->n}};
        off += n;
    }
    for (size_t i = 0; i < p->ncalls; i++) {
        uint32_t fid = p->calls[i].id;
        int64_t rest = p->calls[i].n - into[fid];
        if (!rest)
            continue;
        frames[off] = sp_pprof_frame(fid, first_line(fid));
        smp[out->nsamples++] = (sp_psample_t){off, 1, 0, SP_PLABEL_UNKNOWN_CALLER,
                                              {0, 0, rest}};
        off += 1;
    }
    out->nframes = off;
    free(into);
    if (fill_functions(out, p) < 0)
        return -1;

    PyObject *names_core = sp_drain_thread_names();
    if (!names_core)
        return -1;
    sp_u64map_t seen;
    sp_u64map_init(&seen);
    recent_t recent = {.n = 0};
    for (size_t i = 0; i < p->nstacks; i++) {
        uint64_t tid = p->stacks[i].tid;
        const int64_t *known = recent_find(&recent, tid);
        int64_t thread = known ? *known : fill_thread(out, p, &seen, tid, names_py, names_core);
        if (thread < 0) {
            sp_u64map_free(&seen);
            Py_DECREF(names_core);
            return -1;
        }
        if (!known)
            recent_add(&recent, tid, thread);
        out->samples[i].thread = (uint32_t)thread;
    }
    sp_u64map_free(&seen);
    Py_DECREF(names_core);

    PyObject *exe = PySys_GetObject("executable");   /* borrowed */
    if (exe && PyUnicode_Check(exe) && PyUnicode_GET_LENGTH(exe)) {
        if (text_of(out, exe, &out->interpreter) < 0)
            return -1;
    } else {
        out->interpreter = sp_pprof_text(out, "python", 6);
    }
    out->time_nanos = (int64_t)sess->start_unix_ns;
    out->duration_nanos = (int64_t)p->duration_ns;
    out->period = (int64_t)cur->interval_ns;
    if (out->oom)
        return PyErr_NoMemory(), -1;
    return 0;
}

/* The strings comments(info) returns, into out->comments.  -1 with an exception. */
static int
fill_comments(sp_pprof_t *out, PyObject *comments, PyObject *info)
{
    PyObject *lines = PyObject_CallFunctionObjArgs(comments, info, NULL);
    if (!lines)
        return -1;
    PyObject *seq = PySequence_Fast(lines, "shadowprof: comments() must return a "
                                           "list of str");
    Py_DECREF(lines);
    if (!seq)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t k = 0; k < n; k++) {
        sp_span_t *c = SP_PPROF_PUSH(out, comments);
        if (!c) {
            Py_DECREF(seq);
            return PyErr_NoMemory(), -1;
        }
        if (text_of(out, PySequence_Fast_GET_ITEM(seq, k), c) < 0) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* ------------------------------------------------------------------ write_pprof */

static int
put_int(PyObject *d, const char *key, PyObject *v)
{
    if (!v)
        return -1;
    int r = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return r;
}

#define PUT_U64(d, k, v) put_int(d, k, PyLong_FromUnsignedLongLong(v))
#define PUT_I64(d, k, v) put_int(d, k, PyLong_FromLongLong(v))
#define PUT_F(d, k, v) put_int(d, k, PyFloat_FromDouble(v))

/* The totals of the profile, for the caller's comments and its budget. */
static PyObject *
info_dict(const prof_t *p, const mark_t *cur, double per_call_ns, double cap)
{
    sp_session_t s;
    sp_session_get(&s);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    /* total_ns as Python's sum() of the stacks' times: exact while they are ints */
    int64_t total_i = 0;
    double total_f = 0;
    int is_f = 0;
    for (size_t i = 0; i < p->nstacks; i++) {
        const stack_t *st = &p->stacks[i];
        if (is_f)
            total_f += st->is_float ? st->weight_f : (double)st->weight;
        else if (st->is_float)
            total_f = (double)total_i + st->weight_f, is_f = 1;
        else
            total_i += st->weight;
    }
    if (put_int(d, "mode", PyUnicode_FromString(s.wall ? "wall" : "cpu")) < 0 ||
        PUT_U64(d, "samples", p->stats.samples) < 0 ||
        PUT_U64(d, "weight_ns", p->stats.weight_ns) < 0 ||
        PUT_U64(d, "lost", p->stats.lost) < 0 ||
        PUT_U64(d, "lost_weight_ns", p->stats.lost_weight_ns) < 0 ||
        PUT_U64(d, "overhead", p->stats.overhead) < 0 ||
        PUT_U64(d, "overhead_weight_ns", p->stats.overhead_weight_ns) < 0 ||
        PUT_U64(d, "table_full", p->stats.table_full) < 0 ||
        PUT_U64(d, "duration_ns", p->duration_ns) < 0 ||
        PUT_U64(d, "cpu_ns", p->cpu_ns) < 0 ||
        PUT_U64(d, "interval_ns", cur->interval_ns) < 0 ||
        PUT_U64(d, "start_unix_ns", s.start_unix_ns) < 0 ||
        PUT_F(d, "per_call_overhead_ns", per_call_ns) < 0 ||
        PUT_F(d, "per_call_overhead_cap", cap) < 0 ||
        PUT_F(d, "corrected_ns", p->corrected_ns) < 0 ||
        put_int(d, "total_ns", is_f ? PyFloat_FromDouble(total_f)
                                    : PyLong_FromLongLong(total_i)) < 0 ||
        PUT_U64(d, "stacks", p->nstacks) < 0 ||
        PUT_U64(d, "calls", p->total_calls) < 0 ||
        put_int(d, "running", PyBool_FromLong(cur->running)) < 0 ||
        PUT_U64(d, "handler_ns", cur->handler_ns) < 0 ||
        PUT_U64(d, "drain_ns", cur->stats.drain_ns) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

const char sp_export_write_pprof_doc[] =
    "write_pprof(path=None, base=None, end=None, *, threads=None,\n"
    "            per_call_overhead_ns=0.0, per_call_overhead_cap=0.5, strip=None,\n"
    "            comments=None, level=1, compress=True, fsync=True, mode=-1,\n"
    "            strip_pth=False, deflater=None)\n"
    "    -> (info, mark, data)\n--\n\n"
    "Encode the profile between the marks base (None: the session's start) and end\n"
    "(None: now) as pprof's profile.proto, the bytes analysis/pprof.py's encode() writes\n"
    "for the same Profile, gzip it (`level` on zlib's scale) and write it atomically\n"
    "to path (with the GIL released; mode: its permissions, -1 for 0600); with path None,\n"
    "return the bytes as data instead.\n"
    "threads: {thread id: name} over the drain's names.  per_call_overhead_ns > 0:\n"
    "move the hook's calibrated cost into [shadowprof overhead] as the Profile does.\n"
    "strip: code ids removed from the root end of stacks (model.strip_outer_frames).\n"
    "strip_pth: remove .pth lines site ran after profiling began (model.strip_pth_lines).\n"
    "comments(info) -> [str]: called with the profile's totals (the dict info: samples,\n"
    "cpu_ns, total_ns, corrected_ns, calls ...) for the Profile's comments.  mark: the end\n"
    "mark, the base of a next profile.  info also has encode_ns, compress_ns, write_ns,\n"
    "raw_bytes, file_bytes and deflater: the compressor used (isal at level 1 if the\n"
    "system has libisal.so.2, else libdeflate if it has libdeflate.so.0, else zlib;\n"
    "the argument deflater names one of them instead, a test's hook; none if not\n"
    "compressed).";

PyObject *
sp_export_write_pprof(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "base", "end", "threads", "per_call_overhead_ns",
                             "per_call_overhead_cap", "strip", "comments", "level",
                             "compress", "fsync", "mode", "strip_pth", "deflater", NULL};
    PyObject *path_obj = Py_None, *base_obj = Py_None, *end_obj = Py_None;
    PyObject *threads = Py_None, *strip = Py_None, *comments = Py_None;
    double per_call = 0.0, cap = 0.5;
    int level = 1, compress = 1, do_fsync = 1, mode = -1, strip_pth = 0;
    const char *deflater_name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOO$OddOOippipz:write_pprof", kwlist,
                                     &path_obj, &base_obj, &end_obj, &threads, &per_call,
                                     &cap, &strip, &comments, &level, &compress, &do_fsync,
                                     &mode, &strip_pth, &deflater_name))
        return NULL;
    if (level < 1 || level > 9) {
        PyErr_Format(PyExc_ValueError, "shadowprof: bad gzip level %d: choose 1..9", level);
        return NULL;
    }
    int deflater = SP_DEFLATE_ANY;
    if (deflater_name) {
        deflater = sp_deflater_parse(deflater_name);
        if (deflater < 0) {
            PyErr_Format(PyExc_ValueError, "shadowprof: unknown deflater '%s': choose "
                         "isal, libdeflate or zlib", deflater_name);
            return NULL;
        }
        if (sp_gzip_deflater(level, deflater) < 0) {
            PyErr_Format(PyExc_ValueError, "shadowprof: deflater %s is not on this system: "
                         "install its library or pass deflater=None", deflater_name);
            return NULL;
        }
    }
    if (threads != Py_None && !PyDict_Check(threads)) {
        PyErr_SetString(PyExc_TypeError, "shadowprof: threads must be a dict {id: name}");
        return NULL;
    }
    sp_session_t sess;
    sp_session_get(&sess);
    if (!session_table()) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler has not been started");
        return NULL;
    }
    if (sess.native) {
        PyErr_SetString(PyExc_ValueError, "shadowprof: write_pprof cannot name native "
                        "frames; use pprof.encode() on the Profile of a native session");
        return NULL;
    }
    const mark_t *base = NULL, *cur = NULL;
    if (base_obj != Py_None && !(base = mark_arg(base_obj, "base")))
        return NULL;
    PyObject *path_bytes = NULL, *cur_obj = NULL, *info = NULL, *data = NULL,
             *result = NULL;
    unsigned char *outer = NULL;
    prof_t p;
    memset(&p, 0, sizeof(p));
    sp_pprof_t prof;
    sp_pprof_init(&prof);
    sp_buf_t out;
    sp_buf_init(&out);
    /* Python code runs here, before the profile points into the table (code that
     * releases the GIL could let the drain move the table's storage). */
    uint32_t *strip_ids = NULL;
    size_t nstrip = 0;
    if (strip != Py_None) {
        PyObject *seq = PySequence_Fast(strip, "shadowprof: strip must be code ids");
        if (!seq)
            return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        strip_ids = malloc((n ? (size_t)n : 1) * sizeof(uint32_t));
        if (!strip_ids) {
            Py_DECREF(seq);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t k = 0; k < n; k++) {
            unsigned long id = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(seq, k));
            if (id == (unsigned long)-1 && PyErr_Occurred()) {
                Py_DECREF(seq);
                free(strip_ids);
                return NULL;
            }
            strip_ids[nstrip++] = id > UINT32_MAX ? UINT32_MAX : (uint32_t)id;
        }
        Py_DECREF(seq);
    }
    if (path_obj != Py_None && !PyUnicode_FSConverter(path_obj, &path_bytes)) {
        free(strip_ids);
        return NULL;
    }
    uint64_t t0 = sp_clock_monotonic_ns();
    if (end_obj != Py_None) {
        if (!(cur = mark_arg(end_obj, "end")))
            goto done;
        Py_INCREF(end_obj);
        cur_obj = end_obj;
    } else {
        mark_t *m = mark_take(1);
        cur_obj = m ? mark_capsule(m) : NULL;
        if (!cur_obj)
            goto done;
        cur = PyCapsule_GetPointer(cur_obj, MARK_NAME);
    }
    int rc = prof_build(&p, cur, base);
    if (rc == -2) {
        PyErr_SetString(PyExc_ValueError, "shadowprof: write_pprof cannot name native "
                        "frames; use pprof.encode() on the Profile of a native session");
        goto done;
    }
    if (rc < 0 || (per_call > 0 && prof_correct(&p, per_call, cap) < 0)) {
        PyErr_NoMemory();
        goto done;
    }
    if (nstrip) {
        outer = calloc(p.nids ? p.nids : 1, 1);
        if (!outer) {
            PyErr_NoMemory();
            goto done;
        }
        int any = 0;
        for (size_t k = 0; k < nstrip; k++)
            if (strip_ids[k] < p.nids && p.used[strip_ids[k]])
                outer[strip_ids[k]] = any = 1;
        if (any && prof_strip(&p, outer, 0) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    if (strip_pth && prof_strip_pth(&p) < 0)
        goto done;

    /* Everything the encoder needs, as plain C, while the GIL keeps the table, the
     * registry and the names still. */
    if (prof_fill(&prof, &p, &sess, cur, threads != Py_None ? threads : NULL) < 0)
        goto done;
    info = info_dict(&p, cur, per_call, cap);
    if (!info || (comments != Py_None && fill_comments(&prof, comments, info) < 0))
        goto done;
    if (prof.oom) {
        PyErr_NoMemory();
        goto done;
    }
    uint64_t t1 = sp_clock_monotonic_ns();

    /* Encode, compress and write without the GIL: prof and out are this call's. */
    const char *path = path_bytes ? PyBytes_AS_STRING(path_bytes) : NULL;
    sp_pprof_emit_t st;
    int failed, err;
    Py_BEGIN_ALLOW_THREADS
    failed = sp_pprof_emit(&prof, compress ? level : 0, deflater, path, do_fsync, mode,
                           &out, &st);
    err = errno;
    Py_END_ALLOW_THREADS
    if (failed) {
        errno = err;
        if (st.step == 3)
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_obj);
        else if (err == EINVAL)
            PyErr_SetString(PyExc_ValueError, "shadowprof: a stack names a code id "
                            "past the registry's; report this as a bug");
        else
            PyErr_SetFromErrno(err == ENOMEM ? PyExc_MemoryError : PyExc_OSError);
        goto done;
    }
    /* encode_ns: the whole encoding, with the GIL (gil_ns) and without it */
    if (PUT_U64(info, "encode_ns", t1 - t0 + st.encode_ns) < 0 ||
        PUT_U64(info, "gil_ns", t1 - t0) < 0 ||
        PUT_U64(info, "compress_ns", st.compress_ns) < 0 ||
        PUT_U64(info, "write_ns", st.write_ns) < 0 ||
        PUT_U64(info, "raw_bytes", st.raw_bytes) < 0 ||
        PUT_U64(info, "file_bytes", st.file_bytes) < 0 ||
        put_int(info, "deflater", PyUnicode_FromString(sp_deflater_name(st.deflater))) < 0)
        goto done;
    if (path) {
        data = Py_None;
        Py_INCREF(data);
    } else {
        data = PyBytes_FromStringAndSize((const char *)out.p, (Py_ssize_t)out.len);
        if (!data)
            goto done;
    }
    result = PyTuple_Pack(3, info, cur_obj, data);
done:
    Py_XDECREF(path_bytes);
    Py_XDECREF(cur_obj);
    Py_XDECREF(info);
    Py_XDECREF(data);
    free(outer);
    free(strip_ids);
    prof_free(&p);
    sp_pprof_free(&prof);
    sp_buf_free(&out);
    return result;
}

/* ------------------------------------------------------------------ helpers */

const char sp_export_session_doc[] =
    "_session() -> dict\n--\n\nThe session's generation (changes at start() and in a\n"
    "forked child), running and native flags, and its samples so far.";

PyObject *
sp_export_session(PyObject *mod, PyObject *unused)
{
    sp_session_t s;
    sp_session_get(&s);
    return Py_BuildValue("{s:K,s:O,s:O,s:O,s:K}", "generation",
                         (unsigned long long)s.generation, "running",
                         s.running ? Py_True : Py_False, "native",
                         s.native ? Py_True : Py_False, "started",
                         session_table() ? Py_True : Py_False, "samples",
                         (unsigned long long)sp_session_stats()->samples);
}

const char sp_export_table_add_doc[] =
    "_table_add(thread_id, frames, count, weight_ns)\n--\n\n"
    "For tests and benchmarks: add samples of a made-up stack (frames: ((code id,\n"
    "line), ...) root first) to the session's table and totals, as the drain would.";

PyObject *
sp_export_table_add(PyObject *mod, PyObject *args)
{
    unsigned long long tid, count, weight;
    PyObject *frames;
    if (!PyArg_ParseTuple(args, "KOKK:_table_add", &tid, &frames, &count, &weight))
        return NULL;
    if (!session_table()) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the profiler has not been started");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(frames, "frames must be a sequence of (id, line)");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    uint64_t *locs = malloc((n ? (size_t)n : 1) * sizeof(uint64_t));
    if (!locs) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        unsigned int id;
        int line;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, k), "Ii", &id, &line)) {
            free(locs);
            Py_DECREF(seq);
            return NULL;
        }
        if (id >= sp_registry_size()) {
            PyErr_Format(PyExc_ValueError, "shadowprof: no code id %u", id);
            free(locs);
            Py_DECREF(seq);
            return NULL;
        }
        locs[k] = loc_key(id, line);
    }
    Py_DECREF(seq);
    int r = sp_table_add(session_table(), tid, locs, (uint32_t)n, count, weight);
    free(locs);
    if (r < 0)
        return PyErr_NoMemory();
    if (r > 0) {
        PyErr_SetString(PyExc_RuntimeError, "shadowprof: the table is full");
        return NULL;
    }
    sp_session_stats()->samples += count;
    sp_session_stats()->weight_ns += weight;
    Py_RETURN_NONE;
}
