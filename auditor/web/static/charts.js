/* Draws the provider page's charts with uPlot (vendor/uPlot.iife.min.js) from the JSON in
   <script type="application/json" id="chart-data">: {charts: [{id, title, unit, kind?, x,
   series: [{label, values}], band?: {low, high}}]}, x in Unix seconds, gaps as null.
   Each chart goes into the <figure data-chart="ID"> of the same id. The tables of the page
   say the same without scripts. */
(function () {
  "use strict";

  var source = document.getElementById("chart-data");
  if (!source || typeof window.uPlot === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  var LINE = "#0b5cad";
  var BAND_LINE = "rgba(30, 123, 52, 0.55)";
  var BAND_FILL = "rgba(30, 123, 52, 0.14)";
  var HEIGHT = 200;

  function format(unit) {
    return function (_u, values) {
      return values.map(function (v) {
        if (v == null) {
          return "";
        }
        if (unit === "pct") {
          return (v * 100).toFixed(v < 0.1 ? 1 : 0) + "%";
        }
        if (unit === "ms") {
          return Math.round(v) + " ms";
        }
        if (unit === "int") {
          return Math.abs(v) >= 1000 ? (v / 1000).toFixed(1) + "k" : String(Math.round(v));
        }
        return Number(v.toPrecision(3)).toString();
      });
    };
  }

  function valueFormat(unit) {
    var f = format(unit);
    return function (u, v) {
      return v == null ? "–" : f(u, [v])[0];
    };
  }

  // Half a step of room at both ends, so the first and last bar or point show whole. A
  // single round gets an hour around it (uPlot alone would stretch it over 1,000 days).
  function padded(x) {
    if (x.length < 2) {
      return function () {
        return x.length ? [x[0] - 1800, x[0] + 1800] : [0, 3600];
      };
    }
    var step = (x[x.length - 1] - x[0]) / (x.length - 1) || 3600;
    return function (_u, min, max) {
      return [min - step / 2, max + step / 2];
    };
  }

  // A y axis as wide as its widest label (tick, gap and text): a fixed width cut "7500 ms"
  // to "500 ms". uPlot asks again once the labels are known, and again while sizes change;
  // from the third time on the size it has is kept, so the layout settles.
  function axisSize(u, values, axisIdx, cycleNum) {
    var axis = u.axes[axisIdx];
    if (cycleNum > 1) {
      return axis._size;
    }
    var size = (axis.ticks.show ? axis.ticks.size : 0) + axis.gap;
    if (values == null) {
      return size + 40;
    }
    u.ctx.font = axis.font[0];
    var widest = 0;
    values.forEach(function (v) {
      widest = Math.max(widest, u.ctx.measureText(String(v == null ? "" : v)).width);
    });
    // the canvas measures in device pixels, the axis is sized in CSS pixels
    return Math.ceil(size + widest / (u.pxRatio || window.devicePixelRatio || 1)) + 2;
  }

  function options(chart, width) {
    var series = [{}];
    chart.series.forEach(function (s) {
      var one = {
        label: s.label,
        stroke: LINE,
        width: 2,
        value: valueFormat(chart.unit),
        points: { show: true, size: 6, fill: LINE }
      };
      if (chart.kind === "bars") {
        one.fill = "rgba(11, 92, 173, 0.35)";
        one.paths = window.uPlot.paths.bars({ size: [0.6, 40] });
        one.points = { show: false };
      }
      series.push(one);
    });
    var opts = {
      width: width,
      height: HEIGHT,
      // the tables say UTC: so do the charts, whatever the browser's time zone
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      scales: { x: { time: true, range: padded(chart.x) } },
      series: series,
      axes: [{}, { values: format(chart.unit), size: axisSize }]
    };
    if (chart.unit === "pct" || chart.kind === "bars") {
      opts.scales.y = { range: function (_u, _min, max) { return [0, max > 0 ? max * 1.1 : 1]; } };
    }
    if (chart.band) {
      var dashed = { width: 1, stroke: BAND_LINE, dash: [4, 4], points: { show: false },
        value: valueFormat(chart.unit) };
      series.push(Object.assign({ label: "honest high" }, dashed));
      series.push(Object.assign({ label: "honest low" }, dashed));
      opts.bands = [{ series: [2, 3], fill: BAND_FILL }];
    }
    return opts;
  }

  function columns(chart) {
    var cols = [chart.x];
    chart.series.forEach(function (s) { cols.push(s.values); });
    if (chart.band) {
      cols.push(chart.band.high);
      cols.push(chart.band.low);
    }
    return cols;
  }

  var plots = [];
  data.charts.forEach(function (chart) {
    var figure = document.querySelector('[data-chart="' + chart.id + '"]');
    var box = figure && figure.querySelector(".plot");
    if (!box || chart.x.length === 0) {
      return;
    }
    var plot = new window.uPlot(options(chart, box.clientWidth || 400), columns(chart), box);
    plots.push({ plot: plot, box: box });
  });

  var pending = null;
  window.addEventListener("resize", function () {
    if (pending !== null) {
      window.clearTimeout(pending);
    }
    pending = window.setTimeout(function () {
      pending = null;
      plots.forEach(function (p) {
        p.plot.setSize({ width: p.box.clientWidth, height: HEIGHT });
      });
    }, 150);
  });
})();
