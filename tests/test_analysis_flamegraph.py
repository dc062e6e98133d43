"""shadowprof flamegraph: a self-contained page that headless Chromium renders with the
expected frames, that answers a search and a zoom, and a static SVG.

Chromium is required (CI installs the Debian package ``chromium``): without it these
tests fail rather than skip.  The screenshots are kept in $TEST_UNDECLARED_OUTPUTS_DIR
under Bazel, else in pytest's tmp_path.
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import ana_synth  # noqa: E402
from conftest import run_shadowprof  # noqa: E402

from shadowprof.analysis import flamegraph  # noqa: E402

WIDTH = 1200


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("headless Chromium is needed for this test: apt-get install -y "
                         "chromium (.ci/run installs it)")


def _browser(tmp_path, url: str, *args) -> subprocess.CompletedProcess:
    home = tmp_path / "chromium-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={home / 'profile'}", f"--window-size={WIDTH},700",
           *args, url]
    for attempt in range(2):      # a loaded machine can time the first start out
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=90)
        if r.returncode == 0:
            return r
    raise AssertionError(f"chromium failed ({r.returncode}): {r.stderr[-2000:]}")


def _frames(dom: str) -> list:
    """(classes, name, left px, width px, background) of each rendered frame."""
    out = []
    for m in re.finditer(r'<div class="(fr[^"]*)" data-name="([^"]*)" style="([^"]*)"',
                         dom):
        style = dict(kv.split(":", 1) for kv in m.group(3).split(";") if ":" in kv)
        style = {k.strip(): v.strip() for k, v in style.items()}
        out.append((m.group(1).split(), m.group(2), float(style["left"][:-2]),
                    float(style["width"][:-2]), style.get("background", "")))
    return out


def _artifacts(tmp_path):
    return os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or str(tmp_path)


def _profile(seed=11):
    return ana_synth.draw(ana_synth.SHARES, 4000, random.Random(seed))


def test_page_is_self_contained(tmp_path):
    page = flamegraph.render_html(_profile(), title="t</script><b>")
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and " src=" not in page
    # The title and the data cannot close the script element early.
    assert page.count("</script>") == 2
    assert "<title>t&lt;/script&gt;&lt;b&gt;</title>" in page
    data = re.search(r'<script id="data" type="application/json">(.*?)</script>', page,
                     re.S).group(1)
    assert json.loads(data)["title"] == "t</script><b>"


def test_chromium_renders_frames_search_and_zoom(tmp_path):
    prof = _profile()
    path = tmp_path / "flame.html"
    r = run_shadowprof("flamegraph", _save(prof, tmp_path), "-o", str(path))
    assert r.returncode == 0, r.stderr
    url = path.as_uri()
    counts = {}
    for s in prof.stacks:
        counts[prof.functions[s.frames[-1][0]].name] = s.count
    total = sum(counts.values())

    dom = _browser(tmp_path, url + "#search=" + "%5E(parse%7Crender)", "--dump-dom").stdout
    frames = _frames(dom)
    by_name = {name: (cls, left, width, bg) for cls, name, left, width, bg in frames}
    root_width = by_name["all"][2]
    assert root_width > 600
    # Every function is drawn, at its share of the width.
    for name in ("main", "handle") + ana_synth.LEAVES:
        assert name in by_name, name
    for name, n in counts.items():
        assert abs(by_name[name][2] - root_width * n / total) < 1.0, name
    # The search highlighted exactly the matching frames, and says their share.
    matched = sorted(name for cls, name, *_ in frames if "match" in cls)
    assert matched == ["parse_request", "render_page"], matched
    share = 100 * (counts["parse_request"] + counts["render_page"]) / total
    assert re.search(rf'2 frames shown, {share:.2f}% of the total', dom), share
    shot = os.path.join(_artifacts(tmp_path), "flamegraph_search.png")
    _browser(tmp_path, url + "#search=parse", f"--screenshot={shot}")
    assert os.path.getsize(shot) > 5000

    # Zoom: the zoomed frame takes the whole width, its siblings are gone and its
    # ancestors are drawn dimmed.
    frames = _frames(_browser(tmp_path, url + "#zoom=query_db", "--dump-dom").stdout)
    names = {name: (cls, width) for cls, name, _, width, _ in frames}
    assert abs(names["query_db"][1] - root_width) < 1.0
    assert "parse_request" not in names
    assert "anc" in names["handle"][0] and "anc" in names["all"][0]


def _save(prof, tmp_path, name="p.json"):
    path = tmp_path / name
    path.write_text(prof.to_json())
    return str(path)


def _rgb(bg):
    return tuple(int(x) for x in re.findall(r"\d+", bg)[:3])


def test_chromium_renders_the_differential_flame_graph(tmp_path):
    rng = random.Random(21)
    base = ana_synth.draw(ana_synth.SHARES, 5000, rng)
    canary = ana_synth.draw(ana_synth.shifted(ana_synth.SHARES, 0, 2, 8), 5000, rng)
    page = tmp_path / "diff.html"
    r = run_shadowprof("diff", _save(base, tmp_path, "b.json"),
                       _save(canary, tmp_path, "c.json"), "--flamegraph", str(page))
    assert r.returncode == 1, r.stdout       # the gate fails on the regression
    dom = _browser(tmp_path, page.as_uri(), "--dump-dom").stdout
    colours = {name: _rgb(bg) for _, name, _, _, bg in _frames(dom)}
    # Both trees are drawn: the baseline's above the canary's.
    names = [name for _, name, *_ in _frames(dom)]
    assert names.count("query_db") == 2 and names.count("all") == 2, names
    assert "baseline (" in dom and "canary (" in dom
    red, blue = colours["query_db"], colours["parse_request"]
    assert red[0] == 255 and red[1] < 150 and red[2] < 150, red      # grew: red
    assert blue[2] == 255 and blue[0] < 150, blue                    # shrank: blue
    shot = os.path.join(_artifacts(tmp_path), "flamegraph_diff.png")
    _browser(tmp_path, page.as_uri(), f"--screenshot={shot}")
    assert os.path.getsize(shot) > 5000


def test_static_svg(tmp_path):
    prof = _profile()
    out = tmp_path / "flame.svg"
    r = run_shadowprof("flamegraph", _save(prof, tmp_path), "-o", str(out))
    assert r.returncode == 0, r.stderr
    root = ET.parse(out).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(ns + "title")]
    assert any(t.startswith("parse_request") for t in titles)
    rects = {t.text.split()[0]: float(r.get("width")) for g in root.iter(ns + "g")
             for t in g.iter(ns + "title") for r in g.iter(ns + "rect")}
    assert abs(rects["all"] - WIDTH) < 0.01
    share = sum(s.count for s in prof.stacks if prof.functions[s.frames[-1][0]].name
                == "parse_request") / sum(s.count for s in prof.stacks)
    assert abs(rects["parse_request"] - WIDTH * share) < 0.5
    r = run_shadowprof("flamegraph", _save(prof, tmp_path), "-o", str(tmp_path / "f.png"))
    assert r.returncode == 2 and ".svg" in r.stderr


def test_differential_tree_holds_both_profiles_frames():
    from shadowprof.analysis.model import Function, Profile, Stack
    fns = {1: Function(1, "main", "/v1/app.py", 1),
           2: Function(2, "old", "/v1/app.py", 5),
           3: Function(3, "new", "/v1/app.py", 9)}
    base = Profile(fns, [Stack(1, ((1, 2), (2, 6)), 30, 0)], {}, {}, roots=["/v1"])
    fns2 = {k: f._replace(filename=f.filename.replace("/v1/", "/v2/"))
            for k, f in fns.items()}
    canary = Profile(fns2, [Stack(1, ((1, 2), (3, 10)), 20, 0)], {}, {},
                     roots=["/v2"])
    tree = flamegraph.diff_tree(base, canary)
    (main,) = tree["c"].values()           # one main: matched across v1/ and v2/
    kids = {c["n"]: (c["v"], c["b"]) for c in main["c"].values()}
    assert kids == {"old": (0, 30), "new": (20, 0)}
    page = flamegraph.render_diff_html(base, canary)
    assert '"label": "baseline"' not in page and 'label: "baseline"' in page
