"""The house's shape: analysis/ (what reads profiles) never imports the runtime in
profiler/ (the API, command line, start-up hook, continuous writer, C core)."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME = {os.path.splitext(f)[0] for f in os.listdir(os.path.join(ROOT, "profiler"))
           if f.endswith(".py")} | {"_core"}


def _imports(path):
    """(module, names) of every import in *path*, absolute or relative."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", tuple(a.name for a in node.names), node.level


def test_analysis_never_imports_the_runtime():
    offending = []
    folder = os.path.join(ROOT, "analysis")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        for module, names, level in _imports(os.path.join(folder, name)):
            parts = module.split(".") if module else []
            if level >= 2:                        # from .. import x: the runtime
                offending.append((name, "." * level + module))
            elif level == 0 and parts[:1] == ["shadowprof"] and parts[1:2] != ["analysis"]:
                offending.append((name, module))
            elif level == 1 and (parts[:1] and parts[0] in RUNTIME
                                 or not parts and set(names) & RUNTIME):
                offending.append((name, "." + module))
    assert RUNTIME > {"_api", "_startup", "continuous", "__main__"}, RUNTIME
    assert not offending, offending


def test_the_runtime_is_not_in_analysis():
    assert not RUNTIME - {"_core", "__init__"} & {
        os.path.splitext(f)[0] for f in os.listdir(os.path.join(ROOT, "analysis"))}
