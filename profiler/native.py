"""Native (C) frames: symbolization and folding of ``_core.snapshot()`` stacks.

With ``start(native=True)`` the core splices each sample's C stack with its Python
stack; a native frame arrives as ``(-1, pc)``.  This module, run in the profiled
process with the GIL held (never in the signal handler), turns those into ordinary
functions: it finds the object that holds *pc* in ``/proc/self/maps``, reads that
object's ELF symbol tables (``.symtab`` and ``.dynsym``, so static functions that
``dladdr`` cannot name are found too) and its GNU build id, and names the frame
after the function that contains the address.

Interpreter internals (the evaluation loop, the call machinery, start-up) sit between
every two Python frames; they are folded away unless *internals* is true.
"""

from __future__ import annotations

import bisect
import os
import struct

__all__ = ["NativeInfo", "resolve_snapshot", "ElfSymbols", "read_maps"]

# Native function ids: above every id the registry can hand out (32-bit).
NATIVE_ID_BASE = 1 << 32
UNKNOWN = "[unknown native]"

# Interpreter frames folded by default: name prefixes, and exact names.
_FOLD_PREFIXES = (
    "_PyEval_", "PyEval_", "_PyObject_Vectorcall", "PyObject_Vectorcall",
    "_PyObject_Call", "PyObject_Call", "_PyObject_FastCall", "PyObject_FastCall",
    "_PyObject_MakeTpCall", "_PyFunction_Vectorcall", "_PyVectorcall", "PyVectorcall",
    "method_vectorcall", "cfunction_", "vectorcall_", "_PyRun_", "PyRun_", "pymain_",
    "Py_RunMain", "Py_BytesMain", "Py_Main", "run_mod", "run_eval_code_obj", "pyrun_",
    "slot_tp_call", "object_vacall", "builtin_exec", "_PyCFunction", "__libc_start",
)
_FOLD_NAMES = frozenset(("_start", "main", "exec_code_in_module", "__libc_init_first"))


class NativeInfo:
    """Where a native function lives: its object (path, build id, the mapping's
    address range and file offset) and the function's address in this process."""
    __slots__ = ("path", "build_id", "map_start", "map_limit", "map_offset", "address")

    def __init__(self, path, build_id, map_start, map_limit, map_offset, address):
        self.path = path
        self.build_id = build_id
        self.map_start = map_start
        self.map_limit = map_limit
        self.map_offset = map_offset
        self.address = address

    def __eq__(self, other):
        return isinstance(other, NativeInfo) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return f"NativeInfo({self.path!r}, address={self.address:#x})"


class ElfSymbols:
    """The function symbols and build id of one ELF file (64-bit, little-endian),
    plus its loadable segments for turning file offsets into ELF addresses."""

    def __init__(self, path: str):
        self.path = path
        self.build_id = ""
        self.segments = []       # (p_offset, p_vaddr, p_filesz)
        self._starts = []
        self._syms = []          # (start, end, name), sorted by start
        self._fde_starts = []    # function starts from .eh_frame_hdr, sorted
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            return
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        (e_phoff, e_shoff) = struct.unpack_from("<QQ", data, 0x20)
        e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 0x36)
        for i in range(e_phnum):
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
                "<IIQQQQ", data, e_phoff + i * e_phentsize)
            if p_type == 1:       # PT_LOAD
                self.segments.append((p_offset, p_vaddr, p_filesz))
            elif p_type == 4:     # PT_NOTE
                self._notes(data, p_offset, p_filesz)
            elif p_type == 0x6474E550:   # PT_GNU_EH_FRAME: .eh_frame_hdr
                self._eh_frame_hdr(data, p_offset, p_vaddr)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)
                    for i in range(e_shnum)] if e_shoff else []
        syms = {}
        for sh in sections:
            if sh[1] not in (2, 11):   # SHT_SYMTAB, SHT_DYNSYM
                continue
            _, _, _, _, off, size, link, _, _, entsize = sh
            str_off = sections[link][4]
            for st_name, st_info, _, st_shndx, st_value, st_size in struct.iter_unpack(
                    "<IBBHQQ", data[off:off + size - size % (entsize or 24)]):
                if (st_info & 0xF) != 2 or st_shndx == 0 or st_value == 0:  # STT_FUNC
                    continue
                end = data.find(b"\0", str_off + st_name)
                name = data[str_off + st_name:end].decode("utf-8", "replace")
                prev = syms.get(st_value)
                # Prefer a sized, non-alias name; dynsym and symtab repeat each other.
                if prev is None or (prev[0] == st_value and st_size > 0) or \
                        (prev[1] - prev[0] == st_size and name.startswith("_") <
                         prev[2].startswith("_")):
                    syms[st_value] = (st_value, st_value + max(st_size, 1), name)
        self._syms = sorted(syms.values())
        self._starts = [s[0] for s in self._syms]

    def _notes(self, data: bytes, off: int, size: int) -> None:
        end = off + size
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, off)
            name_off = off + 12
            desc_off = name_off + (namesz + 3 & ~3)
            if ntype == 3 and data[name_off:name_off + namesz] == b"GNU\0":
                self.build_id = data[desc_off:desc_off + descsz].hex()
                return
            off = desc_off + (descsz + 3 & ~3)

    def _eh_frame_hdr(self, data: bytes, off: int, vaddr: int) -> None:
        # The unwinder's binary-search table lists the start of every function with
        # unwind info, named or not (stripped libraries keep it).  Only the usual
        # encoding is read: table entries DW_EH_PE_datarel|sdata4 (0x3b).
        version, ptr_enc, count_enc, table_enc = data[off:off + 4]
        if version != 1 or table_enc != 0x3B or count_enc != 0x03 or ptr_enc & 0x0F not in (0x0B, 0x03):
            return
        (count,) = struct.unpack_from("<I", data, off + 8)
        table = off + 12
        self._fde_starts = sorted(vaddr + loc for loc, _ in struct.iter_unpack(
            "<ii", data[table:table + 8 * count]))

    def function_start(self, vaddr: int) -> int | None:
        """Start of the function holding *vaddr*, from the unwind table."""
        i = bisect.bisect_right(self._fde_starts, vaddr) - 1
        return self._fde_starts[i] if i >= 0 else None

    def vaddr(self, file_offset: int) -> int | None:
        """The ELF virtual address of a file offset, or None."""
        for p_offset, p_vaddr, p_filesz in self.segments:
            if p_offset <= file_offset < p_offset + p_filesz:
                return file_offset - p_offset + p_vaddr
        return None

    def lookup(self, vaddr: int):
        """(name, start address) of the function containing *vaddr*, or None."""
        i = bisect.bisect_right(self._starts, vaddr) - 1
        if i >= 0:
            start, end, name = self._syms[i]
            if vaddr < end or end == start + 1:
                return name, start
        return None


