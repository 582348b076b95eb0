// The console's pages. Each view renders into `main` from API data; all text goes in as text.

import { api, qs } from "./api.js";
import { h, clear, fmtTime, badge, statusBadge, table, field, dl, panel, code, once } from "./dom.js";
import { deliveryChart, ingestChart } from "./charts.js";

const SCHEMES = ["standard-webhooks", "standard-webhooks-v1a", "github-sha256", "hub-sha1", "date-sha1"];
const ALERT_TYPES = ["source.anomaly", "endpoint.failing", "endpoint.disabled", "endpoint.probe_grade_dropped"];
const RANGES = [
  { label: "Last hour", ms: 3600e3, bucket: "5m" },
  { label: "Last 24 hours", ms: 86400e3, bucket: "1h" },
  { label: "Last 7 days", ms: 7 * 86400e3, bucket: "6h" },
  { label: "Last 30 days", ms: 30 * 86400e3, bucket: "1d" },
];

export let toast = () => {};
export function setToast(fn) { toast = fn; }

function link(href, text, attrs = {}) {
  return h("a", { href, ...attrs }, text);
}

function errorBox(e) {
  return h("div", { class: "alert alert-bad", role: "alert", "data-testid": "error" },
    h("strong", {}, e.code || "ERROR"), " ", e.message || String(e));
}

function pageHead(title, ...actions) {
  return h("div", { class: "page-head" }, h("h1", {}, title), h("div", { class: "actions" }, actions));
}

function btn(text, onClick, cls = "btn", attrs = {}) {
  return h("button", { class: cls, type: "button", on: { click: onClick }, ...attrs }, text);
}

/** Runs an action, shows its error in `slot` (cleared first), returns the result or undefined. */
async function attempt(slot, fn) {
  if (slot) clear(slot);
  try {
    return await fn();
  } catch (e) {
    if (slot) slot.append(errorBox(e));
    else toast(`${e.code || "ERROR"}: ${e.message}`, "bad");
    return undefined;
  }
}

function lines(text) {
  return text.split(/[\n,]/).map((x) => x.trim()).filter(Boolean);
}

function parseHeaders(text) {
  const out = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const i = line.indexOf(":");
    if (i <= 0) throw { code: "INVALID_HEADER", message: `"${line}" is not "Name: value"` };
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

function headersText(obj) {
  return Object.entries(obj || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
}

/** A chart panel with a range picker; `load(range)` returns the chart node. */
function chartPanel(title, load) {
  const body = h("div", { class: "chart-body" });
  const select = h("select", { class: "input input-sm", "aria-label": "Time range" },
    RANGES.map((r, i) => h("option", { value: i, selected: i === 1 }, r.label)));
  const refresh = async () => {
    const r = RANGES[Number(select.value)] || RANGES[1];
    const until = new Date();
    const since = new Date(until.getTime() - r.ms);
    const node = await attempt(body, () => load({ since: since.toISOString(), until: until.toISOString(), bucket: r.bucket }));
    if (node) clear(body).append(node);
  };
  select.addEventListener("change", refresh);
  refresh();
  return h("section", { class: "panel" },
    h("div", { class: "panel-head" }, h("h2", { class: "panel-title" }, title), select), body);
}

/** "Load more" paging over a Paged API list. */
function pagedList(render, fetchPage) {
  const wrap = h("div", {});
  const rows = [];
  let next = null;
  const more = btn("Load more", () => load(), "btn btn-ghost");
  const load = async () => {
    const res = await attempt(wrap, () => fetchPage(next));
    if (!res) return;
    rows.push(...res.data);
    next = res.next_before;
    clear(wrap).append(render(rows));
    if (res.has_more) wrap.append(more);
  };
  load();
  return wrap;
}

// A collection's page: a "New …" button opening its create form, a chart, the paged list (and
// any panels `after` it).
function resourcePage(main, { title, create, testid, showForm, chart, listTitle, after = [], path, empty, columns }) {
  const formSlot = h("div", {});
  const list = h("div", {});
  main.append(
    pageHead(title, btn(create, () => showForm(formSlot, reload), "btn btn-primary", { "data-testid": testid })),
    formSlot, chart, panel(listTitle, list), ...after);
  function reload() {
    clear(list).append(pagedList((rows) => table(columns, rows, empty), (before) => api.get(`${path}${qs({ limit: 50, before })}`)));
  }
  reload();
}

// ---------------------------------------------------------------- endpoints

export async function endpoints(main) {
  resourcePage(main, {
    title: "Endpoints", create: "New endpoint", testid: "new-endpoint", showForm: showEndpointForm,
    chart: chartPanel("Deliveries, all endpoints", async (r) => deliveryChart(await api.get(`/stats/deliveries${qs(r)}`), "Finished deliveries")),
    listTitle: "Receivers", after: [sendEventPanel()], path: "/endpoints", empty: "No endpoints yet: add the first receiver.",
    columns: [
      { label: "Endpoint", cell: (e) => h("div", {}, link(`#/endpoints/${e.id}`, e.description || e.url, { class: "strong" }), h("div", { class: "sub mono" }, e.id)) },
      { label: "URL", cell: (e) => code(e.url) },
      { label: "Status", cell: (e) => statusBadge(e.enabled ? "enabled" : "disabled") },
      { label: "Event types", cell: (e) => (e.event_types.length ? e.event_types.join(", ") : h("span", { class: "muted" }, "all")) },
      { label: "Failures", class: "num", cell: (e) => String(e.consecutive_failures) },
    ],
  });
}

function schemeBoxes(selected) {
  return h("div", { class: "checks" }, SCHEMES.map((sc) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "scheme", value: sc, checked: selected.includes(sc) }), sc)));
}

function checkedSchemes(root) {
  return [...root.querySelectorAll("input[name=scheme]:checked")].map((i) => i.value);
}

// Shows a create form in `slot`, `first` focused. On submit, `post` makes the object; the form
// then gives way to a panel titled with `shown(created)` (a title, a link, the one-time secret),
// and `done` runs.
function createForm(slot, form, first, err, done, post, shown) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const created = await attempt(err, post);
    if (!created) return;
    const [title, where, secret] = shown(created);
    clear(slot).append(h("div", { class: "panel" }, h("h2", { class: "panel-title" }, title, where), secret));
    done();
  });
  slot.append(form);
  first.focus();
}

