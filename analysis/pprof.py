"""pprof: the gzipped profile.proto of go tool pprof, Pyroscope, Parca and the cloud
profilers; a writer and a reader.

The encoder is the live writer's (profiler/pprof_enc.c, built into this package as
the extension ``_pprof``: one encoder for the running profiler and for profiles read
from files), the reader is below (no protobuf runtime needed); the schema is
google/pprof's ``proto/profile.proto`` (``perftools.profiles.Profile``).  What a shadowprof profile looks like in it:

- sample types ``samples/count``, ``cpu/nanoseconds`` (``wall/nanoseconds`` in wall
  mode) and ``calls/count``; the default sample type is the time.
- one Sample per stack of the profile: leaf-first locations, values
  ``[samples, ns, 0]`` (the time rounded to whole ns), labels ``thread`` (its name) and
  ``thread_id`` (a number).
- one Sample per caller -> callee edge of the exact call counts: locations
  ``[callee, caller]``, values ``[0, 0, calls]``.  Calls from no Python caller (the
  root: the program's first frame, or a function called from C code outside any
  profiled frame) have the callee alone.  So with ``-sample_index=calls`` a
  function's *flat* count is its exact number of calls and its *cum* count adds the
  calls it made.  The locations of these samples carry the function's first line (the
  line of the call is not recorded).  If a function's calls exceed the calls on its
  edges (an edge lost to memory exhaustion in the core), the rest is one more
  callee-alone sample labelled ``caller=unknown``.
- one Function per function of the profile: name is the qualified name,
  system_name cProfile's ``file:line(co_name)``, then filename and start_line; one
  Location per (function, line) seen, each with a single Line, all in one Mapping
  (the interpreter) marked as symbolized.
- period_type ``cpu/nanoseconds`` (``wall/nanoseconds``), period the requested
  interval, time_nanos the start (Unix ns), duration_nanos the elapsed time.
- comments: a human-readable summary, then ``shadowprof.meta {JSON}`` with the
  profile's counters (samples, lost, overhead ...), the names of threads without
  samples and the import roots (``roots``, the profiled process's sys.path
  directories, by which diff and merge match files across deployments), which the
  reader restores.

``write_pprof(profile, file)`` writes the gzipped bytes, ``encode(profile)`` returns the
raw (uncompressed) message.  ``decode(data)`` reads any pprof file into a
`PprofProfile` that keeps every field; ``read_pprof(path_or_bytes)`` gives a
`Profile`, for ours (field by field what was written) and for foreign ones (Go's
runtime/pprof: addresses, mappings and inlined frames; each inlined line becomes a
frame of its own, labels other than thread/thread_id are kept only in `PprofProfile`).
"""

from __future__ import annotations

import os

from . import _pprof
from .model import Function, Profile, Stack

__all__ = ["write_pprof", "encode", "decode", "read_pprof", "to_profile",
           "PprofProfile", "PprofSample", "PprofLocation", "PprofFunction",
           "PprofMapping"]

# --------------------------------------------------------------------------- schema
# Wire types.
WT_VARINT = 0
WT_I64 = 1
WT_LEN = 2
WT_I32 = 5

# message Profile
PROFILE_SAMPLE_TYPE = 1           # repeated ValueType; LEN
PROFILE_SAMPLE = 2                # repeated Sample; LEN
PROFILE_MAPPING = 3               # repeated Mapping; LEN
PROFILE_LOCATION = 4              # repeated Location; LEN
PROFILE_FUNCTION = 5              # repeated Function; LEN
PROFILE_STRING_TABLE = 6          # repeated string; LEN
PROFILE_DROP_FRAMES = 7           # int64 string index; VARINT
PROFILE_KEEP_FRAMES = 8           # int64 string index; VARINT
PROFILE_TIME_NANOS = 9            # int64; VARINT
PROFILE_DURATION_NANOS = 10       # int64; VARINT
PROFILE_PERIOD_TYPE = 11          # ValueType; LEN
PROFILE_PERIOD = 12               # int64; VARINT
PROFILE_COMMENT = 13              # repeated int64 string index; packed LEN
PROFILE_DEFAULT_SAMPLE_TYPE = 14  # int64 string index; VARINT

