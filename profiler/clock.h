/* clock.h: the clocks shadowprof reads, in nanoseconds, in one place.
 *
 * Every function here is static inline and async-signal-safe (clock_gettime is, by
 * POSIX): the SIGPROF handler, the drain thread and the pthread_atfork child handler
 * use them as freely as code under the GIL.  No other file of profiler/ calls
 * clock_gettime itself (tests/test_c_layout.py checks it).
 *
 *   sp_clock_monotonic_ns     CLOCK_MONOTONIC: elapsed (wall) time, never set back
 *   sp_clock_realtime_ns      CLOCK_REALTIME: Unix time (a profile's start)
 *   sp_clock_thread_cpu_ns    CLOCK_THREAD_CPUTIME_ID: the calling thread's CPU time
 *   sp_clock_process_cpu_ns   CLOCK_PROCESS_CPUTIME_ID: the process's CPU time
 *   sp_clock_read             any clock (e.g. another thread's CPU clock) as a timespec
 *
 * The *_ns readers return 0 if the clock cannot be read (they never fail for the four
 * clocks above on Linux); sp_clock_read returns -1 and sets errno.
 */
#ifndef SP_CLOCK_H
#define SP_CLOCK_H

#include <stdint.h>
#include <time.h>

#define SP_NS_PER_SEC 1000000000u

/* A timespec as nanoseconds.  async-signal-safe. */
static inline uint64_t
sp_timespec_ns(const struct timespec *ts)
{
    return (uint64_t)ts->tv_sec * SP_NS_PER_SEC + (uint64_t)ts->tv_nsec;
}

/* Nanoseconds as a timespec (timer intervals, deadlines).  async-signal-safe. */
static inline struct timespec
sp_ns_timespec(uint64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / SP_NS_PER_SEC);
    ts.tv_nsec = (long)(ns % SP_NS_PER_SEC);
    return ts;
}

/* Reads `clock` into *ts.  Returns -1 and sets errno (e.g. the CPU clock of a thread
 * that has exited).  async-signal-safe. */
static inline int
sp_clock_read(clockid_t clock, struct timespec *ts)
{
    return clock_gettime(clock, ts);
}

/* `clock` in nanoseconds; 0 if it cannot be read.  async-signal-safe. */
static inline uint64_t
sp_clock_ns(clockid_t clock)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) < 0)
        return 0;
    return sp_timespec_ns(&ts);
}

/* async-signal-safe */
static inline uint64_t
sp_clock_monotonic_ns(void)
{
    return sp_clock_ns(CLOCK_MONOTONIC);
}

/* async-signal-safe */
static inline uint64_t
sp_clock_realtime_ns(void)
{
    return sp_clock_ns(CLOCK_REALTIME);
}

/* async-signal-safe */
static inline uint64_t
sp_clock_thread_cpu_ns(void)
{
    return sp_clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* async-signal-safe */
static inline uint64_t
sp_clock_process_cpu_ns(void)
{
    return sp_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

#endif /* SP_CLOCK_H */