function showEndpointForm(slot, done) {
  clear(slot);
  const url = h("input", { class: "input", name: "url", type: "url", required: true, placeholder: "https://receiver.example.com/webhooks" });
  const desc = h("input", { class: "input", name: "description", placeholder: "Billing service" });
  const types = h("input", { class: "input", name: "event_types", placeholder: "invoice.paid, invoice.failed (empty: every type)" });
  const headers = h("textarea", { class: "input mono", name: "headers", rows: 3, placeholder: "X-Tenant: acme" });
  const schemes = schemeBoxes(["standard-webhooks"]);
  const err = h("div", {});
  const form = h("form", { class: "panel form", "data-testid": "endpoint-form" },
    h("h2", { class: "panel-title" }, "New endpoint"),
    field("URL", url), field("Description", desc), field("Event types", types, "Comma-separated; empty means every type."),
    field("Custom headers", headers, "One \"Name: value\" per line. Values of secret-looking headers are masked when shown."),
    field("Signature schemes", schemes), err,
    h("div", { class: "actions" }, h("button", { class: "btn btn-primary", type: "submit" }, "Create endpoint"),
      btn("Cancel", () => clear(slot), "btn btn-ghost")));
  createForm(slot, form, url, err, done, () => api.post("/endpoints", {
    url: url.value.trim(), description: desc.value.trim(), event_types: lines(types.value),
    headers: parseHeaders(headers.value), signature_schemes: checkedSchemes(schemes),
  }), (created) => [
    "Endpoint created: ", link(`#/endpoints/${created.id}`, created.id),
    once("Signing secret", created.secret, "Shown once: give it to the receiver so it can verify signatures."),
  ]);
}

function sendEventPanel() {
  const type = h("input", { class: "input", name: "type", value: "console.test", required: true });
  const payload = h("textarea", { class: "input mono", name: "payload", rows: 3, value: '{"hello": "world"}' });
  const out = h("div", {});
  const form = h("form", { class: "form", "data-testid": "send-event" },
    h("div", { class: "row" }, field("Event type", type), field("Payload (JSON)", payload)), out,
    h("div", { class: "actions" }, h("button", { class: "btn", type: "submit" }, "Send event")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let body;
    try {
      body = JSON.parse(payload.value);
    } catch {
      clear(out).append(errorBox({ code: "INVALID_JSON", message: "The payload is not valid JSON" }));
      return;
    }
    const r = await attempt(out, () => api.post("/events", { type: type.value.trim(), payload: body }));
    if (r) {
      out.append(h("p", { class: "alert alert-ok", "data-testid": "event-sent" }, "Event ",
        link(`#/deliveries?event_id=${encodeURIComponent(r.id)}`, r.id), ` stored: ${r.deliveries} deliver${r.deliveries === 1 ? "y" : "ies"}.`));
    }
  });
  return panel("Send an event", form);
}

export async function endpoint(main, id) {
  const e = await api.get(`/endpoints/${encodeURIComponent(id)}`);
  const secretSlot = h("div", {});
  const actionErr = h("div", {});
  const toggle = async () => {
    if (await attempt(actionErr, () => api.post(`/endpoints/${e.id}/${e.enabled ? "disable" : "enable"}`))) {
      toast(e.enabled ? "Endpoint disabled" : "Endpoint enabled");
      rerender(main, () => endpoint(main, id));
    }
  };
  const rotate = async () => {
    const r = await attempt(actionErr, () => api.post(`/endpoints/${e.id}/secret/rotate`, {}));
    if (r) {
      clear(secretSlot).append(once("New signing secret", r.secret,
        `Shown once. The previous secret keeps signing until ${fmtTime(r.previous_secrets_expire_at)}.`));
    }
  };
  main.append(
    h("p", { class: "crumbs" }, link("#/endpoints", "Endpoints"), " / ", e.id),
    pageHead(e.description || e.url,
      btn(e.enabled ? "Disable" : "Enable", toggle, e.enabled ? "btn" : "btn btn-primary", { "data-testid": "toggle-endpoint" }),
      btn("Rotate secret", rotate, "btn")),
    actionErr, secretSlot,
    h("div", { class: "grid2" },
      panel("Details", dl([
        ["Id", code(e.id)], ["URL", code(e.url)],
        ["Status", h("span", {}, statusBadge(e.enabled ? "enabled" : "disabled"), e.disabled_reason ? ` ${e.disabled_reason}` : "")],
        ["Event types", e.event_types.length ? e.event_types.join(", ") : "all"],
        ["Signature schemes", e.signature_schemes.join(", ")],
        ["Client certificate", e.client_certificate_id ? code(e.client_certificate_id) : "none"],
        ["Retry schedule", e.retry_schedule && e.retry_schedule.length ? e.retry_schedule.map((d) => `${d} s`).join(", ") : "default backoff"],
        ["Consecutive failures", String(e.consecutive_failures)],
        ["Created", fmtTime(e.created_at)],
      ])),
      await editEndpointPanel(e, main, id)),
    e.signature_schemes.includes("standard-webhooks-v1a") ? publicKeysPanel(e) : "",
    routingPanel(e, main, id),
    recoverPanel(e),
    probePanel(e),
    chartPanel("Deliveries of this endpoint", async (r) => deliveryChart(await api.get(`/stats/deliveries${qs({ ...r, endpoint_id: e.id })}`), "Finished deliveries")),
    panel("Delivery history", deliveryBrowser({ endpoint_id: e.id })),
  );
}

// ---------------------------------------------------------------- filter, transformation, dry run

const TRANSFORM_EXAMPLE = `fn handler(webhook) {
    // webhook.payload is the body; add headers, or set webhook.cancel = true.
    webhook.headers["X-Event"] = webhook.event_type;
    webhook
}`;

