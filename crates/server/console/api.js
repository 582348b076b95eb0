// The admin API client. The key lives in this tab's sessionStorage only and travels as an
// Authorization header (never a cookie), so other sites cannot make the browser use it (CSRF).

const KEY = "hookwarden.apiKey";
const TIMEOUT_MS = 15000;

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set(k) { sessionStorage.setItem(KEY, k); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

async function request(method, path, body, auth, notify = true, timeoutMs = TIMEOUT_MS) {
  const headers = { Accept: "application/json" };
  if (auth) headers.Authorization = `Bearer ${session.key || ""}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", redirect: "error", signal: ctl.signal,
    });
  } catch (e) {
    throw new ApiError(0, "NETWORK", ctl.signal.aborted ? "The server did not answer in time" : "Cannot reach the server");
  } finally {
    clearTimeout(timer);
  }
  const type = resp.headers.get("content-type") || "";
  const data = type.includes("application/json") ? await resp.json().catch(() => null) : await resp.text();
  if (!resp.ok) {
    const err = data && data.error ? data.error : { code: `HTTP_${resp.status}`, message: resp.statusText };
    if (resp.status === 401 && auth && notify) onUnauthorized();
    throw new ApiError(resp.status, err.code, err.message);
  }
  return data;
}

export const api = {
  get: (p) => request("GET", p, undefined, true),
  post: (p, b) => request("POST", p, b === undefined ? {} : b, true),
  patch: (p, b) => request("PATCH", p, b, true),
  /** A POST that answers when long work is done (a receiver probe: up to its deadline). */
  postLong: (p, b) => request("POST", p, b === undefined ? {} : b, true, true, 60000),
  del: (p) => request("DELETE", p, undefined, true),
  /** Checks the key being signed in with (a refusal is reported, not a session end). */
  verify: (p) => request("GET", p, undefined, true, false),
  /** Public routes (security information). */
  public: (p) => request("GET", p, undefined, false),
};

export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") u.set(k, v);
  const s = u.toString();
  return s ? `?${s}` : "";
}
