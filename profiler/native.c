/* native.c: native stacks for the signal handler, with libunwind's local unwinder
 * (see native.h for the contract).
 *
 * Owns: the dlopen'ed libunwind entry points (written once, GIL held, before any
 * handler reads them), the on/off flag, and the skip/failure counters (atomic).
 *
 * Loader lock.  On a cache miss libunwind finds a frame's unwind table with
 * dl_iterate_phdr, which takes the dynamic loader's write lock (a recursive mutex in
 * ld.so's _rtld_global), and it does so holding its own cache lock.  A handler that
 * waited for that lock could wait forever: for itself, if its thread was interrupted
 * in the middle of taking or releasing it (a recursive lock by the handler then waits
 * for its own thread); or for another thread that holds it inside a dl_iterate_phdr
 * callback (libgcc's unwinder for a C++ exception, a program's own walk) and whose
 * handler waits for the cache lock that the first handler holds (issue 12, item 9:
 * tests/data/native_phdr.py hung every run), or whose callback waits for a lock
 * (the allocator's, a program's) held by the first handler's interrupted thread.
 * So the handler never waits for the loader lock.  sp_native_enable finds it once
 * (inside a dl_iterate_phdr callback it is the one mutex in _rtld_global that this
 * thread owns, once per nesting level), and the handler takes it itself with
 * pthread_mutex_trylock (a compare-and-swap, or a count increment when its thread
 * already owns it in a steady state) before it unwinds, and releases it after:
 * libunwind's own dl_iterate_phdr then re-enters a lock its thread holds and never
 * blocks.  If the lock is taken elsewhere or changing hands, if the interrupted
 * thread owns it inside the loader (which may be editing its list of objects), or
 * if _r_debug.r_state is not RT_CONSISTENT (a dlopen/dlclose in progress), the
 * sample keeps its Python stack only, counted (sp_native_skipped).  Libunwind's cache
 * lock is only ever taken with all signals blocked, and its holder (a handler)
 * waits for nothing, so handlers never wait for each other for long.
 *
 * The C library.  Samples interrupted inside the C library (memcpy, malloc, a system
 * call's return) are unwound like any other: the unwind allocates nothing and takes
 * no lock of the C library's other than the loader's (libunwind's local path has
 * only its own locks, taken with every signal blocked), so time in libc counts for
 * the C function that called it.  Skipping them, as an earlier version did, took that
 * time from whichever function called libc more and biased the shares between C
 * functions (issue 12, item 2: 55% read for 70%).  Only when the loader lock could not
 * be found (not glibc, an unknown layout) does the handler fall back to skipping
 * every sample inside the C library and the loader, and to letting one handler at a
 * time into libunwind (`unwinding`: a handler that finds it busy spins for at most
 * SP_UNWIND_SPIN_NS, then gives up), which breaks the cycle between two handlers.
 *
 * Thread-local storage.  A dlopen'ed library's TLS (libunwind's is general-dynamic)
 * is allocated lazily, with malloc, the first time each thread touches it, which must
 * not happen in a signal handler.  So: UNW_CACHE_GLOBAL, not PER_THREAD; and a
 * unw_init_local2/unw_step walk rather than unw_backtrace, whose fast path keeps a
 * per-thread trace cache in TLS (libunwind 1.6's only TLS).  The global cache's lock
 * is only ever taken with all signals blocked, so a handler can never interrupt its
 * holder on the same thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "compat.h"
#include "clock.h"
#include "native.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__has_include)
#  if __has_include(<libunwind.h>)
#    define SP_HAVE_LIBUNWIND 1
#  endif
#endif

volatile int sp_native_on;
static uint64_t skipped;   /* atomic */
static uint64_t failed;    /* atomic */

uint64_t sp_native_skipped(void) { return __atomic_load_n(&skipped, __ATOMIC_RELAXED); }
uint64_t sp_native_failed(void) { return __atomic_load_n(&failed, __ATOMIC_RELAXED); }

void
sp_native_reset_counts(void)
{
    __atomic_store_n(&skipped, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&failed, 0, __ATOMIC_RELAXED);
}

