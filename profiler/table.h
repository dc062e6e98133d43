/* table.h: the aggregation table: distinct stacks and what was sampled in each.
 *
 * A stack is a thread id plus a sequence of 64-bit location keys, root first (a
 * location key is code id << 32 | line, built by the drain).  Each distinct stack
 * holds a sample count and the total time its samples stand for.
 *
 * Owned by the drain: written with the GIL held, never touched by the signal handler,
 * so it may allocate.  Bounded: it holds at most `max_stacks` distinct stacks; once
 * full, new stacks are folded into a single overflow stack (the caller decides what
 * that stack contains) and counted, never dropped.
 *
 * No Python dependency: unit-tested in plain C.
 */
#ifndef SP_TABLE_H
#define SP_TABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_table sp_table_t;

typedef struct {
    uint64_t tid;
    const uint64_t *locs;   /* root first */
    uint32_t nlocs;
    uint64_t count;
    uint64_t weight_ns;
} sp_stack_view_t;

/* Returns NULL on allocation failure. */
sp_table_t *sp_table_new(size_t max_stacks);
void sp_table_free(sp_table_t *t);
void sp_table_clear(sp_table_t *t);

/* Adds `count` samples of `weight_ns` in total to the stack; creates it if new.
 * Returns 0, or 1 if the table was full and the stack could not be created (nothing
 * was added), or -1 on allocation failure. */
int sp_table_add(sp_table_t *t, uint64_t tid, const uint64_t *locs, uint32_t nlocs,
                 uint64_t count, uint64_t weight_ns);

size_t sp_table_size(const sp_table_t *t);
/* The most distinct stacks it holds (max_stacks at sp_table_new). */
size_t sp_table_max(const sp_table_t *t);
/* Stack number i (0 <= i < size), in insertion order; valid until the next add/clear. */
void sp_table_get(const sp_table_t *t, size_t i, sp_stack_view_t *out);
/* Bytes held by the table (for reports and memory bounds). */
size_t sp_table_bytes(const sp_table_t *t);

#endif /* SP_TABLE_H */
