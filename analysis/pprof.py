"""pprof: the gzipped profile.proto of go tool pprof, Pyroscope, Parca and the cloud
profilers; a writer and a reader.

The encoder is ours (a few dozen lines of varints and length-delimited fields; no
protobuf runtime needed), the schema is google/pprof's ``proto/profile.proto``
(``perftools.profiles.Profile``).  What a shadowprof profile looks like in it:

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

import gzip
import json
import os
from dataclasses import dataclass, field

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

_MASK64 = (1 << 64) - 1

# --------------------------------------------------------------------------- encoder


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    """Base-128 varint, low groups first; a negative int64 as its two's complement
    (10 bytes)."""
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    if 0 < n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if 0 < n < 0x200000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    n &= _MASK64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field_no: int, wire_type: int) -> bytes:
    return _varint(field_no << 3 | wire_type)


def _int_field(field_no: int, n: int) -> bytes:
    """A VARINT field; empty for 0 (proto3 default)."""
    if not n:
        return b""
    return _key(field_no, WT_VARINT) + _varint(n)


def _len_field(field_no: int, payload: bytes) -> bytes:
    return _key(field_no, WT_LEN) + _varint(len(payload)) + payload


def _packed_field(field_no: int, values) -> bytes:
    if not values:
        return b""
    return _len_field(field_no, b"".join([_varint(v) for v in values]))


class _Strings:
    """The string table: each string once, index 0 the empty string."""

    def __init__(self):
        self.index = {"": 0}
        self.table = [""]

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def _value_type(strings: _Strings, type_: str, unit: str) -> bytes:
    return (_int_field(VALUETYPE_TYPE, strings(type_)) +
            _int_field(VALUETYPE_UNIT, strings(unit)))


def _pprof_function_id(fid: int) -> int:
    return fid if fid > 0 else SYNTHETIC_ID_BASE - fid


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
            _META_PREFIX + json.dumps(meta, ensure_ascii=False), *extra]


def encode(profile: Profile, extra_comments=()) -> bytes:
    """The uncompressed perftools.profiles.Profile message for *profile*, with
    *extra_comments* after its own."""
    strings = _Strings()
    out = []
    time_type = "wall" if profile.mode == "wall" else "cpu"
    for t, u in (("samples", "count"), (time_type, "nanoseconds"), ("calls", "count")):
        out.append(_len_field(PROFILE_SAMPLE_TYPE, _value_type(strings, t, u)))

    functions = dict(profile.functions)
    function_ids: dict = {}   # fid -> its pprof id, varint-encoded

    def function(fid: int) -> bytes:
        if fid not in functions:  # an id the profile does not name: keep it visible
            functions[fid] = Function(fid, f"<id {fid}>", "?", 0)
        enc = function_ids[fid] = _varint(_pprof_function_id(fid))
        return enc

    # (fid, line) -> the location id, varint-encoded: a stack's packed location_id
    # field is then a join of cached bytes.
    locations: dict = {}
    loc_msgs = []
    key_location = _key(PROFILE_LOCATION, WT_LEN)
    key_loc_id = _key(LOCATION_ID, WT_VARINT)
    loc_mapping = _int_field(LOCATION_MAPPING_ID, MAPPING)
    key_loc_line = _key(LOCATION_LINE, WT_LEN)
    key_line_function = _key(LINE_FUNCTION_ID, WT_VARINT)
    key_line_line = _key(LINE_LINE, WT_VARINT)
    func_get = function_ids.get

    # Native (C) functions (--native): one mapping per object, with its address
    # range, file offset and build id; each location carries the function's address.
    native = getattr(profile, "native", None) or {}
    native_maps: dict = {}   # path -> (mapping id, NativeInfo)

    def native_mapping(fid: int) -> bytes:
        info = native[fid]
        entry = native_maps.get(info.path)
        if entry is None:
            entry = native_maps[info.path] = (MAPPING + 1 + len(native_maps), info)
        return (_int_field(LOCATION_MAPPING_ID, entry[0]) +
                _int_field(LOCATION_ADDRESS, info.address))

    def location(frame: tuple) -> bytes:
        fid, line = frame
        enc = locations[frame] = _varint(len(locations) + 1)
        line_msg = key_line_function + (func_get(fid) or function(fid))
        if line:
            line_msg += key_line_line + _varint(line)
        mapping = native_mapping(fid) if fid in native else loc_mapping
        msg = (key_loc_id + enc + mapping + key_loc_line +
               _ONE_BYTE[len(line_msg)] + line_msg)
        loc_msgs.append(key_location + _ONE_BYTE[len(msg)] + msg)
        return enc

    k_thread, k_thread_id = strings("thread"), strings("thread_id")
    thread_labels: dict = {}

    def labels(tid: int) -> bytes:
        lab = b""
        name = profile.threads.get(tid)
        if name is not None:
            lab += _len_field(SAMPLE_LABEL, _int_field(LABEL_KEY, k_thread) +
                              _int_field(LABEL_STR, strings(name)))
        lab += _len_field(SAMPLE_LABEL, _int_field(LABEL_KEY, k_thread_id) +
                          _int_field(LABEL_NUM, tid))
        thread_labels[tid] = lab
        return lab

    key_locs = _key(SAMPLE_LOCATION_ID, WT_LEN)
    key_values = _key(SAMPLE_VALUE, WT_LEN)
    key_sample = _key(PROFILE_SAMPLE, WT_LEN)
    loc_get = locations.get
    lab_get = thread_labels.get
    varint = _varint
    append = out.append
    for s in profile.stacks:
        encs = list(map(loc_get, reversed(s.frames)))
        if None in encs:
            encs = [e or loc_get(fr) or location(fr)
                    for e, fr in zip(encs, reversed(s.frames))]
        locs = b"".join(encs)
        values = varint(s.count) + varint(round(s.weight_ns)) + b"\0"
        body = b"".join((
            key_locs + varint(len(locs)) + locs if locs else b"",
            key_values, varint(len(values)), values,
            lab_get(s.thread_id) or labels(s.thread_id)))
        append(key_sample + varint(len(body)) + body)
    sampled_threads = set(thread_labels)

    # Exact calls, one sample per edge: [callee, caller] (leaf first).
    into: dict = {}
    for (caller, callee), n in profile.edges.items():
        into[callee] = into.get(callee, 0) + n
        fr = (callee, _first_line(functions, callee))
        locs = loc_get(fr) or location(fr)
        if caller != 0:
            fr = (caller, _first_line(functions, caller))
            locs += loc_get(fr) or location(fr)
        values = b"\0\0" + varint(n)
        body = key_locs + varint(len(locs)) + locs + key_values + \
            varint(len(values)) + values
        append(key_sample + varint(len(body)) + body)
    unknown = None
    for fid, n in profile.calls.items():
        rest = n - into.get(fid, 0)
        if rest:
            if unknown is None:
                unknown = _len_field(SAMPLE_LABEL,
                                     _int_field(LABEL_KEY, strings("caller")) +
                                     _int_field(LABEL_STR, strings("unknown")))
            fr = (fid, _first_line(functions, fid))
            locs = loc_get(fr) or location(fr)
            out.append(_len_field(PROFILE_SAMPLE,
                                  _len_field(SAMPLE_LOCATION_ID, locs) +
                                  _packed_field(SAMPLE_VALUE, (0, 0, rest)) + unknown))

    # One mapping, the interpreter, fully symbolized: tools then neither try to
    # symbolize the locations nor complain that the main binary is unknown.
    out.append(_len_field(PROFILE_MAPPING,
                          _int_field(MAPPING_ID, MAPPING) +
                          _int_field(MAPPING_FILENAME, strings(_interpreter())) +
                          _int_field(MAPPING_HAS_FUNCTIONS, 1) +
                          _int_field(MAPPING_HAS_FILENAMES, 1) +
                          _int_field(MAPPING_HAS_LINE_NUMBERS, 1) +
                          _int_field(MAPPING_HAS_INLINE_FRAMES, 1)))
    for path, (mid, info) in native_maps.items():
        out.append(_len_field(PROFILE_MAPPING,
                              _int_field(MAPPING_ID, mid) +
                              _int_field(MAPPING_MEMORY_START, info.map_start) +
                              _int_field(MAPPING_MEMORY_LIMIT, info.map_limit) +
                              _int_field(MAPPING_FILE_OFFSET, info.map_offset) +
                              _int_field(MAPPING_FILENAME, strings(path)) +
                              _int_field(MAPPING_BUILD_ID, strings(info.build_id)) +
                              _int_field(MAPPING_HAS_FUNCTIONS, 1)))
    out.extend(loc_msgs)
    for fid, fn in functions.items():
        out.append(_len_field(PROFILE_FUNCTION,
                              _int_field(FUNCTION_ID, _pprof_function_id(fid)) +
                              _int_field(FUNCTION_NAME, strings(fn.name)) +
                              _int_field(FUNCTION_SYSTEM_NAME,
                                         strings(_system_name(fn))) +
                              _int_field(FUNCTION_FILENAME, strings(fn.filename)) +
                              _int_field(FUNCTION_START_LINE, fn.firstlineno)))

    out.append(_int_field(PROFILE_TIME_NANOS, profile.start_unix_ns))
    out.append(_int_field(PROFILE_DURATION_NANOS, profile.duration_ns))
    out.append(_len_field(PROFILE_PERIOD_TYPE,
                          _value_type(strings, time_type, "nanoseconds")))
    out.append(_int_field(PROFILE_PERIOD, profile.interval_ns))
    idle = {tid: name for tid, name in profile.threads.items()
            if tid not in sampled_threads}
    lines = comments(profile, profile.total_ns, idle, extra_comments)
    out.append(_packed_field(PROFILE_COMMENT, [strings(c) for c in lines]))
    out.append(_int_field(PROFILE_DEFAULT_SAMPLE_TYPE, strings(time_type)))
    # The string table last: every string has been interned by now.
    out.extend(_len_field(PROFILE_STRING_TABLE, s.encode("utf-8", "surrogateescape"))
               for s in strings.table)
    return b"".join(out)


def _interpreter() -> str:
    import sys
    return sys.executable or "python"


def _system_name(fn) -> str:
    """cProfile's label of a code object, ``file:first line(co_name)``; empty for
    synthetic frames.  It must differ from the name: go tool pprof rewrites names
    equal to their system name that look like demangled C++ ("<module>" would become
    "<unknown>")."""
    if fn.synthetic:
        return ""
    return f"{fn.filename}:{fn.firstlineno}({fn.name.rsplit('.', 1)[-1]})"


def _first_line(functions: dict, fid: int) -> int:
    fn = functions.get(fid)
    return fn.firstlineno if fn is not None else 0


def write_pprof(profile: Profile, f) -> None:
    """Write *profile* to the binary file *f* as gzipped profile.proto."""
    f.write(gzip.compress(encode(profile), compresslevel=6, mtime=0))


# --------------------------------------------------------------------------- decoder

@dataclass
class PprofFunction:
    id: int
    name: str = ""
    system_name: str = ""
    filename: str = ""
    start_line: int = 0


@dataclass
class PprofLocation:
    id: int
    mapping_id: int = 0
    address: int = 0
    lines: list = field(default_factory=list)   # [(function id, line)], inlined first
    is_folded: bool = False


@dataclass
class PprofMapping:
    id: int
    memory_start: int = 0
    memory_limit: int = 0
    file_offset: int = 0
    filename: str = ""
    build_id: str = ""
    has_functions: bool = False
    has_filenames: bool = False
    has_line_numbers: bool = False
    has_inline_frames: bool = False


@dataclass
class PprofSample:
    location_ids: list          # leaf first
    values: list
    labels: list = field(default_factory=list)   # [(key, str or None, num, num_unit)]

    def label(self, key: str):
        """The first label named *key*: its string, else its number; None if absent."""
        for k, s, n, _ in self.labels:
            if k == key:
                return s if s is not None else n
        return None


@dataclass
class PprofProfile:
    """Every field of a decoded profile.proto, strings resolved."""
    sample_types: list = field(default_factory=list)    # [(type, unit)]
    samples: list = field(default_factory=list)
    mappings: dict = field(default_factory=dict)
    locations: dict = field(default_factory=dict)
    functions: dict = field(default_factory=dict)
    string_table: list = field(default_factory=list)
    drop_frames: str = ""
    keep_frames: str = ""
    time_nanos: int = 0
    duration_nanos: int = 0
    period_type: tuple = ("", "")
    period: int = 0
    comments: list = field(default_factory=list)
    default_sample_type: str = ""


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
