/* Code registry, with an embedded interpreter: stable ids, names, exact call and edge
 * counts (inline cache and overflow table), and code objects that die and whose
 * addresses are reused never confused with the new ones. */
#include "registry.h"

#include "check.h"

#include <stdio.h>
#include <string.h>


static int freed_calls;
static void
before_free(void)
{
    freed_calls++;
}

/* A new code object: the __code__ of a function named `name` defined at line 1. */
static PyObject *
make_code(const char *name, const char *body)
{
    char src[512];
    snprintf(src, sizeof src, "def %s():\n%s\n", name, body);
    PyObject *globals = PyDict_New();
    PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
    PyObject *r = PyRun_String(src, Py_file_input, globals, globals);
    Py_XDECREF(r);
    PyObject *fn = PyDict_GetItemString(globals, name);
    PyObject *code = fn ? PyObject_GetAttrString(fn, "__code__") : NULL;
    Py_DECREF(globals);
    if (!code)
        PyErr_Print();
    return code;
}

static int
name_is(sp_code_t *e, const char *name)
{
    const char *s = PyUnicode_AsUTF8(e->qualname);
    return s && strcmp(s, name) == 0;
}

static uint64_t edge_sum, edge_from_5;
static int
visit(uint32_t caller, uint32_t callee, uint64_t n, void *arg)
{
    uint32_t want = *(uint32_t *)arg;
    if (callee == want) {
        edge_sum += n;
        if (caller == 5 + SP_ID_FIRST_CODE)
            edge_from_5 += n;
    }
    return 0;
}

int
main(void)
{
    Py_Initialize();
    CHECK(sp_registry_init() == 0);
    CHECK(sp_registry_init() == 0);   /* idempotent */
    sp_registry_on_free(before_free);

    /* Synthetic entries exist with their names. */
    CHECK(name_is(sp_registry_get(SP_ID_LOST), "[lost samples]"));
    CHECK(name_is(sp_registry_get(SP_ID_TRUNCATED), "[truncated]"));

    PyObject *a = make_code("alpha", "    x = 1\n    y = 2\n    return x + y");
    CHECK(a != NULL);
    CHECK(sp_code_of((PyCodeObject *)a) == NULL);
    sp_code_t *ea = sp_code_register((PyCodeObject *)a);
    CHECK(ea != NULL && ea->id >= SP_ID_FIRST_CODE);
    CHECK(sp_code_of((PyCodeObject *)a) == ea);
    CHECK(sp_registry_get(ea->id) == ea);
    CHECK(name_is(ea, "alpha"));
    CHECK(ea->firstlineno == 1);
    /* Lines: instruction -1 is the first line; the last instruction is on line 4. */
    CHECK(sp_code_line(ea, -1) == 1);
    Py_ssize_t nunits = PyBytes_GET_SIZE(PyObject_GetAttrString(a, "co_code")) / 2;
    CHECK(sp_code_line(ea, (int)nunits - 1) == 4);

    /* Calls and edges: 1 caller fits the inline slot; 10 callers overflow it. */
    uint32_t id = ea->id;
    for (int i = 0; i < 1000; i++)
        sp_code_count_call(ea, SP_ID_ROOT);
    for (uint32_t c = 0; c < 10; c++)
        for (uint32_t k = 0; k <= c; k++)
            sp_code_count_call(ea, SP_ID_FIRST_CODE + c);
    sp_registry_sum_calls();          /* calls are the sum of the edges */
    CHECK(ea->calls == 1000 + 55);
    edge_sum = edge_from_5 = 0;
    sp_registry_visit_edges(visit, &id);
    CHECK(edge_sum == 1055);
    CHECK(edge_from_5 == 6);
    /* A cached caller that becomes the most frequent moves to the slot checked inline. */
    for (int i = 0; i < 2000; i++)
        sp_code_count_call(ea, SP_ID_FIRST_CODE + 2);
    CHECK(ea->edge_caller[0] == SP_ID_FIRST_CODE + 2);
    edge_sum = 0;
    sp_registry_visit_edges(visit, &id);
    CHECK(edge_sum == 3055);
    sp_registry_reset_counts();
    sp_registry_sum_calls();
    CHECK(ea->calls == 0);
    edge_sum = 0;
    sp_registry_visit_edges(visit, &id);
    CHECK(edge_sum == 0);

    /* Death and address reuse: free alpha, make many new code objects; none may
     * inherit alpha's entry, and alpha's entry keeps its name. */
    uintptr_t old_addr = (uintptr_t)a;
    Py_DECREF(a);
    PyGC_Collect();
    CHECK(freed_calls >= 1);
    CHECK(ea->code == NULL);
    CHECK(name_is(ea, "alpha"));
    CHECK(sp_code_line(ea, 5) == 1);   /* dead: first line */
    int reused = 0;
    uint32_t last_id = id;
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof name, "beta_%d", i);
        PyObject *b = make_code(name, "    return 0");
        if ((uintptr_t)b == old_addr)
            reused++;
        CHECK(sp_code_of((PyCodeObject *)b) == NULL);
        sp_code_t *eb = sp_code_register((PyCodeObject *)b);
        CHECK(eb && eb->id > last_id && eb != ea);
        CHECK(eb && name_is(eb, name));
        last_id = eb ? eb->id : last_id;
        Py_DECREF(b);
    }
    CHECK(name_is(sp_registry_get(id), "alpha"));
    printf("embed_registry: address of a dead code object reused %d times\n", reused);

    Py_Finalize();
    return CHECK_DONE("embed_registry");
}
