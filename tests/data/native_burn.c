/* native_burn.c: a tiny CPython extension for tests/test_native.py.
 *
 * burn_a(n) and burn_b(n) spin for n rounds in two static C functions (static on
 * purpose: dladdr cannot name them, the ELF symbol table can).  The loops depend on
 * their previous value so the compiler cannot fold them away.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static __attribute__((noinline)) uint64_t
native_burn_spin_a(uint64_t n)
{
    uint64_t x = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

static __attribute__((noinline)) uint64_t
native_burn_spin_b(uint64_t n)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

static PyObject *
burn_a(PyObject *self, PyObject *arg)
{
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromUnsignedLongLong(native_burn_spin_a(n));
}

static PyObject *
burn_b(PyObject *self, PyObject *arg)
{
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromUnsignedLongLong(native_burn_spin_b(n));
}

static PyMethodDef methods[] = {
    {"burn_a", burn_a, METH_O, "Spin in native_burn_spin_a for n rounds."},
    {"burn_b", burn_b, METH_O, "Spin in native_burn_spin_b for n rounds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "native_burn", "CPU-burning C functions for tests.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit_native_burn(void)
{
    return PyModule_Create(&module);
}
