"""Collapsed stacks and speedscope JSON checked against their formats, and the same
profile giving the same numbers in every format (pprof, pstats, collapsed,
speedscope)."""

import json
import os
import pstats
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import fmt_common as fc  # noqa: E402

from shadowprof.analysis import formats, pprof  # noqa: E402
from shadowprof.analysis.model import Profile  # noqa: E402
from shadowprof.analysis.speedscope import to_speedscope  # noqa: E402

SCHEMA = os.path.join(os.path.dirname(fc.PROTO), "fmt_speedscope_schema.json")

# flamegraph.pl's parse of a line (inferno's is the same): the stack, then
# whitespace, then the count.
FLAMEGRAPH_LINE = re.compile(r"^(.*)\s+?(\d+(?:\.\d*)?)$")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """fmt_workload.py profiled by the command line (JSON), loaded."""
    path = tmp_path_factory.mktemp("flame") / "w.json"
    fc.profile_workload(path)
    return Profile.load_json(path)


# --------------------------------------------------------------------------- collapsed

def parse_collapsed(text: str) -> dict:
    out = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        m = FLAMEGRAPH_LINE.match(line)
        assert m, line
        stack, count = m.group(1), m.group(2)
        assert count.isdigit() and int(count) > 0, line
        frames = stack.split(";")
        assert all(f and f == f.strip() for f in frames), line
        out[tuple(frames)] = out.get(tuple(frames), 0) + int(count)
    return out


def test_collapsed_format_made_up(tmp_path):
    prof = fc.made_up_profile()
    path = tmp_path / "m.collapsed"
    formats.write_profile(prof, str(path), "collapsed")
    stacks = parse_collapsed(path.read_text(encoding="utf-8"))
    app = "/src/app.py"
    rec = "rec (/src/lib/util é.py:5)"
    assert stacks[(f"<module> ({app}:1)", f"main ({app}:10)", rec, rec, rec,
                   f"leaf ({app}:50)")] == 7
    # Two stacks differing only in lines merge; ';' in a name is replaced.
    assert stacks[(f"<module> ({app}:1)", f"main ({app}:10)",
                   f"Handler.handle.<locals>.parse:v2 ({app}:20)")] == 4
    assert stacks[("[lost samples]",)] == 2
    # The weight-only stack (count 0) has no line; counts are the sample counts.
    assert not any("[shadowprof overhead]" in f for s in stacks for f in s)
    assert sum(stacks.values()) == sum(s.count for s in prof.stacks)


def test_collapsed_real(real, tmp_path):
    path = tmp_path / "w.collapsed"
    formats.write_profile(real, str(path), "collapsed")
    stacks = parse_collapsed(path.read_text(encoding="utf-8"))
    assert sum(stacks.values()) == sum(s.count for s in real.stacks if s.frames)
    burn = sum(n for s, n in stacks.items() if s[-1].startswith("burn ("))
    assert burn > 0.8 * sum(stacks.values())
    src = open(fc.WORKLOAD).read().splitlines()
    line = {l[4:l.index("(")]: i + 1 for i, l in enumerate(src) if l.startswith("def ")}
    assert any(s[-2:] == (f"main ({fc.WORKLOAD}:{line['main']})",
                          f"burn ({fc.WORKLOAD}:{line['burn']})") for s in stacks)


# --------------------------------------------------------------------------- speedscope

