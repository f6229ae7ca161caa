/* carbonfast's pages: the run report's power chart and the history dashboard, drawn by uPlot.
   Everything read from the page's JSON (labels, commands, hosts: untrusted) reaches the DOM
   through textContent, never as markup. */
var carbonfast = (function () {
  "use strict";
  var COLORS = ["#2a7d4f", "#1f77b4", "#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
    "#17becf", "#7f7f7f", "#bcbd22"];
  var PREFIXES = [["T", 1e12], ["G", 1e9], ["M", 1e6], ["k", 1e3], ["", 1], ["m", 1e-3],
    ["µ", 1e-6], ["n", 1e-9]];

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text != null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function si(x, unit) {
    if (x == null || !isFinite(x)) return "unknown";
    if (x === 0) return "0 " + unit;
    for (var i = 0; i < PREFIXES.length; i++) {
      if (Math.abs(x) >= PREFIXES[i][1]) return +(x / PREFIXES[i][1]).toPrecision(3) + " " + PREFIXES[i][0] + unit;
    }
    return x.toPrecision(3) + " " + unit;
  }

  function grams(kg) { return kg == null ? "unknown" : si(kg * 1e3, "g"); }
  function ci(pair, unit) { return pair ? si(pair[0], unit) + " to " + si(pair[1], unit) : "unknown"; }
  function short(s, n) { s = s == null ? "(no label)" : s; return s.length > n ? s.slice(0, n - 1) + "…" : s; }
  function fromZero(u, min, max) { return [0, max > 0 ? max * 1.08 : 1]; }

  function plot(box, opts, cols) {
    opts.width = Math.max(360, Math.min(1100, box.clientWidth || 900));
    opts.height = opts.height || 300;
    // uPlot's legend sits below the chart, where it covers no line.
    opts.legend = { show: true };
    return new uPlot(opts, cols, box);
  }

  function table(target, head, rows, numeric) {
    target.textContent = "";
    var tr = el("tr");
    head.forEach(function (h, i) { tr.appendChild(el("th", h, numeric[i] ? "n" : "")); });
    target.appendChild(tr);
    rows.forEach(function (cells) {
      var r = el("tr");
      cells.forEach(function (c, i) {
        r.appendChild(c instanceof Node ? wrap(c) : el("td", c, numeric[i] ? "n" : ""));
      });
      target.appendChild(r);
    });
  }
  function wrap(node) { var td = el("td"); td.appendChild(node); return td; }

  // A bar from 0 to `value` with a whisker over [lo, hi], on a scale whose end is `top`.
  function bar(value, lo, hi, top) {
    var b = el("div", null, "bar"), fill = el("span"), whisker = el("i");
    var pct = function (x) { return Math.max(0, Math.min(100, top > 0 ? 100 * x / top : 0)) + "%"; };
    fill.style.width = pct(value || 0);
    b.appendChild(fill);
    if (lo != null && hi != null) {
      whisker.style.left = pct(lo);
      whisker.style.width = "calc(" + pct(hi) + " - " + pct(lo) + ")";
      b.appendChild(whisker);
    }
    return b;
  }

  // The run report: power per domain and in total, from 0 W; estimated domains dashed.
  function run(d) {
    var tr = d.trace;
    if (!tr) return;
    var watts = function (u, v) { return v == null ? "-" : v.toFixed(2) + " W"; };
    var series = [{ label: "time", value: function (u, v) { return v == null ? "-" : v.toFixed(3) + " s"; } }];
    var cols = [tr.t];
    tr.domains.forEach(function (s, i) {
      var line = { label: s.name + (s.estimated ? " (estimated)" : " (measured)"),
        stroke: COLORS[i % COLORS.length], width: 1.5, value: watts };
      if (s.estimated) line.dash = [6, 4];
      series.push(line);
      cols.push(s.w);
    });
    var total = { label: tr.total_estimated ? "total (partly estimated)" : "total",
      stroke: "#111", width: 2.5, value: watts };
    if (tr.total_estimated) total.dash = [10, 4];
    series.push(total);
    cols.push(tr.total);
    plot(document.getElementById("power"), {
      title: "Power per domain and in total",
      scales: { x: { time: false }, y: { range: fromZero } },
      axes: [{ label: "time since the start (s)" }, { label: "power (W)", size: 60 }],
      series: series,
    }, cols);
  }

  // The history dashboard.
  function dashboard(d) {
    var s = d.series, c = s.cells, filter = { label: "", kind: "", from: null, to: null };
    var times = [];
    for (var b = 0; b < s.buckets; b++) times.push(s.t0 + (b + 0.5) * s.width_s);
    var kinds = Object.keys(d.kinds).sort(), select = document.getElementById("f-kind");
    kinds.forEach(function (k) {
      var o = el("option", k + " (" + d.kinds[k] + ")");
      o.value = k;
      select.appendChild(o);
    });
    // Where the filters start (`carbonfast history --html --label ... --kind ...`); kept as
    // attributes too, so that the page as saved says what it showed.
    var selected = d.selected || {}, labelBox = document.getElementById("f-label");
    if (selected.label) { labelBox.value = selected.label; labelBox.setAttribute("value", selected.label); }
    if (selected.kind && d.kinds[selected.kind] != null) {
      select.value = selected.kind;
      select.setAttribute("data-selected", selected.kind);
    }
    var total = kinds.reduce(function (n, k) { return n + d.kinds[k]; }, 0);
    document.getElementById("summary").textContent = total + " records (" +
      kinds.map(function (k) { return d.kinds[k] + " " + k; }).join(", ") + "), as of " + d.generated_at + ".";

    function labelOk(label, other) {
      if (!filter.label) return true;
      return !other && label != null && label.toLowerCase().indexOf(filter.label) >= 0;
    }
    function kindOk(kind) { return !filter.kind || filter.kind === kind; }
    function timeOk(t) { return (filter.from == null || t >= filter.from) && (filter.to == null || t < filter.to); }
    function isoOk(iso) { var t = Date.parse(iso) / 1000; return !iso || isNaN(t) || timeOk(t); }
    function isoSpanOk(first, last) {
      return (filter.to == null || !first || Date.parse(first) / 1000 < filter.to) &&
        (filter.from == null || !last || Date.parse(last) / 1000 >= filter.from);
    }

    var axisJ = { label: "energy", size: 70, values: function (u, v) { return v.map(function (x) { return si(x, "J"); }); } };
    var bars = uPlot.paths.bars({ size: [0.9, 40] });
    var energyChart = plot(document.getElementById("chart-energy"), {
      title: "Energy per time bucket", scales: { y: { range: fromZero } }, axes: [{}, axisJ],
      series: [{}, { label: "energy", stroke: "#2a7d4f", fill: "rgba(42,125,79,.3)", paths: bars,
        value: function (u, v) { return v == null ? "-" : si(v, "J"); } }],
    }, [times, times.map(function () { return null; })]);
    var emissionsChart = plot(document.getElementById("chart-emissions"), {
      title: "Emissions per time bucket, and added up",
      scales: { y: { range: fromZero }, sum: { range: fromZero } },
      axes: [{}, { label: "per bucket (g CO2e)", size: 70 },
        { scale: "sum", side: 1, label: "added up (g CO2e)", size: 70, grid: { show: false } }],
      series: [{}, { label: "per bucket", stroke: "#8c564b", fill: "rgba(140,86,75,.3)", paths: bars,
        value: function (u, v) { return v == null ? "-" : si(v, "g"); } },
      { label: "added up", scale: "sum", stroke: "#111", width: 2,
        value: function (u, v) { return v == null ? "-" : si(v, "g"); } }],
    }, [times, times.map(function () { return null; }), times.map(function () { return null; })]);
    var names = [];
    var labelChart = plot(document.getElementById("chart-labels"), {
      title: "Energy of each label's windows (the 30 largest in the selection)",
      scales: { x: { time: false, range: function (u, min, max) { return [-0.5, Math.max(max, 0) + 0.5]; } }, y: { range: fromZero } },
      axes: [{ space: 60, values: function (u, v) { return v.map(function (i) { return Number.isInteger(i) && names[i] != null ? short(names[i], 12) : ""; }); } }, axisJ],
      series: [{ label: "label", value: function (u, i) { return names[i] == null ? "-" : names[i]; } },
        { label: "energy", stroke: "#1f77b4", fill: "rgba(31,119,180,.3)", paths: bars,
          value: function (u, v) { return v == null ? "-" : si(v, "J"); } }],
    }, [[], []]);

    function updateSeries() {
      var j = times.map(function () { return null; }), kg = j.slice(), n = 0, unknown = 0, sum = 0;
      for (var i = 0; i < c.g.length; i++) {
        var g = s.groups[c.g[i]], b = c.b[i];
        if (!kindOk(g.kind) || !labelOk(g.label, g.other) || !timeOk(times[b])) continue;
        n += c.n[i];
        unknown += c.n[i] - c.known[i];
        if (c.j[i] != null) j[b] = (j[b] || 0) + c.j[i];
        if (c.kg[i] != null) kg[b] = (kg[b] || 0) + c.kg[i] * 1e3;
      }
      var added = kg.map(function (x) { sum += x || 0; return sum; });
      energyChart.setData([times, j]);
      emissionsChart.setData([times, kg, added]);
      var energy = j.reduce(function (a, x) { return a + (x || 0); }, 0);
      document.getElementById("selection").textContent = "Selection: " + n + " records over time, " +
        si(energy, "J") + ", " + si(sum, "g") + " CO2e" +
        (unknown ? "; " + unknown + " of them with unknown energy, not added." : ".") +
        (s.groups.some(function (g) { return g.other; }) ? " Labels past the 20 with the most energy are one group, which a label filter leaves out." : "");
    }

    function updateLabels() {
      var rows = d.labels.filter(function (l) {
        return (!filter.kind || filter.kind === "windows" || filter.kind === "window") &&
          labelOk(l.label, false) && isoSpanOk(l.first_at, l.last_at);
      });
      var top = rows.slice(0, 30);
      names = top.map(function (l) { return l.label; });
      labelChart.setData([top.map(function (l, i) { return i; }), top.map(function (l) { return l.j; })]);
      table(document.getElementById("labels"),
        ["label", "windows", "energy", "mean", "min", "max", "CO2e"],
        rows.slice(0, 50).map(function (l) {
          return [l.label == null ? "(no label)" : l.label, l.count == null ? "?" : l.count,
            si(l.j, "J") + (l.estimated ? " (estimated)" : ""), si(l.mean_j, "J"), si(l.min_j, "J"),
            si(l.max_j, "J"), grams(l.kg)];
        }), [false, true, true, true, true, true, true]);
    }

    function updateBenches() {
      var box = document.getElementById("benches");
      box.textContent = "";
      var shown = d.benches.filter(function (x) { return kindOk("bench") && labelOk(x.label, false) && isoOk(x.started_at); });
      if (!shown.length) box.appendChild(el("p", "No benchmark in the selection.", "note"));
      shown.forEach(function (x) {
        box.appendChild(el("h3", (x.label || "(no label)") + " — #" + x.id + ", " + x.started_at + (x.estimated ? " (estimated)" : "")));
        var top = x.variants.reduce(function (m, v) { return Math.max(m, v.j_ci ? v.j_ci[1] : v.j || 0); }, 0);
        var t = el("table", null, "data");
        table(t, ["variant", "J/call", "95% CI", "", "s/call", "95% CI", "ratio to the best (95% CI)", "difference", "g CO2e / 1M calls"],
          x.variants.map(function (v, i) {
            return [v.name, si(v.j, "J"), ci(v.j_ci, "J"), bar(v.j, v.j_ci && v.j_ci[0], v.j_ci && v.j_ci[1], top),
              si(v.s, "s"), ci(v.s_ci, "s"),
              i === 0 ? "best" : (v.ratio == null ? "unknown" : v.ratio.toPrecision(3) + "x") + (v.ratio_ci ? " (" + v.ratio_ci[0].toPrecision(3) + " to " + v.ratio_ci[1].toPrecision(3) + ")" : ""),
              i === 0 ? "" : v.significant ? "significant" : "not significant",
              v.g_per_m == null ? "unknown" : v.g_per_m.toPrecision(4)];
          }), [false, true, true, false, true, true, true, false, true]);
        box.appendChild(t);
      });
    }

    function updateJobs() {
      var box = document.getElementById("jobs");
      box.textContent = "";
      var shown = 0;
      d.jobs.forEach(function (job) {
        var groups = job.groups.filter(function (g) { return kindOk(g.kind) && labelOk(g.label, false); });
        if (!groups.length || !isoOk(job.started_at)) return;
        shown++;
        box.appendChild(el("h3", "job " + job.job + ", " + job.started_at));
        var rows = [];
        groups.forEach(function (g) {
          var top = g.hosts.reduce(function (m, h) { return Math.max(m, h.j || 0); }, 0);
          rows.push([g.kind, g.label == null ? "(no label)" : g.label, "all hosts", g.world_size == null ? "?" : g.world_size,
            si(g.j, "J") + (g.estimated ? " (estimated)" : "") + (g.missing ? ", " + g.missing + " ranks missing" : ""), ""]);
          g.hosts.forEach(function (h) {
            rows.push(["", "", h.host, h.ranks, si(h.j, "J"), bar(h.j, null, null, top)]);
          });
        });
        var t = el("table", null, "data");
        table(t, ["kind", "label", "host", "ranks", "energy", ""], rows, [false, false, false, true, true, false]);
        box.appendChild(t);
      });
      if (!shown) box.appendChild(el("p", "No distributed job in the selection.", "note"));
    }

    function updateRecords() {
      var rows = d.records.filter(function (r) { return kindOk(r.kind) && labelOk(r.label, false) && isoOk(r.started_at); });
      table(document.getElementById("records"), ["id", "started (UTC)", "kind", "s", "energy", "CO2e", "label", "host"],
        rows.slice(0, 100).map(function (r) {
          return [r.id, (r.started_at || "").slice(0, 19), r.kind, r.s == null ? "?" : r.s.toFixed(3),
            si(r.j, "J") + (r.estimated ? "~" : ""), grams(r.kg), r.label == null ? "" : r.label, r.host || ""];
        }), [true, false, false, true, true, true, false, false]);
    }

    function update() {
      filter.label = document.getElementById("f-label").value.trim().toLowerCase();
      filter.kind = select.value;
      var from = Date.parse(document.getElementById("f-from").value), to = Date.parse(document.getElementById("f-to").value);
      filter.from = isNaN(from) ? null : from / 1000;
      filter.to = isNaN(to) ? null : to / 1000 + 86400;  // the whole of the last day
      updateSeries(); updateLabels(); updateBenches(); updateJobs(); updateRecords();
    }
    ["f-label", "f-kind", "f-from", "f-to"].forEach(function (id) {
      document.getElementById(id).addEventListener("input", update);
    });
    update();
  }

  function start(page) {
    try {
      var data = JSON.parse(document.getElementById("cf-data").textContent);
      (page === "run" ? run : dashboard)(data);
    } catch (e) {
      window.cfError("script error: " + (e && e.message));
    }
    var root = document.documentElement;
    root.setAttribute("data-charts", String(document.querySelectorAll(".uplot canvas").length));
    root.setAttribute("data-ready", "1");
  }

  return { start: start };
})();
