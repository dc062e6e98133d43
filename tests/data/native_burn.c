/* native_burn.c: a tiny CPython extension for tests/test_native.py.
 *
 * burn_a(n) and burn_b(n) spin for n rounds in two static C functions (static on
 * purpose: dladdr cannot name them, the ELF symbol table can).  The loops depend on
 * their previous value so the compiler cannot fold them away.
 *
 * timed_a(n) and timed_b(n) time themselves with the thread's CPU clock and with
 * the monotonic clock and add both up for spent(): timed_a mixes its own arithmetic with copies in the C library's
 * memcpy (about half its time), timed_b only computes; the shares of the two in a
 * --native profile must match their own clock.
 *
 * walk_objects(seconds) releases the GIL and calls dl_iterate_phdr in a loop with a
 * callback that computes for a while on every object, so the thread holds the
 * loader's lock most of the time from code outside the C library and the loader (as
 * libgcc's unwinder does for a C++ exception).
 */
#define _GNU_SOURCE 1
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

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

static uint64_t
clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* memcpy through a pointer the compiler cannot see through: a real call into libc. */
static void *(*volatile copy)(void *, const void *, size_t) = memcpy;
static unsigned char copy_src[4096], copy_dst[4096];
/* [CPU, wall] ns spent in timed_a and timed_b.  GIL held. */
static uint64_t spent_a_ns[2], spent_b_ns[2];

static __attribute__((noinline)) uint64_t
native_burn_mixed_a(uint64_t n)
{
    uint64_t x = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if ((i & 31) == 0) {
            copy(copy_dst, copy_src + (x & 63), 2048);
            x += copy_dst[x & 1023];
        }
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

static PyObject *
timed(PyObject *arg, uint64_t (*fn)(uint64_t), uint64_t *spent)
{
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    uint64_t w0 = clock_ns(CLOCK_MONOTONIC), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t x = fn(n);
    spent[0] += clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    spent[1] += clock_ns(CLOCK_MONOTONIC) - w0;
    return PyLong_FromUnsignedLongLong(x);
}

static PyObject *
timed_a(PyObject *self, PyObject *arg)
{
    return timed(arg, native_burn_mixed_a, spent_a_ns);
}

static PyObject *
timed_b(PyObject *self, PyObject *arg)
{
    return timed(arg, native_burn_spin_b, spent_b_ns);
}

static PyObject *
spent(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("{s:K,s:K,s:K,s:K}",
                         "a_cpu", (unsigned long long)spent_a_ns[0],
                         "a_wall", (unsigned long long)spent_a_ns[1],
                         "b_cpu", (unsigned long long)spent_b_ns[0],
                         "b_wall", (unsigned long long)spent_b_ns[1]);
}

static int
native_burn_on_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    uint64_t *x = arg;
    for (int i = 0; i < 2000; i++) {
        *x = *x * 6364136223846793005ull + info->dlpi_addr + size;
        __asm__ volatile("" : "+r"(*x));
    }
    return 0;
}

static PyObject *
walk_objects(PyObject *self, PyObject *arg)
{
    double seconds = PyFloat_AsDouble(arg);
    if (PyErr_Occurred())
        return NULL;
    unsigned long long walks = 0;
    uint64_t x = 1;
    Py_BEGIN_ALLOW_THREADS
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += (time_t)seconds;
    end.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    do {
        dl_iterate_phdr(native_burn_on_object, &x);
        walks++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec < end.tv_sec ||
             (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
    Py_END_ALLOW_THREADS
    return PyLong_FromUnsignedLongLong(walks + (x == 0));
}

static PyMethodDef methods[] = {
    {"burn_a", burn_a, METH_O, "Spin in native_burn_spin_a for n rounds."},
    {"burn_b", burn_b, METH_O, "Spin in native_burn_spin_b for n rounds."},
    {"timed_a", timed_a, METH_O, "n rounds of arithmetic and memcpy, timed."},
    {"timed_b", timed_b, METH_O, "n rounds of native_burn_spin_b, timed."},
    {"spent", spent, METH_NOARGS, "CPU and wall ns spent in timed_a and timed_b."},
    {"walk_objects", walk_objects, METH_O,
     "dl_iterate_phdr in a loop for that many seconds, GIL released; the walks."},
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
