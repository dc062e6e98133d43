"""Collapsed stacks: the ``frame;frame;frame count`` lines that flamegraph.pl and
inferno (``inferno-flamegraph``) read.

One line per distinct stack, root first, threads merged.  A frame is the function as
the text report names it, ``qualname (file:first line)`` (synthetic frames such as
``[shadowprof overhead]`` by name alone), so the flame graph has one box per function
and call path whatever line was running.  The count is the number of samples, an
integer as these tools want; stacks with time but no samples of their own (the
per-call overhead moved out of the user's functions) have no line.  Characters these
tools split on (``;`` and line breaks) are replaced in names.
"""

from __future__ import annotations

from .model import Profile

__all__ = ["write_collapsed", "collapsed_lines", "frame_text"]


def frame_text(fn) -> str:
    """The frame of *fn* in a collapsed line."""
    text = fn.name if fn.synthetic else f"{fn.name} ({fn.filename}:{fn.firstlineno})"
    return text.replace(";", ":").replace("\r", " ").replace("\n", " ")


def collapsed_lines(profile: Profile) -> list:
    """The lines, sorted, without line ends."""
    names: dict = {}

    def name(fid: int) -> str:
        n = names.get(fid)
        if n is None:
            fn = profile.functions.get(fid)
            n = names[fid] = frame_text(fn) if fn is not None else f"<id {fid}>"
        return n

    counts: dict = {}
    for s in profile.stacks:
        if s.count <= 0 or not s.frames:
            continue
        key = ";".join([name(fid) for fid, _ in s.frames])
        counts[key] = counts.get(key, 0) + s.count
    return [f"{k} {n}" for k, n in sorted(counts.items())]


def write_collapsed(profile: Profile, f) -> None:
    """Write *profile* to the binary file *f* as collapsed stacks (UTF-8)."""
    lines = collapsed_lines(profile)
    f.write(("\n".join(lines) + "\n" if lines else "").encode("utf-8",
                                                             "surrogateescape"))