# message ValueType
VALUETYPE_TYPE = 1                # int64 string index; VARINT
VALUETYPE_UNIT = 2                # int64 string index; VARINT

# message Sample
SAMPLE_LOCATION_ID = 1            # repeated uint64; packed LEN
SAMPLE_VALUE = 2                  # repeated int64; packed LEN
SAMPLE_LABEL = 3                  # repeated Label; LEN

# message Label
LABEL_KEY = 1                     # int64 string index; VARINT
LABEL_STR = 2                     # int64 string index; VARINT
LABEL_NUM = 3                     # int64; VARINT
LABEL_NUM_UNIT = 4                # int64 string index; VARINT

# message Mapping
MAPPING_ID = 1                    # uint64; VARINT
MAPPING_MEMORY_START = 2          # uint64; VARINT
MAPPING_MEMORY_LIMIT = 3          # uint64; VARINT
MAPPING_FILE_OFFSET = 4           # uint64; VARINT
MAPPING_FILENAME = 5              # int64 string index; VARINT
MAPPING_BUILD_ID = 6              # int64 string index; VARINT
MAPPING_HAS_FUNCTIONS = 7         # bool; VARINT
MAPPING_HAS_FILENAMES = 8         # bool; VARINT
MAPPING_HAS_LINE_NUMBERS = 9      # bool; VARINT
MAPPING_HAS_INLINE_FRAMES = 10    # bool; VARINT

# message Location
LOCATION_ID = 1                   # uint64; VARINT
LOCATION_MAPPING_ID = 2           # uint64; VARINT
LOCATION_ADDRESS = 3              # uint64; VARINT
LOCATION_LINE = 4                 # repeated Line; LEN
LOCATION_IS_FOLDED = 5            # bool; VARINT

# message Line
LINE_FUNCTION_ID = 1              # uint64; VARINT
LINE_LINE = 2                     # int64; VARINT

# message Function
FUNCTION_ID = 1                   # uint64; VARINT
FUNCTION_NAME = 2                 # int64 string index; VARINT
FUNCTION_SYSTEM_NAME = 3          # int64 string index; VARINT
FUNCTION_FILENAME = 4             # int64 string index; VARINT
FUNCTION_START_LINE = 5           # int64; VARINT

# Function ids of shadowprof's synthetic frames (ids <= 0 in the model) are written
# as SYNTHETIC_ID_BASE - id, since pprof ids must be positive.
SYNTHETIC_ID_BASE = 1 << 62

# The id of the one Mapping (the interpreter) that all locations belong to.
MAPPING = 1

# Scalars of Profile carried in "shadowprof.KEY=VALUE" comments.
_META_KEYS = ("samples", "weight_ns", "lost", "lost_weight_ns", "overhead",
              "overhead_weight_ns", "table_full", "cpu_ns", "per_call_overhead_ns",
              "corrected_ns", "per_call_overhead_err_ns", "covered_ns")
_META_PREFIX = "shadowprof.meta "


# --------------------------------------------------------------------------- encoder


def _model_function_id(pid: int) -> int:
    return pid if pid < SYNTHETIC_ID_BASE else SYNTHETIC_ID_BASE - pid


def _summary(profile, total_ns) -> str:
    """The human-readable first comment.  *profile*: a Profile, or any object with its
    scalars (the live writer's totals); *total_ns*: the sum of its stacks' times."""
    overhead = ((profile.overhead_weight_ns + profile.corrected_ns) / total_ns
                if total_ns else 0.0)
    return (f"shadowprof profile: {profile.mode} mode, {profile.samples} samples "
            f"({Profile.effective_rate_hz.fget(profile):.0f} Hz effective, "
            f"{profile.interval_ns / 1e6:g} ms requested), {profile.lost} lost, "
            f"profiler overhead {100 * overhead:.1f}%")


def comments(profile, total_ns, idle_threads=None, extra=()) -> list:
    """The Profile.comment strings: the summary, ``shadowprof.meta {JSON}`` with the
    scalars in _META_KEYS (and *idle_threads*, {id: name} of threads without samples,
    and the import roots, if any), then *extra*.  Shared by encode() and the live writer (pprof_writer.py)."""
    meta = {k: getattr(profile, k) for k in _META_KEYS}
    if idle_threads:
        meta["threads"] = {str(tid): name for tid, name in idle_threads.items()}
    if profile.roots:
        meta["roots"] = list(profile.roots)
    return [_summary(profile, total_ns),
            _META_PREFIX + _json_dumps(meta), *extra]


