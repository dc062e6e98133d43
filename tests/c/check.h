/* check.h: the assertion macro of the C unit tests: counts failures, keeps going. */
#ifndef SP_TEST_CHECK_H
#define SP_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* Ends main(): prints the verdict of test `name` and returns its exit status. */
#define CHECK_DONE(name)                                                       \
    (failures ? (fprintf(stderr, "%s: %d check(s) failed\n", name, failures), 1) \
              : (printf("%s: ok\n", name), 0))

#endif /* SP_TEST_CHECK_H */