// The payload filter and the transformation, edited and tried on a sample event before saving.
function routingPanel(e, main, id) {
  const filter = h("textarea", { class: "input mono", rows: 4, "aria-label": "Payload filter",
    placeholder: '{"data.amount": {"$gte": 100}}', value: e.filter ? JSON.stringify(e.filter, null, 2) : "" });
  const script = h("textarea", { class: "input mono", rows: 8, "aria-label": "Transformation",
    placeholder: TRANSFORM_EXAMPLE, value: e.transformation || "" });
  const sampleType = h("input", { class: "input", value: (e.event_types.find((t) => !t.includes("*")) || "console.test"), "aria-label": "Sample event type" });
  const sample = h("textarea", { class: "input mono", rows: 3, value: '{"amount": 250}', "aria-label": "Sample payload" });
  const err = h("div", {});
  const out = h("div", { "data-testid": "dry-run-result" });
  const drafts = () => {
    let f = null;
    if (filter.value.trim()) {
      try { f = JSON.parse(filter.value); } catch { throw { code: "INVALID_FILTER", message: "The filter is not valid JSON" }; }
    }
    return { filter: f, transformation: script.value.trim() ? script.value : null };
  };
  const save = async () => {
    if (await attempt(err, async () => api.patch(`/endpoints/${e.id}`, drafts()))) {
      toast("Filter and transformation saved");
      rerender(main, () => endpoint(main, id));
    }
  };
  const dryRun = async () => {
    const r = await attempt(err, async () => {
      let payload;
      try { payload = JSON.parse(sample.value); } catch { throw { code: "INVALID_JSON", message: "The sample payload is not valid JSON" }; }
      return api.post(`/endpoints/${e.id}/dry-run`, { event_type: sampleType.value.trim(), payload, ...drafts() });
    });
    if (!r) return;
    const t = r.transformation;
    clear(out).append(
      h("p", { class: r.delivered ? "alert alert-ok" : "alert alert-bad", "data-delivered": String(r.delivered) },
        r.delivered ? "Would be sent." : !r.filter.matched ? "Not sent: the filter does not match."
          : t.cancelled ? "Not sent: the transformation cancelled it." : `Not sent: the transformation failed: ${t.error}`),
      t.logs.length ? h("pre", { class: "mono sample", "aria-label": "Transformation output" }, t.logs.join("\n")) : null,
      r.request ? h("div", {},
        h("p", { class: "field-hint" }, `POST ${r.request.url}`),
        table([{ label: "Header", cell: (x) => code(x[0]) }, { label: "Value", cell: (x) => x[1] }], r.request.headers),
        h("pre", { class: "pre" }, JSON.stringify(r.request.body, null, 2))) : null);
  };
  return h("section", { class: "panel", "data-testid": "routing-panel" },
    h("h2", { class: "panel-title" }, "Payload filter and transformation"),
    h("div", { class: "grid2" },
      h("div", {},
        field("Payload filter (JSON)", filter, "Only events it matches are delivered, e.g. {\"data.amount\": {\"$gte\": 100}}; empty: every subscribed event."),
        field("Transformation (Rhai)", script, "fn handler(webhook) changes webhook.payload, adds webhook.headers or sets webhook.cancel, before signing; empty: sent as published.")),
      h("div", {},
        field("Sample event type", sampleType), field("Sample payload (JSON)", sample),
        h("div", { class: "actions" }, btn("Dry run", dryRun, "btn", { "data-testid": "dry-run" })),
        out)),
    err,
    h("div", { class: "actions" }, btn("Save filter and transformation", save, "btn btn-primary", { "data-testid": "save-routing" })));
}

// ---------------------------------------------------------------- recovery

const RECOVER_WINDOWS = [
  { label: "last hour", ms: 3600e3 }, { label: "last 24 hours", ms: 86400e3 },
  { label: "last 7 days", ms: 7 * 86400e3 }, { label: "last 30 days", ms: 30 * 86400e3 },
];

function recoveryLine(r, onCancel) {
  const pct = r.total ? Math.round((100 * r.requeued) / r.total) : 100;
  return h("div", { class: "recovery", "data-testid": "recovery", "data-status": r.status },
    code(r.id), " ", statusBadge(r.status), ` ${r.requeued} of ${r.total} sent again (${pct} %)`,
    h("span", { class: "field-hint" }, ` ${r.endpoint_id || "every endpoint"}${r.event_type ? `, ${r.event_type}` : ""}, ${fmtTime(r.since)} – ${fmtTime(r.until)}`),
    r.status === "running" && onCancel ? btn("Cancel", () => onCancel(r), "btn btn-ghost", { "data-testid": "cancel-recovery" }) : null);
}

// Follows a recovery until it ends (bounded: at most 10 minutes of polling).
function followRecovery(slot, r, onCancel) {
  const started = Date.now();
  const show = (x) => clear(slot).append(recoveryLine(x, onCancel));
  show(r);
  const tick = async () => {
    if (!slot.isConnected || Date.now() - started > 600e3) return;
    const x = await api.get(`/recoveries/${encodeURIComponent(r.id)}`).catch(() => null);
    if (x) show(x);
    if (!x || x.status === "running") setTimeout(tick, 1000);
  };
  if (r.status === "running") setTimeout(tick, 1000);
}

async function cancelRecovery(r) {
  if (await attempt(null, () => api.post(`/recoveries/${encodeURIComponent(r.id)}/cancel`))) toast("Recovery cancelled");
}

// An endpoint's recover: everything that failed for good in a window, sent again in order.
function recoverPanel(e) {
  const win = h("select", { class: "input input-sm", "aria-label": "Recover window" },
    RECOVER_WINDOWS.map((w, i) => h("option", { value: String(i), selected: i === 1 }, w.label)));
  const err = h("div", {});
  const out = h("div", {});
  const run = async () => {
    const since = new Date(Date.now() - RECOVER_WINDOWS[Number(win.value)].ms).toISOString();
    const r = await attempt(err, () => api.post(`/endpoints/${encodeURIComponent(e.id)}/recover`, { since }));
    if (r) followRecovery(out, r, cancelRecovery);
  };
  return h("section", { class: "panel", "data-testid": "recover-panel" },
    h("div", { class: "panel-head" }, h("h2", { class: "panel-title" }, "Recover failed deliveries"),
      h("div", { class: "actions" }, win, btn("Recover", run, "btn", { "data-testid": "recover" }))),
    h("p", { class: "field-hint" }, "Sends again every delivery to this endpoint that failed for good in the window, in the order the events were created, within its rate limit."),
    err, out);
}

