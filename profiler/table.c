/* table.c: open-addressing hash table of stacks (see table.h). */
#include "table.h"

#include "posindex.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t hash;
    uint64_t tid;
    size_t off;          /* into locs */
    uint32_t nlocs;
    uint64_t count;
    uint64_t weight_ns;
} entry_t;

struct sp_table {
    entry_t *entries;
    size_t nentries, entries_cap, max_stacks;
    uint64_t *locs;
    size_t nlocs, locs_cap;
    uint32_t *index;     /* entry number + 1, 0 = empty */
    size_t index_cap;    /* power of two */
};

static uint64_t
hash_stack(uint64_t tid, const uint64_t *locs, uint32_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ tid ^ ((uint64_t)n << 48);
    for (uint32_t i = 0; i < n; i++) {
        h ^= locs[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
    }
    return h ? h : 1;
}

sp_table_t *
sp_table_new(size_t max_stacks)
{
    sp_table_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->max_stacks = max_stacks ? max_stacks : 1;
    t->index_cap = 1024;
    t->index = calloc(t->index_cap, sizeof(uint32_t));
    if (!t->index) {
        free(t);
        return NULL;
    }
    return t;
}

void
sp_table_free(sp_table_t *t)
{
    if (!t)
        return;
    free(t->entries);
    free(t->locs);
    free(t->index);
    free(t);
}

void
sp_table_clear(sp_table_t *t)
{
    t->nentries = 0;
    t->nlocs = 0;
    memset(t->index, 0, t->index_cap * sizeof(uint32_t));
}

int
sp_table_add(sp_table_t *t, uint64_t tid, const uint64_t *locs, uint32_t nlocs,
             uint64_t count, uint64_t weight_ns)
{
    uint64_t h = hash_stack(tid, locs, nlocs);
    size_t mask = t->index_cap - 1;
    size_t j = h & mask;
    while (t->index[j]) {
        entry_t *e = &t->entries[t->index[j] - 1];
        if (e->hash == h && e->tid == tid && e->nlocs == nlocs &&
            (nlocs == 0 || memcmp(t->locs + e->off, locs, nlocs * sizeof(uint64_t)) == 0)) {
            e->count += count;
            e->weight_ns += weight_ns;
            return 0;
        }
        j = (j + 1) & mask;
    }
    if (t->nentries >= t->max_stacks)
        return 1;
    if (t->nentries == t->entries_cap) {
        size_t cap = t->entries_cap ? t->entries_cap * 2 : 256;
        entry_t *n = realloc(t->entries, cap * sizeof(entry_t));
        if (!n)
            return -1;
        t->entries = n;
        t->entries_cap = cap;
    }
    if (t->nlocs + nlocs > t->locs_cap) {
        size_t cap = t->locs_cap ? t->locs_cap : 4096;
        while (cap < t->nlocs + nlocs)
            cap *= 2;
        uint64_t *n = realloc(t->locs, cap * sizeof(uint64_t));
        if (!n)
            return -1;
        t->locs = n;
        t->locs_cap = cap;
    }
    entry_t *e = &t->entries[t->nentries];
    e->hash = h;
    e->tid = tid;
    e->off = t->nlocs;
    e->nlocs = nlocs;
    e->count = count;
    e->weight_ns = weight_ns;
    if (nlocs)
        memcpy(t->locs + t->nlocs, locs, nlocs * sizeof(uint64_t));
    t->nlocs += nlocs;
    t->index[j] = (uint32_t)(++t->nentries);
    if (t->nentries * 2 > t->index_cap &&
        sp_posindex_grow(&t->index, &t->index_cap, t->entries, t->nentries,
                         sizeof(entry_t), offsetof(entry_t, hash)) < 0)
        return -1;
    return 0;
}

size_t
sp_table_size(const sp_table_t *t)
{
    return t->nentries;
}

size_t
sp_table_max(const sp_table_t *t)
{
    return t->max_stacks;
}

void
sp_table_get(const sp_table_t *t, size_t i, sp_stack_view_t *out)
{
    const entry_t *e = &t->entries[i];
    out->tid = e->tid;
    out->locs = t->locs + e->off;
    out->nlocs = e->nlocs;
    out->count = e->count;
    out->weight_ns = e->weight_ns;
}

size_t
sp_table_bytes(const sp_table_t *t)
{
    return sizeof(*t) + t->entries_cap * sizeof(entry_t) +
           t->locs_cap * sizeof(uint64_t) + t->index_cap * sizeof(uint32_t);
}