def _json_dumps(value) -> str:
    """json.dumps(value, ensure_ascii=False) for the meta comment's values (str, int,
    float, bool, None, and lists and str-keyed dicts of them) without importing json,
    which imports re: the live writer calls comments() in the profiled process.  The
    strings go through the json package's own C escaper."""
    if isinstance(value, str):
        return _encode_str(value)
    if value is None or value is True or value is False:
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float) and value - value == 0:   # finite
        return float.__repr__(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_json_dumps, value)) + "]"
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return "{" + ", ".join(f"{_encode_str(k)}: {_json_dumps(v)}"
                               for k, v in value.items()) + "}"
    import json   # anything else (NaN, other keys): json's own rules
    return json.dumps(value, ensure_ascii=False)


def _encode_str(text: str) -> str:
    if _c_encode_str is None:   # an interpreter without json's accelerator
        import json
        return json.dumps(text, ensure_ascii=False)
    return _c_encode_str(text)


try:
    from _json import encode_basestring as _c_encode_str   # what json.dumps uses
except ImportError:
    _c_encode_str = None


def _interpreter() -> str:
    import sys
    return sys.executable or "python"


def _encode(profile: Profile, extra_comments, level: int) -> bytes:
    sampled = {s.thread_id for s in profile.stacks}
    idle = {tid: name for tid, name in profile.threads.items() if tid not in sampled}
    lines = comments(profile, profile.total_ns, idle, extra_comments)
    return _pprof.encode(profile, lines, _interpreter(), level)


def encode(profile: Profile, extra_comments=()) -> bytes:
    """The uncompressed perftools.profiles.Profile message for *profile*, with
    *extra_comments* after its own."""
    return _encode(profile, extra_comments, 0)


def write_pprof(profile: Profile, f) -> None:
    """Write *profile* to the binary file *f* as gzipped profile.proto."""
    f.write(_encode(profile, (), 6))


# --------------------------------------------------------------------------- decoder

# Plain classes rather than dataclasses: continuous mode imports this module when
# profiling starts (the live writer's comments()), and dataclasses with inspect cost
# the profiled program about 25 ms of CPU (see model.py).

class PprofFunction:
    __slots__ = ("id", "name", "system_name", "filename", "start_line")

    def __init__(self, id, name="", system_name="", filename="", start_line=0):
        self.id = id
        self.name = name
        self.system_name = system_name
        self.filename = filename
        self.start_line = start_line


class PprofLocation:
    __slots__ = ("id", "mapping_id", "address", "lines", "is_folded")

    def __init__(self, id, mapping_id=0, address=0, lines=None, is_folded=False):
        self.id = id
        self.mapping_id = mapping_id
        self.address = address
        self.lines = [] if lines is None else lines   # [(function id, line)], inlined first
        self.is_folded = is_folded


class PprofMapping:
    __slots__ = ("id", "memory_start", "memory_limit", "file_offset", "filename",
                 "build_id", "has_functions", "has_filenames", "has_line_numbers",
                 "has_inline_frames")

    def __init__(self, id, memory_start=0, memory_limit=0, file_offset=0, filename="",
                 build_id="", has_functions=False, has_filenames=False,
                 has_line_numbers=False, has_inline_frames=False):
        self.id = id
        self.memory_start = memory_start
        self.memory_limit = memory_limit
        self.file_offset = file_offset
        self.filename = filename
        self.build_id = build_id
        self.has_functions = has_functions
        self.has_filenames = has_filenames
        self.has_line_numbers = has_line_numbers
        self.has_inline_frames = has_inline_frames


class PprofSample:
    __slots__ = ("location_ids", "values", "labels")

    def __init__(self, location_ids, values, labels=None):
        self.location_ids = location_ids   # leaf first
        self.values = values
        self.labels = [] if labels is None else labels   # [(key, str or None, num, num_unit)]

    def label(self, key: str):
        """The first label named *key*: its string, else its number; None if absent."""
        for k, s, n, _ in self.labels:
            if k == key:
                return s if s is not None else n
        return None


