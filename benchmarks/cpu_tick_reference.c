/* cpu_tick_reference.c: what a plain per-thread CPU-time sampler reads, without
 * shadowprof, on tests/data/native_split.py's 70:30 workload (the same two loops, one
 * with memcpy, in chunks of 3.5 and 1.5 ms of CPU).  A POSIX timer on the thread's CPU
 * clock at 1 ms (it fires on the kernel's tick), a SIGPROF handler that notes which
 * loop runs and the CPU time since its previous sample; the loops' own CPU clocks are
 * the truth.  For judging shadowprof's --native CPU-mode shares (issue 12, item 2):
 * on a loaded machine this sampler alone reads several points off (b under-sampled),
 * so such a deviation is the kernel's sampling, not the profiler's.
 *
 *   gcc -O2 -o /tmp/cpu_tick_reference benchmarks/cpu_tick_reference.c
 *   /tmp/cpu_tick_reference 8      # seconds of CPU
 * Prints the truth (a's share of the two loops' CPU clocks), the sampled share by
 * count and by weight, the samples, samples per CPU second in each loop, and how much
 * the thread waited (wall / CPU).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
static volatile int cur;              /* 1 = a, 2 = b, 0 = other */
static uint64_t cnt[3], wt[3], last;
static uint64_t ns(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }
static void on(int s, siginfo_t *i, void *u) { uint64_t n = ns(CLOCK_THREAD_CPUTIME_ID); cnt[cur]++; wt[cur] += n - last; last = n; }
static void *(*volatile copy)(void *, const void *, size_t) = memcpy;
static unsigned char src[4096], dst[4096];
static __attribute__((noinline)) uint64_t fa(uint64_t n) { uint64_t x = 88172645463325252ull;
  for (uint64_t i = 0; i < n; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; if ((i & 31) == 0) { copy(dst, src + (x & 63), 2048); x += dst[x & 1023]; } __asm__ volatile("" : "+r"(x)); } return x; }
static __attribute__((noinline)) uint64_t fb(uint64_t n) { uint64_t x = 1; for (uint64_t i = 0; i < n; i++) { x = x * 6364136223846793005ull + 1442695040888963407ull; __asm__ volatile("" : "+r"(x)); } return x; }
int main(int argc, char **argv) {
  double secs = atof(argv[1]);
  uint64_t t0 = ns(CLOCK_THREAD_CPUTIME_ID); fa(2000000); double ra = 2000000.0 / (ns(CLOCK_THREAD_CPUTIME_ID) - t0);
  t0 = ns(CLOCK_THREAD_CPUTIME_ID); fb(20000000); double rb = 20000000.0 / (ns(CLOCK_THREAD_CPUTIME_ID) - t0);
  uint64_t na = ra * 3.5e6, nb = rb * 1.5e6;
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO | SA_RESTART; sigaction(SIGPROF, &sa, 0);
  struct sigevent sev; memset(&sev, 0, sizeof sev); sev.sigev_notify = SIGEV_THREAD_ID; sev.sigev_signo = SIGPROF; sev._sigev_un._tid = syscall(SYS_gettid);
  timer_t tm; timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &tm);
  struct itimerspec its = {{0, 1000000}, {0, 1000000}}; last = ns(CLOCK_THREAD_CPUTIME_ID); timer_settime(tm, 0, &its, 0);
  uint64_t ca = 0, cb = 0, end = ns(CLOCK_THREAD_CPUTIME_ID) + secs * 1e9, w0 = ns(CLOCK_MONOTONIC), c00 = ns(CLOCK_THREAD_CPUTIME_ID);
  while (ns(CLOCK_THREAD_CPUTIME_ID) < end) {
    uint64_t c = ns(CLOCK_THREAD_CPUTIME_ID); cur = 1; fa(na); cur = 0; ca += ns(CLOCK_THREAD_CPUTIME_ID) - c;
    c = ns(CLOCK_THREAD_CPUTIME_ID); cur = 2; fb(nb); cur = 0; cb += ns(CLOCK_THREAD_CPUTIME_ID) - c;
  }
  double cpu = (ns(CLOCK_THREAD_CPUTIME_ID) - c00) / 1e9;
  printf("truth %.4f  count %.4f  weight %.4f  n %lu  a/s %.0f b/s %.0f wall/cpu %.1f\n", (double)ca / (ca + cb), (double)cnt[1] / (cnt[1] + cnt[2]),
         (double)wt[1] / (wt[1] + wt[2]), cnt[1] + cnt[2], cnt[1] / (ca / 1e9), cnt[2] / (cb / 1e9), (ns(CLOCK_MONOTONIC) - w0) / 1e9 / cpu);
}