def read_maps(path: str = "/proc/self/maps") -> list:
    """Executable file mappings: sorted [(start, limit, file offset, path)]."""
    out = []
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
            continue
        start, limit = (int(x, 16) for x in parts[0].split("-"))
        out.append((start, limit, int(parts[2], 16), parts[5].rstrip("\n")))
    out.sort()
    return out


class _Resolver:
    """Process-wide pc -> native function cache; ids stay stable for the life of the
    process, so snapshots of one session can be subtracted frame by frame."""

    def __init__(self):
        self.maps = []
        self.starts = []
        self.elf = {}
        self.by_pc = {}        # pc -> (fid, NativeInfo, name)
        self.ids = {}          # (path, name) -> fid
        self.functions = {}    # fid -> (name, path, 0)
        self.info = {}         # fid -> NativeInfo

    def refresh(self) -> None:
        self.maps = read_maps()
        self.starts = [m[0] for m in self.maps]

    def _mapping(self, pc: int):
        i = bisect.bisect_right(self.starts, pc) - 1
        if i >= 0 and pc < self.maps[i][1]:
            return self.maps[i]
        return None

    def resolve(self, pc: int):
        hit = self.by_pc.get(pc)
        if hit is not None:
            return hit
        m = self._mapping(pc)
        if m is None:
            self.refresh()
            m = self._mapping(pc)
        if m is None:
            name, path, info = UNKNOWN, "[unknown]", NativeInfo("[unknown]", "", 0, 0, 0, pc)
        else:
            start, limit, offset, path = m
            elf = self.elf.get(path)
            if elf is None:
                elf = self.elf[path] = ElfSymbols(path)
            va = elf.vaddr(pc - start + offset)
            sym = elf.lookup(va) if va is not None else None
            if sym is None:
                # No symbol (a stripped library): the function's start from the
                # unwind table, so that one function is one frame.
                fstart = elf.function_start(va) if va is not None else None
                if fstart is None:
                    name, addr = f"{os.path.basename(path)}+{pc - start + offset:#x}", pc
                else:
                    name, addr = f"{os.path.basename(path)}+{fstart:#x}", pc - (va - fstart)
            else:
                name, sym_va = sym
                addr = pc - (va - sym_va)
            info = NativeInfo(path, elf.build_id, start, limit, offset, addr)
        key = (info.path, name)
        fid = self.ids.get(key)
        if fid is None:
            fid = self.ids[key] = NATIVE_ID_BASE + len(self.ids)
            self.functions[fid] = (name, info.path, 0)
            self.info[fid] = info
        hit = self.by_pc[pc] = (fid, name)
        return hit


_resolver = _Resolver()


def _folded(name: str, path: str, core_path: str) -> bool:
    if path == core_path:
        return True    # shadowprof's own hook
    return name in _FOLD_NAMES or name.startswith(_FOLD_PREFIXES)


def resolve_snapshot(snap: dict, internals: bool = False) -> dict:
    """Rewrite a native snapshot's ``(-1, pc)`` frames as ``(function id, 0)`` frames
    of named native functions, in place, and return *snap*.  Adds
    ``snap["native_info"]``: {function id: NativeInfo}.  Interpreter internals are
    dropped unless *internals*.  A snapshot without native frames is left as it is."""
    if not snap.get("native"):
        return snap
    from . import _core
    core_path = os.path.realpath(_core.__file__)
    functions = snap["functions"]
    used = {}
    fold = {}   # native function id -> folded away?
    stacks = []
    for tid, frames, count, weight in snap["stacks"]:
        out = []
        for fid, x in frames:
            if fid != -1:
                out.append((fid, x))
                continue
            nfid, name = _resolver.resolve(x)
            if not internals:
                folded = fold.get(nfid)
                if folded is None:
                    path = _resolver.functions[nfid][1]
                    if path.startswith("/"):
                        path = os.path.realpath(path)
                    folded = fold[nfid] = _folded(name, path, core_path)
                if folded:
                    continue
            used[nfid] = True
            out.append((nfid, 0))
        stacks.append((tid, tuple(out), count, weight))
    snap["stacks"] = stacks
    for nfid in used:
        functions[nfid] = _resolver.functions[nfid]
    snap["native_info"] = {nfid: _resolver.info[nfid] for nfid in used}
    return snap