// Bulk retry by filter, and the recoveries so far.
function bulkRetryPanel() {
  const endpointId = h("input", { class: "input input-sm", placeholder: "endpoint id (empty: all)", "aria-label": "Endpoint id" });
  const type = h("input", { class: "input input-sm", placeholder: "event type or prefix.* (empty: all)", "aria-label": "Event type" });
  const win = h("select", { class: "input input-sm", "aria-label": "Window" },
    RECOVER_WINDOWS.map((w, i) => h("option", { value: String(i), selected: i === 1 }, w.label)));
  const err = h("div", {});
  const out = h("div", {});
  const list = h("div", {});
  const load = () => clear(list).append(pagedList((rows) => h("div", {}, rows.length
    ? rows.map((r) => { const slot = h("div", {}); followRecovery(slot, r, async (x) => { await cancelRecovery(x); load(); }); return slot; })
    : h("p", { class: "empty" }, "No recovery yet.")), (before) => api.get(`/recoveries${qs({ limit: 10, before })}`)));
  const form = h("form", { class: "filters", "data-testid": "bulk-retry" }, endpointId, type, win,
    h("button", { class: "btn", type: "submit" }, "Retry failed deliveries"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const since = new Date(Date.now() - RECOVER_WINDOWS[Number(win.value)].ms).toISOString();
    const body = { since };
    if (endpointId.value.trim()) body.endpoint_id = endpointId.value.trim();
    if (type.value.trim()) body.event_type = type.value.trim();
    const r = await attempt(err, () => api.post("/recoveries", body));
    if (r) {
      toast(`Recovery ${r.id}: ${r.total} deliveries to send again`);
      load();
    }
  });
  load();
  return panel("Retry failed deliveries", h("p", { class: "field-hint" },
    "Sends again the deliveries that failed for good and match, oldest first, as a job you can follow and cancel."), form, err, out, list);
}

// ---------------------------------------------------------------- receiver probe

const VERDICT_KIND = { pass: "ok", fail: "bad", inconclusive: "warn" };
const GRADE_KIND = { A: "ok", B: "warn", C: "warn", F: "bad", inconclusive: "muted" };

// How to verify each scheme correctly (Python), shown beside a failure.
const SAMPLES = {
  "standard-webhooks": `from standardwebhooks import Webhook  # pip install standardwebhooks
wh = Webhook(SECRET)                       # "whsec_…"
seen = set()                               # a shared store (Redis, a table) in production
def receive(body: bytes, headers) -> int:
    try:
        wh.verify(body, headers)           # signature (constant time) and timestamp (5 min)
    except Exception:
        return 401
    if headers["webhook-id"] in seen:      # replay
        return 200                         # already processed: acknowledge, do nothing
    seen.add(headers["webhook-id"])
    return 200`,
  "github-sha256": `import hmac, hashlib
def receive(body: bytes, headers) -> int:
    sent = headers.get("x-hub-signature-256", "")
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return 200 if sent and hmac.compare_digest(sent, want) else 401`,
  "hub-sha1": `import hmac, hashlib
def receive(body: bytes, headers) -> int:
    sent = headers.get("x-hub-signature", "")
    want = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    return 200 if sent and hmac.compare_digest(sent, want) else 401`,
  "standard-webhooks-v1a": `import base64, time
from nacl.signing import VerifyKey                 # pip install pynacl
key = VerifyKey(base64.b64decode(PUBLIC_KEY.removeprefix("whpk_")))
seen = set()
def receive(body: bytes, headers) -> int:
    msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    signed = f"{msg_id}.{ts}.".encode() + body
    for entry in headers.get("webhook-signature", "").split():
        version, _, sig = entry.partition(",")
        if version == "v1a" and sig:
            try:
                key.verify(signed, base64.b64decode(sig))
                break
            except Exception:
                pass
    else:
        return 401
    if not ts.isdigit() or abs(time.time() - int(ts)) > 300 or msg_id in seen:
        return 401 if msg_id not in seen else 200
    seen.add(msg_id)
    return 200`,
  "date-sha1": `import hmac, hashlib, datetime
def receive(body: bytes, headers) -> int:
    date = headers.get("x-hookwarden-auth-date", "")
    sent = headers.get("x-hookwarden-auth-signature", "")
    want = "sha1=" + hmac.new(SECRET.encode(), date.encode(), hashlib.sha1).hexdigest()
    if not (sent and hmac.compare_digest(sent, want)):
        return 401
    at = datetime.datetime.fromisoformat(date.replace("Z", "+00:00"))
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - at).total_seconds())
    return 200 if skew <= 300 else 401`,
};

function probeReport(p) {
  const failed = p.cases.filter((c) => c.verdict === "fail");
  const schemes = [...new Set(failed.map((c) => c.scheme || p.schemes[0]).filter((x) => SAMPLES[x]))];
  return h("div", { "data-testid": "probe-report", "data-grade": p.grade },
    h("p", { class: "probe-summary" }, "Grade ", badge(p.grade, GRADE_KIND[p.grade] || "muted"), " ", p.summary,
      h("span", { class: "field-hint" }, ` — ${p.requests_sent} requests, ${p.duration_ms} ms, ${fmtTime(p.created_at)} (${p.trigger})`)),
    table([
      { label: "Case", cell: (c) => h("span", {}, code(c.case), c.scheme ? ` ${c.scheme}` : "") },
      { label: "Sent", cell: (c) => c.description },
      { label: "Expected", cell: (c) => c.expected },
      { label: "Observed", cell: (c) => (c.observed.status ? `HTTP ${c.observed.status}` : c.observed.error || "—") },
      { label: "Verdict", cell: (c) => h("span", { "data-verdict": c.verdict }, badge(c.verdict, VERDICT_KIND[c.verdict])) },
    ], p.cases, "No request was sent."),
    failed.length ? h("div", { class: "probe-advice" }, h("h3", {}, "How to fix"),
      [...new Set(failed.map((c) => c.advice))].map((a) => h("p", { class: "alert alert-bad" }, a)),
      schemes.map((sc) => h("div", {}, h("p", { class: "field-hint" }, `Verifying ${sc} correctly (Python):`),
        h("pre", { class: "mono sample" }, SAMPLES[sc])))) : null,
    p.not_applicable.length ? h("p", { class: "field-hint" }, "Not applicable: ",
      p.not_applicable.map((n) => `${n.case}${n.scheme ? ` (${n.scheme})` : ""}: ${n.reason}`).join("; ")) : null);
}

