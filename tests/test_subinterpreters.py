"""Sub-interpreters are refused with a clear error, and the main interpreter's
profile goes on undisturbed."""

import json
import subprocess
import sys

INNER = """
import json
try:
    from shadowprof import _core
    _core.start(interval_ns=1_000_000)
    outcome = ["started", ""]
except (ImportError, RuntimeError) as e:
    outcome = [type(e).__name__, str(e)]
with open(RESULT, "w") as f:
    json.dump(outcome, f)
"""

OUTER = """
import json, sys
try:
    import _interpreters as interpreters          # 3.13
except ImportError:
    import _xxsubinterpreters as interpreters     # 3.9 - 3.12
import shadowprof
def in_subinterpreter(result):
    interp = interpreters.create()
    interpreters.run_string(interp, "RESULT = %r\\n" % result + INNER)
    interpreters.destroy(interp)
in_subinterpreter(RESULT + ".idle")          # nothing running yet
prof = shadowprof.Profiler(interval="1ms")
prof.start()
in_subinterpreter(RESULT + ".running")       # while the main interpreter profiles
def work(n):
    return sum(i * i for i in range(n))
for _ in range(50):
    work(10_000)
p = prof.stop()
print(json.dumps(sum(n for fid, n in p.calls.items() if p.functions[fid].name == "work")))
"""


def test_subinterpreter_start_is_refused(tmp_path):
    result = tmp_path / "result"
    code = f"INNER = {INNER!r}\nRESULT = {str(result)!r}\n" + OUTER
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    for when in ("idle", "running"):
        kind, message = json.loads((tmp_path / f"result.{when}").read_text())
        assert kind in ("RuntimeError", "ImportError"), (when, kind, message)
        if kind == "RuntimeError":     # ours: 3.9 - 3.11 let the module load
            assert "sub-interpreters are not supported" in message, (when, message)
        else:                          # 3.12+: single-phase modules refused on import
            assert "subinterpreter" in message.replace("-", ""), (when, message)
    assert json.loads(r.stdout) == 50        # the main interpreter's profile is intact
