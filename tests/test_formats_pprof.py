"""pprof output: our encoder and reader round trip field by field; the files load in
the real go tool pprof (-top, -traces, -sample_index=calls) with the expected
functions, lines and counts; protoc decodes them against profile.proto; and a CPU
profile written by Go's own runtime/pprof reads correctly.

Needs Debian's golang-go and protobuf-compiler (offline; .ci/run installs them).
"""

import gzip
import hashlib
import os
import re
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import fmt_common as fc  # noqa: E402

from shadowprof.analysis import formats, pprof  # noqa: E402
from shadowprof.analysis.model import Function, Profile, Stack  # noqa: E402


# --------------------------------------------------------------------------- encoder

# The bytes of pprof.encode() for these profiles, as sha256: recorded from the Python
# encoder that wrote them before encode() became the C encoder the live writer uses
# (profiler/pprof_enc.c); a change here changes every file written.
GOLDEN = {
    "cpu": "f9466b70c79323e58296e4f43c9597c6ee78236a56c5aacd21d70035b7f1532d",
    "wall": "71c6d7e57d3e1bce7a52c203ddda8cd8fee3682edefbb716907396656b982bd7",
    "unnamed": "ee64bcb63f531ebc81454e7bf2909084dc4fb085b1327bb1c9064e62347f3972",
    "native": "8f3afad2b6220cfc7de1097944288ff28df1dde2259a9d379d953bea6fb62e12",
    "surrogates": "a7412e4e56e2c3a792a14ec62ca84cde4dc7ed82c3c376c664293b1d1a6283a7",
    "empty": "619a8f51cb521e0092440bce744ccf877a9822271626657c57df078092fe43cc",
}


class _Native:
    """What native.NativeInfo holds (analysis/ and its tests do not import it)."""

    def __init__(self, path, build_id, map_start, map_limit, map_offset, address):
        self.path, self.build_id = path, build_id
        self.map_start, self.map_limit, self.map_offset = map_start, map_limit, map_offset
        self.address = address


def _variants():
    yield "cpu", fc.made_up_profile()
    yield "wall", fc.made_up_profile("wall")
    p = fc.made_up_profile()   # ids the profile does not name, negative lines and times
    p.stacks = p.stacks + [Stack(101, ((1, 3), (77, 9), (-5, 0)), 1, 10),
                           Stack(303, ((78, -4), (2, 0)), 2, -20)]
    p.edges = {**p.edges, (79, 80): 3, (0, 81): 2}
    p.calls = {**p.calls, 82: 4, 81: 5}
    yield "unnamed", p
    p = fc.made_up_profile()   # native frames: two objects, one function unnamed
    p.functions = {**p.functions, 10: Function(10, "memcpy", "/lib/libc.so.6", 0),
                   11: Function(11, "PyEval", "/usr/lib/libpython.so", 0),
                   12: Function(12, "strlen", "/lib/libc.so.6", 0)}
    p.native = {10: _Native("/lib/libc.so.6", "abc123", 0x7f0000, 0x7f9000, 0x1000, 0x7f1234),
                11: _Native("/usr/lib/libpython.so", "", 0x5000, 0x9000, 0, 0),
                12: _Native("/lib/libc.so.6", "abc123", 0x7f0000, 0x7f9000, 0x1000, 0x7f2000),
                99: _Native("/x.so", "b", 1, 2, 3, 4)}
    p.stacks = p.stacks + [Stack(101, ((1, 3), (11, 0), (10, 0)), 3, 30),
                           Stack(202, ((12, 0), (99, 0)), 1, 1)]
    yield "native", p
    p = fc.made_up_profile()   # lone surrogates (surrogateescape), a thread named None
    p.functions = {**p.functions, 2: Function(2, "ma\udce9in.x\udcff", "/src/\udcc3.py", -3)}
    p.threads = {**p.threads, 101: "t\udce9", 202: None}
    yield "surrogates", p
    yield "empty", Profile(functions={}, stacks=[], calls={}, edges={})


def test_encoded_bytes_are_unchanged(monkeypatch):
    monkeypatch.setattr(pprof, "_interpreter", lambda: "/usr/bin/python3")
    got = {name: hashlib.sha256(pprof.encode(p, ["extra"])).hexdigest()
           for name, p in _variants()}
    assert got == GOLDEN


