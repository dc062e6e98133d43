"""Living with the program's own signals: an existing SIGPROF handler or ITIMER_PROF
timer is detected and left alone; the profiler's signals cause no EINTR in Python."""

import subprocess
import sys
import textwrap


def run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_existing_sigprof_handler_is_refused_and_kept():
    r = run("""
        import signal, shadowprof
        from shadowprof import _core
        def mine(signum, frame):
            pass
        signal.signal(signal.SIGPROF, mine)
        try:
            shadowprof.Profiler().start()
        except RuntimeError as e:
            print("refused:", e)
        assert signal.getsignal(signal.SIGPROF) is mine
        assert not _core.is_running()
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert "refused: shadowprof: SIGPROF already has a handler" in r.stdout
    assert r.stdout.strip().endswith("ok")


def test_existing_itimer_prof_is_refused_and_kept():
    r = run("""
        import signal, shadowprof
        signal.signal(signal.SIGPROF, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_PROF, 5.0, 5.0)
        try:
            shadowprof.Profiler().start()
        except RuntimeError as e:
            print("refused:", e)
        assert signal.getitimer(signal.ITIMER_PROF)[1] == 5.0
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert "ITIMER_PROF timer is already running" in r.stdout
    assert r.stdout.strip().endswith("ok")


def test_chain_keeps_the_programs_own_sigprof_timer_working():
    # The program profiles itself with ITIMER_PROF and a Python handler; chained,
    # shadowprof samples with its own timers and the program's handler still gets its
    # signals at its own rate, and is back in place alone after stop.
    r = run("""
        import json, signal, time, shadowprof
        ticks = []
        def mine(signum, frame):
            ticks.append(time.process_time())
        signal.signal(signal.SIGPROF, mine)
        def burn(seconds):
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass
        def rate(seconds):
            del ticks[:]
            burn(seconds)
            return len(ticks) / seconds
        signal.setitimer(signal.ITIMER_PROF, 0.02, 0.02)
        alone = rate(1.0)
        p = shadowprof.Profiler(interval="5ms", sigprof="chain")
        p.start()
        chained = rate(1.0)
        prof = p.stop()
        after = rate(0.5)
        burns = sum(s.count for s in prof.stacks
                    if any(prof.functions[f].name == "burn" for f, _ in s.frames))
        print(json.dumps({"alone": alone, "chained": chained, "after": after,
                          "samples": prof.samples, "burn_samples": burns,
                          "handler_kept": signal.getsignal(signal.SIGPROF) is mine,
                          "timer_kept": signal.getitimer(signal.ITIMER_PROF)[1]}))
        signal.setitimer(signal.ITIMER_PROF, 0)   # else its last SIGPROF kills the exit
    """)
    assert r.returncode == 0, r.stderr
    import json
    d = json.loads(r.stdout)
    assert d["alone"] > 20, d                              # ~50 Hz of CPU time
    assert abs(d["chained"] - d["alone"]) < 0.35 * d["alone"], d
    assert abs(d["after"] - d["alone"]) < 0.35 * d["alone"], d
    assert d["samples"] > 80 and d["burn_samples"] > 0.8 * d["samples"], d
    assert d["handler_kept"] and d["timer_kept"] == 0.02, d


def test_no_eintr_reaches_python_under_sampling():
    # Threads blocked in pipes, sleeps, locks and queues while every thread is
    # interrupted at a high rate in wall mode: no InterruptedError may surface, the
    # program's own SIGPROF disposition is restored afterwards.
    r = run("""
        import os, queue, signal, threading, time, shadowprof
        errors = []
        def reader(fd, n):
            try:
                got = 0
                while got < n:
                    got += len(os.read(fd, 4096))
            except BaseException as e:
                errors.append(repr(e))
        def writer(fd, n):
            for _ in range(n // 64):
                os.write(fd, b"x" * 64)
                time.sleep(0.0005)
        def waiter(q):
            try:
                for _ in range(50):
                    q.get(timeout=5)
            except BaseException as e:
                errors.append(repr(e))
        with shadowprof.Profiler(interval="200us", mode="wall"):
            r_fd, w_fd = os.pipe()
            q = queue.Queue()
            ts = [threading.Thread(target=reader, args=(r_fd, 64 * 400)),
                  threading.Thread(target=writer, args=(w_fd, 64 * 400)),
                  threading.Thread(target=waiter, args=(q,))]
            for t in ts:
                t.start()
            for _ in range(50):
                time.sleep(0.002)
                q.put(1)
            for t in ts:
                t.join()
        assert not errors, errors
        assert signal.getsignal(signal.SIGPROF) == signal.SIG_DFL
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
