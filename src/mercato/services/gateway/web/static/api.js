// The public JSON API as the pages call it: the signed-in user's tokens (kept in this
// browser's localStorage), a refresh when the access token has expired, and every error as
// the API's own problem+json (ApiError). The pages decide nothing the API decides.

const KEY = "mercato.session";

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
  // A 404 for the route itself (a service or feature this server does not have), not for
  // the thing asked about: the gateway answers "no route METHOD PATH".
  get notAvailable() {
    return this.status === 404 && String(this.problem.detail || "").startsWith("no route ");
  }
  // Field errors of a 422: [{loc: ["body", "payment", "cardNumber"], msg}].
  get fieldErrors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

export function session() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

function save(value) {
  if (value) localStorage.setItem(KEY, JSON.stringify(value));
  else localStorage.removeItem(KEY);
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return {};
  }
}

// Who is signed in, as the access token says (the API checks the token itself).
export function who() {
  const s = session();
  if (!s) return null;
  const c = claims(s.accessToken);
  return { userId: c.sub, roles: c.roles || [], name: s.name || "", email: s.email || "" };
}

export const isAdmin = () => (who()?.roles || []).includes("admin");

let refreshing = null;

async function refresh() {
  const s = session();
  if (!s?.refreshToken) return false;
  refreshing ??= (async () => {
    try {
      const r = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refreshToken: s.refreshToken }),
      });
      if (!r.ok) {
        save(null);
        return false;
      }
      const t = await r.json();
      save({ ...s, accessToken: t.accessToken, refreshToken: t.refreshToken });
      return true;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function send(method, path, body, options = {}, retried = false) {
  const headers = { Accept: options.accept || "application/json", ...options.headers };
  const s = session();
  if (s) headers.Authorization = `Bearer ${s.accessToken}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: options.signal,
  });
  if (response.status === 401 && s && !retried && (await refresh())) {
    return send(method, path, body, options, true);
  }
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText };
    }
    throw new ApiError(response.status, problem);
  }
  return response;
}

// One call: the parsed JSON answer (null for 204), or an ApiError.
export async function api(method, path, body, options) {
  const response = await send(method, path, body, options);
  return response.status === 204 ? null : response.json();
}

export const get = (path, options) => api("GET", path, undefined, options);

// Random hex (crypto.randomUUID needs a secure context; this does not).
export const randomId = (bytes) =>
  Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");

// This tab's browsing session (X-Session-ID): the products viewed in one count as viewed
// together for recommendations.
export function browsingSession() {
  let id = sessionStorage.getItem("mercato.browsing");
  if (!id) {
    id = randomId(12);
    sessionStorage.setItem("mercato.browsing", id);
  }
  return id;
}

// A query string of the values that are set.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function signIn(email, password) {
  const t = await api("POST", "/api/v1/auth/login", { email, password });
  save({ accessToken: t.accessToken, refreshToken: t.refreshToken });
  const me = await get("/api/v1/users/me");
  save({ ...session(), name: me.name, email: me.email });
  return me;
}

export async function signUp(name, email, password) {
  await api("POST", "/api/v1/auth/register", { name, email, password });
  return signIn(email, password);
}

export async function signOut() {
  const s = session();
  save(null);
  if (s?.refreshToken) {
    try {
      await fetch("/api/v1/auth/logout", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refreshToken: s.refreshToken }),
      });
    } catch {
      // Signed out here either way; the token expires on its own.
    }
  }
}

// Server-sent events read with fetch (EventSource cannot send the bearer token): calls
// onEvent(name, data) for each event until the stream ends or ``signal`` aborts it.
export async function stream(path, onEvent, signal) {
  const response = await send("GET", path, undefined, { accept: "text/event-stream", signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