def validate(inst, schema, root, path="$"):
    """The JSON Schema keywords speedscope's schema uses: $ref, anyOf, type, enum,
    required, properties, items."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return validate(inst, root["definitions"][name], root, path)
    if "anyOf" in schema:
        errors = []
        for sub in schema["anyOf"]:
            try:
                return validate(inst, sub, root, path)
            except AssertionError as e:
                errors.append(str(e))
        raise AssertionError(f"{path}: matches none of anyOf: {errors}")
    types = {"object": dict, "array": list, "string": str, "number": (int, float)}
    t = schema.get("type")
    if t:
        assert isinstance(inst, types[t]) and not isinstance(inst, bool), \
            f"{path}: {inst!r:.60} is not {t}"
    if "enum" in schema:
        assert inst in schema["enum"], f"{path}: {inst!r} not in {schema['enum']}"
    for k in schema.get("required", ()):
        assert k in inst, f"{path}: missing required {k!r}"
    for k, sub in schema.get("properties", {}).items():
        if k in inst:
            validate(inst[k], sub, root, f"{path}.{k}")
    if "items" in schema:
        for i, x in enumerate(inst):
            validate(x, schema["items"], root, f"{path}[{i}]")


def load_schema():
    with open(SCHEMA) as f:
        return json.load(f)


def check_speedscope(doc: dict, prof: Profile) -> None:
    schema = load_schema()
    validate(doc, schema, schema)
    frames = doc["shared"]["frames"]
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert 0 <= doc["activeProfileIndex"] < len(doc["profiles"])
    for p in doc["profiles"]:
        assert p["type"] == "sampled" and p["unit"] == "nanoseconds"
        assert len(p["samples"]) == len(p["weights"])
        assert all(0 <= i < len(frames) and isinstance(i, int)
                   for s in p["samples"] for i in s)
        assert p["endValue"] - p["startValue"] == sum(p["weights"])
    per_thread = {}
    for s in prof.stacks:
        if s.frames:
            per_thread[s.thread_id] = per_thread.get(s.thread_id, 0) + round(s.weight_ns)
    assert sorted(p["endValue"] for p in doc["profiles"]) == sorted(per_thread.values())


def test_validator_is_not_vacuous():
    schema = load_schema()
    doc = to_speedscope(fc.made_up_profile())
    del doc["profiles"][0]["weights"]
    with pytest.raises(AssertionError, match="weights"):
        validate(doc, schema, schema)
    doc = to_speedscope(fc.made_up_profile())
    doc["profiles"][0]["unit"] = "ticks"
    with pytest.raises(AssertionError):
        validate(doc, schema, schema)


def test_speedscope_made_up(tmp_path):
    prof = fc.made_up_profile()
    path = tmp_path / "m.speedscope.json"
    formats.write_profile(prof, str(path), "speedscope")
    doc = json.loads(path.read_text(encoding="utf-8"))
    check_speedscope(doc, prof)
    names = {p["name"] for p in doc["profiles"]}
    assert names == {"MainThread (tid 101)", "worker ünï (tid 202)",
                     "shadowprof (tid 0)"}
    frames = doc["shared"]["frames"]
    main = next(p for p in doc["profiles"] if p["name"].startswith("MainThread"))
    assert doc["profiles"][doc["activeProfileIndex"]] is main
    first = [frames[i] for i in main["samples"][0]]
    assert [f["name"] for f in first] == ["<module>", "main", "rec", "rec", "rec", "leaf"]
    assert first[2] == {"name": "rec", "file": "/src/lib/util é.py", "line": 5}
    assert main["weights"][0] == 7_300_000
    assert {"name": "[lost samples]"} in frames


def test_speedscope_real(real, tmp_path):
    path = tmp_path / "w.speedscope.json"
    r = fc.run_cli("-q", "-i", "1ms", "-o", str(path), fc.WORKLOAD)
    assert r.returncode == 0, r.stderr
    doc = json.loads(path.read_text())
    schema = load_schema()
    validate(doc, schema, schema)
    assert doc["exporter"].startswith("shadowprof ")
    assert len(doc["profiles"]) >= 2    # main thread and fmt-worker
    check_speedscope(to_speedscope(real), real)


# --------------------------------------------------------------------------- same numbers

def test_same_numbers_in_every_format(real, tmp_path):
    """Per function of the workload: samples, time and calls agree between pprof (as
    go tool pprof reads it: our reader), pstats, collapsed and speedscope."""
    paths = {}
    for fmt, ext in (("pprof", "pb.gz"), ("pstats", "pstats"),
                     ("collapsed", "collapsed"), ("speedscope", "speedscope.json")):
        paths[fmt] = str(tmp_path / f"w.{ext}")
        formats.write_profile(real, paths[fmt], fmt)
    fids = {fn.name: fid for fid, fn in real.functions.items()
            if fn.filename == fc.WORKLOAD}

    pp = pprof.read_pprof(paths["pprof"])
    st = pstats.Stats(paths["pstats"]).stats
    with open(paths["collapsed"], encoding="utf-8") as f:
        col = parse_collapsed(f.read())
    with open(paths["speedscope"], encoding="utf-8") as f:
        ss = json.load(f)
    frames = ss["shared"]["frames"]

    for name, fid in fids.items():
        fn = real.functions[fid]
        # self time, ns (pprof and speedscope keep whole ns per stack)
        pp_self = sum(s.weight_ns for s in pp.stacks
                      if s.frames and s.frames[-1][0] == fid)
        ss_self = sum(w for p in ss["profiles"]
                      for s, w in zip(p["samples"], p["weights"])
                      if s and frames[s[-1]]["name"] == name
                      and frames[s[-1]].get("file") == fc.WORKLOAD)
        key = (fn.filename, fn.firstlineno, name)
        assert pp_self == ss_self, name
        assert st[key][2] == pytest.approx(pp_self / 1e9, abs=1e-6), name
        # self samples
        label = f"{name} ({fn.filename}:{fn.firstlineno})"
        pp_count = sum(s.count for s in pp.stacks if s.frames and s.frames[-1][0] == fid)
        assert sum(n for s, n in col.items() if s[-1] == label) == pp_count, name
        # calls
        assert st[key][1] == pp.calls.get(fid, 0) == real.calls.get(fid, 0), name
    assert sum(col.values()) == sum(s.count for s in pp.stacks if s.frames)
    assert sum(w for p in ss["profiles"] for w in p["weights"]) == \
        sum(s.weight_ns for s in pp.stacks if s.frames)
