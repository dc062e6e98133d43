"""The option table (profiler/_options.py) is the one definition of every option: the
files generated from it are current, and the C parser, the command line, Profiler()
and the start-up defaults accept exactly what it says."""

import inspect
import os
import shutil
import signal
import subprocess
import sys

import pytest

import shadowprof
from shadowprof import _core, _options
from shadowprof import __main__ as cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "tools", "gen_options.py")


def test_generated_files_are_current():
    r = subprocess.run([sys.executable, GEN, "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_check_fails_on_a_stale_file(tmp_path):
    # A copy of the sources with one bound and one default changed in the table:
    # --check names the C table, the README and Profiler's signature as stale, and a
    # run rewrites them to match.
    for rel in ("tools/gen_options.py", "README.md", "profiler/_options.py",
                "profiler/_api.py",
                "profiler/options_table.h", "profiler/options.gperf",
                "profiler/options_keys.h"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        shutil.copy(os.path.join(ROOT, rel), tmp_path / rel)
    table = tmp_path / "profiler" / "_options.py"
    text = table.read_text()
    assert 'lo=8, hi=1_000_000,' in text
    assert '"max_depth", "uint", "xca", "1024",' in text
    table.write_text(text.replace('lo=8, hi=1_000_000,', 'lo=16, hi=1_000_000,')
                     .replace('"max_depth", "uint", "xca", "1024",',
                              '"max_depth", "uint", "xca", "2048",'))
    gen = str(tmp_path / "tools" / "gen_options.py")
    r = subprocess.run([sys.executable, gen, "--check"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "profiler/options_table.h" in r.stderr and "README.md" in r.stderr
    assert "profiler/_api.py" in r.stderr
    r = subprocess.run([sys.executable, gen], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "SP_OPT_MAX_DEPTH_LO 16.0" in (tmp_path / "profiler" /
                                         "options_table.h").read_text()
    assert "max_depth=2048," in (tmp_path / "profiler" / "_api.py").read_text()
    r = subprocess.run([sys.executable, gen, "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_tables_list_every_option():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    cli_part = readme.split("<!-- options:cli begin")[1].split("<!-- options:cli end")[0]
    string_part = readme.split("<!-- options:string begin")[1].split(
        "<!-- options:string end")[0]
    for o in _options.OPTIONS:
        if "c" in o.where:
            assert f"`{'/'.join(o.flags)}" in cli_part, o
        if "x" in o.where:
            assert f"| `{o.key}` |" in string_part, o


def test_option_string_takes_each_x_key_with_its_default():
    xkeys = [o for o in _options.OPTIONS if "x" in o.where]
    for o in xkeys:
        if o.default is not None:
            assert o.dest in _core.parse_options(f"{o.key}={o.default}")
    # and nothing else: a CLI/API-only key is unknown to the option string
    for o in _options.OPTIONS:
        if "x" not in o.where:
            with pytest.raises(ValueError, match=f"unknown option '{o.key}'"):
                _core.parse_options(f"{o.key}=on")
    d = _core.option_defaults()
    assert d["interval_ns"] == 10_000_000 and d["signal"] == signal.SIGUSR2
    assert d["period_ns"] == 0 and d["keep"] == 10 and d["output"] is None
    assert set(d) == {o.dest for o in xkeys}


def test_formats_agree_with_the_writers():
    from shadowprof.analysis import formats
    assert set(_options.FORMATS) == set(formats.FORMATS)


def test_profiler_keywords_are_the_table_rows_with_a():
    params = inspect.signature(shadowprof.Profiler).parameters
    rows = {o.key: o for o in _options.OPTIONS if "a" in o.where}
    assert set(params) == set(rows)
    for key, o in rows.items():
        assert params[key].default == o.value, key
    assert params["max_depth"].default == 1024 and params["native"].default is False
    assert list(params)[:2] == ["interval", "mode"]


def test_api_choices_are_the_tables():
    from shadowprof import _api
    assert _api.HOOK_CHOICES == _options.BY_KEY["hook"].choices
    assert _api.SIGPROF_CHOICES == _options.BY_KEY["sigprof"].choices


def test_start_up_hook_needs_neither_the_table_nor_the_model():
    # python -X shadowprof=quiet: the defaults come from the C table.
    code = ("import sys, shadowprof._startup as s; s.run(); "
            "print(sorted(m for m in sys.modules if m.startswith('shadowprof')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, SHADOWPROF="quiet"))
    assert r.returncode == 0, r.stderr
    loaded = eval(r.stdout)
    assert "shadowprof._api" in loaded and "shadowprof._options" not in loaded
    assert not [m for m in loaded if m.startswith("shadowprof.analysis")], loaded
    assert _core.option_defaults() == _options.defaults()


def test_argparse_is_built_from_the_table():
    parser = cli._parser()
    dests = {a.dest for a in parser._actions} - {"help"}
    assert dests == {o.key for o in _options.OPTIONS if "c" in o.where} | {
        "module", "code"}
    flags = {f for a in parser._actions for f in a.option_strings}
    for o in _options.OPTIONS:
        if "c" in o.where:
            assert set(o.flags) <= flags, o


@pytest.mark.parametrize("ours", [
    [], ["-q"], ["-i", "1ms", "--mode", "wall"], ["--interval=5ms", "-o", "p.json"],
    ["--max-depth", "64", "--top", "5", "--native", "--no-correct-overhead"],
    ["--fork", "stop", "--hook", "eval", "--sigprof", "chain", "--machinery"],
    ["-m", "json.tool"], ["-q", "-c", "pass"], ["-f", "pprof", "--subprocesses"],
    ["--native-internals", "-q", "--mode=cpu"],
])
def test_fast_parser_parses_as_argparse_does(ours):
    fast = cli._fast_parse(ours)
    assert fast is not None, ours
    assert vars(fast) == vars(cli._parser().parse_args(ours))


@pytest.mark.parametrize("ours", [
    ["-h"], ["--help"], ["--mode", "gpu"], ["--max-depth", "x"], ["--out", "p.json"],
    ["-q=1"], ["-i"], ["--unknown"],
])
def test_fast_parser_leaves_the_rest_to_argparse(ours):
    assert cli._fast_parse(ours) is None


def test_interval_rule_is_the_same_everywhere(tmp_path):
    # Profiler(), the option string and the command line read one grammar in C:
    # bare numbers are seconds; 1 or more is ambiguous and refused.
    assert _core.parse_options("interval=0.002") == {"interval_ns": 2_000_000}
    assert shadowprof.Profiler(interval=0.002).interval_ns == 2_000_000
    assert shadowprof.Profiler(interval="0.002").interval_ns == 2_000_000
    for bad in ("interval=5", "interval=10"):
        with pytest.raises(ValueError, match="a bare number is seconds"):
            _core.parse_options(bad)
    assert _core.parse_options("period=60") == {"period_ns": 60_000_000_000}
    for interval in ("0.002", "2s", "100hz"):   # 2s: ns reach the Profiler, not 2.0
        r = subprocess.run([sys.executable, "-m", "shadowprof", "-i", interval, "-q",
                            "-c", "pass"], capture_output=True, text=True,
                           cwd=str(tmp_path))
        assert r.returncode == 0, (interval, r.stderr)
