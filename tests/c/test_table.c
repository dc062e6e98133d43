/* Aggregation table: identical stacks merge, distinct ones (by thread, frames, depth)
 * do not; the cap holds; growth keeps every entry findable. */
#include "table.h"

#include "check.h"

#include <stdio.h>
#include <string.h>


static int
find(sp_table_t *t, uint64_t tid, const uint64_t *locs, uint32_t n, sp_stack_view_t *out)
{
    for (size_t i = 0; i < sp_table_size(t); i++) {
        sp_table_get(t, i, out);
        if (out->tid == tid && out->nlocs == n && !memcmp(out->locs, locs, n * 8))
            return 1;
    }
    return 0;
}

static void
test_merge_and_distinguish(void)
{
    sp_table_t *t = sp_table_new(100);
    CHECK(sp_table_max(t) == 100);
    uint64_t a[] = {1, 2, 3}, b[] = {1, 2}, c[] = {1, 2, 4};
    CHECK(sp_table_add(t, 7, a, 3, 1, 10) == 0);
    CHECK(sp_table_add(t, 7, a, 3, 2, 30) == 0);
    CHECK(sp_table_add(t, 8, a, 3, 1, 5) == 0);   /* other thread */
    CHECK(sp_table_add(t, 7, b, 2, 1, 1) == 0);   /* prefix */
    CHECK(sp_table_add(t, 7, c, 3, 1, 1) == 0);   /* other leaf */
    CHECK(sp_table_size(t) == 4);
    sp_stack_view_t v;
    CHECK(find(t, 7, a, 3, &v) && v.count == 3 && v.weight_ns == 40);
    CHECK(find(t, 8, a, 3, &v) && v.count == 1 && v.weight_ns == 5);
    CHECK(find(t, 7, b, 2, &v) && v.count == 1);
    CHECK(find(t, 7, c, 3, &v) && v.count == 1);
    sp_table_clear(t);
    CHECK(sp_table_size(t) == 0);
    CHECK(!find(t, 7, a, 3, &v));
    sp_table_free(t);
}

static void
test_growth_and_cap(void)
{
    sp_table_t *t = sp_table_new(50000);
    uint64_t locs[40];
    /* 50000 distinct stacks of varying depth: forces index and arena growth. */
    for (uint64_t i = 0; i < 50000; i++) {
        uint32_t n = 1 + i % 40;
        for (uint32_t k = 0; k < n; k++)
            locs[k] = i * 131 + k;
        CHECK(sp_table_add(t, i % 3, locs, n, 1, i) == 0);
    }
    CHECK(sp_table_size(t) == 50000);
    /* Re-adding finds the existing entries (no duplicates after growth). */
    for (uint64_t i = 0; i < 50000; i += 997) {
        uint32_t n = 1 + i % 40;
        for (uint32_t k = 0; k < n; k++)
            locs[k] = i * 131 + k;
        CHECK(sp_table_add(t, i % 3, locs, n, 1, 1) == 0);
        sp_stack_view_t v;
        CHECK(find(t, i % 3, locs, n, &v) && v.count == 2 && v.weight_ns == i + 1);
    }
    CHECK(sp_table_size(t) == 50000);
    /* Full: a new stack is refused (1), an existing one still counts. */
    uint64_t fresh[] = {999999999};
    CHECK(sp_table_add(t, 0, fresh, 1, 1, 1) == 1);
    CHECK(sp_table_size(t) == 50000);
    locs[0] = 0;
    CHECK(sp_table_add(t, 0, locs, 1, 1, 1) == 0);
    CHECK(sp_table_bytes(t) > 50000 * 8);
    sp_table_free(t);
}

static void
test_empty_stack(void)
{
    sp_table_t *t = sp_table_new(10);
    CHECK(sp_table_add(t, 1, NULL, 0, 1, 1) == 0);
    CHECK(sp_table_add(t, 1, NULL, 0, 1, 1) == 0);
    CHECK(sp_table_size(t) == 1);
    sp_stack_view_t v;
    sp_table_get(t, 0, &v);
    CHECK(v.count == 2 && v.nlocs == 0);
    sp_table_free(t);
}

int
main(void)
{
    test_merge_and_distinguish();
    test_growth_and_cap();
    test_empty_stack();
    return CHECK_DONE("test_table");
}
