/* ring.h: the preallocated, lock-free ring of raw samples.
 *
 * Shared between the SIGPROF handler (producers: any thread, possibly several at once)
 * and the drain (one consumer, which holds the GIL).  Producers reserve a slot with a
 * compare-and-swap on the write index, fill it, then publish it by storing the slot's
 * sequence number with release order.  The consumer reads slots in order and stops at
 * the first one not yet published.  A producer that finds the ring full writes nothing
 * and only counts the sample (and the time it stands for) as lost; the drain reports
 * lost samples as a synthetic frame, so nothing is dropped silently.
 *
 * Memory is allocated once by sp_ring_new and never resized; the handler never
 * allocates.  At fork the child inherits a consistent ring if no producer was mid-write
 * in another thread; a half-written slot is never published, so the consumer simply
 * stops at it (sp_ring_reset discards everything, for the child).
 *
 * This file has no Python dependency, so it is unit-tested in plain C.
 */
#ifndef SP_RING_H
#define SP_RING_H

#include <stddef.h>
#include <stdint.h>

/* Frames kept per sample; deeper stacks keep their SP_RING_ROOT_FRAMES outermost and
 * the rest innermost frames, with SP_SAMPLE_TRUNCATED set. */
#define SP_RING_FRAMES 128
#define SP_RING_ROOT_FRAMES 32
/* Native program counters kept per sample (--native): the innermost ones. */
#define SP_RING_NATIVE 64

/* Sample flags. */
#define SP_SAMPLE_TRUNCATED 0x1u   /* frames were dropped between root and leaf */
#define SP_SAMPLE_OVERHEAD 0x2u    /* interrupted inside shadowprof's own hook */
#define SP_SAMPLE_NOPY 0x4u        /* thread had no Python frames */
#define SP_SAMPLE_DEEP 0x8u        /* the shadow stack itself overflowed: leaf unknown */

typedef struct {
    uint32_t code_id;   /* registry id of the code object */
    int32_t instr;      /* instruction index (code units), -1 if unknown */
} sp_rframe_t;

typedef struct {
    uint64_t seq;             /* published sequence number: slot index + 1 */
    uint64_t tid;             /* kernel thread id of the sampled thread */
    uint64_t weight_ns;       /* time this sample stands for */
    uint32_t nframes;
    uint32_t flags;
    uint32_t nnative;         /* native pcs captured (0 without --native) */
    uint32_t reserved;
    sp_rframe_t frames[SP_RING_FRAMES];   /* root first */
    uint64_t native[SP_RING_NATIVE];      /* innermost first; see native.h */
} sp_record_t;

typedef struct sp_ring sp_ring_t;

/* Allocates a ring of at least `capacity` records (rounded up to a power of two).
 * Returns NULL and sets errno on failure.  Not async-signal-safe. */
sp_ring_t *sp_ring_new(size_t capacity);
void sp_ring_free(sp_ring_t *ring);
size_t sp_ring_capacity(const sp_ring_t *ring);

/* Producer side.  async-signal-safe; re-entrant (lock-free CAS).
 * sp_ring_reserve returns a slot to fill, or NULL if the ring is full, in which case the
 * sample has been counted as lost with its weight. */
sp_record_t *sp_ring_reserve(sp_ring_t *ring, uint64_t weight_ns);
void sp_ring_commit(sp_ring_t *ring, sp_record_t *rec);
/* Records the loss of a sample that was never reserved.  async-signal-safe. */
void sp_ring_count_lost(sp_ring_t *ring, uint64_t weight_ns);
/* Number of records reserved and not yet consumed.  async-signal-safe. */
size_t sp_ring_used(const sp_ring_t *ring);
/* Records reserved and consumed since the last reset (the write and read indexes):
 * a reader outside the consumer can tell whether records it saw reserved have been
 * consumed since.  async-signal-safe; any thread. */
uint64_t sp_ring_reserved(const sp_ring_t *ring);
uint64_t sp_ring_consumed(const sp_ring_t *ring);

/* Consumer side: one consumer at a time.  sp_ring_peek returns the oldest published
 * record or NULL; sp_ring_pop releases it. */
sp_record_t *sp_ring_peek(sp_ring_t *ring);
void sp_ring_pop(sp_ring_t *ring);
/* Takes and zeroes the lost-sample counters. */
void sp_ring_take_lost(sp_ring_t *ring, uint64_t *count, uint64_t *weight_ns);
/* Discards everything, e.g. in a forked child.  No producer may be running. */
void sp_ring_reset(sp_ring_t *ring);

#endif /* SP_RING_H */
