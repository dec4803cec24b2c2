// Draws every <figure class="chart" data-chart="..."> with uPlot (served from /static/vendor/,
// fetched from the npm registry at build time). The server decides what to draw (web/charts.py);
// this file only draws it: values in the series' unit, the page's shared time range in the
// viewer's time zone, the limit or baseline line, the incident window shaded, "now" marked,
// hover synced across the page, drag to zoom (every chart follows), double-click to reset.
// Also writes each <time data-ts> in the viewer's time zone. Our own code.
(function () {
  "use strict";
  var SYNC = "fleetwatch";
  var plots = [];

  function sig(v) { var t = Number(v.toPrecision(3)); return Math.abs(t) >= 1000 ? t.toLocaleString("en-US") : String(t); }
  function pct(p) {
    if (p === 0) { return "0%"; }
    var a = Math.abs(p);
    return (a >= 10 ? p.toFixed(0) : a >= 1 ? String(Number(p.toFixed(1))) : String(Number(p.toPrecision(2)))) + "%";
  }
  function duration(s) {
    var a = Math.abs(s);
    if (a < 60) { return (a < 10 ? sig(s) : s.toFixed(0)) + " s"; }
    if (a < 3600) { return sig(s / 60) + " min"; }
    if (a < 86400) { return sig(s / 3600) + " h"; }
    return sig(s / 86400) + " d";
  }
  function fmt(v, unit) {
    if (v === null || v === undefined || !isFinite(v)) { return "–"; }
    switch (unit) {
      case "ratio": return pct(v * 100);
      case "percent": return pct(v);
      case "us": return fmt(v / 1000, "ms");
      case "ms": return Math.abs(v) < 1000 ? sig(v) + " ms" : duration(v / 1000);
      case "s": return duration(v);
      case "bytes":
        var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
        while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
        return sig(v) + " " + units[i];
      default: return Math.abs(v) >= 100 || v === Math.round(v) ? Math.round(v).toLocaleString("en-US") : sig(v);
    }
  }

  // Time ticks in 24-hour time, with the date under the first tick of each day (uPlot's
  // [tick size, format, year/month/day rollover formats..., mode] table; times in the viewer's zone).
  var TIME_TICKS = [
    [3600 * 24 * 365, "{YYYY}", null, null, null, null, null, null, 1],
    [3600 * 24 * 28, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600 * 24, "{D} {MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:{mm}", "\n{D} {MMM} {YYYY}", null, "\n{D} {MMM}", null, null, null, 1],
    [60, "{HH}:{mm}", "\n{D} {MMM} {YYYY}", null, "\n{D} {MMM}", null, null, null, 1],
    [1, "{HH}:{mm}:{ss}", "\n{D} {MMM} {YYYY}", null, "\n{D} {MMM}", null, null, null, 1]
  ];

  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#333"; }

  // The incident window (shaded), the limit or baseline (dashed, labelled) and now (a vertical line).
  function overlay(spec) {
    return function (u) {
      var ctx = u.ctx, b = u.bbox, px = window.devicePixelRatio || 1;
      ctx.save();
      ctx.beginPath();
      ctx.rect(b.left, b.top, b.width, b.height);
      ctx.clip();
      if (spec.window) {
        var x0 = u.valToPos(spec.window[0], "x", true), x1 = u.valToPos(spec.window[1], "x", true);
        ctx.fillStyle = "rgba(198, 40, 40, 0.10)";
        ctx.fillRect(Math.max(x0, b.left), b.top, Math.min(x1, b.left + b.width) - Math.max(x0, b.left), b.height);
      }
      ctx.font = (12 * px) + "px system-ui, sans-serif";
      spec.marks.forEach(function (m) {
        var y = u.valToPos(m.value, "y", true);
        ctx.strokeStyle = m.name === "limit" ? css("--crit") : css("--ok");
        ctx.lineWidth = 1.5 * px;
        ctx.setLineDash([6 * px, 4 * px]);
        ctx.beginPath(); ctx.moveTo(b.left, y); ctx.lineTo(b.left + b.width, y); ctx.stroke();
        ctx.fillStyle = ctx.strokeStyle;
        // The limit's label on the left, the baseline's on the right, so the two never overlap.
        ctx.textAlign = m.name === "limit" ? "left" : "right";
        ctx.fillText(m.label, m.name === "limit" ? b.left + 4 * px : b.left + b.width - 40 * px, y - 4 * px);
      });
      if (spec.now !== null && spec.now !== undefined) {
        var xn = u.valToPos(spec.now, "x", true);
        ctx.strokeStyle = css("--fg");
        ctx.lineWidth = 1 * px;
        ctx.setLineDash([2 * px, 3 * px]);
        ctx.beginPath(); ctx.moveTo(xn, b.top); ctx.lineTo(xn, b.top + b.height); ctx.stroke();
        ctx.fillStyle = css("--fg");
        ctx.textAlign = "right";
        ctx.fillText("now", xn - 4 * px, b.top + b.height - 6 * px);
      }
      ctx.restore();
    };
  }

  function yRange(spec) {
    return function (u, lo, hi) {
      var vals = spec.marks.map(function (m) { return m.value; });
      lo = Math.min.apply(null, [0, lo].concat(vals).filter(isFinite));
      hi = Math.max.apply(null, [hi].concat(vals).filter(isFinite));
      if (!isFinite(hi) || hi <= lo) { hi = lo + 1; }
      return [lo, hi + (hi - lo) * 0.08];
    };
  }

  function draw(fig) {
    var spec = JSON.parse(fig.getAttribute("data-chart"));
    var box = fig.querySelector(".plot");
    if (!box || !spec.t.length) { return; }
    var axisFont = "12px system-ui, -apple-system, sans-serif";
    var grid = { stroke: "#e6e9f0", width: 1 };
    var opts = {
      width: Math.max(240, box.clientWidth),
      height: 200,
      cursor: { sync: { key: SYNC, setSeries: false, scales: ["x", null] }, drag: { x: true, y: false } },
      legend: { show: true, live: true },
      scales: { x: { time: true, range: spec.x ? function () { return spec.x; } : null }, y: { range: yRange(spec) } },
      axes: [
        { font: axisFont, stroke: css("--muted"), grid: grid, ticks: grid, space: 70, values: TIME_TICKS, size: 44 },
        { font: axisFont, stroke: css("--muted"), grid: grid, ticks: grid, space: 30,
          values: function (u, vals) { return vals.map(function (v) { return fmt(v, spec.unit); }); },
          size: function (u, values) {
            if (!values) { return 50; }
            u.ctx.font = axisFont;
            var w = Math.max.apply(null, values.map(function (s) { return u.ctx.measureText(s).width; }));
            return Math.ceil(w / (window.devicePixelRatio || 1) * (window.devicePixelRatio || 1)) + 16;
          } }
      ],
      series: [
        { value: "{YYYY}-{MM}-{DD} {HH}:{mm}" },
        { label: spec.label, stroke: "#1565c0", width: 2, fill: "rgba(21, 101, 192, 0.08)", spanGaps: false,
          points: { show: spec.t.length <= 60, size: 6, fill: "#1565c0" },
          value: function (u, v) { return fmt(v, spec.unit); } }
      ],
      hooks: {
        draw: [overlay(spec)],
        setScale: [function (u, key) {
          if (key !== "x" || u._syncing) { return; }
          var min = u.scales.x.min, max = u.scales.x.max;
          plots.forEach(function (o) {
            if (o !== u && (o.scales.x.min !== min || o.scales.x.max !== max)) {
              o._syncing = true; o.setScale("x", { min: min, max: max }); o._syncing = false;
            }
          });
        }]
      }
    };
    box.textContent = "";
    var plot = new window.uPlot(opts, [spec.t, spec.v], box);
    plot.root.setAttribute("aria-hidden", "true");  // the figcaption says it in words
    plot.root.addEventListener("dblclick", function () {
      if (spec.x) { plots.forEach(function (o) { o.setScale("x", { min: spec.x[0], max: spec.x[1] }); }); }
    });
    plots.push(plot);
  }

  function localTimes(root) {
    var now = Date.now();
    root.querySelectorAll("time[data-ts]").forEach(function (el) {
      var d = new Date(Number(el.getAttribute("data-ts")) * 1000);
      if (isNaN(d.getTime())) { return; }
      var p = function (n) { return String(n).padStart(2, "0"); };
      var text = d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes());
      el.textContent = el.hasAttribute("data-short") && (now - d.getTime()) < 86400000 ? p(d.getHours()) + ":" + p(d.getMinutes()) : text;
      el.title = d.toString();
    });
  }

  function drawAll() {
    localTimes(document);
    plots.forEach(function (p) { p.destroy(); });
    plots = [];
    if (!window.uPlot) {
      document.querySelectorAll("figure.chart .plot").forEach(function (box) {
        box.textContent = "Charts need uPlot: run `make setup` (python -m web.assets) where the agent is installed.";
      });
      return;
    }
    document.querySelectorAll("figure.chart[data-chart]").forEach(draw);
  }

  var width = window.innerWidth;
  window.addEventListener("resize", function () {
    if (window.innerWidth === width) { return; }
    width = window.innerWidth;
    plots.forEach(function (p) {
      var box = p.root.parentNode;
      p.setSize({ width: Math.max(240, box.clientWidth), height: 200 });
    });
  });
  document.addEventListener("fleetwatch:refreshed", drawAll);
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", drawAll); } else { drawAll(); }
}());