def test_encoders_in_parallel_write_the_same_bytes(monkeypatch):
    """The encoder keeps one file's large buffers for the next (spares taken and
    given back atomically, without the GIL): threads encoding at once, and each
    encoding after a bigger or smaller one, still write every profile's own bytes."""
    monkeypatch.setattr(pprof, "_interpreter", lambda: "/usr/bin/python3")
    profiles = [p for _, p in _variants()]
    big = fc.made_up_profile()   # a profile over the buffers' first sizes
    big.stacks = [Stack(101 + k % 3, tuple((1 + (k * 7 + j) % 6, j) for j in range(60)), 1, k)
                  for k in range(3000)]
    profiles.append(big)
    want = [pprof.encode(p, ["extra"]) for p in profiles]
    got = {}

    def work(t):
        got[t] = [pprof.encode(profiles[k % len(profiles)], ["extra"])
                  for k in range(t, t + 3 * len(profiles))]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in range(4):
        assert got[t] == [want[k % len(profiles)] for k in range(t, t + 3 * len(profiles))]


def test_native_and_unnamed_functions_round_trip():
    """The mappings of native objects (one per path, in first-use order) and the
    placeholder functions of ids a profile does not name, as the reader sees them."""
    variants = dict(_variants())
    pp = pprof.decode(pprof.encode(variants["native"]))
    maps = sorted((m.id, m.filename, m.build_id, m.memory_start) for m in pp.mappings.values())
    assert maps[1:] == [(2, "/lib/libc.so.6", "abc123", 0x7F0000),   # leaf first
                        (3, "/usr/lib/libpython.so", "", 0x5000),
                        (4, "/x.so", "b", 1)]
    addresses = {pp.functions[loc.lines[0][0]].name: (loc.mapping_id, loc.address)
                 for loc in pp.locations.values()}
    assert addresses["memcpy"] == (2, 0x7F1234) and addresses["strlen"] == (2, 0x7F2000)
    assert addresses["<id 99>"] == (4, 4) and addresses["main"][0] == 1
    pp = pprof.decode(pprof.encode(variants["unnamed"]))
    # after the named ones, in the order the encoder meets them: leaf first within a
    # stack, then edges callee first, then calls on no edge
    names = [f.name for f in pp.functions.values()]
    assert names[-7:] == ["<id -5>", "<id 77>", "<id 78>", "<id 80>", "<id 79>",
                          "<id 81>", "<id 82>"]



def test_round_trip_made_up_profile_field_by_field():
    prof = fc.made_up_profile()
    data = pprof.encode(prof)
    fc.assert_same_profile(pprof.read_pprof(data), fc.rounded(prof))


def test_round_trip_wall_mode_and_gzip_file(tmp_path):
    prof = fc.made_up_profile(mode="wall")
    path = tmp_path / "p.pb.gz"
    formats.write_profile(prof, str(path), "pprof")
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b", "gzipped"
    pp = pprof.decode(raw)
    assert pp.sample_types == [("samples", "count"), ("wall", "nanoseconds"),
                               ("calls", "count")]
    assert pp.period_type == ("wall", "nanoseconds")
    assert pp.default_sample_type == "wall"
    fc.assert_same_profile(pprof.read_pprof(str(path)), fc.rounded(prof))


