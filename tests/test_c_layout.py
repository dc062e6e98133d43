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
