"""speedscope JSON (https://www.speedscope.app/file-format-schema.json): one sampled
profile per thread.

Frames are functions (``name`` the qualified name, ``file``, ``line`` the first line;
synthetic frames have a name only), shared by all profiles.  Each stack of the profile
is one sample, root first, weighted by the nanoseconds its samples stand for (rounded
to whole ns), so speedscope's numbers are the report's seconds.  ``startValue`` is 0
and ``endValue`` the thread's total.  The profile shown first is the thread with the
most time.
"""

from __future__ import annotations

import json

from . import __version__
from .model import Profile

__all__ = ["write_speedscope", "to_speedscope", "SCHEMA_URL"]

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


def to_speedscope(profile: Profile, name: str = "shadowprof profile") -> dict:
    """The speedscope file as a JSON-ready dict."""
    frames, index = [], {}

    def frame(fid: int) -> int:
        i = index.get(fid)
        if i is None:
            i = index[fid] = len(frames)
            fn = profile.functions.get(fid)
            if fn is None:
                frames.append({"name": f"<id {fid}>"})
            elif fn.synthetic:
                frames.append({"name": fn.name})
            else:
                frames.append({"name": fn.name, "file": fn.filename,
                               "line": fn.firstlineno})
        return i

    per_thread: dict = {}
    for s in profile.stacks:
        if not s.frames:
            continue
        samples, weights = per_thread.setdefault(s.thread_id, ([], []))
        samples.append([frame(fid) for fid, _ in s.frames])
        weights.append(round(s.weight_ns))
    unit = "nanoseconds"
    profiles = []
    for tid, (samples, weights) in per_thread.items():
        tname = profile.threads.get(tid)
        if tname is None:
            tname = "shadowprof" if tid == 0 else f"thread {tid}"
        profiles.append({"type": "sampled", "name": f"{tname} (tid {tid})",
                         "unit": unit, "startValue": 0, "endValue": sum(weights),
                         "samples": samples, "weights": weights})
    active = max(range(len(profiles)), key=lambda i: profiles[i]["endValue"],
                 default=0)
    return {"$schema": SCHEMA_URL, "shared": {"frames": frames}, "profiles": profiles,
            "name": name, "activeProfileIndex": active,
            "exporter": f"shadowprof {__version__}"}


def write_speedscope(profile: Profile, f) -> None:
    """Write *profile* to the binary file *f* as speedscope JSON."""
    f.write(json.dumps(to_speedscope(profile), separators=(",", ":")).encode("utf-8"))
