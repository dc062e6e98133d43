/* cthread_callback.c: a plain shared library for tests/test_cthread_callbacks.py.
 *
 * cthread_run(cb, n) starts a thread with pthread_create (no Python thread state) that
 * calls cb(i) for i in 0..n-1 and joins it.  Called from ctypes with a CFUNCTYPE
 * callback: ctypes makes the callback's thread state with PyGILState_Ensure and frees
 * it with PyGILState_Release, so every callback runs on a new thread state of the same
 * OS thread.
 */
#include <pthread.h>

typedef void (*cthread_cb_t)(int);

struct job {
    cthread_cb_t cb;
    int n;
};

static void *
run(void *arg)
{
    struct job *j = arg;
    for (int i = 0; i < j->n; i++)
        j->cb(i);
    return 0;
}

int
cthread_run(cthread_cb_t cb, int n)
{
    struct job j = {cb, n};
    pthread_t t;
    if (pthread_create(&t, 0, run, &j) != 0)
        return -1;
    pthread_join(t, 0);
    return 0;
}
