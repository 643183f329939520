"""The interactive sensitivity explorer: a section of report.html and the standalone explorer.html.

The page carries the exact-engine grid of :mod:`synthesis.models.explorer_grid` as embedded JSON
(``ExplorerGrid.to_json()``) and a small inline script (no external resources, no network) that
interpolates it multilinearly as :func:`synthesis.models.explorer_grid.interpolate` does, prints
each model's HR with its 95% credible interval, P(HR < T) and the ``synthesis`` command that
reproduces it, and draws a forest-style strip and the tipping-point map as inline SVG. This
module only formats the numbers it is given.

Element ids (stable; the browser test reads them): controls ``ex-family``, ``ex-tau-scale``,
``ex-bias-mean``, ``ex-bias-sd``, ``ex-alpha``, ``ex-threshold`` (sliders on the log scale for
the tau scale, the bias mean and the bias SD); per model ``ex-hr-<model>`` (``data-median``,
``data-lo``, ``data-hi``), ``ex-p-<model>`` (``data-value``) and ``ex-cmd-<model>``; the
figures ``ex-forest`` and ``ex-tipping``; ``ex-root`` gets ``data-ready="true"`` once drawn.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

#: The standalone page's file name in the report folder.
EXPLORER_FILE = "explorer.html"
#: A page above this size is flagged in its text (too big to mail comfortably).
MAIL_LIMIT_BYTES = 2_000_000
#: tau-prior families as the select box labels them.
FAMILY_LABELS: dict[str, str] = {
    "halfnormal": "half-normal(scale)",
    "halfcauchy": "half-Cauchy(scale)",
    "exponential": "exponential(rate = 1 / scale)",
}

_CSS = """
#ex-root .ex-controls{display:grid;grid-template-columns:max-content minmax(180px,340px) max-content;gap:.35em .8em;
align-items:center;margin:.8em 0}#ex-root input[type=range]{width:100%}#ex-root .ex-val{font-variant-numeric:tabular-nums}
#ex-root code{font-size:.82em;white-space:pre-wrap;word-break:break-all}#ex-root svg{background:#fff;border:1px solid #eee;
margin:.4em .6em .4em 0;max-width:100%}#ex-root .ex-figs{display:flex;flex-wrap:wrap}
#ex-root td.ex-num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var root = document.getElementById("ex-root");
  var D = JSON.parse(document.getElementById("ex-data").textContent);
  var LOGAX = {tau_scale: true, bias_mean: true, bias_sd: true, alpha: false, threshold: true};
  var M = {};
  Object.keys(D.models).forEach(function (name) {
    var m = D.models[name], strides = [], s = 1;
    for (var d = m.shape.length - 1; d >= 0; d--) { strides[d] = s; s *= m.shape[d]; }
    function dec(a, sc) { return a ? a.map(function (v) { return v / sc; }) : null; }
    M[name] = {axes: m.axes, strides: strides, label: m.label, logHr: dec(m.log_hr, D.scale.log_hr),
      z: dec(m.z, D.scale.z), cdfZ: dec(m.cdf_z, D.scale.z), spikeZ: dec(m.spike_z, D.scale.z)};
  });
  var ORDER = Object.keys(D.models);
  function erfc(x) {  // Numerical Recipes erfcc: fractional error < 1.2e-7
    var z = Math.abs(x), t = 1 / (1 + 0.5 * z);
    var r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
    return x >= 0 ? r : 2 - r;
  }
  function Phi(z) { return 0.5 * erfc(-z / Math.SQRT2); }
  function probit(p) {  // the inverse of Phi: Newton's method from a logistic start
    var z = Math.log(p / (1 - p)) / 1.702;
    for (var i = 0; i < 60; i++) {
      var d = (Phi(z) - p) / (Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI));
      z -= d;
      if (Math.abs(d) < 1e-12) break;
    }
    return z;
  }
  var LX = D.axes.cdf_hr.map(Math.log);
  function fromCdf(zc, spike, T) {  // as synthesis.models.explorer_grid._from_cdf
    var G = zc.map(Phi), n = G.length, j0 = LX.indexOf(0);
    function inverse(t) {
      if (t <= G[0]) return LX[0];
      if (t >= G[n - 1]) return LX[n - 1];
      var j = 0;
      while (j < n - 2 && G[j + 1] <= t) j++;
      var dz = zc[j + 1] - zc[j], f = dz <= 0 ? 0 : (probit(t) - zc[j]) / dz;
      return LX[j] + Math.min(Math.max(f, 0), 1) * (LX[j + 1] - LX[j]);
    }
    var q = [0.5, 0.025, 0.975].map(function (pr) {
      if (pr <= G[j0]) return inverse(pr);
      if (pr <= G[j0] + spike) return 0;
      return inverse(pr - spike);
    });
    var lt = Math.log(T), j = 0;
    while (j < n - 2 && LX[j + 1] <= lt) j++;
    var f = (lt - LX[j]) / (LX[j + 1] - LX[j]);
    return {median: Math.exp(q[0]), lo: Math.exp(q[1]), hi: Math.exp(q[2]),
      p: Phi((1 - f) * zc[j] + f * zc[j + 1]) + (T > 1 ? spike : 0)};
  }
  function locate(axis, x, log) {
    var f = log ? Math.log : function (v) { return v; }, a = f(x), n = axis.length;
    if (a <= f(axis[0])) return [0, 0];
    if (a >= f(axis[n - 1])) return [n - 2, 1];
    var i = 0;
    while (i < n - 2 && f(axis[i + 1]) <= a) i++;
    return [i, (a - f(axis[i])) / (f(axis[i + 1]) - f(axis[i]))];
  }
  function answer(name, s) {
    var m = M[name], names = m.axes.slice(1), fam = D.families.indexOf(s.family);
    var idx = names.map(function (a) { return locate(D.axes[a], s[a], LOGAX[a]); });
    var tl = locate(D.axes.threshold, s.threshold, LOGAX.threshold), nT = D.axes.threshold.length;
    var lh = [0, 0, 0], z = 0, nX = LX.length, zc = [], zs = 0;
    for (var k = 0; k < nX; k++) zc.push(0);
    for (var c = 0; c < (1 << names.length); c++) {
      var w = 1, off = fam * m.strides[0];
      for (var d = 0; d < names.length; d++) {
        var bit = (c >> d) & 1;
        w *= bit ? idx[d][1] : 1 - idx[d][1];
        off += (idx[d][0] + bit) * m.strides[d + 1];
      }
      if (w === 0) continue;
      if (m.cdfZ) {
        for (var x = 0; x < nX; x++) zc[x] += w * m.cdfZ[off * nX + x];
        zs += w * m.spikeZ[off];
        continue;
      }
      for (var q = 0; q < 3; q++) lh[q] += w * m.logHr[off * 3 + q];
      z += w * ((1 - tl[1]) * m.z[off * nT + tl[0]] + tl[1] * m.z[off * nT + tl[0] + 1]);
    }
    if (m.cdfZ) return fromCdf(zc, Phi(zs), s.threshold);
    return {median: Math.exp(lh[0]), lo: Math.exp(lh[1]), hi: Math.exp(lh[2]), p: Phi(z)};
  }
  function sig(x, n) { return x === 0 ? 0 : parseFloat(x.toPrecision(n)); }
  function el(id) { return document.getElementById(id); }
  function setting() {
    return {
      family: el("ex-family").value,
      tau_scale: sig(Math.exp(parseFloat(el("ex-tau-scale").value)), 3),
      bias_mean: sig(Math.exp(parseFloat(el("ex-bias-mean").value)), 3),
      bias_sd: sig(Math.exp(parseFloat(el("ex-bias-sd").value)), 3),
      alpha: sig(parseFloat(el("ex-alpha").value), 3),
      threshold: sig(parseFloat(el("ex-threshold").value), 3)
    };
  }
  function tauText(s) {
    var v = s.family === "exponential" ? sig(1 / s.tau_scale, 6) : s.tau_scale;
    return s.family + "(" + v + ")";
  }
  function command(name, s) {
    var file = D.commands.file ? " '" + D.commands.file.replace(/'/g, "'\\''") + "'" : "";
    var mu = D.commands.mu_prior ? " --mu-prior '" + D.commands.mu_prior + "'" : "";
    var tau = " --tau-prior '" + tauText(s) + "'";
    var bias = " --bias-prior 'normal(" + sig(Math.log(s.bias_mean), 6) + ", " + s.bias_sd + ")'";
    var t = " --threshold " + s.threshold;
    if (name === "averaged") return "synthesis average" + file + mu + tau + bias + t;
    if (name === "bias") return "synthesis fit" + file + " --model bias --engine exact" + mu + tau + bias + t;
    if (name === "downweight" && s.alpha > 0)
      return "synthesis fit" + file + " --model bias --bias-variant downweight --alpha " + s.alpha + " --engine exact" + mu + tau + t;
    return "synthesis fit" + file + " --model re --subset rct --engine exact" + mu + tau + t;
  }
  function fmtP(p) { return p < 0.001 ? "< 0.001" : p > 0.999 ? "> 0.999" : p.toFixed(3); }
  var SVGNS = "http://www.w3.org/2000/svg";
  function node(parent, tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }
  function forest(res, s) {
    var svg = el("ex-forest"), W = 560, left = 200, right = 20, rowH = 28, top = 12;
    var H = top + rowH * ORDER.length + 34;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H); svg.setAttribute("width", W); svg.setAttribute("height", H);
    clear(svg);
    var lo = 0.5, hi = 1.25;
    ORDER.forEach(function (n) { lo = Math.min(lo, res[n].lo); hi = Math.max(hi, res[n].hi); });
    lo = Math.log(lo * 0.97); hi = Math.log(hi * 1.03);
    function x(v) { return left + (W - left - right) * (Math.log(v) - lo) / (hi - lo); }
    var base = top + rowH * ORDER.length;
    node(svg, "line", {x1: x(1), x2: x(1), y1: top - 6, y2: base, stroke: "#888"});
    node(svg, "line", {x1: x(s.threshold), x2: x(s.threshold), y1: top - 6, y2: base, stroke: "#b2182b", "stroke-dasharray": "4 3"});
    node(svg, "line", {x1: left, x2: W - right, y1: base, y2: base, stroke: "#333"});
    [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 2, 3].forEach(function (t) {
      if (Math.log(t) < lo || Math.log(t) > hi) return;
      node(svg, "line", {x1: x(t), x2: x(t), y1: base, y2: base + 4, stroke: "#333"});
      node(svg, "text", {x: x(t), y: base + 15, "font-size": 10, "text-anchor": "middle"}, String(t));
    });
    node(svg, "text", {x: (left + W - right) / 2, y: base + 29, "font-size": 10, "text-anchor": "middle"},
      "HR of a randomised comparison (log scale); dashed: T = " + s.threshold);
    ORDER.forEach(function (n, i) {
      var y = top + rowH * i + rowH / 2, r = res[n];
      node(svg, "text", {x: 4, y: y + 4, "font-size": 11}, M[n].label);
      node(svg, "line", {x1: x(r.lo), x2: x(r.hi), y1: y, y2: y, stroke: "#1b4f8a", "stroke-width": 2});
      node(svg, "circle", {cx: x(r.median), cy: y, r: 4.5, fill: "#1b4f8a"});
    });
  }
  function ramp(p) {  // white to dark blue
    var a = [247, 251, 255], b = [8, 48, 107];
    return "rgb(" + a.map(function (v, i) { return Math.round(v + (b[i] - v) * p); }).join(",") + ")";
  }
  function tipping(s) {
    var svg = el("ex-tipping"), W = 440, H = 320, L = 52, R = 12, T = 12, B = 44;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H); svg.setAttribute("width", W); svg.setAttribute("height", H);
    clear(svg);
    var means = D.axes.bias_mean, sds = D.axes.bias_sd;
    var x0 = Math.log(sds[0]), x1 = Math.log(sds[sds.length - 1]), y0 = Math.log(means[0]), y1 = Math.log(means[means.length - 1]);
    function X(v) { return L + (W - L - R) * (Math.log(v) - x0) / (x1 - x0); }
    function Y(v) { return H - B - (H - T - B) * (Math.log(v) - y0) / (y1 - y0); }
    function mid(a, i, lo) {  // cell edge between nodes (log scale), clamped to the axis ends
      if (lo) return i === 0 ? a[0] : Math.sqrt(a[i - 1] * a[i]);
      return i === a.length - 1 ? a[i] : Math.sqrt(a[i] * a[i + 1]);
    }
    var P = [];
    means.forEach(function (b, i) {
      P.push([]);
      sds.forEach(function (sd, j) {
        var p = answer("bias", {family: s.family, tau_scale: s.tau_scale, bias_mean: b, bias_sd: sd, alpha: s.alpha, threshold: s.threshold}).p;
        P[i].push(p);
        node(svg, "rect", {x: X(mid(sds, j, true)), y: Y(mid(means, i, false)), width: X(mid(sds, j, false)) - X(mid(sds, j, true)) + 0.5,
          height: Y(mid(means, i, true)) - Y(mid(means, i, false)) + 0.5, fill: ramp(p)});
      });
    });
    var level = D.tipping ? D.tipping.level : 0.5;
    // marching squares on the node values
    for (var i = 0; i < means.length - 1; i++) {
      for (var j = 0; j < sds.length - 1; j++) {
        var c = [[i, j], [i, j + 1], [i + 1, j + 1], [i + 1, j]], pts = [];
        for (var e = 0; e < 4; e++) {
          var a = c[e], b = c[(e + 1) % 4], va = P[a[0]][a[1]] - level, vb = P[b[0]][b[1]] - level;
          if ((va > 0) !== (vb > 0)) {
            var f = va / (va - vb);
            var lx = Math.log(sds[a[1]]) + f * (Math.log(sds[b[1]]) - Math.log(sds[a[1]]));
            var ly = Math.log(means[a[0]]) + f * (Math.log(means[b[0]]) - Math.log(means[a[0]]));
            pts.push([X(Math.exp(lx)), Y(Math.exp(ly))]);
          }
        }
        for (var k = 0; k + 1 < pts.length; k += 2)
          node(svg, "line", {x1: pts[k][0], y1: pts[k][1], x2: pts[k + 1][0], y2: pts[k + 1][1], stroke: "#000", "stroke-width": 2});
      }
    }
    if (D.tipping) D.tipping.contour.forEach(function (pt) {
      node(svg, "circle", {cx: X(pt[1]), cy: Y(pt[0]), r: 2.2, fill: "#e08214"});
    });
    node(svg, "circle", {cx: X(s.bias_sd), cy: Y(s.bias_mean), r: 6, fill: "#d7301f", stroke: "#fff", "stroke-width": 2, id: "ex-marker"});
    [0.02, 0.05, 0.1, 0.2, 0.5, 1].forEach(function (t) {
      node(svg, "text", {x: X(t), y: H - B + 14, "font-size": 10, "text-anchor": "middle"}, String(t));
    });
    [0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.25].forEach(function (t) {
      node(svg, "text", {x: L - 4, y: Y(t) + 3, "font-size": 10, "text-anchor": "end"}, String(t));
    });
    node(svg, "text", {x: (L + W - R) / 2, y: H - 10, "font-size": 11, "text-anchor": "middle"}, "bias SD (log scale)");
    node(svg, "text", {x: 12, y: (T + H - B) / 2, "font-size": 11, "text-anchor": "middle",
      transform: "rotate(-90 12 " + (T + H - B) / 2 + ")"}, "bias factor b (HR scale)");
  }
  function update() {
    var s = setting(), res = {};
    el("ex-tau-scale-value").textContent = s.tau_scale;
    el("ex-bias-mean-value").textContent = s.bias_mean;
    el("ex-bias-sd-value").textContent = s.bias_sd;
    el("ex-alpha-value").textContent = s.alpha;
    el("ex-threshold-value").textContent = s.threshold;
    ORDER.forEach(function (n) {
      var r = answer(n, s), hr = el("ex-hr-" + n), p = el("ex-p-" + n);
      res[n] = r;
      hr.textContent = r.median.toFixed(2) + " (" + r.lo.toFixed(2) + "\u2013" + r.hi.toFixed(2) + ")";
      hr.dataset.median = r.median; hr.dataset.lo = r.lo; hr.dataset.hi = r.hi;
      p.textContent = fmtP(r.p); p.dataset.value = r.p;
      el("ex-cmd-" + n).textContent = command(n, s);
    });
    el("ex-t-label").textContent = s.threshold;
    forest(res, s);
    tipping(s);
    root.dataset.ready = "true";
  }
  var fam = el("ex-family");
  D.families.forEach(function (f) {
    var o = document.createElement("option"); o.value = f; o.textContent = D.family_labels[f] || f; fam.appendChild(o);
  });
  function slider(id, axis, log, value) {
    var e = el(id), f = log ? Math.log : function (v) { return v; };
    e.min = f(axis[0]); e.max = f(axis[axis.length - 1]); e.step = "any"; e.value = f(value);
  }
  var c = D.current;
  fam.value = c.family;
  slider("ex-tau-scale", D.axes.tau_scale, true, c.tau_scale);
  slider("ex-bias-mean", D.axes.bias_mean, true, c.bias_mean);
  slider("ex-bias-sd", D.axes.bias_sd, true, c.bias_sd);
  slider("ex-alpha", D.axes.alpha, false, c.alpha);
  slider("ex-threshold", D.axes.threshold, false, c.threshold);
  ["ex-family", "ex-tau-scale", "ex-bias-mean", "ex-bias-sd", "ex-alpha", "ex-threshold"].forEach(function (id) {
    el(id).addEventListener("input", update); el(id).addEventListener("change", update);
  });
  update();
})();
"""


def _fmt_axis(values: list[float]) -> str:
    return f"{len(values)} from {values[0]:.3g} to {values[-1]:.3g}"


def describe(data: Mapping[str, Any]) -> str:
    """The grid and its measured accuracy in one paragraph (the page and report.md print it).

    Examples
    --------
    >>> d = {"axes": {"tau_scale": [0.0625, 2.0], "bias_mean": [0.5, 1.25], "bias_sd": [0.02, 1.0],
    ...      "alpha": [0.0, 1.0], "threshold": [0.6, 1.0]}, "families": ["halfnormal"],
    ...      "max_error": {"hr": 0.012, "p": 0.031, "models": {"rct": {"hr": 0.001, "p": 0.002}}}, "n_checks": 100}
    >>> describe(d)  # doctest: +ELLIPSIS
    'Exact-engine answers on a grid (tau prior: 1 families x 2 scales from 0.0625 to 2; ... within 1.2% (relative) and P(HR < T) within 0.031 (absolute); by model: rct 0.1% and 0.002.'
    """
    ax = data["axes"]
    tau = ax["tau_scale"]
    text = (
        f"Exact-engine answers on a grid (tau prior: {len(data['families'])} families x {len(tau)} scales from "
        f"{tau[0]:.3g} to {tau[-1]:.3g}; bias factor b: {_fmt_axis(ax['bias_mean'])}; bias SD: "
        f"{_fmt_axis(ax['bias_sd'])}; alpha: {_fmt_axis(ax['alpha'])}; T: {_fmt_axis(ax['threshold'])}), "
        "interpolated multilinearly between grid points (log HR quantiles, and P(HR < T) through its probit; "
        "for the model average its CDF, whose inverse gives its quantiles). "
    )
    err = data.get("max_error")
    if err:
        text += (
            f"Worst interpolation error measured against direct exact fits at {data['n_checks']} random settings: "
            f"HR median and interval ends within {100 * err['hr']:.2g}% (relative) and P(HR < T) within "
            f"{err['p']:.2g} (absolute)"
        )
        labels = {name: m.get("label", name) for name, m in data.get("models", {}).items()}
        per = err.get("models", {})
        if per:
            text += "; by model: " + "; ".join(
                f"{labels.get(name, name)} {100 * e['hr']:.2g}% and {e['p']:.2g}" for name, e in per.items()
            )
        text += "."
    else:
        text += "The interpolation error was not measured for this grid."
    return text


def _json_script(data: Mapping[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def explorer_section(data: Mapping[str, Any], *, heading: str = "Explore the priors yourself", level: int = 2,
                     size_note: str = "") -> str:
    """The explorer as an HTML fragment (heading, text, controls, outputs, figures, the embedded
    grid and its script): one per page (element ids are fixed).

    ``data`` is ``ExplorerGrid.to_json()``."""
    esc = html.escape
    payload = dict(data) | {"family_labels": FAMILY_LABELS}
    rows = "".join(
        f'<tr><td>{esc(m["label"])}</td><td class="ex-num"><span id="ex-hr-{esc(name)}"></span></td>'
        f'<td class="ex-num"><span id="ex-p-{esc(name)}"></span></td><td><code id="ex-cmd-{esc(name)}"></code></td></tr>'
        for name, m in data["models"].items()
    )
    tip = data.get("tipping")
    tip_text = (
        f" Orange dots: the contour of the report's tipping-point analysis (tau ~ {esc(tip['tau_prior'])}, "
        f"T = {tip['threshold']:g}), for comparison." if tip else ""
    )
    level_p = tip["level"] if tip else 0.5
    notes = "".join(f"<li>{esc(n)}</li>" for n in data.get("notes", []))
    controls = (
        '<label for="ex-family">tau prior</label><select id="ex-family"></select><span></span>'
        '<label for="ex-tau-scale">tau-prior scale</label><input type="range" id="ex-tau-scale"><span class="ex-val" id="ex-tau-scale-value"></span>'
        '<label for="ex-bias-mean">bias factor b (prior mean of the bias, HR scale)</label><input type="range" id="ex-bias-mean">'
        '<span class="ex-val" id="ex-bias-mean-value"></span>'
        '<label for="ex-bias-sd">bias SD (log scale)</label><input type="range" id="ex-bias-sd"><span class="ex-val" id="ex-bias-sd-value"></span>'
        '<label for="ex-alpha">down-weighting alpha</label><input type="range" id="ex-alpha"><span class="ex-val" id="ex-alpha-value"></span>'
        '<label for="ex-threshold">threshold T</label><input type="range" id="ex-threshold"><span class="ex-val" id="ex-threshold-value"></span>'
    )
    return (
        f'<section id="ex-root" data-ready="false"><style>{_CSS}</style>'
        f"<h{level} id=\"explorer\">{esc(heading)}</h{level}>"
        "<p>Move the sliders to ask what the answer would be under other priors: the tau prior (between-study SD), "
        "the design-bias prior delta ~ N(log b, SD²) of the non-randomised studies (design-bias and model-averaged "
        "models), and the weight alpha of the non-randomised studies in the down-weighted model (alpha = 0: the "
        "randomised studies alone; alpha = 1: every study as equal; the bias prior does not enter it). "
        f"{esc(describe(data))} The model-averaged posterior is a spike at HR = 1 (the no-effect models) beside the "
        "effect models' posterior: where both carry weight its median and interval ends jump between neighbouring "
        "settings, so the page reads them off its interpolated CDF (they can sit exactly on 1); close to a jump they "
        "are the least accurate numbers here (its larger HR error); its P(HR &lt; T) has no jumps. "
        f"Each row's command reproduces its numbers with the exact engine.{esc(size_note)}</p>"
        f'<div class="ex-controls">{controls}</div>'
        '<div class="scroll"><table id="ex-table"><thead><tr><th>Model</th><th>HR (95% CrI)</th>'
        f'<th>P(HR &lt; <span id="ex-t-label"></span>)</th><th>Reproduce with</th></tr></thead><tbody>{rows}</tbody></table></div>'
        '<div class="ex-figs"><figure><svg id="ex-forest" xmlns="http://www.w3.org/2000/svg" role="img" '
        'aria-label="pooled HRs"></svg><figcaption>Pooled HR of each model with its 95% credible interval at the '
        "current setting.</figcaption></figure>"
        '<figure><svg id="ex-tipping" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="tipping map"></svg>'
        "<figcaption>P(HR &lt; T) of the design-bias model over the bias prior at the current tau prior and T "
        f"(darker: higher); black line: where it crosses {level_p:g}; red marker: the current setting.{tip_text}"
        "</figcaption></figure></div>"
        + (f"<ul>{notes}</ul>" if notes else "")
        + f'<script type="application/json" id="ex-data">{_json_script(payload)}</script>'
        f"<script>{_SCRIPT}</script></section>"
    )


def _page(title: str, body: str) -> str:
    esc = html.escape
    css = ("body{font-family:-apple-system,\"Segoe UI\",Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;"
           "padding:0 1em;color:#1d1d1d;line-height:1.45}table{border-collapse:collapse;font-size:.86em}"
           "th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}th{background:#f2f2f2}"
           ".scroll{max-width:100%;overflow-x:auto}figure{margin:1em 0}figcaption{font-size:.9em;color:#333}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _size_note(n_bytes: int) -> str:
    mb = n_bytes / 1e6
    text = f" This page is {mb:.2f} MB"
    return text + (" (too big to mail comfortably)." if n_bytes > MAIL_LIMIT_BYTES else ", small enough to mail.")


def explorer_page(data: Mapping[str, Any], *, title: str = "Sensitivity explorer") -> str:
    """The standalone explorer.html: the section alone on a page that states its own size.

    Examples
    --------
    >>> page = explorer_page({"axes": {a: [1.0, 2.0] for a in ("tau_scale", "bias_mean", "bias_sd", "alpha",
    ...                       "threshold")}, "families": ["halfnormal"], "models": {}, "commands": {}})
    >>> page.startswith("<!DOCTYPE html>"), "This page is 0.02 MB" in page
    (True, True)
    """
    body = explorer_section(data, heading="Explore the priors yourself")
    size = len(_page(title, explorer_section(data, size_note=_size_note(len(_page(title, body).encode())))).encode())
    return _page(title, explorer_section(data, size_note=_size_note(size)))


def explorer_markdown(data: Mapping[str, Any]) -> str:
    """The report.md paragraph pointing to the interactive page.

    Examples
    --------
    >>> explorer_markdown({"axes": {a: [1.0, 2.0] for a in ("tau_scale", "bias_mean", "bias_sd", "alpha",
    ...                    "threshold")}, "families": ["halfnormal"]}).startswith("Open [explorer.html]")
    True
    """
    return (
        f"Open [{EXPLORER_FILE}]({EXPLORER_FILE}) (or this section of report.html) in a browser to move the "
        "tau prior, the bias prior, the down-weighting alpha and the threshold T and read each model's HR, "
        "P(HR < T) and the command that reproduces them. " + describe(data) + "\n"
    )


#: The section's heading in report.html and report.md.
SECTION_TITLE = "Explore the priors yourself"


def _grid_json(result: Any) -> dict[str, Any] | None:
    """The explorer's embedded data (``result.explorer``: an ``ExplorerGrid``, a
    ``DeferredExplorer`` or ``None``)."""
    grid = getattr(result, "explorer", None)
    return None if grid is None else grid.to_json()


def add_explorer(doc: Any, result: Any) -> None:
    """The explorer section of report.html (the interactive section itself) and report.md (a
    pointer to explorer.html); when the analysis has no explorer, the reason."""
    data = _grid_json(result)
    if data is None:
        doc.heading(2, SECTION_TITLE, "explorer")
        doc.para("Not computed: the explorer varies the design-bias prior and the weight of the non-randomised "
                 "studies, so it needs both randomised and non-randomised studies (or see the warnings).")
        return
    size = len(explorer_page(data).encode())
    note = f" The same explorer is on its own in {EXPLORER_FILE} ({size / 1e6:.2f} MB)."
    doc.html.append(explorer_section(data, heading=SECTION_TITLE, size_note=note))
    doc.md.append(f"## {SECTION_TITLE}\n")
    doc.md.append(explorer_markdown(data))


def write_explorer(result: Any, root: Any) -> None:
    """Write explorer.html into the report folder ``root`` (nothing without an explorer)."""
    data = _grid_json(result)
    if data is not None:
        (root / EXPLORER_FILE).write_text(explorer_page(data), encoding="utf-8")
