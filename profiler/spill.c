/* spill.c: GIL-free holding area for the ring's records (see spill.h for the contract).
 *
 * A record is kept as a stack of the aggregation table's kind (table.h): its thread id,
 * and as locations one header word (flags << 32 | nnative << 16 | nframes), then one
 * word per frame (code id << 32 | instruction), then the native pcs.  Records alike in
 * all of these merge; their weights add up.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "spill.h"
#include "clock.h"
#include "table.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#define KEY_MAX (1 + SP_RING_FRAMES + SP_RING_NATIVE)
/* The overflow entry's header: no record has these flags. */
#define FULL_HEADER UINT64_MAX

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sp_table_t *table;            /* lock */
static uint64_t pending;             /* atomic; see spill.h */
static sp_spill_totals_t totals;     /* lock: since the last take */
static int atfork_done;              /* GIL (sp_spill_init's caller) */

static void
prepare_fork(void)
{
    pthread_mutex_lock(&lock);
}

static void
parent_after_fork(void)
{
    pthread_mutex_unlock(&lock);
}

static void
child_after_fork(void)
{
    pthread_mutex_init(&lock, NULL);
}

/* Empties the table and reserves its overflow entry first, so that it always has
 * room.  After the first call the table keeps its arrays: no allocation. */
static void
clear_table(void)
{
    uint64_t full = FULL_HEADER;
    sp_table_clear(table);
    sp_table_add(table, 0, &full, 1, 0, 0);
    __atomic_store_n(&pending, 0, __ATOMIC_RELEASE);
}

int
sp_spill_init(size_t max_stacks)
{
    if (!atfork_done) {
        int err = pthread_atfork(prepare_fork, parent_after_fork, child_after_fork);
        if (err) {
            errno = err;
            return -1;
        }
        atfork_done = 1;
    }
    /* +1: the overflow entry is not one of the profile's stacks. */
    sp_table_t *t = sp_table_new(max_stacks + 1);
    if (!t) {
        errno = ENOMEM;
        return -1;
    }
    pthread_mutex_lock(&lock);
    sp_table_t *old = table;
    table = t;
    clear_table();
    memset(&totals, 0, sizeof(totals));
    pthread_mutex_unlock(&lock);
    sp_table_free(old);
    return 0;
}

void
sp_spill_lock(void)
{
    pthread_mutex_lock(&lock);
}

void
sp_spill_unlock(void)
{
    pthread_mutex_unlock(&lock);
}

int
sp_spill_pending(void)
{
    return __atomic_load_n(&pending, __ATOMIC_ACQUIRE) != 0;
}

/* Lock held. */
static void
spill_one(const sp_record_t *rec)
{
    uint64_t key[KEY_MAX];
    uint32_t nf = rec->nframes > SP_RING_FRAMES ? SP_RING_FRAMES : rec->nframes;
    uint32_t nn = rec->nnative > SP_RING_NATIVE ? SP_RING_NATIVE : rec->nnative;
    uint32_t n = 0;
    key[n++] = (uint64_t)rec->flags << 32 | (uint64_t)nn << 16 | nf;
    for (uint32_t i = 0; i < nf; i++)
        key[n++] = (uint64_t)rec->frames[i].code_id << 32 | (uint32_t)rec->frames[i].instr;
    memcpy(key + n, rec->native, nn * sizeof(uint64_t));
    n += nn;
    if (sp_table_add(table, rec->tid, key, n, 1, rec->weight_ns) != 0) {
        /* Full (or out of memory): the overflow entry, made first, always takes it. */
        uint64_t full = FULL_HEADER;
        sp_table_add(table, 0, &full, 1, 1, rec->weight_ns);
        totals.full++;
        totals.full_weight_ns += rec->weight_ns;
    }
}

size_t
sp_spill_from_ring(sp_ring_t *ring)
{
    size_t moved = 0;
    pthread_mutex_lock(&lock);
    if (table) {
        uint64_t t0 = sp_clock_monotonic_ns();
        sp_record_t *rec;
        while ((rec = sp_ring_peek(ring)) != NULL) {
            spill_one(rec);
            /* Counted before the record leaves the ring (see `pending`). */
            __atomic_fetch_add(&pending, 1, __ATOMIC_ACQ_REL);
            sp_ring_pop(ring);
            moved++;
        }
        totals.spilled += moved;
        totals.spill_ns += sp_clock_monotonic_ns() - t0;
    }
    pthread_mutex_unlock(&lock);
    return moved;
}

void
sp_spill_take(sp_spill_visit_t fn, void *arg, sp_spill_totals_t *out)
{
    if (!table)
        return;
    if (__atomic_load_n(&pending, __ATOMIC_ACQUIRE)) {
        sp_record_t rec;
        size_t size = sp_table_size(table);
        for (size_t i = 0; i < size; i++) {
            sp_stack_view_t v;
            sp_table_get(table, i, &v);
            if (v.count == 0 || v.locs[0] == FULL_HEADER)
                continue;
            uint64_t hdr = v.locs[0];
            rec.tid = v.tid;
            rec.weight_ns = v.weight_ns;
            rec.flags = (uint32_t)(hdr >> 32);
            rec.nnative = (uint32_t)(hdr >> 16) & 0xffff;
            rec.nframes = (uint32_t)hdr & 0xffff;
            rec.reserved = 0;
            rec.seq = 0;
            for (uint32_t k = 0; k < rec.nframes; k++) {
                uint64_t w = v.locs[1 + k];
                rec.frames[k].code_id = (uint32_t)(w >> 32);
                rec.frames[k].instr = (int32_t)(uint32_t)w;
            }
            memcpy(rec.native, v.locs + 1 + rec.nframes, rec.nnative * sizeof(uint64_t));
            fn(&rec, v.count, v.weight_ns, arg);
        }
        clear_table();
    }
    out->full += totals.full;
    out->full_weight_ns += totals.full_weight_ns;
    out->spilled += totals.spilled;
    out->spill_ns += totals.spill_ns;
    memset(&totals, 0, sizeof(totals));
}

/* async-signal-safe (memory stores: the table keeps its arrays) */
void
sp_spill_reset(void)
{
    if (table)
        clear_table();
    memset(&totals, 0, sizeof(totals));
}
