/* The spill (spill.h): records leave the ring without loss, merge when alike, keep every
 * field, fold into the overflow count past the cap; a consumer racing the spiller and
 * a producer sees every record exactly once; a fork while another thread spills leaves
 * the child a usable lock and table. */
#include "spill.h"

#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void
put(sp_ring_t *r, uint64_t tid, uint32_t id, int32_t instr, uint64_t pc, uint32_t flags,
    uint64_t weight)
{
    sp_record_t *rec = sp_ring_reserve(r, weight);
    CHECK(rec != NULL);
    if (!rec)
        return;
    rec->tid = tid;
    rec->flags = flags;
    rec->nframes = 2;
    rec->frames[0].code_id = 8;
    rec->frames[0].instr = 0;
    rec->frames[1].code_id = id;
    rec->frames[1].instr = instr;
    rec->nnative = pc ? 1 : 0;
    rec->native[0] = pc;
    sp_ring_commit(r, rec);
}

typedef struct {
    uint64_t count, weight, stacks;
    uint64_t last_tid, last_pc;
    uint32_t last_id, last_flags;
    int32_t last_instr;
    uint32_t bad;   /* records that do not look like what put() wrote */
} seen_t;

static void
visit(const sp_record_t *rec, uint64_t count, uint64_t weight, void *arg)
{
    seen_t *s = arg;
    s->count += count;
    s->weight += weight;
    s->stacks++;
    s->last_tid = rec->tid;
    s->last_id = rec->frames[1].code_id;
    s->last_instr = rec->frames[1].instr;
    s->last_flags = rec->flags;
    s->last_pc = rec->nnative ? rec->native[0] : 0;
    if (rec->nframes != 2 || rec->frames[0].code_id != 8 || rec->nnative > 1)
        s->bad++;
}

static void
test_move_merge_and_fields(void)
{
    sp_ring_t *r = sp_ring_new(16);
    CHECK(sp_spill_init(100) == 0);
    CHECK(!sp_spill_pending());
    for (int i = 0; i < 10; i++)
        put(r, 42, 9, 6, 0, 0, 100);
    CHECK(sp_spill_from_ring(r) == 10);
    CHECK(sp_ring_used(r) == 0);
    CHECK(sp_spill_pending());
    seen_t s = {0};
    sp_spill_totals_t tot = {0};
    sp_spill_lock();
    sp_spill_take(visit, &s, &tot);
    sp_spill_unlock();
    CHECK(s.stacks == 1 && s.count == 10 && s.weight == 1000);
    CHECK(s.last_tid == 42 && s.last_id == 9 && s.last_instr == 6 && s.bad == 0);
    CHECK(tot.spilled == 10 && tot.full == 0);
    CHECK(!sp_spill_pending());

    /* Each field keeps records apart; a negative instruction and a pc survive. */
    put(r, 42, 9, -1, 0, 0, 1);
    put(r, 43, 9, -1, 0, 0, 1);
    put(r, 42, 10, -1, 0, 0, 1);
    put(r, 42, 9, -1, 0xdeadbeef, 0, 1);
    put(r, 42, 9, -1, 0, 0x4, 1);
    put(r, 42, 9, -1, 0, 0, 1);   /* same as the first */
    CHECK(sp_spill_from_ring(r) == 6);
    memset(&s, 0, sizeof(s));
    memset(&tot, 0, sizeof(tot));
    sp_spill_lock();
    sp_spill_take(visit, &s, &tot);
    sp_spill_unlock();
    CHECK(s.stacks == 5 && s.count == 6 && s.bad == 0);
    /* Insertion order: the last stack is the one with flags. */
    CHECK(s.last_flags == 0x4 && s.last_instr == -1);
    sp_ring_free(r);
}

static void
test_cap_counts_the_rest(void)
{
    sp_ring_t *r = sp_ring_new(64);
    CHECK(sp_spill_init(4) == 0);
    for (int i = 0; i < 10; i++)
        put(r, 1, 100 + i, 0, 0, 0, 7);
    CHECK(sp_spill_from_ring(r) == 10);
    seen_t s = {0};
    sp_spill_totals_t tot = {0};
    sp_spill_lock();
    sp_spill_take(visit, &s, &tot);
    sp_spill_unlock();
    CHECK(s.stacks == 4 && s.count == 4);
    CHECK(tot.full == 6 && tot.full_weight_ns == 42);
    /* After the take the table has room again. */
    put(r, 1, 200, 0, 0, 0, 1);
    sp_spill_from_ring(r);
    memset(&s, 0, sizeof(s));
    memset(&tot, 0, sizeof(tot));
    sp_spill_lock();
    sp_spill_take(visit, &s, &tot);
    sp_spill_unlock();
    CHECK(s.count == 1 && tot.full == 0);
    /* reset forgets what waits. */
    put(r, 1, 200, 0, 0, 0, 1);
    sp_spill_from_ring(r);
    sp_spill_reset();
    CHECK(!sp_spill_pending());
    memset(&s, 0, sizeof(s));
    sp_spill_lock();
    sp_spill_take(visit, &s, &tot);
    sp_spill_unlock();
    CHECK(s.count == 0);
    sp_ring_free(r);
}

