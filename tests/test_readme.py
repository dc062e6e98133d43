"""The README and docs/ against the code, where that is cheap to check: every
command-line flag they name exists in the help of the command that takes it, every
relative link and anchor resolves, every docs/ page is linked from the README, and
every test they cite as evidence exists."""

import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import run_shadowprof  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
SUBCOMMANDS = ("report", "merge", "diff", "flamegraph")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")


def _pages() -> list:
    pages = [os.path.join(ROOT, "README.md")]
    pages += sorted(os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md"))
    return pages


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _split(text: str):
    """(code lines, prose lines) of a Markdown page: lines inside ``` fences, and the
    others."""
    code, prose, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            code.append(line)
        else:
            prose.append(line)
    return code, prose


_help_cache: dict = {}


def _flags(command: str) -> set:
    """The long flags ``python -m shadowprof [command] --help`` lists."""
    if command not in _help_cache:
        args = ([command] if command else []) + ["--help"]
        r = run_shadowprof(*args)
        assert r.returncode == 0, r.stderr
        _help_cache[command] = set(FLAG.findall(r.stdout))
    return _help_cache[command]


def _command_of(line: str):
    """Which shadowprof command a shell line runs ('' for profiling a program, a
    subcommand's name), or None when it runs another tool."""
    line = re.sub(r"^\$\s*", "", line.strip())
    line = re.sub(r"^(?:[A-Z_]+=\S+\s+)+", "", line)     # environment assignments
    m = re.match(r"(?:python3?\s+-m\s+shadowprof|shadowprof)\s+(\S+)?", line)
    if not m:
        return "" if line.startswith("bash tools/demo.sh") else None
    return m.group(1) if m.group(1) in SUBCOMMANDS else ""


@pytest.mark.parametrize("page", _pages(), ids=os.path.basename)
def test_flags_exist(page):
    code, prose = _split(_read(page))
    every = set().union(*(_flags(c) for c in ("",) + SUBCOMMANDS))
    missing = []
    for line in code:
        command = _command_of(line)
        if command is None:
            continue
        line = line.split("#", 1)[0]                      # not the comment
        missing += [(f, line.strip()) for f in FLAG.findall(line)
                    if f not in _flags(command)]
    for line in prose:
        for span in re.findall(r"`([^`]*)`", line):
            missing += [(f, span) for f in FLAG.findall(span) if f not in every]
    assert not missing, f"{os.path.basename(page)} names flags shadowprof lacks: {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than '-' and '_'
    removed, spaces turned into '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: str) -> set:
    code_free = "\n".join(_split(_read(path))[1])
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+)$", code_free, re.M)}


@pytest.mark.parametrize("page", _pages(), ids=os.path.basename)
def test_links_resolve(page):
    prose = "\n".join(_split(_read(page))[1])
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):                  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path \
            else page
        if not os.path.exists(full):
            bad.append(f"{target}: no file {os.path.relpath(full, ROOT)}")
        elif anchor and full.endswith(".md") and anchor not in _anchors(full):
            bad.append(f"{target}: no heading with anchor #{anchor}")
    assert not bad, f"{os.path.basename(page)}: {bad}"


def test_readme_links_every_doc():
    readme = _read(os.path.join(ROOT, "README.md"))
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", readme))
    pages = {f for f in os.listdir(DOCS) if f.endswith(".md")}
    assert pages and pages <= linked, f"not linked from the README: {pages - linked}"


@pytest.mark.parametrize("page", _pages(), ids=os.path.basename)
def test_cited_tests_exist(page):
    tests = os.listdir(os.path.join(ROOT, "tests"))
    cited = set(re.findall(r"`(?:tests/)?(test_\w+)(?:\.py)?`", _read(page)))
    missing = sorted(t for t in cited if f"{t}.py" not in tests)
    assert not missing, f"{os.path.basename(page)} cites tests that do not exist: {missing}"
