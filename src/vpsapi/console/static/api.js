// The console's only way to the server: the public API, with the login's tokens.
// Tokens live in memory and sessionStorage (this tab only); the access token is refreshed
// with the refresh token shortly before it expires.

const STORE_KEY = "vpsapi.console.session";
const REFRESH_MARGIN_MS = 60_000;

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
    this.fields = fieldErrors(body);
  }
}

let session = loadSession();
let refreshTimer = null;
let refreshing = null;
const sessionListeners = new Set();
// Aborted when the session ends: a request still under way must not land after the
// logout has revoked its token (a 401 the user would see as an error).
let sessionRequests = new AbortController();

function loadSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
    return stored && stored.accessToken && stored.refreshToken ? stored : null;
  } catch {
    return null;
  }
}

function saveSession(next, reason = "") {
  if (!next) {
    sessionRequests.abort();
    sessionRequests = new AbortController();
  }
  session = next;
  if (next) sessionStorage.setItem(STORE_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(STORE_KEY);
  scheduleRefresh();
  for (const listener of sessionListeners) listener(next, reason);
}

export function onSessionChange(listener) {
  sessionListeners.add(listener);
  return () => sessionListeners.delete(listener);
}

export const currentUser = () => (session ? session.user : null);
export const isAdmin = () => currentUser()?.role === "admin";
export const accessToken = () => (session ? session.accessToken : "");

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const ttl = session.expiresAt - session.issuedAt;
  const margin = Math.min(REFRESH_MARGIN_MS, ttl * 0.2);
  const delay = Math.max(1000, session.expiresAt - margin - Date.now());
  refreshTimer = setTimeout(() => refresh().catch(() => {}), delay);
}

function tokensFrom(data, user) {
  const now = Date.now();
  return {
    accessToken: data.accessToken,
    refreshToken: data.refreshToken,
    issuedAt: now,
    expiresAt: now + (data.expiresIn || 1800) * 1000,
    user,
  };
}

export async function resume() {
  if (!session) return null;
  scheduleRefresh();
  if (session.expiresAt - Date.now() < 5000) await refresh();
  return session ? session.user : null;
}

export async function login(identifier, password) {
  if (identifier.includes("@")) {
    const body = await send("POST", "/api/v1/auth/login", { email: identifier, password });
    saveSession(tokensFrom(body.data, body.data.user), "login");
    return body.data.user;
  }
  // /api/v1/auth/login takes an email only (seed 001); the seed-002 login takes a username.
  const body = await send("POST", "/api/auth/login", { username: identifier, password });
  const tokens = {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    expiresIn: body.expires_in,
  };
  saveSession(tokensFrom(tokens, body.user), "login");
  return body.user;
}