// The ed25519 public keys receivers verify standard-webhooks-v1a signatures with.
function publicKeysPanel(e) {
  const body = h("div", {});
  const err = h("div", {});
  const load = async () => {
    const r = await attempt(err, () => api.get(`/endpoints/${encodeURIComponent(e.id)}/public-keys`));
    if (r) clear(body).append(table([
      { label: "Public key (whpk_)", cell: (k) => code(k.public_key) },
      { label: "Created", cell: (k) => fmtTime(k.created_at) },
      { label: "Signs until", cell: (k) => (k.expires_at ? fmtTime(k.expires_at) : "rotated") },
    ], r.data, "No key yet."));
  };
  const rotate = async () => {
    if (await attempt(err, () => api.post(`/endpoints/${encodeURIComponent(e.id)}/signing-key/rotate`, { grace_period_seconds: 86400 }))) {
      toast("Signing key rotated: both keys sign for 24 hours");
      load();
    }
  };
  load();
  return h("section", { class: "panel", "data-testid": "public-keys" },
    h("div", { class: "panel-head" }, h("h2", { class: "panel-title" }, "Public keys (standard-webhooks-v1a)"),
      btn("Rotate signing key", rotate, "btn")),
    h("p", { class: "field-hint" }, "Receivers verify v1a signatures with these; the private keys never leave Hookwarden, so a leak on the receiver's side cannot forge webhooks."),
    err, body);
}

// The receiver security probe: the newest report, and a button to probe now.
function probePanel(e) {
  const body = h("div", {});
  const err = h("div", {});
  const run = async () => {
    button.disabled = true;
    button.textContent = "Probing…";
    const p = await attempt(err, () => api.postLong(`/endpoints/${encodeURIComponent(e.id)}/probe`));
    button.disabled = false;
    button.textContent = "Probe receiver";
    if (p) clear(body).append(probeReport(p));
  };
  const button = btn("Probe receiver", run, "btn", { "data-testid": "probe-endpoint" });
  (async () => {
    const r = await attempt(err, () => api.get(`/endpoints/${encodeURIComponent(e.id)}/probes?limit=1`));
    if (!r) return;
    clear(body).append(r.data.length ? probeReport(r.data[0])
      : h("p", { class: "empty" }, "Not probed yet. A probe sends this receiver a short series of forged, stale and replayed requests and reports which ones it refused."));
  })();
  return h("section", { class: "panel", "data-testid": "probe-panel" },
    h("div", { class: "panel-head" }, h("h2", { class: "panel-title" }, "Receiver security"), button), err, body);
}

async function editEndpointPanel(e, main, id) {
  const url = h("input", { class: "input", value: e.url });
  const desc = h("input", { class: "input", value: e.description });
  const types = h("input", { class: "input", value: e.event_types.join(", ") });
  const headers = h("textarea", { class: "input mono", rows: 3, value: headersText(e.headers) });
  const schemes = schemeBoxes(e.signature_schemes);
  const retry = h("input", { class: "input", value: (e.retry_schedule || []).join(", "), "aria-label": "Retry schedule" });
  const certs = await api.get("/client-certificates?limit=250").catch(() => ({ data: [] }));
  const cert = h("select", { class: "input" }, h("option", { value: "" }, "none"),
    certs.data.filter((c) => c.status === "active" || c.id === e.client_certificate_id).map((c) =>
      h("option", { value: c.id, selected: c.id === e.client_certificate_id }, `${c.name || c.subject} (${c.id})`)));
  const err = h("div", {});
  const form = h("form", { class: "form", "data-testid": "edit-endpoint" },
    field("URL", url), field("Description", desc), field("Event types", types, "Comma-separated; empty means every type."),
    field("Custom headers", headers, "Masked values (****) left as they are keep the stored secret."),
    field("Signature schemes", schemes), field("Client certificate (mTLS)", cert),
    field("Retry schedule", retry, "Seconds before each retry, comma-separated (e.g. 5, 300, 1800, 7200); empty: the default backoff."), err,
    h("div", { class: "actions" }, h("button", { class: "btn btn-primary", type: "submit" }, "Save changes")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const ok = await attempt(err, () => api.patch(`/endpoints/${e.id}`, {
      url: url.value.trim(), description: desc.value.trim(), event_types: lines(types.value),
      headers: parseHeaders(headers.value), signature_schemes: checkedSchemes(schemes),
      client_certificate_id: cert.value || null,
      retry_schedule: lines(retry.value).map(Number),
    }));
    if (ok) {
      toast("Endpoint saved");
      rerender(main, () => endpoint(main, id));
    }
  });
  return panel("Edit", form);
}

// ---------------------------------------------------------------- deliveries

function deliveryBrowser(fixed) {
  const status = h("select", { class: "input input-sm", "aria-label": "Status" },
    ["", "pending", "succeeded", "failed", "paused", "cancelled"].map((st) => h("option", { value: st }, st || "any status")));
  const eventId = h("input", { class: "input input-sm", placeholder: "event id (evt_…)", "aria-label": "Event id", value: fixed.event_id || "" });
  const endpointId = fixed.endpoint_id ? null : h("input", { class: "input input-sm", placeholder: "endpoint id (ep_…)", "aria-label": "Endpoint id" });
  const results = h("div", {});
  const search = () => {
    const q = { limit: 50, status: status.value, event_id: eventId.value.trim(), endpoint_id: fixed.endpoint_id || (endpointId && endpointId.value.trim()) };
    clear(results).append(pagedList((rows) => table([
      { label: "Delivery", cell: (d) => link(`#/deliveries/${d.id}`, d.id, { class: "mono" }) },
      { label: "Event", cell: (d) => code(d.event_id) },
      fixed.endpoint_id ? null : { label: "Endpoint", cell: (d) => link(`#/endpoints/${d.endpoint_id}`, d.endpoint_id, { class: "mono" }) },
      { label: "Status", cell: (d) => statusBadge(d.status) },
      { label: "Attempts", class: "num", cell: (d) => String(d.attempt_count) },
      { label: "Last response", cell: (d) => (d.last_status_code ? String(d.last_status_code) : d.last_error || "—") },
      { label: "Created", cell: (d) => fmtTime(d.created_at) },
    ].filter(Boolean), rows, "No deliveries match."), (before) => api.get(`/deliveries${qs({ ...q, before })}`)));
  };
  const form = h("form", { class: "filters", "data-testid": "delivery-search" }, status, eventId, endpointId,
    h("button", { class: "btn", type: "submit" }, "Search"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); search(); });
  search();
  return h("div", {}, form, results);
}

export async function deliveries(main, params) {
  main.append(pageHead("Deliveries"), panel(null, deliveryBrowser({ event_id: params.get("event_id") || "" })), bulkRetryPanel());
}

