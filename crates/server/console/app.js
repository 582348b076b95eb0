// The console shell: sign-in, hash routing, toasts.

import { api, session, setUnauthorizedHandler } from "./api.js";
import { h, clear } from "./dom.js";
import * as views from "./views.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signout = document.getElementById("signout");
const toastEl = document.getElementById("toast");

let toastTimer = null;
function toast(text, kind = "ok") {
  toastEl.textContent = text;
  toastEl.className = `toast toast-${kind}`;
  toastEl.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toastEl.hidden = true; }, 3500);
}
views.setToast(toast);

function signIn(reason) {
  nav.hidden = true;
  signout.hidden = true;
  const key = h("input", {
    class: "input mono", type: "password", name: "api_key", autocomplete: "off", required: true,
    placeholder: "hwk_…", "aria-label": "Admin API key",
  });
  const err = h("div", {});
  const form = h("form", { class: "signin panel", "data-testid": "signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "lead" }, "Paste an admin API key (", h("code", {}, "hookwarden keys create"),
      "). It stays in this browser tab only and is sent as a Bearer header."),
    reason ? h("div", { class: "alert alert-bad" }, reason) : null,
    key, err,
    h("button", { class: "btn btn-primary btn-wide", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear(err);
    session.set(key.value.trim());
    try {
      // Any admin route proves the key; one endpoint of the list is the cheapest to answer.
      await api.verify("/endpoints?limit=1");
    } catch (e) {
      session.clear();
      err.append(h("div", { class: "alert alert-bad", role: "alert" }, e.status === 401 ? "That key is not valid." : e.message));
      return;
    }
    if (!location.hash || location.hash === "#/signin") location.hash = "#/endpoints";
    else route();
  });
  clear(main).append(form);
  key.focus();
}

setUnauthorizedHandler(() => {
  session.clear();
  signIn("Your session ended: the key was refused. Sign in again.");
});

signout.addEventListener("click", () => {
  session.clear();
  location.hash = "#/signin";
  signIn();
});

const ROUTES = [
  [/^#\/endpoints$/, "endpoints", (m) => views.endpoints(m)],
  [/^#\/endpoints\/([A-Za-z0-9_]+)$/, "endpoints", (m, id) => views.endpoint(m, id)],
  [/^#\/deliveries$/, "deliveries", (m, _id, p) => views.deliveries(m, p)],
  [/^#\/deliveries\/([A-Za-z0-9_]+)$/, "deliveries", (m, id) => views.delivery(m, id)],
  [/^#\/sources$/, "sources", (m) => views.sources(m)],
  [/^#\/sources\/([A-Za-z0-9_]+)$/, "sources", (m, id) => views.source(m, id)],
  [/^#\/audit$/, "audit", (m) => views.audit(m)],
  [/^#\/event-types$/, "event-types", (m) => views.eventTypes(m)],
  [/^#\/alerts$/, "alerts", (m) => views.alerts(m)],
  [/^#\/security$/, "security", (m) => views.security(m)],
];

let generation = 0;
async function route() {
  if (!session.key) return signIn();
  nav.hidden = false;
  signout.hidden = false;
  const [path, query] = (location.hash || "#/endpoints").split("?");
  const params = new URLSearchParams(query || "");
  let found = ROUTES.find(([re]) => re.test(path));
  if (!found) {
    location.hash = "#/endpoints";
    return;
  }
  const [re, section, render] = found;
  const m = path.match(re);
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.section === section);
  const gen = ++generation;
  const view = h("div", { class: "view", "data-view": section });
  clear(main).append(h("p", { class: "loading" }, "Loading…"));
  try {
    await render(view, m[1], params);
  } catch (e) {
    if (gen !== generation) return;
    clear(view).append(h("div", { class: "alert alert-bad", role: "alert" }, h("strong", {}, e.code || "ERROR"), " ", e.message || String(e)));
  }
  if (gen === generation && session.key) clear(main).append(view);
}

views.setRerender(() => route());
window.addEventListener("hashchange", route);
route();
