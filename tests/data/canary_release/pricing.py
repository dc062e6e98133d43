"""A release of the canary test's service (tests/test_canary.py): the function whose
cost per call the canary changes.  The test writes copies into release folders and
edits COST and EVERY there."""

COST = 1     # the canary's release: 3, each call three times as costly
EVERY = 1    # the canary's release: 3, a third of the requests are priced
ROUNDS = 6_000


def price(seed):
    total = 0
    for i in range(ROUNDS * COST):
        total += (i * i + seed) % 7
    return total
