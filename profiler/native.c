/* native.c: native stacks for the signal handler, with libunwind's local unwinder
 * (see native.h for the contract).
 *
 * Owns: the dlopen'ed libunwind entry points (written once, GIL held, before any
 * handler reads them), the on/off flag, and the skip/failure counters (atomic).
 *
 * Loader lock.  On a cache miss libunwind finds a frame's unwind table with
 * dl_iterate_phdr, which takes the dynamic loader's lock.  A handler that interrupts a
 * thread inside dlopen/dlclose while the loader rewrites its list of objects would walk
 * a half-linked list (same thread: the lock is recursive) or wait for a thread that may
 * itself wait on us.  The loader marks those windows in _r_debug.r_state (RT_ADD,
 * RT_DELETE; RT_CONSISTENT otherwise), so the handler reads that word and skips the
 * native part of the sample while it is not consistent, counting the skip.  It also
 * skips it when the thread was interrupted inside the C library or the loader
 * (in_syslib): a dlopen in progress, or an allocation, may hold a lock the unwind
 * would wait for (a CI run once hung here with only the r_state check).
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
#include "native.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <ucontext.h>

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

/* Text ranges of the C library and the dynamic loader, found once at enable time.
 * Written with the GIL held before sampling starts; read by the handler. */
#define SP_SYSLIB_RANGES 8
static uint64_t syslib_lo[SP_SYSLIB_RANGES], syslib_hi[SP_SYSLIB_RANGES];
static int nsyslib;

static int
note_syslib(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strncmp(base, "libc.so", 7) != 0 && strncmp(base, "ld-linux", 8) != 0)
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

/* Whether the thread was interrupted inside the C library or the dynamic loader.
 * There it may hold a lock that unwinding needs: the allocator's (libunwind may
 * allocate, and dlopen allocates all the time), or the loader's while it edits its
 * list of objects, which another thread's handler, holding libunwind's cache lock,
 * may be waiting for.  Such samples keep their Python stack only.
 * async-signal-safe. */
static int
in_syslib(uint64_t pc)
{
    for (int i = 0; i < nsyslib; i++)
        if (pc >= syslib_lo[i] && pc < syslib_hi[i])
            return 1;
    return 0;
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
    nsyslib = 0;
    dl_iterate_phdr(note_syslib, NULL);
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

/* async-signal-safe; re-entrant. */
uint32_t
sp_native_capture(void *ucontext, uint64_t *pcs, uint32_t max)
{
    if (!sp_native_on || !ready || !ucontext)
        return 0;
    if (!loader_consistent() || in_syslib(interrupted_pc(ucontext))) {
        __atomic_fetch_add(&skipped, 1, __ATOMIC_RELAXED);
        return 0;
    }
    uint32_t n = walk((unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME, pcs, max);
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
