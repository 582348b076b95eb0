// Drives the web console in headless Chromium (Debian's `chromium`, through `playwright-core`)
// against a running `hookwarden serve`. Run by crates/cli/tests/console.rs, which passes a JSON
// config on stdin: {base, key, receiver_url, failing_url, screenshots, chromium, timeout_ms}.
// Prints one JSON object (what it saw) on stdout; exits 1 with a message on the first failure.
// Every request leaves for 127.0.0.1 only; every wait is bounded.

import { chromium } from "playwright-core";

const cfg = JSON.parse(await new Promise((res) => {
  let s = "";
  process.stdin.on("data", (d) => { s += d; });
  process.stdin.on("end", () => res(s));
}));
const T = cfg.timeout_ms || 20000;
const origin = new URL(cfg.base).origin;
const XSS_UA = `<img src=x onerror="window.__xss=1"><script>window.__xss=1</script> evil-agent`;
const seen = { foreign_requests: [], console_errors: [], csp: null, checks: [] };

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  seen.checks.push(what);
}

async function ingest(url, headers = {}, body = '{"hello":"inbound"}') {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), 10000);
  try {
    const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body, signal: ctl.signal });
    return { status: r.status, body: await r.text() };
  } finally {
    clearTimeout(t);
  }
}

async function shot(page, name) {
  if (!cfg.screenshots) return;
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${cfg.screenshots}/${name}.png`, fullPage: true });
}

/** Re-runs `fn` (which searches or reloads) until `pred` holds; bounded by T. */
async function until(page, what, fn) {
  const deadline = Date.now() + T;
  for (let i = 0; i < 100 && Date.now() < deadline; i++) {
    if (await fn()) return;
    await page.waitForTimeout(300);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps"],
  timeout: T,
});
let code = 0;
let page = null;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 }, deviceScaleFactor: 1 });
  page = await ctx.newPage();
  page.setDefaultTimeout(T);
  page.on("request", (req) => {
    const u = req.url();
    if (!u.startsWith(origin) && !u.startsWith("data:")) seen.foreign_requests.push(u);
  });
  page.on("console", (m) => { if (m.type() === "error") seen.console_errors.push(m.text()); });
  page.on("pageerror", (e) => seen.console_errors.push(String(e)));

  // The page and its security headers.
  const resp = await page.goto(`${cfg.base}/console/`, { waitUntil: "load" });
  check(resp.status() === 200, "console answers 200");
  const hd = resp.headers();
  seen.csp = hd["content-security-policy"];
  check(seen.csp && seen.csp.includes("default-src 'none'") && seen.csp.includes("script-src 'self'") && !seen.csp.includes("unsafe"), "strict CSP on the page");
  check(hd["x-frame-options"] === "DENY" && hd["x-content-type-options"] === "nosniff" && hd["referrer-policy"] === "no-referrer", "framing, sniffing and referrer headers");

  // A wrong key is refused; the right one signs in.
  await page.fill("[data-testid=signin] input[name=api_key]", "hwk_not_a_real_key");
  await page.click("[data-testid=signin] button[type=submit]");
  await page.getByText("That key is not valid.").waitFor();
  check(await page.evaluate(() => sessionStorage.length === 0), "refused key not kept");
  await page.fill("[data-testid=signin] input[name=api_key]", cfg.key);
  await page.click("[data-testid=signin] button[type=submit]");
  await page.locator("#nav").waitFor({ state: "visible" });
  check(await page.evaluate((k) => sessionStorage.getItem("hookwarden.apiKey") === k && localStorage.length === 0 && document.cookie === "", cfg.key), "key in sessionStorage only, no cookie");

  // Create an endpoint pointing at the local receiver; the secret is shown once.
  await page.click("[data-testid=new-endpoint]");
  const ef = page.locator("[data-testid=endpoint-form]");
  await ef.locator("input[name=url]").fill(cfg.receiver_url);
  await ef.locator("input[name=description]").fill("Billing service <img src=x onerror=\"window.__xss=1\">");
  await ef.locator("textarea[name=headers]").fill("X-Tenant: acme\nAuthorization: Bearer receiver-token-123456");
  await ef.locator("button[type=submit]").click();
  const secret = await page.locator("[data-testid=shown-once] input").inputValue();
  check(secret.startsWith("whsec_"), "signing secret shown once");
  const epId = (await page.locator("[data-testid=shown-once]").locator("xpath=..").locator("a").first().textContent()).trim();
  check(epId.startsWith("ep_"), "endpoint id shown");

  // A second endpoint that always fails (for the chart and the failed-delivery view).
  if (cfg.failing_url) {
    await page.click("[data-testid=new-endpoint]");
    await ef.locator("input[name=url]").fill(cfg.failing_url);
    await ef.locator("input[name=description]").fill("Legacy CRM (answers 500)");
    await ef.locator("input[name=event_types]").fill("invoice.paid");
    await ef.locator("button[type=submit]").click();
    await page.locator("[data-testid=shown-once]").waitFor();
  }

  // Send events from the console.
  const form = page.locator("[data-testid=send-event]");
  for (const [type, payload] of [["invoice.paid", '{"invoice":"in_1001","amount":4200}'], ["customer.created", '{"customer":"cus_77"}'], ["invoice.paid", '{"invoice":"in_1002","amount":990}']]) {
    await form.locator("input[name=type]").fill(type);
    await form.locator("textarea[name=payload]").fill(payload);
    await form.locator("button[type=submit]").click();
    await page.locator("[data-testid=event-sent]").waitFor();
  }
  check(await page.evaluate(() => document.querySelectorAll("main td img").length === 0 && window.__xss === undefined), "endpoint description rendered as text");

  // The delivery succeeds, as the endpoint's page shows.
  await page.goto(`${cfg.base}/console/#/endpoints/${epId}`);
  await until(page, "a succeeded delivery", async () => {
    await page.locator("[data-testid=delivery-search] button[type=submit]").click();
    await page.waitForTimeout(200);
    return (await page.locator("main table .badge-ok", { hasText: "succeeded" }).count()) >= 3;
  });
  check(true, "deliveries succeeded in the console");
  const editHeaders = await page.locator("[data-testid=edit-endpoint] textarea").inputValue();
  check(editHeaders.toLowerCase().includes("authorization: ****3456") && !editHeaders.includes("receiver-token"), "secret custom header masked in the edit form");
  await page.reload();
  await page.locator("[data-testid=delivery-chart] [data-series=succeeded]").waitFor();
  check(Number(await page.locator("[data-testid=delivery-chart] [data-series=succeeded]").textContent()) >= 3, "endpoint chart counts the successes");
  await shot(page, "endpoint");

  // The receiver probe: this receiver answers 200 to everything, so the report says every
  // forged case failed and the grade is inconclusive (it may verify after answering).
  check((await page.locator("[data-testid=probe-panel]").textContent()).includes("Not probed yet"), "no probe yet");
  await page.click("[data-testid=probe-endpoint]");
  await page.locator("[data-testid=probe-report]").waitFor({ timeout: T });
  const report = page.locator("[data-testid=probe-report]");
  check((await report.getAttribute("data-grade")) === "inconclusive", "probe grade of an accept-all receiver is inconclusive");
  check((await report.locator("[data-verdict=fail]").count()) >= 10, "probe: forged cases failed");
  check((await report.locator("[data-verdict=pass]").count()) === 1, "probe: only the valid case passed");
  const reportText = await report.textContent();
  check(reportText.includes("accepts every request") && reportText.includes("compare_digest") && reportText.includes("from standardwebhooks import Webhook"), "probe advice and sample shown");
  await page.reload();
  await page.locator("[data-testid=probe-report]").waitFor({ timeout: T });
  check((await page.locator("[data-testid=probe-report]").getAttribute("data-grade")) === "inconclusive", "the stored report is shown again");
  await shot(page, "probe");

  // Payload filter and transformation: tried on a sample before saving (dry run), then saved.
  const routing = page.locator("[data-testid=routing-panel]");
  await routing.locator("textarea[aria-label='Payload filter']").fill('{"data.amount": {"$gte": 1000}}');
  await routing.locator("textarea[aria-label='Transformation']").fill(
    'fn handler(webhook) {\n  print(`amount ${webhook.payload.data.amount}`);\n  webhook.headers["X-Plan"] = "gold";\n  webhook\n}');
  await routing.locator("textarea[aria-label='Sample payload']").fill('{"amount": 250}');
  await page.click("[data-testid=dry-run]");
  await routing.locator("[data-delivered]").waitFor();
  check((await routing.locator("[data-delivered]").getAttribute("data-delivered")) === "false", "dry run: the filter keeps a small amount out");
  await routing.locator("textarea[aria-label='Sample payload']").fill('{"amount": 4200}');
  await page.click("[data-testid=dry-run]");
  await routing.locator("[data-delivered=true]").waitFor();
  const dry = await routing.locator("[data-testid=dry-run-result]").textContent();
  check(dry.includes("x-plan") && dry.includes("gold") && dry.includes("amount 4200") && dry.includes("****"), "dry run shows the transformed, signed request and the script's output");
  await shot(page, "routing");
  await page.click("[data-testid=save-routing]");
  await until(page, "the saved filter", async () =>
    (await page.locator("[data-testid=routing-panel] textarea[aria-label='Payload filter']").inputValue()).includes("$gte"));
  const saved = await fetch(`${cfg.base}/api/v1/endpoints/${epId}`, { headers: { authorization: `Bearer ${cfg.key}` } }).then((r) => r.json());
  check(saved.filter && saved.filter["data.amount"]["$gte"] === 1000 && saved.transformation.includes("X-Plan"), "filter and transformation saved");
  // Recover: nothing failed here, so the job completes with nothing to send again.
  await page.click("[data-testid=recover]");
  await page.locator("[data-testid=recover-panel] [data-testid=recovery][data-status=completed]").waitFor({ timeout: T });
  check((await page.locator("[data-testid=recover-panel]").textContent()).includes("0 of 0"), "recover shows its progress");

  // Delivery detail: attempt with status, masked request headers, source address.
  await page.locator("main table a.mono").first().click();
  await page.locator("[data-testid=attempt]").first().waitFor();
  check((await page.locator("[data-testid=status-code]").first().textContent()) === "200", "attempt shows HTTP 200");
  const headerText = await page.locator("[data-testid=attempt]").first().textContent();
  check(headerText.includes("webhook-signature") && headerText.includes("****") && headerText.includes("x-tenant") && headerText.includes("acme"), "request headers with the signature masked");
  check(!headerText.includes("receiver-token-123456"), "custom secret header masked in the attempt");
  check(/127\.0\.0\.1:\d+/.test(headerText), "source address shown");
  await shot(page, "delivery");
  // The same event, sent to an endpoint that did not get it (the failing one is not subscribed to
  // every type; its own delivery of this event, if any, makes a 409 that the page shows).
  if (cfg.failing_url) {
    const eps = await fetch(`${cfg.base}/api/v1/endpoints?limit=10`, { headers: { authorization: `Bearer ${cfg.key}` } }).then((r) => r.json());
    const other = eps.data.find((x) => x.id !== epId);
    await page.locator("[data-testid=send-to-endpoint] input").fill(other.id);
    await page.locator("[data-testid=send-to-endpoint] button[type=submit]").click();
    await page.locator("[data-testid=sent-to-endpoint], [data-testid=send-to-endpoint] ~ div [data-testid=error]").first().waitFor({ timeout: T });
    const sent = await page.locator("main").textContent();
    check(sent.includes(`created for ${other.id}`) || sent.includes("DELIVERY_EXISTS"), "an event sent to another endpoint from the console");
  }

  // Wait for the failing endpoint's deliveries to fail for good, so the overview shows both.
  await page.goto(`${cfg.base}/console/#/endpoints`);
  if (cfg.failing_url) {
    await until(page, "a failed delivery in the chart", async () => {
      await page.reload();
      const n = page.locator("[data-testid=delivery-chart] [data-series=failed]");
      await n.waitFor();
      return Number(await n.textContent()) >= 2;
    });
  }
  await shot(page, "endpoints");

  // Sources: create (URL shown once), accept one request, revoke (with confirmation), refused.
  await page.goto(`${cfg.base}/console/#/sources`);
  const newSource = async (name, cidrs) => {
    await page.click("[data-testid=new-source]");
    const sf = page.locator("[data-testid=source-form]");
    await sf.locator("input").first().fill(name);
    await sf.locator("select").selectOption("none");
    await sf.locator("textarea").fill(cidrs);
    await sf.locator("button[type=submit]").click();
    return (await page.locator("[data-testid=shown-once] input").inputValue()).trim();
  };
  const url = await newSource("Payments provider", "127.0.0.1/32");
  check(url.startsWith(`${origin}/in/`), "secret URL shown once");
  const blocked = await newSource("Partner (office network only)", "10.20.0.0/16");
  const srcLink = page.locator("main table a.strong", { hasText: "Payments provider" });
  await srcLink.waitFor();
  const srcHref = await srcLink.getAttribute("href");

  check((await ingest(url, {}, '{"payment":"pay_1","status":"captured"}')).status === 202, "live URL accepts (202)");
  check((await ingest(url, { "user-agent": "acme-payments/2.1" }, '{"payment":"pay_2","status":"refunded"}')).status === 202, "live URL accepts again (202)");
  check((await ingest(blocked)).status === 403, "address outside the allowlist refused (403)");
  check((await ingest(`${origin}/in/wh_doesnotexist0000000000000000`)).status === 404, "unknown token refused");

  await page.goto(`${cfg.base}/console/${srcHref}`);
  await page.click("[data-testid=revoke]");
  await page.locator("[data-testid=confirm-revoke]").waitFor();
  await page.click("[data-testid=confirm-revoke-yes]");
  await page.locator("[data-testid=source-status] .badge-bad", { hasText: "revoked" }).waitFor();
  const refused = await ingest(url, { "user-agent": XSS_UA });
  check(refused.status === 410 && refused.body.includes("WEBHOOK_REVOKED"), "revoked URL refused (410 WEBHOOK_REVOKED)");

  // The audit view shows the refusal; the attacker's user agent is text, nothing ran.
  await until(page, "the 410 in the audit view", async () => {
    await page.locator("[data-testid=audit-search] button[type=submit]").click();
    await page.waitForTimeout(250);
    return (await page.locator("[data-testid=audit-status]", { hasText: "410" }).count()) >= 1;
  });
  check((await page.locator("main table", { hasText: "WEBHOOK_REVOKED" }).count()) >= 1, "audit shows WEBHOOK_REVOKED");
  check((await page.locator(".ua", { hasText: "<script>window.__xss=1</script>" }).count()) === 1, "hostile user agent shown as text");
  check(await page.evaluate(() => window.__xss === undefined && document.querySelectorAll("main td img, main td script").length === 0), "hostile user agent did not execute");
  await page.reload();
  await page.locator("[data-testid=ingest-chart] [data-series=ACCEPTED]").waitFor();
  check(Number(await page.locator("[data-testid=ingest-chart] [data-series=ACCEPTED]").textContent()) === 2, "source chart: 2 accepted");
  check(Number(await page.locator("[data-testid=ingest-chart] [data-series=WEBHOOK_REVOKED]").textContent()) === 1, "source chart: 1 revoked");
  await shot(page, "source");

  // The whole audit log with a filter, and the overview chart of every source.
  await page.goto(`${cfg.base}/console/#/audit`);
  await page.locator("[data-testid=audit-search] input[aria-label=Outcome]").fill("WEBHOOK_REVOKED");
  await page.locator("[data-testid=audit-search] button[type=submit]").click();
  await until(page, "filtered audit", async () => (await page.locator("[data-testid=audit-status]").count()) === 1);
  await page.goto(`${cfg.base}/console/#/sources`);
  await page.locator("[data-testid=ingest-chart] [data-series=IP_NOT_ALLOWED]").waitFor();
  await shot(page, "sources");

  // Bulk retry of failed deliveries by filter, from the deliveries page.
  if (cfg.failing_url) {
    await page.goto(`${cfg.base}/console/#/deliveries`);
    const bulk = page.locator("[data-testid=bulk-retry]");
    await bulk.locator("input[aria-label='Event type']").fill("invoice.*");
    await bulk.locator("button[type=submit]").click();
    await page.locator("[data-testid=recovery]").first().waitFor({ timeout: T });
    const rec = await page.locator("[data-testid=recovery]").first().textContent();
    check(/\d+ of [1-9]/.test(rec) && rec.includes("invoice.*"), `bulk retry lists its job with progress: ${rec}`);
    await shot(page, "recoveries");
  }

  // Security page and alerts.
  await page.goto(`${cfg.base}/console/#/security`);
  await page.locator("main h1", { hasText: "Security" }).waitFor();
  const ranges = await page.locator("[data-testid=egress-ranges]").textContent();
  check(ranges.includes("203.0.113.10/31") && ranges.includes("2001:db8:40::/48"), "security page lists the egress ranges");
  check((await page.locator("main code.thumb").count()) >= 1, "security page lists certificate thumbprints");
  await shot(page, "security");
  // The event-type catalogue: schema and example shown as text.
  const et = await fetch(`${cfg.base}/api/v1/event-types`, {
    method: "POST",
    headers: { authorization: `Bearer ${cfg.key}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "invoice.paid", description: `Paid ${XSS_UA}`,
      schema: { type: "object", required: ["amount"], properties: { amount: { type: "integer", minimum: 0 } } },
      example: { amount: 4200 } }),
  });
  check(et.status === 201, `event type created (${et.status})`);
  await page.goto(`${cfg.base}/console/#/event-types`);
  await page.locator("[data-testid=event-types]").waitFor();
  const etText = await page.locator("[data-testid=event-types]").textContent();
  check(etText.includes("invoice.paid") && etText.includes("\"minimum\": 0") && etText.includes("4200") && etText.includes("validated"), "event types listed with schema and example");
  check(await page.evaluate(() => document.querySelectorAll("main img").length === 0 && window.__xss === undefined), "event type description rendered as text");
  await shot(page, "event-types");
  await page.goto(`${cfg.base}/console/#/alerts`);
  await page.locator("main h1", { hasText: "Alerts" }).waitFor();
  await page.locator("main table, main .empty").first().waitFor();
  seen.alerts_rows = await page.locator("main tbody tr").count();

  // Sign out forgets the key.
  await page.click("#signout");
  await page.locator("[data-testid=signin]").waitFor();
  check(await page.evaluate(() => sessionStorage.length === 0), "sign-out clears the key");

  check(seen.foreign_requests.length === 0, `no request left for another origin: ${seen.foreign_requests.join(", ")}`);
  const cspErrors = seen.console_errors.filter((e) => /Content Security Policy|Refused to/i.test(e));
  check(cspErrors.length === 0, `no CSP violation: ${cspErrors.join(" | ")}`);
  seen.ok = true;
} catch (e) {
  seen.ok = false;
  seen.error = String(e && e.stack ? e.stack : e);
  code = 1;
  if (page) {
    seen.url_at_failure = page.url();
    seen.page_at_failure = await page.locator("main").textContent({ timeout: 2000 }).catch(() => null);
  }
} finally {
  await browser.close().catch(() => {});
}
process.stdout.write(`${JSON.stringify(seen)}\n`);
process.exit(code);
