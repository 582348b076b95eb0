// Stacked bar charts drawn as SVG (no chart library). Every label goes in as text nodes.

import { h, s } from "./dom.js";

const W = 720;
const H = 220;
const PAD = { l: 44, r: 12, t: 12, b: 28 };

// Colour classes for series; refusal codes get the warm ones in order.
const PALETTE = ["c-bad", "c-warn", "c-violet", "c-rose", "c-amber", "c-slate", "c-teal", "c-brown"];

/** The axis top: 4 steps of 1, 2 or 5 × 10^k, so every tick is a round whole number. */
function niceMax(v) {
  const q = Math.max(v, 1) / 4;
  const p = 10 ** Math.floor(Math.log10(q));
  const step = [1, 2, 5, 10].map((m) => m * p).find((st) => st >= q && Number.isInteger(st)) || Math.ceil(q);
  return step * 4;
}

function label(iso, bucketSecs) {
  const d = new Date(iso);
  if (bucketSecs >= 86400) return d.toLocaleDateString(undefined, { month: "short", day: "2-digit" });
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

/**
 * buckets: [{start, values: {key: n}}]; series: [{key, label, cls}].
 * Returns a figure with the SVG, a legend and totals.
 */
export function stackedBars({ title, buckets, series, bucketSecs, testid }) {
  const n = Math.max(buckets.length, 1);
  const totals = buckets.map((b) => series.reduce((a, sr) => a + (b.values[sr.key] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const bw = iw / n;
  const gap = Math.min(4, bw * 0.2);
  const y = (v) => PAD.t + ih - (v / max) * ih;

  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = max * f;
    return s("g", {},
      s("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: PAD.l - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" },
        Number.isInteger(v) ? String(v) : v.toFixed(1)));
  });

  const bars = buckets.map((b, i) => {
    let acc = 0;
    const x = PAD.l + i * bw + gap / 2;
    const parts = series.map((sr) => {
      const v = b.values[sr.key] || 0;
      if (!v) return null;
      const r = s("rect", {
        x, width: Math.max(bw - gap, 1), y: y(acc + v), height: Math.max(y(acc) - y(acc + v), 1),
        class: `bar ${sr.cls}`,
      }, s("title", {}, `${label(b.start, bucketSecs)} — ${sr.label}: ${v}`));
      acc += v;
      return r;
    });
    return s("g", {}, parts);
  });

  const every = Math.max(1, Math.ceil(n / 8));
  const ticks = buckets.map((b, i) => (i % every === 0
    ? s("text", { x: PAD.l + i * bw + bw / 2, y: H - 8, class: "axis", "text-anchor": "middle" }, label(b.start, bucketSecs))
    : null));

  const sum = (k) => buckets.reduce((a, b) => a + (b.values[k] || 0), 0);
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `${title}: ${series.map((sr) => `${sr.label} ${sum(sr.key)}`).join(", ")}`,
  }, grid, bars, ticks);

  return h("figure", { class: "chart-fig", "data-testid": testid },
    h("figcaption", { class: "chart-head" },
      h("span", { class: "chart-title" }, title),
      h("span", { class: "legend" }, series.map((sr) =>
        h("span", { class: "legend-item" }, h("span", { class: `swatch ${sr.cls}` }), `${sr.label} `,
          h("strong", { "data-series": sr.key }, String(sum(sr.key))))))),
    svg);
}

export function deliveryChart(stats, title) {
  return stackedBars({
    title,
    testid: "delivery-chart",
    bucketSecs: stats.bucket_secs,
    buckets: stats.buckets.map((b) => ({ start: b.start, values: { succeeded: b.succeeded, failed: b.failed } })),
    series: [
      { key: "succeeded", label: "Succeeded", cls: "c-ok" },
      { key: "failed", label: "Failed", cls: "c-bad" },
    ],
  });
}

export function ingestChart(stats, title) {
  const codes = Object.keys(stats.outcomes || {}).filter((o) => o !== "ACCEPTED" && o !== "HANDSHAKE").sort();
  const series = [{ key: "ACCEPTED", label: "Accepted", cls: "c-ok" }];
  if (stats.outcomes && stats.outcomes.HANDSHAKE) series.push({ key: "HANDSHAKE", label: "Handshake", cls: "c-teal" });
  codes.slice(0, PALETTE.length).forEach((c, i) => series.push({ key: c, label: c, cls: PALETTE[i] }));
  return stackedBars({
    title,
    testid: "ingest-chart",
    bucketSecs: stats.bucket_secs,
    buckets: stats.buckets.map((b) => ({ start: b.start, values: b.outcomes || {} })),
    series,
  });
}