class PprofProfile:
    """Every field of a decoded profile.proto, strings resolved."""

    def __init__(self):
        self.sample_types = []    # [(type, unit)]
        self.samples = []
        self.mappings = {}
        self.locations = {}
        self.functions = {}
        self.string_table = []
        self.drop_frames = ""
        self.keep_frames = ""
        self.time_nanos = 0
        self.duration_nanos = 0
        self.period_type = ("", "")
        self.period = 0
        self.comments = []
        self.default_sample_type = ""


def _varint_at(buf, i: int) -> tuple:
    """(value, next offset) of the varint at *buf[i]*."""
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, i
        shift += 7


def _fields(buf):
    """Yield (field number, wire type, value) of a message: an int for VARINT, I64
    and I32, a memoryview for LEN."""
    i, n = 0, len(buf)
    try:
        while i < n:
            key = buf[i]   # fast paths: one-byte keys, varints and lengths
            i += 1
            if key >= 0x80:
                key, i = _varint_at(buf, i - 1)
            wt = key & 7
            if wt == WT_VARINT:
                v = buf[i]
                i += 1
                if v >= 0x80:
                    v, i = _varint_at(buf, i - 1)
            elif wt == WT_LEN:
                ln = buf[i]
                i += 1
                if ln >= 0x80:
                    ln, i = _varint_at(buf, i - 1)
                if i + ln > n:
                    raise ValueError("truncated pprof message")
                v = buf[i:i + ln]
                i += ln
            elif wt == WT_I64:
                v = int.from_bytes(buf[i:i + 8], "little")
                i += 8
            elif wt == WT_I32:
                v = int.from_bytes(buf[i:i + 4], "little")
                i += 4
            else:
                raise ValueError(f"bad wire type {wt} in pprof message")
            if i > n:
                raise ValueError("truncated pprof message")
            yield key >> 3, wt, v
    except IndexError:
        raise ValueError("truncated pprof message") from None


def _ints(wt, v) -> list:
    """A repeated varint field's values, packed (LEN) or not."""
    if wt != WT_LEN:
        return [v]
    out = []
    append = out.append
    i, n = 0, len(v)
    try:
        while i < n:
            x = v[i]
            i += 1
            if x >= 0x80:
                x, i = _varint_at(v, i - 1)
            append(x)
    except IndexError:
        raise ValueError("truncated pprof message") from None
    return out


