"""Thread churn while the profiler starts and stops: argv[1] rounds of
Profiler(interval="1ms") start, 5 ms, stop, while three threads create and join
short-lived threads without a pause.  Prints "ok ROUNDS"."""
import random
import sys
import threading
import time

from shadowprof import Profiler

done = False


def work():
    s = 0
    for i in range(random.randint(10, 2000)):
        s += i
    if random.random() < 0.3:
        time.sleep(0.0005)


def churner():
    while not done:
        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


def main():
    global done
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    churners = [threading.Thread(target=churner) for _ in range(3)]
    for c in churners:
        c.start()
    try:
        for _ in range(rounds):
            p = Profiler(interval="1ms")
            p.start()
            time.sleep(0.005)
            p.stop()
    finally:
        done = True
        for c in churners:
            c.join()
    print("ok", rounds)


if __name__ == "__main__":
    main()