#ifdef SP_HAVE_LIBUNWIND

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#define SP_STR_(x) #x
#define SP_STR(x) SP_STR_(x)

/* libunwind's entry points; set once by sp_native_enable (GIL), then read-only. */
static int (*p_init_local2)(unw_cursor_t *, unw_context_t *, int);
static int (*p_step)(unw_cursor_t *);
static int (*p_get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
static int (*p_set_caching_policy)(unw_addr_space_t, unw_caching_policy_t);
static unw_addr_space_t *p_local_as;
static int ready;
/* [eval_lo, eval_hi): _PyEval_EvalFrameDefault's code.  Set at enable (GIL). */
static uint64_t eval_lo, eval_hi;

int
sp_native_is_eval(uint64_t pc)
{
    return pc >= eval_lo && pc < eval_hi;
}

static void
find_eval_loop(void)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    void *addr = (void *)(uintptr_t)_PyEval_EvalFrameDefault;
    if (dladdr1(addr, &info, (void **)&sym, RTLD_DL_SYMENT) && sym && sym->st_size) {
        eval_lo = (uint64_t)(uintptr_t)info.dli_saddr;
        eval_hi = eval_lo + sym->st_size;
    }
}

/* Text ranges of the C library and the dynamic loader, found once at enable time;
 * ranges [0, nldso) belong to the loader.  Written with the GIL held before sampling
 * starts; read by the handler. */
#define SP_SYSLIB_RANGES 8
static uint64_t syslib_lo[SP_SYSLIB_RANGES], syslib_hi[SP_SYSLIB_RANGES];
static int nsyslib, nldso;

static int
note_syslib(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    int want_ldso = *(int *)arg;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    int is_ldso = strncmp(base, "ld-linux", 8) == 0 || strncmp(base, "ld64.so", 7) == 0;
    if (want_ldso ? !is_ldso : strncmp(base, "libc.so", 7) != 0)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && nsyslib < SP_SYSLIB_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            syslib_lo[nsyslib] = info->dlpi_addr + ph->p_vaddr;
            syslib_hi[nsyslib] = syslib_lo[nsyslib] + ph->p_memsz;
            nsyslib++;
        }
    }
    return 0;
}

static void
find_syslibs(void)
{
    int want_ldso = 1;
    nsyslib = 0;
    dl_iterate_phdr(note_syslib, &want_ldso);
    nldso = nsyslib;
    want_ldso = 0;
    dl_iterate_phdr(note_syslib, &want_ldso);
}

/* Whether pc lies in the dynamic loader (ldso) or the C library.  async-signal-safe. */
static int
in_syslib(uint64_t pc, int ldso_only)
{
    for (int i = 0; i < (ldso_only ? nldso : nsyslib); i++)
        if (pc >= syslib_lo[i] && pc < syslib_hi[i])
            return 1;
    return 0;
}

/* The loader's write lock (glibc's GL(dl_load_write_lock), the recursive mutex
 * dl_iterate_phdr takes), or NULL if it could not be found.  Set at enable time (GIL),
 * before sampling starts; the handler reads the mutex's public fields. */
#ifdef __GLIBC__
static pthread_mutex_t *loader_lock;

struct lock_probe {
    unsigned char *lo;     /* _rtld_global */
    size_t len;
    int tid;
    unsigned char *cand[8];
    int ncand;
};

static int
probe_inner(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)info;
    (void)size;
    struct lock_probe *p = arg;
    int kept = 0;
    for (int i = 0; i < p->ncand; i++) {
        pthread_mutex_t *m = (pthread_mutex_t *)(void *)p->cand[i];
        if (m->__data.__owner == p->tid && m->__data.__count == 2)
            p->cand[kept++] = p->cand[i];
    }
    p->ncand = kept;
    return 1;
}

static int
probe_outer(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)info;
    (void)size;
    struct lock_probe *p = arg;
    /* Inside the callback the loader lock is held once by this thread: a mutex owned
     * by us with count 1, whose count is 2 one level deeper. */
    for (size_t off = 0; off + sizeof(pthread_mutex_t) <= p->len; off += sizeof(void *)) {
        pthread_mutex_t *m = (pthread_mutex_t *)(void *)(p->lo + off);
        if (m->__data.__lock != 0 && m->__data.__owner == p->tid &&
            m->__data.__count == 1 && p->ncand < 8)
            p->cand[p->ncand++] = p->lo + off;
    }
    if (p->ncand)
        dl_iterate_phdr(probe_inner, p);
    return 1;
}

