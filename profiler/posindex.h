/* posindex.h: an open-addressing index of positions, rebuilt at twice the size.
 *
 * The string table (pprof_enc.c) and the stack table (table.c) each keep their items
 * in an array and find them through an index: a power-of-two array of slots holding
 * position + 1 (0: empty), probed linearly from the item's 64-bit hash.  This is
 * the one rebuild both use when the index fills.
 *
 * Pure C, no globals; not reachable from the signal handler (allocates).  Each index
 * belongs to its table's owner (the GIL for table.c, one writer for pprof_enc.c).
 */
#ifndef SP_POSINDEX_H
#define SP_POSINDEX_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Replaces *index (of *cap slots) by one of twice as many holding the n items of
 * *items* (each *stride* bytes, its uint64_t hash at *hash_offset*).  -1 when out of
 * memory (the old index stays). */
static inline int
sp_posindex_grow(uint32_t **index, size_t *cap, const void *items, size_t n,
                 size_t stride, size_t hash_offset)
{
    size_t ncap = *cap * 2;
    uint32_t *idx = calloc(ncap, sizeof(uint32_t));
    if (!idx)
        return -1;
    const char *item = (const char *)items + hash_offset;
    for (size_t i = 0; i < n; i++, item += stride) {
        size_t j = *(const uint64_t *)(const void *)item & (ncap - 1);
        while (idx[j])
            j = (j + 1) & (ncap - 1);
        idx[j] = (uint32_t)(i + 1);
    }
    free(*index);
    *index = idx;
    *cap = ncap;
    return 0;
}

#endif /* SP_POSINDEX_H */
