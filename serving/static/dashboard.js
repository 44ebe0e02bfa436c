// The dashboard page: fetches /dashboard/data (the key travels as the HttpOnly cookie) and draws hand-written SVG
// charts, one panel per symbol, reloading every data-refresh-seconds. No library, no CDN: it works offline.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const status = document.getElementById("status");
  const panels = document.getElementById("panels");
  const refreshSeconds = Math.max(1, Number(status.dataset.refreshSeconds) || 30);
  const BUCKET_COLOURS = { "1_step": "#2563eb", "1_hour": "#059669", "1_day": "#d97706", "1_week": "#7c3aed" };
  const NY = "America/New_York";
  const timeFormat = new Intl.DateTimeFormat("en-US", {
    timeZone: NY, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
  });
  const dayFormat = new Intl.DateTimeFormat("en-US", { timeZone: NY, month: "2-digit", day: "2-digit" });
  const clockFormat = new Intl.DateTimeFormat("en-US", {
    timeZone: NY, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function fmt(value, digits) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
  }

  // A chart frame: x by position in a sorted list of instants (sessions abut: no overnight gaps), y linear.
  function frame(width, height, instants, values, floor) {
    const pad = { left: 52, right: 10, top: 10, bottom: 22 };
    const finite = values.filter((v) => v !== null && v !== undefined && Number.isFinite(v));
    let lo = Math.min(...finite), hi = Math.max(...finite);
    if (!finite.length) { lo = 0; hi = 1; }
    if (hi === lo) { hi += 1; lo -= 1; }
    const margin = (hi - lo) * 0.06;
    lo -= margin; hi += margin;
    if (floor !== undefined) lo = Math.max(lo, floor);
    const index = new Map(instants.map((t, i) => [t, i]));
    const span = Math.max(instants.length - 1, 1);
    const x = (t) => pad.left + (index.get(t) / span) * (width - pad.left - pad.right);
    const y = (v) => pad.top + (1 - (v - lo) / (hi - lo)) * (height - pad.top - pad.bottom);
    const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
    svg.appendChild(svgEl("line", { class: "axis", x1: pad.left, y1: height - pad.bottom, x2: width - pad.right,
                                    y2: height - pad.bottom }));
    for (let i = 0; i <= 3; i++) {
      const v = lo + ((hi - lo) * i) / 3;
      svg.appendChild(svgEl("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v),
                                      "stroke-opacity": 0.5 }));
      const label = svgEl("text", { x: pad.left - 4, y: y(v) + 3, "text-anchor": "end" });
      label.textContent = Math.abs(hi) >= 100 ? v.toFixed(1) : v.toFixed(2);
      svg.appendChild(label);
    }
    let lastDay = null;
    let lastX = -Infinity;
    for (const t of instants) {
      const day = dayFormat.format(new Date(t));
      if (day !== lastDay && x(t) - lastX > 40 && x(t) < width - pad.right - 30) {
        const label = svgEl("text", { x: x(t), y: height - 6, "text-anchor": "start" });
        label.textContent = day;
        svg.appendChild(label);
        lastX = x(t);
      }
      lastDay = day;
    }
    return { svg, x, y };
  }

  function line(points, x, y, cls) {
    const kept = points.filter((p) => p.v !== null && p.v !== undefined);
    const d = kept.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    return svgEl("path", { class: cls, d: d || "M0,0", "data-points": kept.length });
  }

  function band(path, x, y, lowKey, highKey, cls) {
    const kept = path.filter((p) => p[lowKey] !== null && p[highKey] !== null);
    const upper = kept.map((p) => `${x(p.t).toFixed(1)},${y(p[highKey]).toFixed(1)}`);
    const lower = kept.slice().reverse().map((p) => `${x(p.t).toFixed(1)},${y(p[lowKey]).toFixed(1)}`);
    return svgEl("polygon", { class: cls, points: upper.concat(lower).join(" "), "data-points": kept.length });
  }

  function priceChart(panel) {
    const prices = panel.prices.map((p) => ({ t: Date.parse(p.window), v: p.close }));
    const forecast = panel.forecast;
    const path = forecast
      ? forecast.path.map((p) => ({ t: Date.parse(p.target_window), v: p.predicted_close, lower_80: p.lower_80,
                                    upper_80: p.upper_80, lower_95: p.lower_95, upper_95: p.upper_95 }))
      : [];
    if (!prices.length && !path.length) return el("p", { class: "empty" }, "No bars stored yet.");
    const instants = [...new Set(prices.map((p) => p.t).concat(path.map((p) => p.t)))].sort((a, b) => a - b);
    const values = prices.map((p) => p.v).concat(
      path.flatMap((p) => [p.v, p.lower_95, p.upper_95, p.lower_80, p.upper_80]));
    const { svg, x, y } = frame(640, 220, instants, values);
    svg.setAttribute("data-chart", "prices");
    svg.setAttribute("aria-label", `${panel.symbol} closes and forecast`);
    if (path.length) {
      svg.appendChild(band(path, x, y, "lower_95", "upper_95", "band95"));
      svg.appendChild(band(path, x, y, "lower_80", "upper_80", "band80"));
    }
    svg.appendChild(line(prices, x, y, "actual"));
    if (path.length) {
      const asOf = Date.parse(forecast.as_of_window);
      const origin = prices.filter((p) => p.t <= asOf).slice(-1);
      svg.appendChild(line(origin.concat(path), x, y, "forecast"));
      if (origin.length) {
        svg.appendChild(svgEl("line", { class: "now", x1: x(origin[0].t), x2: x(origin[0].t), y1: 10, y2: 198 }));
      }
    }
    return svg;
  }

  function accuracyChart(panel) {
    const rows = panel.accuracy.filter((r) => r.mape !== null);
    if (!rows.length) return el("p", { class: "empty" }, "No validated forecasts yet.");
    const instants = [...new Set(rows.map((r) => Date.parse(r.window)))].sort((a, b) => a - b);
    const { svg, x, y } = frame(640, 140, instants, rows.map((r) => r.mape), 0);
    svg.setAttribute("data-chart", "accuracy");
    svg.setAttribute("aria-label", `${panel.symbol} forecast error over time`);
    const buckets = [...new Set(rows.map((r) => r.horizon_bucket))].sort();
    for (const bucket of buckets) {
      const points = rows.filter((r) => r.horizon_bucket === bucket).map((r) => ({ t: Date.parse(r.window), v: r.mape }));
      const colour = BUCKET_COLOURS[bucket] || "#6b7280";
      const path = line(points, x, y, "metric");
      path.setAttribute("stroke", colour);
      path.setAttribute("data-bucket", bucket);
      svg.appendChild(path);
      if (points.length <= 40) {  // few points: mark each one (a single point draws no line)
        for (const p of points) {
          svg.appendChild(svgEl("circle", { cx: x(p.t), cy: y(p.v), r: 2.5, fill: colour, "data-bucket": bucket }));
        }
      }
    }
    const wrap = el("div");
    const legend = el("div", { class: "legend" });
    for (const bucket of buckets) {
      const item = el("span", { style: "" }, `MAPE ${bucket.replace("_", " ")} (%)`);
      item.style.setProperty("--c", BUCKET_COLOURS[bucket] || "#6b7280");
      legend.appendChild(item);
    }
    wrap.appendChild(legend);
    wrap.appendChild(svg);
    return wrap;
  }

  function recommendationTable(panel) {
    if (!panel.recommendations.length) return el("p", { class: "empty" }, "No active recommendation.");
    const table = el("table", { "data-table": "recommendations" });
    const head = el("tr");
    for (const h of ["as of", "action", "entry", "exit", "return %", "confidence"]) head.appendChild(el("th", {}, h));
    table.appendChild(head);
    for (const r of panel.recommendations) {
      const row = el("tr", { title: r.reason });
      row.appendChild(el("td", {}, timeFormat.format(new Date(r.as_of_window))));
      row.appendChild(el("td", {}, r.action));
      row.appendChild(el("td", {}, fmt(r.entry_price, 2)));
      row.appendChild(el("td", {}, fmt(r.exit_price, 2)));
      row.appendChild(el("td", {}, fmt(r.predicted_return_pct, 2)));
      row.appendChild(el("td", {}, fmt(r.confidence, 2)));
      table.appendChild(row);
    }
    return table;
  }

  function alertList(panel) {
    if (!panel.alerts.length) return el("p", { class: "empty" }, "No open alert.");
    const list = el("ul", { class: "alerts", "data-list": "alerts" });
    for (const a of panel.alerts) {
      const level = a.level || a.severity.toUpperCase();
      list.appendChild(el("li", { class: `level-${level}` }, `${level} · ${a.kind}: ${a.message}`));
    }
    return list;
  }

  function render(data) {
    const fresh = document.createDocumentFragment();
    for (const panel of data.symbols) {
      const section = el("section", { class: "symbol", "data-symbol": panel.symbol });
      section.appendChild(el("h2", {}, panel.symbol));
      const f = panel.forecast;
      section.appendChild(el("div", { class: "meta" }, f
        ? `Forecast as of ${timeFormat.format(new Date(f.as_of_window))} · model ${f.model_version.slice(0, 12)} · ` +
          `confidence ${fmt(f.confidence, 2)} (${f.confidence_level || "–"})`
        : "No forecast yet."));
      const legend = el("div", { class: "legend" });
      for (const [label, colour] of [["actual close", "#1f2937"], ["forecast", "#2563eb"],
                                     ["80 % band", "rgba(37,99,235,0.4)"], ["95 % band", "rgba(37,99,235,0.18)"]]) {
        const item = el("span", {}, label);
        item.style.setProperty("--c", colour);
        legend.appendChild(item);
      }
      section.appendChild(legend);
      section.appendChild(priceChart(panel));
      section.appendChild(el("h3", {}, "Accuracy over time (day span)"));
      section.appendChild(accuracyChart(panel));
      section.appendChild(el("h3", {}, "Active recommendations"));
      section.appendChild(recommendationTable(panel));
      section.appendChild(el("h3", {}, "Open alerts"));
      section.appendChild(alertList(panel));
      fresh.appendChild(section);
    }
    panels.replaceChildren(fresh);
    const asOf = data.data_as_of ? clockFormat.format(new Date(data.data_as_of)) : "never";
    status.className = "";
    status.textContent = `Data as of ${asOf} New York · refreshed ${clockFormat.format(new Date())} · every ` +
      `${refreshSeconds} s`;
    document.body.setAttribute("data-loaded", String(Number(document.body.dataset.loaded || 0) + 1));
  }

  async function refresh() {
    try {
      const response = await fetch("/dashboard/data", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401 || response.status === 403) {
        window.location.assign("/login");
        return;
      }
      if (!response.ok) throw new Error(`the service answered ${response.status}`);
      render(await response.json());
    } catch (error) {
      status.className = "error";
      status.textContent = `Could not refresh (${error.message}); showing the last data, retrying in ${refreshSeconds} s.`;
    } finally {
      window.setTimeout(refresh, refreshSeconds * 1000);
    }
  }

  refresh();
})();