static void
find_loader_lock(void)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    void *g = dlsym(RTLD_DEFAULT, "_rtld_global");
    loader_lock = NULL;
    if (!g || !dladdr1(g, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym || !sym->st_size)
        return;
    struct lock_probe p = {(unsigned char *)g, sym->st_size, (int)syscall(SYS_gettid),
                           {0}, 0};
    dl_iterate_phdr(probe_outer, &p);
    if (p.ncand == 1)
        loader_lock = (pthread_mutex_t *)(void *)p.cand[0];
}

/* Takes the loader lock for an unwind, without waiting: 1 if taken (release it with
 * loader_lock_release), 0 if the sample must skip its native part, -1 if the lock is
 * unknown.  async-signal-safe (pthread_mutex_trylock on a recursive mutex is a
 * compare-and-swap or a count increment; gettid only when the lock is taken). */
static int
loader_lock_take(uint64_t pc)
{
    if (!loader_lock)
        return -1;
    if (__atomic_load_n(&loader_lock->__data.__lock, __ATOMIC_ACQUIRE) != 0) {
        /* Taken.  By us in a steady state (count >= 1; count 0 is the middle of our
         * own release, before the owner field is cleared) and outside the loader, we
         * may take it once more; otherwise trylock would fail or lie. */
        if (__atomic_load_n(&loader_lock->__data.__owner, __ATOMIC_RELAXED) !=
                (int)syscall(SYS_gettid) ||
            __atomic_load_n(&loader_lock->__data.__count, __ATOMIC_RELAXED) == 0 ||
            in_syslib(pc, 1))
            return 0;
    }
    return pthread_mutex_trylock(loader_lock) == 0;
}

static void
loader_lock_release(void)   /* async-signal-safe */
{
    pthread_mutex_unlock(loader_lock);
}
#else
static void find_loader_lock(void) {}
static int
loader_lock_take(uint64_t pc)
{
    (void)pc;
    return -1;
}
static void loader_lock_release(void) {}
#endif

/* Without a known loader lock: at most one handler inside libunwind at a time (see
 * the top of the file), 0 or 1, atomic.  A handler that finds it taken spins at most
 * SP_UNWIND_SPIN_NS. */
static int unwinding;
#define SP_UNWIND_SPIN_NS 100000u

/* Takes `unwinding`; returns 0 if it stayed busy too long.  async-signal-safe. */
static int
unwinder_acquire(void)
{
    if (!__atomic_exchange_n(&unwinding, 1, __ATOMIC_ACQUIRE))
        return 1;
    uint64_t start = sp_clock_monotonic_ns();
    do {
        for (int i = 0; i < 64; i++) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ volatile("yield");
#endif
            if (!__atomic_load_n(&unwinding, __ATOMIC_RELAXED) &&
                !__atomic_exchange_n(&unwinding, 1, __ATOMIC_ACQUIRE))
                return 1;
        }
    } while (sp_clock_monotonic_ns() - start < SP_UNWIND_SPIN_NS);
    return 0;
}

static void
unwinder_release(void)   /* async-signal-safe */
{
    __atomic_store_n(&unwinding, 0, __ATOMIC_RELEASE);
}

/* The interrupted program counter.  async-signal-safe. */
static uint64_t
interrupted_pc(void *ucontext)
{
#if defined(__x86_64__)
    return (uint64_t)((ucontext_t *)ucontext)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uint64_t)((ucontext_t *)ucontext)->uc_mcontext.pc;
#else
    (void)ucontext;
    return 0;
#endif
}

/* Whether the loader's list of objects is consistent.  async-signal-safe (one load). */
static int
loader_consistent(void)
{
    return __atomic_load_n(&_r_debug.r_state, __ATOMIC_ACQUIRE) == RT_CONSISTENT;
}