export async function delivery(main, id) {
  const d = await api.get(`/deliveries/${encodeURIComponent(id)}`);
  const [att, ev] = await Promise.all([
    api.get(`/deliveries/${encodeURIComponent(id)}/attempts`),
    api.get(`/events/${encodeURIComponent(d.event_id)}`).catch(() => null),
  ]);
  const err = h("div", {});
  const retry = async () => {
    if (await attempt(err, () => api.post(`/deliveries/${d.id}/retry`))) {
      toast("Delivery queued again");
      setTimeout(() => rerender(main, () => delivery(main, id)), 800);
    }
  };
  main.append(
    h("p", { class: "crumbs" }, link("#/endpoints", "Endpoints"), " / ", link(`#/endpoints/${d.endpoint_id}`, d.endpoint_id), " / ", d.id),
    pageHead(`Delivery ${d.id}`, btn("Retry now", retry, "btn btn-primary", { "data-testid": "retry" })),
    err,
    h("div", { class: "grid2" },
      panel("Delivery", dl([
        ["Status", h("span", { "data-testid": "delivery-status" }, statusBadge(d.status))],
        ["Event", code(d.event_id)], ["Event type", ev ? ev.type : "—"],
        ["Endpoint", link(`#/endpoints/${d.endpoint_id}`, d.endpoint_id)],
        ["Attempts", String(d.attempt_count)],
        d.next_attempt_at ? ["Next attempt", fmtTime(d.next_attempt_at)] : null,
        ["Created", fmtTime(d.created_at)], ["Completed", fmtTime(d.completed_at)],
      ])),
      panel("Event payload", h("pre", { class: "pre" }, ev ? JSON.stringify(ev.payload, null, 2) : "(event no longer stored)"))),
    ev ? sendToEndpointPanel(ev) : "",
    h("h2", { class: "section-title" }, "Attempts"),
    h("div", { class: "attempts" }, att.data.length ? att.data.slice().reverse().map(attemptCard) : h("p", { class: "empty" }, "No attempt yet.")),
  );
}

// Sends this delivery's event to another endpoint (one created later, or not subscribed then).
function sendToEndpointPanel(ev) {
  const target = h("input", { class: "input input-sm", placeholder: "endpoint id (ep_…)", "aria-label": "Endpoint id", required: true });
  const out = h("div", {});
  const form = h("form", { class: "filters", "data-testid": "send-to-endpoint" }, target,
    h("button", { class: "btn", type: "submit" }, "Send event to endpoint"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const d = await attempt(out, () => api.post(`/events/${encodeURIComponent(ev.id)}/deliveries`, { endpoint_id: target.value.trim() }));
    if (d) {
      clear(out).append(h("p", { class: "alert alert-ok", "data-testid": "sent-to-endpoint" }, "Delivery ",
        link(`#/deliveries/${d.id}`, d.id), ` created for ${d.endpoint_id}.`));
    }
  });
  return panel("Send this event to another endpoint", form, out);
}

function attemptCard(a) {
  const ok = a.outcome === "succeeded";
  return h("section", { class: ["panel", "attempt", ok ? "attempt-ok" : "attempt-bad"], "data-testid": "attempt" },
    h("div", { class: "panel-head" },
      h("h3", { class: "panel-title" }, `Attempt ${a.attempt}`, " ", statusBadge(a.outcome)),
      h("span", { class: "muted" }, fmtTime(a.started_at))),
    dl([
      ["Response status", a.status_code ? h("strong", { "data-testid": "status-code" }, String(a.status_code)) : "—"],
      ["Duration", `${a.duration_ms} ms`],
      ["Source address", a.source_address ? code(a.source_address) : "—"],
      ["Receiver address", a.remote_address ? code(a.remote_address) : "—"],
      a.error_class ? ["Error", `${a.error_class}${a.error_message ? `: ${a.error_message}` : ""}`] : null,
    ]),
    h("div", { class: "grid2" },
      h("div", {}, h("h4", {}, "Request headers ", h("span", { class: "muted" }, "(secrets masked)")),
        a.request_headers
          ? table([{ label: "Name", cell: (p) => code(p[0]) }, { label: "Value", cell: (p) => code(p[1]) }], a.request_headers)
          : h("p", { class: "empty" }, "Not recorded for this attempt.")),
      h("div", {}, h("h4", {}, "Response body ", a.response_truncated ? h("span", { class: "muted" }, "(excerpt)") : null),
        h("pre", { class: "pre" }, a.response_body || "(empty)"))));
}

// ---------------------------------------------------------------- sources

const PRESETS = ["standard-webhooks", "github", "stripe", "slack", "shopify", "twilio", "paddle", "zoom", "twitch", "hookwarden", "none"];

export async function sources(main) {
  resourcePage(main, {
    title: "Sources", create: "New source", testid: "new-source", showForm: showSourceForm,
    chart: chartPanel("Inbound requests, all sources", async (r) => ingestChart(await api.get(`/stats/ingest${qs(r)}`), "Requests by outcome")),
    listTitle: "Secret URLs", path: "/sources", empty: "No sources yet.",
    columns: [
      { label: "Source", cell: (x) => h("div", {}, link(`#/sources/${x.id}`, x.name, { class: "strong" }), h("div", { class: "sub mono" }, x.id)) },
      { label: "URL", cell: (x) => code(x.url_hint || "—") },
      { label: "Verification", cell: (x) => (x.verification && x.verification.type) || "—" },
      { label: "Allowlist", cell: (x) => (x.allowed_cidrs.length ? x.allowed_cidrs.join(", ") : h("span", { class: "muted" }, "any address")) },
      { label: "Status", cell: (x) => statusBadge(x.status) },
    ],
  });
}

