// DOM building without HTML parsing: every piece of text (API data included) goes through
// textContent or a DOM attribute and is never parsed as HTML, so payloads cannot become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = String(v);
    else if (k === "class") el.setAttribute("class", Array.isArray(v) ? v.filter(Boolean).join(" ") : v);
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "dataset") for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    else if (k === "value") el.value = String(v);
    else if (k === "checked" || k === "disabled" || k === "selected" || k === "hidden" || k === "required") el[k] = Boolean(v);
    else if (/^on/i.test(k)) throw new Error("event handlers go in {on: {...}}");
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** h("div", {class: "x"}, "text", child, ...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function badge(text, kind) {
  return h("span", { class: ["badge", kind && `badge-${kind}`] }, text);
}

export function statusBadge(status) {
  const kind = {
    succeeded: "ok", active: "ok", enabled: "ok", ACCEPTED: "ok", HANDSHAKE: "ok",
    failed: "bad", revoked: "bad", disabled: "bad",
    pending: "warn", paused: "warn", grace: "warn", retiring: "warn", retrying: "warn", running: "warn",
    completed: "ok",
    cancelled: "muted", expired: "muted",
  }[status] || (status && /^[A-Z_]+$/.test(status) ? "bad" : "muted");
  return badge(status, kind);
}

/** A table; columns: [{label, cell: row => Node|string, class}]. */
export function table(columns, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", { class: "table" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.label)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.cell(r))))))));
}

/** Label + control. */
export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label" }, label), control,
    hint ? h("span", { class: "field-hint" }, hint) : null);
}

export function dl(pairs) {
  return h("dl", { class: "props" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function panel(title, ...children) {
  return h("section", { class: "panel" }, title ? h("h2", { class: "panel-title" }, title) : null, children);
}

export function code(text) {
  return h("code", { class: "mono" }, text);
}

/** A secret shown once, with a copy button. */
export function once(label, value, note) {
  const input = h("input", { class: "input mono", readonly: true, value, "aria-label": label });
  const btn = h("button", {
    class: "btn", type: "button",
    on: {
      click: async () => {
        try {
          await navigator.clipboard.writeText(value);
          btn.textContent = "Copied";
        } catch {
          input.select();
          btn.textContent = "Press Ctrl+C";
        }
      },
    },
  }, "Copy");
  return h("div", { class: "once", "data-testid": "shown-once" },
    h("div", { class: "once-title" }, label),
    h("div", { class: "once-row" }, input, btn),
    h("p", { class: "field-hint" }, note || "Shown once: Hookwarden keeps only a hash. Copy it now."));
}
