"""The C core's files depend on each other one way.

A file "uses" another when it includes its header (profiler/X.c and profiler/X.h are
one unit, X).  The units must form no circle, and the two trackers (tracker.h) must
not know each other: only backend.c names them both.
"""
import os
import re

PROFILER = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "profiler")
INCLUDE = re.compile(r'^\s*#\s*include\s+"(\w+)\.h"', re.M)


def uses():
    """{unit: set of units it includes}, from profiler/*.c and *.h."""
    graph = {}
    for name in sorted(os.listdir(PROFILER)):
        stem, ext = os.path.splitext(name)
        if ext not in (".c", ".h"):
            continue
        with open(os.path.join(PROFILER, name), encoding="utf-8") as f:
            included = set(INCLUDE.findall(f.read()))
        graph.setdefault(stem, set()).update(included - {stem})
    return graph


def find_circle(graph):
    """A list of units that include each other in a circle, or None."""
    state = {}
    path = []

    def visit(u):
        state[u] = "open"
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == "open":
                return path[path.index(v):] + [v]
            if v not in state:
                found = visit(v)
                if found:
                    return found
        path.pop()
        state[u] = "done"
        return None

    for u in sorted(graph):
        if u not in state:
            found = visit(u)
            if found:
                return found
    return None


def test_no_circle_of_files():
    circle = find_circle(uses())
    assert circle is None, "profiler/ files include each other in a circle: " + " -> ".join(circle)


def test_find_circle_finds_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_trackers_do_not_know_each_other():
    graph = uses()
    trackers = {"pep523", "monitoring"}
    assert trackers <= set(graph)
    for t in trackers:
        assert not (graph[t] & (trackers - {t})), t + " includes the other tracker"
        assert "backend" not in graph[t], t + " includes the selection of trackers"
    knowers = sorted(u for u, used in graph.items() if trackers <= used)
    assert knowers == ["backend"]



# ---------------------------------------------------------------------------
# Globals: a mutable global is written only by the file that defines it.  The pieces
# of a session are handed the session object (session_state.h) instead.

EXTERN = re.compile(r"^\s*extern\s+([^;]*);", re.M)
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
ATTRIBUTE = re.compile(r"__attribute__\s*\(\(.*\)\)")
DECLARED_NAME = re.compile(r"(\w+)\s*(?:\[[^\]]*\])?\s*(?:,|$)")

# What session.c once wired by assigning other files' globals (issue #14).
SESSION_WIRING = ("sp_sampler_ring", "sp_drain_table", "sp_sampler_draining")


def source(name):
    """profiler/name without its comments."""
    with open(os.path.join(PROFILER, name), encoding="utf-8") as f:
        return COMMENT.sub(" ", f.read())


def c_files():
    return sorted(n for n in os.listdir(PROFILER) if n.endswith(".c"))


def globals_by_file():
    """{name: the .c file defining it} of every mutable global a header declares."""
    owners = {}
    for name in sorted(os.listdir(PROFILER)):
        if not name.endswith(".h"):
            continue
        for decl in EXTERN.findall(source(name)):
            decl = ATTRIBUTE.sub(" ", decl).strip()
            if decl.startswith('"') or re.match(r"const\b", decl) or "(" in decl:
                continue   # extern "C", constants and functions: nobody assigns them
            for var in DECLARED_NAME.findall(decl):
                owners[var] = name[:-2] + ".c"
    return owners


def assignments(text, var):
    """The lines of C `text` that store into `var`, or a member or element of it: by
    =, op=, ++, --, or as the destination of an __atomic builtin or memset/memcpy.
    A store through a pointer the global holds (p->x = ...) leaves the global as it
    was and is not one."""
    lvalue = r"\b%s\b(?:\s*(?:\[[^\]]*\]|\.\w+))*(?!\s*->)" % re.escape(var)
    store = re.compile(
        r"%(lv)s\s*(?:[-+*/%%&|^]|<<|>>)?=(?!=)"
        r"|%(lv)s\s*(?:\+\+|--)|(?:\+\+|--)\s*%(lv)s"
        r"|\b(?:__atomic_(?!load)\w+|memset|memcpy)\s*\(\s*&\s*%(lv)s" % {"lv": lvalue})
    return [line.strip() for line in text.splitlines() if store.search(line)]


def test_assignments_finds_stores():
    text = ("a = 1;\nb.x += 2;\nc[3].y++;\n--d;\n__atomic_store_n(&e.f, 0, 0);\n"
            "memset(&g, 0, n);\nif (h == 1 || i <= 2) j(h, &i);\n"
            "k = __atomic_load_n(&l, 0);\nm->n = 0;\n")
    found = {v for v in "abcdefghijklm" if assignments(text, v)}
    assert found == {"a", "b", "c", "d", "e", "g", "k"}


def test_globals_are_found():
    owners = globals_by_file()
    # A plain global, a thread-local with an attribute, a volatile one.
    assert owners.get("sp_threads") == "shadow.c"
    assert owners.get("sp_tls") == "shadow.c"
    assert owners.get("sp_native_on") == "native.c"
    assert not any(name.startswith("sp_tracker_pep523") for name in owners)   # const


def test_no_file_assigns_another_files_global():
    owners = globals_by_file()
    found = []
    for name in c_files():
        text = source(name)
        for var, owner in sorted(owners.items()):
            if owner != name:
                found += ["%s: %s" % (name, line) for line in assignments(text, var)]
    assert not found, "assignments to another file's global:\n" + "\n".join(found)


def test_session_wiring_is_not_global():
    """The ring, the table and the draining thread live in the session object, handed
    to the sampler and the drain: no header exports them, no file assigns them."""
    owners = globals_by_file()
    assert not set(SESSION_WIRING) & set(owners), sorted(set(SESSION_WIRING) & set(owners))
    for name in c_files():
        text = source(name)
        for var in SESSION_WIRING:
            assert not assignments(text, var), (name, var)


# ---------------------------------------------------------------------------
# Clocks: read through profiler/clock.h only.

CLOCK_ALLOWED = {"clock.h"}
NS_FROM_TIMESPEC = re.compile(r"tv_sec\s*\*\s*(?:1000000000|1e9|SP_NS_PER_SEC)")


def test_clocks_are_read_in_clock_h_only():
    found = []
    for name in sorted(os.listdir(PROFILER)):
        if not name.endswith((".c", ".h")) or name in CLOCK_ALLOWED:
            continue
        text = source(name)
        if "clock_gettime" in text or NS_FROM_TIMESPEC.search(text):
            found.append(name)
    assert not found, "clock_gettime or a timespec->ns conversion outside clock.h: %s" % found


def test_frame_hint_layout_is_asserted_at_build_time():
    """The 3.11 position hint lives in _PyInterpreterFrame's padding (compat.h).
    Python cannot see that struct's offsets (no ctypes view of it), so the check is
    the build itself: static asserts that owner is at 69 and localsplus at 72 on
    64-bit 3.11, and that 2 bytes of padding follow owner.  This test keeps them."""
    with open(os.path.join(PROFILER, "compat.h"), encoding="utf-8") as f:
        text = f.read()
    assert "offsetof(sp_pyframe_t, owner) == 69" in text
    assert "offsetof(sp_pyframe_t, localsplus) == 72" in text
    assert "SP_FRAME_HINT_OFFSET + 2 <= offsetof(sp_pyframe_t, localsplus)" in text