function showSourceForm(slot, done) {
  clear(slot);
  const name = h("input", { class: "input", required: true, placeholder: "Stripe production" });
  const preset = h("select", { class: "input" }, PRESETS.map((p) => h("option", { value: p }, p)));
  const secret = h("input", { class: "input mono", type: "password", autocomplete: "off", placeholder: "the provider's signing secret" });
  const cidrs = h("textarea", { class: "input mono", rows: 2, placeholder: "203.0.113.0/24 (empty: any address)" });
  const forward = h("input", { class: "input", placeholder: "ep_… or event types, comma-separated" });
  const err = h("div", {});
  const form = h("form", { class: "panel form", "data-testid": "source-form" },
    h("h2", { class: "panel-title" }, "New source"),
    field("Name", name), h("div", { class: "row" }, field("Verification", preset), field("Secret", secret, "Not needed for type none (which requires an allowlist).")),
    field("Allowed addresses", cidrs, "Addresses or CIDR ranges, one per line."),
    field("Forward to", forward), err,
    h("div", { class: "actions" }, h("button", { class: "btn btn-primary", type: "submit" }, "Create source"), btn("Cancel", () => clear(slot), "btn btn-ghost")));
  createForm(slot, form, name, err, done, () => {
    const verification = { type: preset.value };
    if (secret.value) verification.secret = secret.value;
    return api.post("/sources", {
      name: name.value.trim(), verification, allowed_cidrs: lines(cidrs.value), forward_to: lines(forward.value),
    });
  }, (created) => [
    "Source created: ", link(`#/sources/${created.id}`, created.name),
    once("Secret URL", created.url, "Shown once: give it to the provider. Hookwarden keeps only a hash of its token."),
  ]);
}

export async function source(main, id) {
  const x = await api.get(`/sources/${encodeURIComponent(id)}`);
  const slot = h("div", {});
  const err = h("div", {});
  const rotate = async () => {
    const r = await attempt(err, () => api.post(`/sources/${x.id}/rotate`, { grace_period_seconds: 3600 }));
    if (r) clear(slot).append(once("New secret URL", r.url, "Shown once. The previous URL keeps working for an hour."));
  };
  const confirmBox = h("div", {});
  const revoke = () => {
    clear(confirmBox).append(h("div", { class: "alert alert-bad confirm", "data-testid": "confirm-revoke" },
      h("p", {}, "Revoke every URL of ", h("strong", {}, x.name), "? Requests to them will be refused with 410 from now on. This cannot be undone (rotate to get a new URL)."),
      h("div", { class: "actions" },
        btn("Yes, revoke", async () => {
          if (await attempt(err, () => api.post(`/sources/${x.id}/revoke`))) {
            toast("Source revoked");
            rerender(main, () => source(main, id));
          }
        }, "btn btn-danger", { "data-testid": "confirm-revoke-yes" }),
        btn("Cancel", () => clear(confirmBox), "btn btn-ghost"))));
  };
  const cidrs = h("textarea", { class: "input mono", rows: 3, value: x.allowed_cidrs.join("\n") });
  const allowErr = h("div", {});
  const allowForm = h("form", { class: "form", "data-testid": "allowlist" },
    field("Allowed addresses", cidrs, "One address or CIDR per line; empty: any address."), allowErr,
    h("div", { class: "actions" }, h("button", { class: "btn", type: "submit" }, "Save allowlist")));
  allowForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (await attempt(allowErr, () => api.patch(`/sources/${x.id}`, { allowed_cidrs: lines(cidrs.value) }))) {
      toast("Allowlist saved");
      rerender(main, () => source(main, id));
    }
  });
  main.append(
    h("p", { class: "crumbs" }, link("#/sources", "Sources"), " / ", x.id),
    pageHead(x.name, btn("Rotate URL", rotate, "btn"),
      x.status === "revoked" ? null : btn("Revoke", revoke, "btn btn-danger", { "data-testid": "revoke" })),
    err, confirmBox, slot,
    h("div", { class: "grid2" },
      panel("Details", dl([
        ["Id", code(x.id)], ["Status", h("span", { "data-testid": "source-status" }, statusBadge(x.status))],
        ["URL", code(x.url_hint || "—")],
        ["Verification", `${(x.verification && x.verification.type) || "—"} (${x.secrets_count} secret${x.secrets_count === 1 ? "" : "s"})`],
        ["Replay window", `${x.replay_window_seconds} s`], ["Forward to", x.forward_to.join(", ") || "event type subscribers"],
        ["Event type", x.event_type], ["Created", fmtTime(x.created_at)],
      ]), h("h4", {}, "URL tokens"), table([
        { label: "Prefix", class: "nowrap", cell: (t) => code(`${t.prefix}…`) }, { label: "State", cell: (t) => statusBadge(t.state) },
        { label: "Created", cell: (t) => fmtTime(t.created_at) },
        { label: "Ends", cell: (t) => fmtTime(t.revoked_at || t.expires_at) },
      ], x.tokens)),
      panel("Allowlist", allowForm)),
    chartPanel("Requests to this source", async (r) => ingestChart(await api.get(`/sources/${x.id}/stats${qs(r)}`), "Requests by outcome")),
    panel("Audit log", auditBrowser({ source_id: x.id })));
}

// ---------------------------------------------------------------- audit

function auditBrowser(fixed) {
  const outcome = h("input", { class: "input input-sm", placeholder: "outcome (e.g. WEBHOOK_REVOKED)", "aria-label": "Outcome" });
  const ip = h("input", { class: "input input-sm", placeholder: "client IP", "aria-label": "Client IP" });
  const sourceId = fixed.source_id ? null : h("input", { class: "input input-sm", placeholder: "source id (src_…)", "aria-label": "Source id" });
  const unknown = fixed.source_id ? null : h("label", { class: "check" }, h("input", { type: "checkbox", name: "unknown" }), "unknown tokens only");
  const since = h("input", { class: "input input-sm", type: "datetime-local", "aria-label": "Since" });
  const results = h("div", {});
  const search = () => {
    const q = {
      limit: 50, outcome: outcome.value.trim().toUpperCase(), client_ip: ip.value.trim(),
      since: since.value ? new Date(since.value).toISOString() : "",
    };
    if (sourceId) {
      q.source_id = sourceId.value.trim();
      if (unknown.querySelector("input").checked) q.unknown = "true";
    }
    const base = fixed.source_id ? `/sources/${fixed.source_id}/audit` : "/inbound/audit";
    clear(results).append(pagedList((rows) => table([
      { label: "Received", class: "nowrap", cell: (a) => fmtTime(a.received_at) },
      fixed.source_id ? null : { label: "Source", cell: (a) => (a.source_id ? link(`#/sources/${a.source_id}`, a.source_id, { class: "mono" }) : h("span", { class: "muted" }, "unknown token")) },
      { label: "Outcome", cell: (a) => h("span", {}, statusBadge(a.outcome), a.reason ? h("div", { class: "sub" }, a.reason) : null) },
      { label: "Status", class: "num", cell: (a) => h("span", { "data-testid": "audit-status" }, String(a.status)) },
      { label: "Client", class: "nowrap", cell: (a) => code(a.client_ip || a.peer_addr) },
      { label: "User agent", cell: (a) => h("span", { class: "ua" }, a.user_agent || "—") },
      { label: "Requests", class: "num", cell: (a) => (a.sampled ? `${a.count} (aggregated)` : String(a.count)) },
      { label: "Event", cell: (a) => (a.event_id ? code(a.event_id) : "—") },
    ].filter(Boolean), rows, "No requests match."), (before) => api.get(`${base}${qs({ ...q, before })}`)));
  };
  const form = h("form", { class: "filters", "data-testid": "audit-search" }, outcome, ip, sourceId, since, unknown,
    h("button", { class: "btn", type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); search(); });
  search();
  return h("div", {}, form, results);
}

