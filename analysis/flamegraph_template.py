"""The page of the interactive flame graph (see flamegraph.py): inline style and script,
no network.  ``__TITLE__`` and ``__DATA__`` (the tree as JSON) are filled in."""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font: 13px sans-serif; margin: 8px; background: #fff; color: #000; }
#bar { display: flex; gap: 10px; align-items: center; margin-bottom: 6px; }
#bar input { width: 20em; }
#status { color: #444; }
#chart { position: relative; width: 100%; }
.fr { position: absolute; height: 17px; line-height: 17px; overflow: hidden;
      white-space: nowrap; box-sizing: border-box; border-right: 1px solid #fff;
      border-bottom: 1px solid #fff; padding: 0 3px; cursor: pointer;
      font: 11px monospace; color: #000; }
.fr.anc { opacity: 0.5; }
.fr.match { background: #d04ce8 !important; color: #fff; }
.fr:hover { border: 1px solid #000; }
.lbl { position: absolute; left: 0; height: 17px; line-height: 17px;
       font: bold 12px sans-serif; color: #333; }
#tip { position: fixed; display: none; background: #fffff0; border: 1px solid #888;
       padding: 4px 6px; font: 12px monospace; pointer-events: none;
       white-space: pre; z-index: 10; }
</style>
</head>
<body>
<div id="bar">
  <b id="title"></b>
  <input id="search" type="search" placeholder="search (regular expression)">
  <button id="reset">reset zoom</button>
  <span id="status"></span>
</div>
<div id="chart"></div>
<div id="tip"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var root = D.root, diff = D.diff, unit = D.unit, ROW = 18;
  var chart = document.getElementById("chart");
  var tip = document.getElementById("tip");
  var status = document.getElementById("status");
  var box = document.getElementById("search");
  var zoomed = root, query = null, maxDepth = 0, maxDelta = 0.005;
  var btotal = root.b || 0;
  document.getElementById("title").textContent = D.title;

  // Parent links, depth, self values and (diff) the self-share change.
  function prep(n, p, d) {
    n.p = p; n.d = d; n.c = n.c || [];
    if (d > maxDepth) maxDepth = d;
    var kids = 0, bkids = 0;
    for (var i = 0; i < n.c.length; i++) {
      prep(n.c[i], n, d + 1); kids += n.c[i].v; bkids += n.c[i].b || 0;
    }
    n.self = n.v - kids;
    if (diff) {
      n.bself = (n.b || 0) - bkids;
      n.delta = (root.v ? n.self / root.v : 0) - (btotal ? n.bself / btotal : 0);
      if (d > 0 && Math.abs(n.delta) > maxDelta) maxDelta = Math.abs(n.delta);
    }
  }
  prep(root, null, 0);

  function num(v) {
    return unit === "ns" ? (v / 1e9).toFixed(3) + " s" : Math.round(v) + " samples";
  }
  function pct(a, b) { return b ? (100 * a / b).toFixed(2) + "%" : "-"; }
  function hash(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
    return h >>> 0;
  }
  function color(n) {
    if (n.d === 0) return "hsl(0,0%,80%)";
    if (diff) {
      var k = Math.min(1, Math.abs(n.delta) / maxDelta), c = Math.round(255 - 200 * k);
      return n.delta >= 0 ? "rgb(255," + c + "," + c + ")" : "rgb(" + c + "," + c + ",255)";
    }
    var h = hash(n.n);
    return "hsl(" + (h % 50) + "," + (70 + (h >> 8) % 25) + "%," + (55 + (h >> 16) % 12) + "%)";
  }

  // The panels drawn: one tree, or (diff) the baseline's above the canary's.  Each
  // panel takes its widths from one value of the nodes: v (canary), b (baseline).
  var panels = diff ? [{key: "b", label: "baseline"}, {key: "v", label: "canary"}]
                    : [{key: "v", label: ""}];
  function frame(n, x, w, cls, top) {
    var e = document.createElement("div");
    e.className = cls ? "fr " + cls : "fr";
    e.style.left = x.toFixed(2) + "px";
    e.style.width = w.toFixed(2) + "px";
    e.style.top = (top + n.d * ROW) + "px";
    e.style.background = color(n);
    e.textContent = n.n;
    e.setAttribute("data-name", n.n);
    e.node = n;
    return e;
  }
  function layout(n, x, w, out, key, top) {
    if (w < 0.5) return;             // narrower than half a pixel: not drawn
    out.appendChild(frame(n, x, w, "", top));
    var cx = x;
    for (var i = 0; i < n.c.length; i++) {
      var cw = n[key] ? w * (n.c[i][key] || 0) / n[key] : 0;
      layout(n.c[i], cx, cw, out, key, top);
      cx += cw;
    }
  }
  function render() {
    var W = chart.clientWidth || 1200, out = document.createDocumentFragment();
    var top = 0, height = (maxDepth + 1) * ROW;
    for (var k = 0; k < panels.length; k++) {
      var key = panels[k].key;
      if (panels[k].label) {
        var l = document.createElement("div");
        l.className = "lbl";
        l.style.top = top + "px";
        l.textContent = panels[k].label + " (" + num(root[key] || 0) + ")";
        out.appendChild(l);
        top += ROW;
      }
      for (var a = zoomed.p; a; a = a.p) out.appendChild(frame(a, 0, W, "anc", top));
      if (zoomed[key]) layout(zoomed, 0, W, out, key, top);
      top += height + (k + 1 < panels.length ? ROW : 0);
    }
    chart.textContent = "";
    chart.style.height = top + "px";
    chart.appendChild(out);
    highlight();
  }

  function matcher(q) {
    try { return new RegExp(q, "i"); }
    catch (e) { return new RegExp(q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "i"); }
  }
  function matches(n, re) { return re.test(n.n) || (n.f && re.test(n.f)); }
  function highlight() {
    var frames = chart.children, re = query ? matcher(query) : null, shown = 0;
    for (var i = 0; i < frames.length; i++) {
      if (!frames[i].node) continue;   // a panel's label
      var on = !!(re && frames[i].node.d > 0 && matches(frames[i].node, re));
      frames[i].classList.toggle("match", on);
      if (on) shown++;
    }
    if (!re) { status.textContent = ""; return; }
    // Share of the total in matching frames, each stack counted once (the outermost
    // match), over the whole tree rather than only the drawn frames.
    var total = 0, count = 0;
    (function walk(n) {
      if (n.d > 0 && matches(n, re)) { total += n.v; count++; return; }
      for (var i = 0; i < n.c.length; i++) walk(n.c[i]);
    })(root);
    status.textContent = "search " + JSON.stringify(query) + ": " + shown +
      " frames shown, " + pct(total, root.v) + " of the total";
    status.setAttribute("data-matched", String(shown));
  }
  function setQuery(q, fromHash) {
    query = q || null;
    if (box.value !== (q || "")) box.value = q || "";
    if (!fromHash) {
      var h = q ? "#search=" + encodeURIComponent(q) : "#";
      if (zoomed !== root) h += (q ? "&" : "") + "zoom=" + encodeURIComponent(zoomed.n);
      if (location.hash !== h) history.replaceState(null, "", h);
    }
    highlight();
  }
  function fromHash() {
    var m = /(?:^#|&)search=([^&]*)/.exec(location.hash);
    var z = /(?:^#|&)zoom=([^&]*)/.exec(location.hash);
    if (z) {                         // zoom to the first (shallowest) frame so named
      var want = decodeURIComponent(z[1]), queue = [root], found = null;
      while (queue.length && !found) {
        var n = queue.shift();
        if (n.d > 0 && n.n === want) found = n; else queue = queue.concat(n.c);
      }
      if (found && found !== zoomed) { zoomed = found; render(); }
    }
    setQuery(m ? decodeURIComponent(m[1]) : "", true);
  }

  chart.addEventListener("click", function (ev) {
    var n = ev.target.node;
    if (!n) return;
    zoomed = n.d === 0 ? root : n;
    render();
  });
  chart.addEventListener("mousemove", function (ev) {
    var n = ev.target.node;
    if (!n) { tip.style.display = "none"; return; }
    var t = n.n + (n.f ? "\n" + n.f : "") +
      "\ntotal: " + num(n.v) + ", " + pct(n.v, root.v) + " of all, " +
      pct(n.v, zoomed.v) + " of the zoomed frame" +
      "\nself:  " + num(n.self) + ", " + pct(n.self, root.v) +
      "\nsamples: " + n.s;
    if (diff) {
      t += "\nbaseline self " + pct(n.bself, btotal) + " -> canary " +
        pct(n.self, root.v) + " (" + (n.delta >= 0 ? "+" : "") +
        (100 * n.delta).toFixed(2) + " points)" +
        "\nbaseline total " + pct(n.b || 0, btotal) + " -> canary " + pct(n.v, root.v);
    }
    tip.textContent = t;
    tip.style.display = "block";
    tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - tip.offsetWidth - 4) + "px";
    tip.style.top = (ev.clientY + 14) + "px";
  });
  chart.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  box.addEventListener("input", function () { setQuery(box.value, false); });
  document.getElementById("reset").addEventListener("click", function () {
    zoomed = root; render();
  });
  window.addEventListener("hashchange", fromHash);
  window.addEventListener("resize", render);
  render();
  fromHash();
})();
</script>
</body>
</html>
"""