def test_encoding_invariants():
    """String table interned once with "" first, functions and locations deduplicated,
    thread labels, header fields, comments."""
    prof = fc.made_up_profile()
    pp = pprof.decode(pprof.encode(prof))
    assert pp.string_table[0] == ""
    assert len(set(pp.string_table)) == len(pp.string_table)
    assert pp.sample_types[:2] == [("samples", "count"), ("cpu", "nanoseconds")]
    assert pp.default_sample_type == "cpu"
    assert pp.period_type == ("cpu", "nanoseconds")
    assert pp.period == prof.interval_ns
    assert pp.time_nanos == prof.start_unix_ns
    assert pp.duration_nanos == prof.duration_ns
    assert pp.comments[0].startswith("shadowprof profile: cpu mode, 17 samples")
    assert "profiler overhead" in pp.comments[0]
    # One function per profile function, each with name, file and start line.
    assert len(pp.functions) == len(prof.functions)
    by_name = {f.name: f for f in pp.functions.values()}
    assert by_name["main"].filename == "/src/app.py"
    assert by_name["main"].start_line == 10
    assert by_name["main"].system_name == "/src/app.py:10(main)"
    # One location per (function, line), each with one line.
    keys = [(loc.lines[0]) for loc in pp.locations.values()]
    assert all(len(loc.lines) == 1 for loc in pp.locations.values())
    assert len(keys) == len(set(keys))
    assert all(loc.id > 0 for loc in pp.locations.values())
    assert all(f.id > 0 for f in pp.functions.values())
    # Stack samples: leaf first, [count, ns, 0], thread labels.
    first = pp.samples[0]
    names = [pp.functions[pp.locations[i].lines[0][0]].name
             for i in first.location_ids]
    assert names == ["leaf", "rec", "rec", "rec", "main", "<module>"]
    assert [pp.locations[i].lines[0][1] for i in first.location_ids] == \
        [51, 7, 6, 6, 12, 3]
    assert first.values == [7, 7_300_000, 0]
    assert first.label("thread") == "MainThread"
    assert first.label("thread_id") == 101
    # Call samples: [callee, caller] with [0, 0, n]; root calls have the callee only.
    calls = {}
    for s in pp.samples:
        if s.values[2]:
            assert s.values[:2] == [0, 0]
            key = tuple(pp.functions[pp.locations[i].lines[0][0]].name
                        for i in s.location_ids)
            calls[key] = calls.get(key, 0) + s.values[2]
    assert calls[("rec", "rec")] == 6
    assert calls[("leaf", "rec")] == 20
    assert calls[("leaf",)] == 10
    assert calls[("<module>",)] == 1
    assert calls[("only_called", "main")] == 5
    assert calls[("only_called",)] == 2   # labelled caller=unknown


# A foreign producer's bytes, written by hand here: the package's own writer is the C
# encoder (pprof_enc.c), which never writes unpacked fields or address-only locations.

def _varint(n):
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field_no, wire_type):
    return _varint(field_no << 3 | wire_type)


def _int_field(field_no, n):
    return _key(field_no, 0) + _varint(n) if n else b""


def _len_field(field_no, payload):
    return _key(field_no, 2) + _varint(len(payload)) + payload