/* async-signal-safe; re-entrant (the cursor is on the caller's stack). */
static uint32_t
walk(unw_context_t *uc, int flags, uint64_t *pcs, uint32_t max)
{
    unw_cursor_t cursor;
    if (p_init_local2(&cursor, uc, flags) < 0)
        return 0;
    uint32_t n = 0;
    while (n < max) {
        unw_word_t ip = 0;
        if (p_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
            break;
        pcs[n] = (n == 0 && (flags & UNW_INIT_SIGNAL_FRAME)) ? ip : ip - 1;
        n++;
        if (p_step(&cursor) <= 0)
            break;
    }
    return n;
}

int
sp_native_enable(void)
{
    if (ready)
        return 0;
    void *lib = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        PyErr_Format(PyExc_RuntimeError,
                     "shadowprof: native frames need libunwind (%s); install it "
                     "(Debian: apt-get install libunwind8) or run without --native",
                     dlerror());
        return -1;
    }
    p_init_local2 = (int (*)(unw_cursor_t *, unw_context_t *, int))dlsym(
        lib, SP_STR(unw_init_local2));
    p_step = (int (*)(unw_cursor_t *))dlsym(lib, SP_STR(unw_step));
    p_get_reg = (int (*)(unw_cursor_t *, unw_regnum_t, unw_word_t *))dlsym(
        lib, SP_STR(unw_get_reg));
    p_set_caching_policy = (int (*)(unw_addr_space_t, unw_caching_policy_t))dlsym(
        lib, SP_STR(unw_set_caching_policy));
    p_local_as = (unw_addr_space_t *)dlsym(lib, SP_STR(unw_local_addr_space));
    if (!p_init_local2 || !p_step || !p_get_reg || !p_set_caching_policy || !p_local_as) {
        PyErr_SetString(PyExc_RuntimeError,
                        "shadowprof: the installed libunwind lacks unw_init_local2 "
                        "(needs libunwind >= 1.3); upgrade it or run without --native");
        return -1;
    }
    p_set_caching_policy(*p_local_as, UNW_CACHE_GLOBAL);
    find_syslibs();
    find_loader_lock();
    find_eval_loop();
    /* Warm up: the first unwind runs libunwind's one-time initialisation (which may
     * allocate) and fills the cache with the frames that lead here. */
    ucontext_t uc;
    uint64_t pcs[64];
    if (getcontext(&uc) == 0)
        walk((unw_context_t *)&uc, 0, pcs, 64);
    ready = 1;
    return 0;
}

/* async-signal-safe; re-entrant (state on the caller's stack; the loader lock, or
 * in the fallback `unwinding`, is held only for the walk). */
uint32_t
sp_native_capture(void *ucontext, uint64_t *pcs, uint32_t max)
{
    if (!sp_native_on || !ready || !ucontext)
        return 0;
    /* The guards of the top of the file. */
    uint64_t pc = interrupted_pc(ucontext);
    int locked = 0;
    if (loader_consistent()) {
        locked = loader_lock_take(pc);
        if (locked < 0 && !in_syslib(pc, 0) && unwinder_acquire())
            locked = -2;   /* fallback: no loader lock known */
    }
    if (locked <= 0 && locked != -2) {
        __atomic_fetch_add(&skipped, 1, __ATOMIC_RELAXED);
        return 0;
    }
    uint32_t n = walk((unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME, pcs, max);
    if (locked == 1)
        loader_lock_release();
    else
        unwinder_release();
    if (n == 0)
        __atomic_fetch_add(&failed, 1, __ATOMIC_RELAXED);
    return n;
}

#else /* !SP_HAVE_LIBUNWIND */

int
sp_native_is_eval(uint64_t pc)
{
    (void)pc;
    return 0;
}

int
sp_native_enable(void)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "shadowprof: this build has no native-frame support (libunwind.h was "
                    "missing at build time); install libunwind-dev and rebuild");
    return -1;
}

uint32_t
sp_native_capture(void *ucontext, uint64_t *pcs, uint32_t max)   /* async-signal-safe */
{
    (void)ucontext;
    (void)pcs;
    (void)max;
    return 0;
}

#endif /* SP_HAVE_LIBUNWIND */

void
sp_native_set(int on)
{
    sp_native_on = on;
}