export function refresh() {
  if (!session) return Promise.reject(new ApiError(401, "Not signed in"));
  refreshing ??= (async () => {
    try {
      const body = await send("POST", "/api/v1/auth/refresh", {
        refreshToken: session.refreshToken,
      });
      saveSession(tokensFrom(body.data, session.user), "refresh");
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        saveSession(null, "Your session has expired. Sign in again to continue.");
      }
      throw error;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

export async function logout() {
  const ending = session;
  if (!ending) return;
  saveSession(null, "You have signed out.");
  try {
    await fetch("/api/v1/auth/logout", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${ending.accessToken}` },
      body: JSON.stringify({ refreshToken: ending.refreshToken }),
    });
  } catch {
    // Signed out locally either way; the refresh token expires on its own.
  }
}

// One request without the session logic (login/refresh use it directly).
async function send(method, path, json, headers = {}) {
  const { signal } = sessionRequests;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: json === undefined ? headers : { "Content-Type": "application/json", ...headers },
      body: json === undefined ? undefined : JSON.stringify(json),
      signal,
    });
  } catch {
    if (signal.aborted) throw new ApiError(0, "Signed out.");
    throw new ApiError(0, "Cannot reach the server. Check that vpsapi is running and try again.");
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) throw new ApiError(response.status, errorMessage(response, body), body);
  return body;
}

/** An authenticated API call; refreshes the token first when needed, retries once on 401. */
export async function api(path, { method = "GET", json, raw = false } = {}) {
  if (!session) throw new ApiError(401, "Sign in first.");
  if (session.expiresAt - Date.now() < 10_000) await refresh();
  for (let attempt = 0; ; attempt++) {
    const headers = { Authorization: `Bearer ${session.accessToken}` };
    try {
      if (raw) return await rawFetch(method, path, headers);
      return await send(method, path, json, headers);
    } catch (error) {
      if (error.status !== 401 || attempt > 0) throw error;
      await refresh();
    }
  }
}

async function rawFetch(method, path, headers) {
  const { signal } = sessionRequests;
  const response = await fetch(path, { method, headers, signal }).catch(() => null);
  if (!response && signal.aborted) throw new ApiError(0, "Signed out.");
  if (!response) throw new ApiError(0, "Cannot reach the server. Check that vpsapi is running.");
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(response.status, errorMessage(response, body), body);
  }
  return response;
}

/** The best human sentence out of any of the API's error body families. */
export function errorMessage(response, body) {
  const status = response.status;
  if (status === 429) {
    const wait = response.headers.get("retry-after");
    return `Too many requests. Wait ${wait ? `${wait} s` : "a moment"} and try again.`;
  }
  let text = "";
  if (body) {
    if (typeof body.detail === "string") text = body.detail;
    else if (Array.isArray(body.detail))
      text = body.detail.map((d) => `${locName(d.loc)}${d.msg}`).join("; ");
    else if (body.message && body.success === false) text = body.message;
    else if (typeof body.error === "string") text = body.error;
    const fields = fieldErrors(body);
    const listed = Object.entries(fields).map(([f, m]) => `${f}: ${m}`);
    if (listed.length && !Array.isArray(body.detail)) text = `${text}: ${listed.join("; ")}`;
  }
  if (text) return text;
  return (
    {
      401: "You are not signed in (or your session expired). Sign in again.",
      403: "You do not have permission for this. Ask an admin.",
      404: "Not found. It may have been deleted.",
      503: "The service is temporarily unavailable. Try again in a minute.",
    }[status] || `The server answered ${status}. Try again, or check the server log.`
  );
}

function locName(loc) {
  const parts = (loc || []).filter((p) => !["body", "query", "path"].includes(p));
  return parts.length ? `${parts.join(".")}: ` : "";
}

function fieldErrors(body) {
  const out = {};
  if (!body) return out;
  if (Array.isArray(body.detail))
    for (const d of body.detail) out[locName(d.loc).slice(0, -2) || "body"] = d.msg;
  if (Array.isArray(body.details)) for (const d of body.details) out[d.field] = d.message;
  if (body.errors && typeof body.errors === "object")
    for (const [field, messages] of Object.entries(body.errors))
      out[field] = Array.isArray(messages) ? messages.join(", ") : String(messages);
  return out;
}

// ---- streams ---------------------------------------------------------------------------

/** A URL for EventSource / WebSocket, which cannot send headers: the JWT goes in the query. */
export function streamUrl(path, params = {}) {
  const query = new URLSearchParams({ ...params, access_token: accessToken() });
  return `${path}${path.includes("?") ? "&" : "?"}${query}`;
}

export function socketUrl(path, params = {}) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${streamUrl(path, params)}`;
}

// ---- what this server offers -------------------------------------------------------------

let features = null;

/** The API's own OpenAPI document says which endpoints exist, so pages for modules this
 * server does not (yet) have show a clear state instead of failing requests. */
export async function loadFeatures() {
  if (features) return features;
  const response = await fetch("/openapi.json").catch(() => null);
  const doc = response && response.ok ? await response.json() : { paths: {} };
  features = new Set();
  for (const [path, ops] of Object.entries(doc.paths || {}))
    for (const method of Object.keys(ops)) features.add(`${method.toUpperCase()} ${path}`);
  return features;
}

export function offers(method, path) {
  return features ? features.has(`${method} ${path}`) : false;
}
