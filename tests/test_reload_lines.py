"""importlib.reload of a module whose function kept its first line but whose body
moved: the new code object takes over the old one's registry id, and its samples must
show at the new body's lines, not at lines cached for the old body (issue 12, item 3)."""

import json
import subprocess
import sys

PROGRAM = """\
import importlib, json, os, sys, time
sys.path.insert(0, os.getcwd())
from shadowprof import _core

V1 = "def work(n):\\n    x = 0\\n    for i in range(n):\\n        x += i\\n    return x\\n"
# Same first line and the same bytecode; the body ten lines further down.
V2 = ("def work(n):\\n" + "    # moved\\n" * 10 +
      "    x = 0\\n    for i in range(n):\\n        x += i\\n    return x\\n")

def burn(mod):
    end = time.process_time() + 0.5
    while time.process_time() < end:
        mod.work(20000)

with open("moving.py", "w") as f:
    f.write(V1)
import moving
_core.start(interval_ns=1_000_000, mode="cpu")
burn(moving)
old_id = _core.code_id(moving.work.__code__)
with open("moving.py", "w") as f:
    f.write(V2)
st = os.stat("moving.py")
os.utime("moving.py", (st.st_atime + 10, st.st_mtime + 10))   # no stale .pyc
importlib.reload(moving)            # the old function and its code object die here
burn(moving)
new_id = _core.code_id(moving.work.__code__)
_core.stop()
snap = _core.snapshot()
lines = {}
for tid, frames, count, weight in snap["stacks"]:
    fid, line = frames[-1]
    if fid == new_id:
        lines[line] = lines.get(line, 0) + count
print(json.dumps(dict(same_id=old_id == new_id, lines=lines)))
"""


def test_reloaded_body_samples_show_at_new_lines(tmp_path):
    proc = subprocess.run([sys.executable, "-B", "-c", PROGRAM], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["same_id"], r          # the case at hand: the id was revived
    lines = {int(k): v for k, v in r["lines"].items()}
    # V1's lines 1-5; V2's body at 12-15 (its lines 2-11 are comments: never sampled).
    old_body, new_body = set(range(1, 6)), set(range(12, 16))
    assert set(lines) <= old_body | new_body, lines
    total = sum(lines.values())
    on_new = sum(lines.get(n, 0) for n in new_body)
    on_old = total - on_new
    assert total >= 40, lines
    # Each half of the run burned the same CPU time: each body has a fair share.
    assert on_new >= 0.2 * total and on_old >= 0.2 * total, lines
