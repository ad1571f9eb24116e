// The overview page: charts of up to the last hour from GET /v1/stats,
// drawn as SVG by hand, refreshed every interval. The window is scaled to
// the data (at least five minutes), so a new node's first requests are
// bars, not slivers at the right edge of an empty hour.
"use strict";

(() => {
  const { api, el, status, fmtNum } = dso;
  const svgNS = "http://www.w3.org/2000/svg";
  const H = 120;
  const minSlots = 30, maxSlots = 360; // buckets on the x axis: 5 min to the hour

  function svg(tag, attrs) {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  // series: [{name, cls, values}] with values aligned on the slots;
  // kind "line" or "bars" (stacked).
  function chart(id, title, unit, series, kind, summary, span) {
    const W = series[0].values.length;
    const all = kind === "bars"
      ? series[0].values.map((_, i) => series.reduce((s, x) => s + (x.values[i] || 0), 0))
      : series.flatMap((s) => s.values.filter((v) => v !== null));
    const top = unit === "%" ? 100 : Math.max(1e-9, ...all); // a share is drawn against its whole
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "chart", role: "img", "aria-label": title });
    g.append(svg("line", { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, class: "axis" }));
    const y = (v) => H - 2 - (v / top) * (H - 12);
    if (kind === "bars") {
      const base = new Array(W).fill(0);
      for (const s of series) {
        s.values.forEach((v, i) => {
          if (!v) return;
          const y0 = y(base[i]), y1 = y(base[i] + v);
          g.append(svg("rect", { x: i, y: y1, width: 1, height: Math.max(0.5, y0 - y1), class: s.cls }));
          base[i] += v;
        });
      }
    } else {
      for (const s of series) {
        let d = "";
        let pen = false;
        s.values.forEach((v, i) => {
          if (v === null) { pen = false; return; }
          d += (pen ? "L" : "M") + i + " " + y(v).toFixed(1) + " ";
          pen = true;
        });
        if (d) g.append(svg("path", { d, class: "line " + s.cls }));
        // A point with no neighbour draws no line: mark it.
        s.values.forEach((v, i) => {
          if (v !== null && (s.values[i - 1] ?? null) === null && (s.values[i + 1] ?? null) === null) {
            g.append(svg("rect", { x: i - 1, y: y(v) - 1.5, width: 3, height: 3, class: s.cls }));
          }
        });
      }
    }
    const last = summary || series.map((s) => {
      const vs = s.values.filter((v) => v !== null);
      return s.name + " " + fmtNum(vs.length ? vs[vs.length - 1] : null, unit === "count" ? 0 : 2);
    }).join(" · ");
    return el("section", { class: "card chart-card", id },
      el("h2", { text: title }),
      el("div", { class: "chart-meta" }, el("span", { class: "muted", text: "max " + fmtNum(top, 2) + (unit && unit !== "count" ? " " + unit : "") }),
        el("span", { text: summary ? last : "latest: " + last })),
      g,
      el("div", { class: "chart-meta muted small" }, el("span", { text: "−" + span }), el("span", { text: "now" })),
      el("div", { class: "legend" }, series.map((s) => el("span", { class: "key " + s.cls, text: s.name }))));
  }

  // slotCount is how many buckets the x axis spans: from the oldest
  // bucket to now, within [minSlots, maxSlots].
  function slotCount(buckets, interval) {
    if (!buckets.length) return minSlots;
    const age = Math.ceil((Date.now() - Date.parse(buckets[0].start)) / (interval * 1000)) + 1;
    return Math.min(maxSlots, Math.max(minSlots, age));
  }

  // slots spreads the buckets over n slots ending now, null where none.
  function slots(buckets, interval, n, f) {
    const W = n;
    const out = new Array(W).fill(null);
    const end = Date.now();
    for (const b of buckets) {
      const i = W - 1 - Math.floor((end - Date.parse(b.start)) / (interval * 1000));
      if (i >= 0 && i < W) out[i] = f(b);
    }
    return out;
  }

  const outcomeClasses = { injected: "s0", none: "s1", off: "s2" };

  async function refresh() {
    let st;
    try {
      st = await api("GET", "/v1/stats");
    } catch (e) {
      status("Could not load stats: " + e.message, "error");
      return;
    }
    const iv = st.interval_seconds || 10;
    const bs = st.buckets || [];
    const n = slotCount(bs, iv);
    const span = n * iv >= 3600 ? "60 min" : n * iv >= 120 ? Math.round(n * iv / 60) + " min" : n * iv + " s";
    const s = (f) => slots(bs, iv, n, f);
    const outcomes = new Set();
    bs.forEach((b) => Object.keys(b.retrieval || {}).forEach((k) => outcomes.add(k)));
    const names = [...outcomes].sort((a, b) => (a in outcomeClasses ? 0 : 1) - (b in outcomeClasses ? 0 : 1) || a.localeCompare(b));
    const total = bs.reduce((x, b) => x + b.requests, 0);
    const fb = bs.reduce((x, b) => x + b.feedback, 0);
    const sum = (f) => bs.reduce((x, b) => x + f(b), 0);
    const c = (id, title, unit, series, kind, summary) => chart(id, title, unit, series, kind, summary, span);
    const prompt = sum((b) => b.prompt_tokens || 0), cached = sum((b) => b.cached_prompt_tokens || 0);
    const charts = [
      c("chart-rps", "Requests per second", "req/s", [{ name: "requests", cls: "s0", values: s((b) => b.requests / iv) }], "bars",
        "mean " + fmtNum(total / (n * iv), 3) + " req/s over " + span),
      c("chart-latency", "Latency", "ms", [
        { name: "p50", cls: "s0", values: s((b) => b.requests ? b.latency_p50_ms : null) },
        { name: "p99", cls: "s3", values: s((b) => b.requests ? b.latency_p99_ms : null) }]),
      c("chart-overhead", "dso overhead", "ms", [
        { name: "p50", cls: "s0", values: s((b) => b.overhead_p50_ms || null) },
        { name: "p99", cls: "s3", values: s((b) => b.overhead_p99_ms || null) }]),
      c("chart-cache", "Prompt cache", "%", [{ name: "cached share of prompt tokens", cls: "s0",
        values: s((b) => b.prompt_tokens ? 100 * b.cached_prompt_tokens / b.prompt_tokens : null) }], "line",
        prompt ? fmtNum(100 * cached / prompt, 1) + "% of " + fmtNum(prompt, 0) + " prompt tokens cached" : "no backend reported cached tokens yet"),
      c("chart-retrieval", "Retrieval outcomes", "count", names.length
        ? names.map((n, i) => ({ name: n === "injected" || n === "none" || n === "off" ? n : "degraded: " + n, cls: outcomeClasses[n] || "s" + (3 + (i % 3)), values: s((b) => (b.retrieval || {})[n] || 0) }))
        : [{ name: "no chat requests yet", cls: "s1", values: s(() => 0) }], "bars",
        sum((b) => (b.retrieval || {}).injected || 0) + " injected of " + sum((b) => Object.values(b.retrieval || {}).reduce((x, y) => x + y, 0)) + " chats"),
      c("chart-injected", "Experiences injected per request", "", [{
        name: "mean", cls: "s0", values: s((b) => {
          const n = Object.values(b.retrieval || {}).reduce((x, y) => x + y, 0);
          return n ? b.injected_experiences / n : null;
        }) }]),
      c("chart-library", "Library size", "count", [{ name: "experiences", cls: "s0", values: s((b) => b.library === undefined ? null : b.library) }]),
      c("chart-feedback", "Feedback received", "count", [{ name: "grades", cls: "s0", values: s((b) => b.feedback) }], "bars",
        fb + " grades over " + span),
    ];
    const summary = el("section", { class: "summary", id: "summary" },
      el("div", {}, el("span", { class: "big", text: String(total) }), el("span", { class: "muted", text: "requests in the last hour" })),
      el("div", {}, el("span", { class: "big", text: st.library === undefined ? "—" : String(st.library) }), el("span", { class: "muted", text: "experiences in the library" })),
      el("div", {}, el("span", { class: "big", text: String(fb) }), el("span", { class: "muted", text: "grades received" })),
      el("div", {}, el("span", { class: "big", text: prompt ? fmtNum(100 * cached / prompt, 0) + "%" : "—" }), el("span", { class: "muted", text: "of prompt tokens cached by the backend" })));
    document.getElementById("content").replaceChildren(summary, el("div", { class: "grid" }, charts));
    status("Last " + span + ", " + iv + " s per bar; updated " + new Date().toLocaleTimeString());
  }

  document.addEventListener("DOMContentLoaded", () => {
    refresh();
    setInterval(refresh, 10000);
    document.addEventListener("dso:key", refresh);
  });
})();