def _signed(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def _message(buf, fields: dict) -> dict:
    """Decode a message of scalar fields: {field number: name}; LEN fields as views."""
    out = {}
    for no, wt, v in _fields(buf):
        name = fields.get(no)
        if name is not None:
            out[name] = v
    return out


def decode(data) -> PprofProfile:
    """Decode a pprof file's bytes, gzipped or not."""
    data = bytes(data)
    if data[:2] == b"\x1f\x8b":
        import gzip   # read side only
        data = gzip.decompress(data)
    buf = memoryview(data)
    raw_samples, raw_types, comments = [], [], []
    strings: list = []
    prof = PprofProfile()
    period_type = drop = keep = default = 0
    raw_mappings, raw_locations, raw_functions = [], [], []
    for no, wt, v in _fields(buf):
        if no == PROFILE_SAMPLE_TYPE:
            raw_types.append(v)
        elif no == PROFILE_SAMPLE:
            raw_samples.append(v)
        elif no == PROFILE_MAPPING:
            raw_mappings.append(v)
        elif no == PROFILE_LOCATION:
            raw_locations.append(v)
        elif no == PROFILE_FUNCTION:
            raw_functions.append(v)
        elif no == PROFILE_STRING_TABLE:
            strings.append(bytes(v).decode("utf-8", "surrogateescape"))
        elif no == PROFILE_DROP_FRAMES:
            drop = v
        elif no == PROFILE_KEEP_FRAMES:
            keep = v
        elif no == PROFILE_TIME_NANOS:
            prof.time_nanos = _signed(v)
        elif no == PROFILE_DURATION_NANOS:
            prof.duration_nanos = _signed(v)
        elif no == PROFILE_PERIOD_TYPE:
            period_type = v
        elif no == PROFILE_PERIOD:
            prof.period = _signed(v)
        elif no == PROFILE_COMMENT:
            comments.extend(_ints(wt, v))
        elif no == PROFILE_DEFAULT_SAMPLE_TYPE:
            default = v
    if not strings or strings[0] != "":
        raise ValueError("not a pprof profile: string_table[0] must be the empty string")

    def s(i: int) -> str:
        try:
            return strings[i]
        except IndexError:
            raise ValueError(f"pprof string index {i} out of range") from None

    def value_type(v) -> tuple:
        m = _message(v, {VALUETYPE_TYPE: "t", VALUETYPE_UNIT: "u"})
        return s(m.get("t", 0)), s(m.get("u", 0))

    prof.string_table = strings
    prof.sample_types = [value_type(v) for v in raw_types]
    if period_type:
        prof.period_type = value_type(period_type)
    prof.drop_frames, prof.keep_frames = s(drop), s(keep)
    prof.default_sample_type = s(default)
    prof.comments = [s(i) for i in comments]

    for v in raw_functions:
        m = _message(v, {FUNCTION_ID: "id", FUNCTION_NAME: "name",
                         FUNCTION_SYSTEM_NAME: "system_name", FUNCTION_FILENAME: "file",
                         FUNCTION_START_LINE: "start"})
        fn = PprofFunction(m.get("id", 0), s(m.get("name", 0)),
                           s(m.get("system_name", 0)), s(m.get("file", 0)),
                           _signed(m.get("start", 0)))
        prof.functions[fn.id] = fn
    for v in raw_mappings:
        m = _message(v, {MAPPING_ID: "id", MAPPING_MEMORY_START: "start",
                         MAPPING_MEMORY_LIMIT: "limit", MAPPING_FILE_OFFSET: "offset",
                         MAPPING_FILENAME: "file", MAPPING_BUILD_ID: "build",
                         MAPPING_HAS_FUNCTIONS: "hf", MAPPING_HAS_FILENAMES: "hn",
                         MAPPING_HAS_LINE_NUMBERS: "hl", MAPPING_HAS_INLINE_FRAMES: "hi"})
        mp = PprofMapping(m.get("id", 0), m.get("start", 0), m.get("limit", 0),
                          m.get("offset", 0), s(m.get("file", 0)), s(m.get("build", 0)),
                          bool(m.get("hf")), bool(m.get("hn")), bool(m.get("hl")),
                          bool(m.get("hi")))
        prof.mappings[mp.id] = mp
    for v in raw_locations:
        loc = PprofLocation(0)
        for no, wt, x in _fields(v):
            if no == LOCATION_ID:
                loc.id = x
            elif no == LOCATION_MAPPING_ID:
                loc.mapping_id = x
            elif no == LOCATION_ADDRESS:
                loc.address = x
            elif no == LOCATION_LINE:
                m = _message(x, {LINE_FUNCTION_ID: "f", LINE_LINE: "l"})
                loc.lines.append((m.get("f", 0), _signed(m.get("l", 0))))
            elif no == LOCATION_IS_FOLDED:
                loc.is_folded = bool(x)
        prof.locations[loc.id] = loc
    for v in raw_samples:
        sample = PprofSample([], [])
        for no, wt, x in _fields(v):
            if no == SAMPLE_LOCATION_ID:
                sample.location_ids.extend(_ints(wt, x))
            elif no == SAMPLE_VALUE:
                sample.values.extend(_signed(i) for i in _ints(wt, x))
            elif no == SAMPLE_LABEL:
                m = _message(x, {LABEL_KEY: "k", LABEL_STR: "s", LABEL_NUM: "n",
                                 LABEL_NUM_UNIT: "u"})
                sample.labels.append((s(m.get("k", 0)),
                                      s(m["s"]) if "s" in m else None,
                                      _signed(m.get("n", 0)), s(m.get("u", 0))))
        prof.samples.append(sample)
    return prof


# --------------------------------------------------------------------------- to Profile

_TIME_UNITS = {"nanoseconds": 1, "microseconds": 1_000, "milliseconds": 1_000_000,
               "seconds": 1_000_000_000}


def to_profile(pp: PprofProfile) -> Profile:
    """The Profile a decoded pprof file stands for (see the module docstring)."""
    types = pp.sample_types
    count_i = time_i = calls_i = None
    scale = 1
    for i, (t, u) in enumerate(types):
        if t == "calls" and u == "count":
            calls_i = i
        elif u == "count" and count_i is None:
            count_i = i
        elif u in _TIME_UNITS and time_i is None:
            time_i, scale = i, _TIME_UNITS[u]
    mode = "wall" if time_i is not None and types[time_i][0] == "wall" else "cpu"
    period = pp.period
    if pp.period_type[1] in _TIME_UNITS:
        period *= _TIME_UNITS[pp.period_type[1]]

    functions: dict = {}
    for pid, fn in pp.functions.items():
        fid = _model_function_id(pid)
        functions[fid] = Function(fid, fn.name or fn.system_name, fn.filename,
                                  fn.start_line)
    next_id = max((f for f in functions if f > 0), default=0) + 1
    by_address: dict = {}

    def frames_of(loc_id: int) -> list:
        """Root-first (function id, line) frames of one location."""
        loc = pp.locations.get(loc_id)
        if loc is None:
            raise ValueError(f"pprof sample refers to missing location {loc_id}")
        if not loc.lines:  # not symbolized: one frame named by its address
            nonlocal next_id
            mp = pp.mappings.get(loc.mapping_id)
            name = f"0x{loc.address:x}"
            fid = by_address.get(name)
            if fid is None:
                fid = by_address[name] = next_id
                next_id += 1
                functions[fid] = Function(fid, name, mp.filename if mp else "?", 0)
            return [(fid, 0)]
        return [(_model_function_id(f), line) for f, line in reversed(loc.lines)]

    cache: dict = {}
    stacks, calls, edges, threads = [], {}, {}, {}
    for s in pp.samples:
        v = s.values
        count = v[count_i] if count_i is not None and count_i < len(v) else 0
        if time_i is not None and time_i < len(v):
            weight = v[time_i] * scale
        else:
            weight = count * period
        n_calls = v[calls_i] if calls_i is not None and calls_i < len(v) else 0
        if n_calls and not count and not weight:
            if not s.location_ids:
                continue
            callee = frames_of(s.location_ids[0])[-1][0]
            calls[callee] = calls.get(callee, 0) + n_calls
            if s.label("caller") == "unknown":
                continue
            caller = frames_of(s.location_ids[1])[-1][0] \
                if len(s.location_ids) > 1 else 0
            edges[(caller, callee)] = edges.get((caller, callee), 0) + n_calls
            continue
        frames = []
        for loc_id in reversed(s.location_ids):
            fr = cache.get(loc_id)
            if fr is None:
                fr = cache[loc_id] = frames_of(loc_id)
            frames.extend(fr)
        tid = s.label("thread_id")
        tid = tid if isinstance(tid, int) else 0
        name = s.label("thread")
        if isinstance(name, str):
            threads[tid] = name
        stacks.append(Stack(tid, tuple(frames), count, weight))

    meta = {}
    roots: list = []
    for c in pp.comments:
        if c.startswith(_META_PREFIX):
            import json   # read side only: the writer does without it
            try:
                found = json.loads(c[len(_META_PREFIX):])
            except ValueError:
                continue
            for tid, name in found.pop("threads", {}).items():
                threads[int(tid)] = name
            roots = found.pop("roots", roots)
            meta.update((k, v) for k, v in found.items() if k in _META_KEYS)
    meta.setdefault("samples", sum(s.count for s in stacks))
    meta.setdefault("weight_ns", sum(s.weight_ns for s in stacks))
    if mode == "cpu":
        meta.setdefault("cpu_ns", meta["weight_ns"])
    return Profile(functions=functions, stacks=stacks, calls=calls, edges=edges,
                   mode=mode, interval_ns=period, start_unix_ns=pp.time_nanos,
                   duration_ns=pp.duration_nanos, threads=threads, roots=roots, **meta)


def read_pprof(src) -> Profile:
    """Read a pprof file (a path, or its bytes, gzipped or not) into a Profile."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = src
    else:
        with open(os.fspath(src), "rb") as f:
            data = f.read()
    return to_profile(decode(data))