export async function audit(main) {
  main.append(pageHead("Inbound audit log"),
    h("p", { class: "lead" }, "Every request to a secret URL, accepted or refused, with the reason."),
    panel(null, auditBrowser({})));
}

// ---------------------------------------------------------------- alerts

// ---------------------------------------------------------------- event types

function jsonBlock(v) {
  return v === null || v === undefined ? "—" : h("pre", { class: "mono sample-light" }, JSON.stringify(v, null, 2));
}

export async function eventTypes(main) {
  main.append(pageHead("Event types"),
    h("p", { class: "field-hint" }, "The catalogue endpoints subscribe to (a subscription may end in a wildcard: invoice.*). A type with a schema and validation on refuses published payloads that do not match it (422 SCHEMA_MISMATCH)."),
    panel(null, pagedList((rows) => rows.length ? h("div", { "data-testid": "event-types" }, rows.map((t) =>
      h("section", { class: "panel event-type" },
        h("div", { class: "panel-head" }, h("h2", { class: "panel-title mono" }, t.name),
          h("span", {}, t.deprecated ? badge("deprecated", "warn") : null, " ", t.validate ? badge("validated", "ok") : badge("not validated", "muted"))),
        t.description ? h("p", {}, t.description) : null,
        h("div", { class: "grid2" },
          h("div", {}, h("div", { class: "field-label" }, "Schema"), jsonBlock(t.schema)),
          h("div", {}, h("div", { class: "field-label" }, "Example payload"), jsonBlock(t.example)))))) :
      h("p", { class: "empty" }, "No event types yet: POST /api/v1/event-types adds one."),
    (before) => api.get(`/event-types${qs({ limit: 50, before })}`))));
}

export async function alerts(main) {
  const out = h("div", {});
  main.append(pageHead("Alerts"),
    h("p", { class: "lead" }, "Operational events: ", ALERT_TYPES.map((t, i) => [i ? ", " : "", code(t)]),
      ". They are delivered to endpoints subscribed to them, and listed here."),
    panel(null, out));
  // The newest alerts, filtered by the API (bounded: 4 pages of 250).
  const found = [];
  let before = null;
  for (let i = 0; i < 4; i++) {
    const page = await api.get(`/events${qs({ limit: 250, before, event_type: ALERT_TYPES.join(",") })}`);
    found.push(...page.data);
    if (!page.has_more) break;
    before = page.next_before;
  }
  out.append(table([
    { label: "When", cell: (e) => fmtTime(e.created_at) },
    { label: "Alert", cell: (e) => badge(e.type, e.type === "endpoint.disabled" ? "bad" : "warn") },
    { label: "About", cell: (e) => alertSubject(e.payload) },
    { label: "Details", cell: (e) => h("pre", { class: "pre pre-sm" }, JSON.stringify(e.payload, null, 2)) },
  ], found, "No alerts."));
}

function alertSubject(p) {
  if (p && typeof p === "object") {
    if (typeof p.endpoint_id === "string") return link(`#/endpoints/${p.endpoint_id}`, p.endpoint_id, { class: "mono" });
    if (typeof p.source_id === "string") return link(`#/sources/${p.source_id}`, p.source_id, { class: "mono" });
  }
  return "—";
}

// ---------------------------------------------------------------- security

export async function security(main) {
  const [ips, pub, mine] = await Promise.all([
    api.public("/security/egress-ips"),
    api.public("/security/client-certificates"),
    api.get("/client-certificates?limit=250"),
  ]);
  main.append(pageHead("Security"),
    h("p", { class: "lead" }, "What receivers allow-list and pin. Both lists are public at ",
      code("/api/v1/security/egress-ips"), " and ", code("/api/v1/security/client-certificates"), "."),
    h("div", { class: "grid2" },
      panel("Egress IP ranges", ips.ranges.length
        ? h("ul", { class: "ranges", "data-testid": "egress-ranges" }, ips.ranges.map((r) => h("li", {}, code(r))))
        : h("p", { class: "empty" }, "No fixed egress addresses configured: deliveries leave from the host's default route."),
      h("p", { class: "field-hint" }, `Updated ${fmtTime(ips.updated_at)}`)),
      panel("Delivery signing", dl([
        ["Schemes", SCHEMES.join(", ")],
        ["Secrets", "Per endpoint, rotated with a grace period; sealed at rest (XChaCha20-Poly1305) with the server's master key, as are custom header values, developer payloads and client keys."],
        ["Console auth", "Admin key in this tab's session storage, sent as a Bearer header; no cookies."],
      ]))),
    panel("Client certificates (mTLS)", table([
      { label: "Certificate", cell: (c) => h("div", {}, h("span", { class: "strong" }, c.subject), h("div", { class: "sub mono" }, c.id)) },
      { label: "Status", cell: (c) => statusBadge(c.status) },
      { label: "SHA-256 thumbprint", cell: (c) => h("code", { class: "mono thumb" }, c.sha256) },
      { label: "Valid until", cell: (c) => fmtTime(c.not_after) },
    ], pub.certificates, "No client certificates.")),
    panel("Manage certificates", table([
      { label: "Name", cell: (c) => c.name || "—" }, { label: "Id", cell: (c) => code(c.id) },
      { label: "Status", cell: (c) => statusBadge(c.status) }, { label: "Generated here", cell: (c) => (c.generated ? "yes" : "uploaded") },
      { label: "Created", cell: (c) => fmtTime(c.created_at) },
    ], mine.data, "None yet. Create or upload one with POST /api/v1/client-certificates, then attach it on an endpoint's page.")));
}

// ---------------------------------------------------------------- helpers

let rerenderHook = null;
export function setRerender(fn) { rerenderHook = fn; }
function rerender(main, fn) { if (rerenderHook) rerenderHook(fn); }