/* A producer, the spiller and a GIL-like consumer at once: every record is seen once. */
#define RACE_RECORDS 200000
static sp_ring_t *race_ring;
static volatile int race_done;
static uint64_t race_produced, race_lost_seen;

static void *
producer(void *arg)
{
    for (uint64_t i = 0; i < RACE_RECORDS; i++) {
        sp_record_t *rec = sp_ring_reserve(race_ring, 1);
        if (!rec)
            continue;   /* counted as lost by the ring */
        rec->tid = 1 + i % 3;
        rec->nframes = 2;
        rec->frames[0].code_id = 8;
        rec->frames[0].instr = 0;
        rec->frames[1].code_id = 9 + (uint32_t)(i % 50);
        rec->frames[1].instr = 0;
        sp_ring_commit(race_ring, rec);
        race_produced++;
    }
    __atomic_store_n(&race_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *
spiller(void *arg)
{
    while (!__atomic_load_n(&race_done, __ATOMIC_ACQUIRE))
        sp_spill_from_ring(race_ring);
    return NULL;
}

static void
consume(seen_t *s, sp_spill_totals_t *tot)
{
    sp_spill_lock();
    sp_spill_take(visit, s, tot);
    sp_record_t *rec;
    while ((rec = sp_ring_peek(race_ring)) != NULL) {
        visit(rec, 1, rec->weight_ns, s);
        sp_ring_pop(race_ring);
    }
    uint64_t lost, lost_w;
    sp_ring_take_lost(race_ring, &lost, &lost_w);
    race_lost_seen += lost;
    sp_spill_unlock();
}

static void
test_race(void)
{
    race_ring = sp_ring_new(64);
    CHECK(sp_spill_init(1000) == 0);
    pthread_t p, q;
    pthread_create(&p, NULL, producer, NULL);
    pthread_create(&q, NULL, spiller, NULL);
    seen_t s = {0};
    sp_spill_totals_t tot = {0};
    while (!__atomic_load_n(&race_done, __ATOMIC_ACQUIRE))
        consume(&s, &tot);
    pthread_join(p, NULL);
    pthread_join(q, NULL);
    consume(&s, &tot);
    CHECK(s.bad == 0 && tot.full == 0);
    CHECK(s.count == race_produced);
    CHECK(race_produced + race_lost_seen == RACE_RECORDS);
    CHECK(s.weight == race_produced);
    sp_ring_free(race_ring);
}

/* Forks while another thread spills without pause: each child takes the lock and the
 * table (a deadlock or a torn table would hang or crash it; alarm() bounds the wait; without the fork handlers a child soon hangs). */
static volatile int fork_stop;
static void *
busy_spiller(void *arg)
{
    sp_ring_t *r = arg;
    uint64_t i = 0;
    while (!__atomic_load_n(&fork_stop, __ATOMIC_ACQUIRE)) {
        sp_record_t *rec = sp_ring_reserve(r, 1);
        if (rec) {
            rec->tid = 1;
            rec->nframes = 1;
            rec->frames[0].code_id = 8 + (uint32_t)(i++ % 5000);   /* the table grows */
            rec->frames[0].instr = 0;
            sp_ring_commit(r, rec);
        }
        sp_spill_from_ring(r);
    }
    return NULL;
}

static void
count_only(const sp_record_t *rec, uint64_t count, uint64_t weight, void *arg)
{
    *(uint64_t *)arg += count;
}

static void
test_fork_while_spilling(void)
{
    sp_ring_t *r = sp_ring_new(64);
    CHECK(sp_spill_init(100000) == 0);
    pthread_t t;
    pthread_create(&t, NULL, busy_spiller, r);
    int bad = 0;
    for (int i = 0; i < 200; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(5);
            uint64_t n = 0;
            sp_spill_totals_t tot = {0};
            sp_spill_lock();
            sp_spill_take(count_only, &n, &tot);
            sp_spill_unlock();
            sp_spill_reset();
            CHECK(!sp_spill_pending());
            _exit(failures ? 1 : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            bad++;
            break;
        }
    }
    __atomic_store_n(&fork_stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    CHECK(bad == 0);
    sp_ring_free(r);
}

int
main(void)
{
    test_move_merge_and_fields();
    test_cap_counts_the_rest();
    test_race();
    test_fork_while_spilling();
    return CHECK_DONE("test_spill");
}
