"""The canary test's service (tests/test_canary.py): handles REQUESTS requests, each
parsed with json, some priced (pricing.py), all post-processed by other(); a worker
thread takes a tenth of them.  Prints a checksum."""

import json
import sys
import threading

import pricing


def parse(text):
    return json.loads(text)


def other(request):
    total = 0
    for i in range(1_500):
        total += (i ^ request["id"]) & 3
    return total


def handle(i):
    request = parse('{"id": %d, "items": [1, 2, 3]}' % i)
    total = other(request)
    if i % pricing.EVERY == 0:
        total += pricing.price(request["id"])
    return total


def main():
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    results = []
    worker = threading.Thread(target=lambda: results.extend(
        handle(i) for i in range(0, requests, 10)), name="worker")
    worker.start()
    results.extend(handle(i) for i in range(requests) if i % 10)
    worker.join()
    print(sum(results))


if __name__ == "__main__":
    main()
