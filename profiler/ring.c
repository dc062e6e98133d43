/* ring.c: lock-free multi-producer, single-consumer sample ring (see ring.h). */
#include "ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct sp_ring {
    uint64_t write;          /* next index to reserve; producers CAS it */
    char pad1[56];
    uint64_t read;           /* next index to consume; written by the consumer only */
    char pad2[56];
    uint64_t lost_count;     /* samples that found the ring full */
    uint64_t lost_weight;
    size_t mask;
    sp_record_t *slots;
};

sp_ring_t *
sp_ring_new(size_t capacity)
{
    size_t n = 1;
    while (n < capacity)
        n <<= 1;
    sp_ring_t *ring = calloc(1, sizeof(*ring));
    if (!ring)
        return NULL;
    ring->slots = calloc(n, sizeof(sp_record_t));
    if (!ring->slots) {
        free(ring);
        errno = ENOMEM;
        return NULL;
    }
    ring->mask = n - 1;
    return ring;
}

void
sp_ring_free(sp_ring_t *ring)
{
    if (ring) {
        free(ring->slots);
        free(ring);
    }
}

size_t
sp_ring_capacity(const sp_ring_t *ring)
{
    return ring->mask + 1;
}

/* async-signal-safe; re-entrant */
void
sp_ring_count_lost(sp_ring_t *ring, uint64_t weight_ns)
{
    __atomic_fetch_add(&ring->lost_count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&ring->lost_weight, weight_ns, __ATOMIC_RELAXED);
}

/* async-signal-safe; re-entrant */
sp_record_t *
sp_ring_reserve(sp_ring_t *ring, uint64_t weight_ns)
{
    uint64_t w = __atomic_load_n(&ring->write, __ATOMIC_RELAXED);
    for (;;) {
        uint64_t r = __atomic_load_n(&ring->read, __ATOMIC_ACQUIRE);
        if (w - r > ring->mask) {
            /* Full, or w is stale: other producers reserved after we read it and the
             * consumer has since read past it (w - r then wraps to a huge number).
             * Read write again, after read: it cannot be behind r any more (r was
             * published after those reservations), so an unchanged w means full. */
            uint64_t w2 = __atomic_load_n(&ring->write, __ATOMIC_ACQUIRE);
            if (w2 != w) {
                w = w2;
                continue;
            }
            sp_ring_count_lost(ring, weight_ns);
            return NULL;
        }
        if (__atomic_compare_exchange_n(&ring->write, &w, w + 1, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            break;
        /* w was reloaded by the failed CAS */
    }
    sp_record_t *rec = &ring->slots[w & ring->mask];
    /* The slot's old sequence number (from the previous lap) stays until commit, so
     * the consumer, which waits for seq == index + 1, cannot take a half-written
     * record. */
    rec->weight_ns = weight_ns;
    rec->nframes = 0;
    rec->flags = 0;
    rec->nnative = 0;
    return rec;
}

/* async-signal-safe; re-entrant */
void
sp_ring_commit(sp_ring_t *ring, sp_record_t *rec)
{
    uint64_t index = (uint64_t)(rec - ring->slots);
    /* Recover the full index: the slot's position plus the lap of the reader. */
    uint64_t r = __atomic_load_n(&ring->read, __ATOMIC_ACQUIRE);
    uint64_t base = r & ~(uint64_t)ring->mask;
    uint64_t full = base + index;
    if (full < r)
        full += ring->mask + 1;
    __atomic_store_n(&rec->seq, full + 1, __ATOMIC_RELEASE);
}

/* async-signal-safe */
size_t
sp_ring_used(const sp_ring_t *ring)
{
    /* read first: write, read after it, cannot be behind it (see reserve). */
    uint64_t r = __atomic_load_n(&ring->read, __ATOMIC_ACQUIRE);
    uint64_t w = __atomic_load_n(&ring->write, __ATOMIC_ACQUIRE);
    return (size_t)(w - r);
}

/* async-signal-safe */
uint64_t
sp_ring_reserved(const sp_ring_t *ring)
{
    return __atomic_load_n(&ring->write, __ATOMIC_ACQUIRE);
}

/* async-signal-safe */
uint64_t
sp_ring_consumed(const sp_ring_t *ring)
{
    return __atomic_load_n(&ring->read, __ATOMIC_ACQUIRE);
}

sp_record_t *
sp_ring_peek(sp_ring_t *ring)
{
    uint64_t r = ring->read;
    sp_record_t *rec = &ring->slots[r & ring->mask];
    if (__atomic_load_n(&rec->seq, __ATOMIC_ACQUIRE) != r + 1)
        return NULL;
    return rec;
}

void
sp_ring_pop(sp_ring_t *ring)
{
    __atomic_store_n(&ring->read, ring->read + 1, __ATOMIC_RELEASE);
}

void
sp_ring_take_lost(sp_ring_t *ring, uint64_t *count, uint64_t *weight_ns)
{
    *count = __atomic_exchange_n(&ring->lost_count, 0, __ATOMIC_RELAXED);
    *weight_ns = __atomic_exchange_n(&ring->lost_weight, 0, __ATOMIC_RELAXED);
}

void
sp_ring_reset(sp_ring_t *ring)
{
    /* Only the sequence numbers matter: a stale one could look published. */
    for (size_t i = 0; i <= ring->mask; i++)
        ring->slots[i].seq = 0;
    ring->write = 0;
    ring->read = 0;
    ring->lost_count = 0;
    ring->lost_weight = 0;
}