def test_foreign_style_encoding_variants():
    """Unpacked repeated fields and a location without lines (an unsymbolized
    address) decode too."""
    st = ["", "samples", "count", "cpu", "nanoseconds", "f", "/x.go"]
    k = _key

    def msg(*parts):
        return b"".join(parts)

    def vt(t, u):
        return msg(_int_field(1, t), _int_field(2, u))

    body = msg(
        _len_field(pprof.PROFILE_SAMPLE_TYPE, vt(1, 2)),
        _len_field(pprof.PROFILE_SAMPLE_TYPE, vt(3, 4)),
        # unpacked location ids and values
        _len_field(pprof.PROFILE_SAMPLE, msg(
            k(1, 0), _varint(1), k(1, 0), _varint(2),
            k(2, 0), _varint(3), k(2, 0), _varint(30_000_000))),
        _len_field(pprof.PROFILE_LOCATION, msg(
            _int_field(1, 1), _int_field(3, 0x401000),
            _len_field(4, msg(_int_field(1, 7),
                                    _int_field(2, 12))))),
        _len_field(pprof.PROFILE_LOCATION, msg(
            _int_field(1, 2), _int_field(3, 0x402000))),
        _len_field(pprof.PROFILE_FUNCTION, msg(
            _int_field(1, 7), _int_field(2, 5),
            _int_field(4, 6))),
        *[_len_field(pprof.PROFILE_STRING_TABLE, s.encode()) for s in st],
        _int_field(pprof.PROFILE_PERIOD, 10_000_000),
    )
    prof = pprof.read_pprof(body)
    (s,) = prof.stacks
    assert s.count == 3 and s.weight_ns == 30_000_000
    names = [prof.functions[fid].name for fid, _ in s.frames]
    assert names == ["0x402000", "f"]     # root first
    assert s.frames[1][1] == 12
    assert prof.samples == 3 and prof.mode == "cpu"


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="string_table"):
        pprof.read_pprof(b"\x08\x01")
    good = pprof.encode(fc.made_up_profile())
    with pytest.raises(ValueError):
        pprof.read_pprof(good[:len(good) // 2])


# --------------------------------------------------------------------------- real run

@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """fmt_workload.py profiled by the command line into prof.pb.gz."""
    d = tmp_path_factory.mktemp("pprof")
    path = d / "prof.pb.gz"
    fc.profile_workload(path)
    return path, pprof.read_pprof(str(path))


def workload_fids(prof):
    return {fn.name: fid for fid, fn in prof.functions.items()
            if fn.filename == fc.WORKLOAD}


def test_real_profile_round_trip(workload, tmp_path):
    """A real profile: read back, written again, read again: identical; and the
    same as the JSON format's view of it."""
    path, prof = workload
    assert prof.samples > 20 and prof.stacks
    again = tmp_path / "again.pb.gz"
    formats.write_profile(prof, str(again), "pprof")
    fc.assert_same_profile(pprof.read_pprof(str(again)), prof)
    via_json = Profile.from_dict(__import__("json").loads(prof.to_json()))
    fc.assert_same_profile(via_json, prof)
    fids = workload_fids(prof)
    assert prof.calls[fids["burn"]] == 4
    assert prof.calls[fids["tiny"]] == 70
    assert prof.edges[(fids["helper"], fids["tiny"])] == 70
    assert prof.edges[(fids["fact"], fids["fact"])] == 4


def go_pprof(tmp_path, *args):
    go = fc.tool("go")
    r = subprocess.run([go, "tool", "pprof", *args], capture_output=True, text=True,
                       env=fc.go_env(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def top_rows(text: str) -> dict:
    """{name: (flat, cum)} from `go tool pprof -top`; functions of the same name (in
    different files) are summed, their cum is then None."""
    rows = {}
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.split()[:2] == ["flat", "flat%"])
    for line in lines[start + 1:]:
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue

        def num(v):
            return int(v[:-2]) if v.endswith("ns") else int(v)
        name, flat, cum = parts[5], num(parts[0]), num(parts[3])
        if name in rows:
            flat, cum = flat + rows[name][0], None
        rows[name] = (flat, cum)
    return rows


def test_go_tool_pprof_top_times_and_samples(workload, tmp_path):
    path, prof = workload
    stats = {}
    for s in prof.stacks:
        if s.frames:
            name = prof.functions[s.frames[-1][0]].name
            c, w = stats.get(name, (0, 0))
            stats[name] = (c + s.count, w + s.weight_ns)
    out = go_pprof(tmp_path, "-top", "-unit=ns", "-nodefraction=0", str(path))
    assert "Type: cpu" in out
    total = sum(s.weight_ns for s in prof.stacks)
    assert f"Total samples = {total}ns" in out
    rows = top_rows(out)
    for name, (count, weight) in stats.items():
        assert rows[name][0] == weight, name
    assert rows["burn"][0] > 0.8 * total
    assert rows["main"][1] >= rows["burn"][0] * 0.5
    out = go_pprof(tmp_path, "-top", "-sample_index=samples", "-nodefraction=0",
                   str(path))
    rows = top_rows(out)
    for name, (count, weight) in stats.items():
        if count:
            assert rows[name][0] == count, name


def test_go_tool_pprof_calls_are_exact(workload, tmp_path):
    path, prof = workload
    out = go_pprof(tmp_path, "-top", "-sample_index=calls", "-nodefraction=0",
                   str(path))
    assert "Type: calls" in out
    rows = top_rows(out)
    assert rows["burn"][0] == 4
    assert rows["tiny"][0] == 70
    assert rows["helper"] == (7, 77)    # cum adds the calls helper made
    assert rows["fact"] == (5, 5)       # 1 + 4 recursive
    assert rows["worker"][0] == 1
    assert rows["main"][0] == 1
    # -top adds up functions of one name (two `<module>`s, say): compare the sums.
    for name in workload_fids(prof):
        same = [fid for fid, fn in prof.functions.items() if fn.name == name]
        assert rows[name][0] == sum(prof.calls.get(fid, 0) for fid in same), name


def traces(text: str) -> list:
    """`go tool pprof -traces` blocks: (labels {key: value}, value, [frame lines])."""
    out = []
    for block in re.split(r"^-{11}\+-+$", text, flags=re.M)[1:]:
        labels, frames, value = {}, [], None
        for line in block.splitlines():
            if not line.strip():
                continue
            m = re.match(r"\s*(\w+):\s+(.*)$", line)
            if m and value is None and not frames:
                labels[m.group(1)] = m.group(2).strip()
                continue
            if value is None:
                value, _, rest = line.strip().partition(" ")
                frames.append(rest.strip())
            else:
                frames.append(line.strip())
        if value is not None:
            out.append((labels, value, frames))
    return out


def test_go_tool_pprof_traces_functions_lines_threads(workload, tmp_path):
    path, prof = workload
    src = open(fc.WORKLOAD).read().splitlines()
    start = src.index("def burn(seconds):") + 1
    burn_lines = set(range(start, src.index("def tiny(x):") + 1))
    main_call = next(i + 1 for i, l in enumerate(src) if "burn(0.1)" in l and
                     l.startswith("        "))
    out = go_pprof(tmp_path, "-traces", "-lines", str(path))
    blocks = traces(out)
    assert blocks
    wl = os.path.basename(fc.WORKLOAD)
    # (Call-count samples show here too, with time 0 and no labels.)
    blocks = [b for b in blocks if b[1] != "0"]
    main_burn = [b for b in blocks if b[2][:2] and b[2][0].startswith("burn ")
                 and b[2][1].startswith("main ")]
    assert main_burn, out[:3000]
    for labels, value, frames in main_burn:
        assert labels["thread"] == "MainThread"
        assert int(labels["thread_id"]) > 0
        name, loc = frames[0].split(" ", 1)
        assert loc.rsplit(":", 1)[0].endswith(wl)
        assert int(loc.rsplit(":", 1)[1]) in burn_lines
        assert frames[1] == f"main {fc.WORKLOAD}:{main_call}"
        assert frames[2].startswith("<module> ")
    worker = [b for b in blocks if len(b[2]) > 1 and b[2][0].startswith("burn ")
              and b[2][1].startswith("worker ")]
    assert worker and all(b[0]["thread_id"] != main_burn[0][0]["thread_id"]
                          for b in worker)
    # Exact calls as traces: 70 calls of tiny from helper, on the def lines.
    out = go_pprof(tmp_path, "-traces", "-lines", "-sample_index=calls", str(path))
    tiny_def = next(i + 1 for i, l in enumerate(src) if l.startswith("def tiny"))
    helper_def = next(i + 1 for i, l in enumerate(src) if l.startswith("def helper"))
    assert any(v == "70" and f == [f"tiny {fc.WORKLOAD}:{tiny_def}",
                                   f"helper {fc.WORKLOAD}:{helper_def}"]
               for _, v, f in traces(out)), out[:3000]


def test_protoc_decodes_our_file(workload, tmp_path):
    protoc = fc.tool("protoc")
    path, prof = workload
    raw = gzip.decompress(path.read_bytes())
    r = subprocess.run([protoc, "--decode=perftools.profiles.Profile",
                        "-I", os.path.dirname(fc.PROTO), fc.PROTO],
                       input=raw, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode()
    assert text.count("sample_type {") == 3
    assert 'string_table: ""' in text
    assert '"calls"' in text and '"MainThread"' in text
    assert f"period: {prof.interval_ns}" in text
    assert f"time_nanos: {prof.start_unix_ns}" in text
    assert "has_functions: true" in text
    # No field protoc did not know (it would print it by number).
    assert not re.search(r"^\s*\d+: ", text, re.M)


def test_schema_copy_matches_our_field_numbers():
    """tests/data/fmt_profile.proto and the constants of shadowprof.analysis.pprof agree."""
    text = open(fc.PROTO).read()
    messages = dict(re.findall(r"message (\w+) \{(.*?)\n\}", text, re.S))
    for msg, body in messages.items():
        for name, no in re.findall(r"(\w+) = (\d+);", body):
            const = f"{msg.upper()}_{name.upper()}"
            assert getattr(pprof, const) == int(no), const


# --------------------------------------------------------------------------- Go's own

def go_raw(text: str):
    """Samples and locations from `go tool pprof -raw`: [(values, [loc ids])] and
    {loc id: [(function, file, line)] inlined first}."""
    samples, locations = [], {}
    section = None
    loc = None
    for line in text.splitlines():
        if line.startswith("Samples:"):
            section = "samples"
            continue
        if line.startswith("Locations"):
            section = "locations"
            continue
        if line.startswith("Mappings"):
            section = None
            continue
        if section == "samples":
            m = re.match(r"\s+([\d\s]+):\s*([\d\s]*)$", line)
            if m:
                samples.append(([int(v) for v in m.group(1).split()],
                                [int(v) for v in m.group(2).split()]))
        elif section == "locations":
            m = re.match(r"\s+(\d+): 0x[0-9a-f]+ M=\d+ (\S+) (\S+):(\d+) s=\d+", line)
            if m:
                loc = locations[int(m.group(1))] = []
                loc.append((m.group(2), m.group(3), int(m.group(4))))
                continue
            m = re.match(r"\s+(\S+) (\S+):(\d+) s=\d+$", line)
            if m and loc is not None:
                loc.append((m.group(1), m.group(2), int(m.group(3))))
    return samples, locations


def test_reads_go_runtime_pprof_profile(tmp_path):
    go = fc.tool("go")
    env = fc.go_env(tmp_path)
    exe = tmp_path / "goprof"
    r = subprocess.run([go, "build", "-o", str(exe), fc.GO_PROGRAM],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    def spin_mix_stacks(prof):
        return [s for s in prof.stacks
                if [prof.functions[f].name for f, _ in s.frames[-2:]] ==
                ["main.spin", "main.mix"]]

    # Retry, longer, until Go's sampler has hit the inlined call (a loaded machine
    # gives it few samples).
    for seconds in ("0.5", "1.5", "4"):
        out = tmp_path / "go.pb.gz"
        r = subprocess.run([str(exe), str(out), seconds], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        pp = pprof.decode(out.read_bytes())
        if spin_mix_stacks(pprof.read_pprof(str(out))):
            break
    assert pp.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    assert pp.period_type == ("cpu", "nanoseconds")
    assert pp.mappings and pp.mappings[1].has_functions
    assert all(loc.address for loc in pp.locations.values())
    inlined = [loc for loc in pp.locations.values() if len(loc.lines) > 1]
    assert inlined, "no inlined location in Go's profile"
    assert any(s.label("phase") == "spin" for s in pp.samples)

    prof = pprof.read_pprof(str(out))
    assert prof.mode == "cpu"
    assert prof.interval_ns == pp.period == 10_000_000
    assert prof.duration_ns == pp.duration_nanos > 0
    assert prof.start_unix_ns == pp.time_nanos > 0
    assert prof.samples == sum(s.values[0] for s in pp.samples) > 0
    assert sum(s.weight_ns for s in prof.stacks) == sum(s.values[1] for s in pp.samples)
    names = {fn.name for fn in prof.functions.values()}
    assert {"main.spin", "main.mix", "main.main"} <= names
    assert spin_mix_stacks(prof), "an inlined call (spin -> mix) becomes two frames"

    # Agree with go tool pprof's own reading (-raw), sample by sample.
    raw_samples, raw_locs = go_raw(go_pprof(tmp_path, "-raw", str(exe), str(out)))
    want = sorted(
        (vals[0], vals[1], tuple(fr for lid in reversed(lids)
                                 for fr in reversed(raw_locs[lid])))
        for vals, lids in raw_samples)
    got = sorted(
        (s.count, s.weight_ns, tuple((prof.functions[f].name,
                                      prof.functions[f].filename, line)
                                     for f, line in s.frames))
        for s in prof.stacks)
    assert got == want


def test_meta_json_is_json_dumps():
    # The meta comment is written without importing json (continuous mode's start-up):
    # its text must be json.dumps(..., ensure_ascii=False)'s, or readers that parse it
    # with json see something else.
    import json
    cases = [
        {"samples": 12, "weight_ns": 10_000_000_123, "overhead": 0.1 + 0.2, "mode": "cpu",
         "lost": 0, "flag": True, "none": None, "neg": -7, "tiny": 1e-300, "big": 1e300},
        {"threads": {"140234": "Main\"Thread\\", "2": "tab\there\nnew\x00\x1f\x7f",
                     "3": "naïve ☃ \U0001F600", "4": "\ud800 lone surrogate"}},
        {"roots": ["/srv/app", "/usr/lib/python3/dist-packages", ""], "empty": [],
         "nested": [[1, 2.5], {"k": "v"}], "tuple": (1, "two")},
        {"nan": float("nan"), "inf": float("inf"), "int_keys": {1: "a"}},
    ]
    for meta in cases:
        assert pprof._json_dumps(meta) == json.dumps(meta, ensure_ascii=False)
