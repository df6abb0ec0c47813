// Small DOM helpers shared by the storefront and the console: elements built with text
// nodes (never HTML strings), money and dates, errors shown as the API words them, forms
// whose fields show the API's 422 errors, paging, and the sign-in box.

import { ApiError, isAdmin, randomId, signIn, signOut, signUp, who } from "./api.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export const money = (amount, currency = "USD") =>
  new Intl.NumberFormat(undefined, { style: "currency", currency }).format(Number(amount));

export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

export const badge = (text) => h("span", { class: `badge ${text}` }, text);

export const main = () => document.getElementById("main");

// Replace the page's content (its heading stays the page's h1 unless one is given).
export function render(...nodes) {
  const m = main();
  const h1 = m.querySelector("h1");
  m.replaceChildren(h1, ...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

export function title(text) {
  main().querySelector("h1").textContent = text;
  document.title = `${text} · ${document.title.split(" · ").pop()}`;
}

export function toast(message) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
}

// An error as the API said it (problem+json), as an alert; "not available" for a route this
// server does not have.
export function errorBox(err, what = "This") {
  if (err instanceof ApiError && err.notAvailable) return unavailable(what);
  if (!(err instanceof ApiError)) return h("div", { class: "alert", role: "alert" }, String(err.message || err));
  const p = err.problem;
  const lines = err.fieldErrors.map((e) => h("li", {}, `${(e.loc || []).slice(1).join(".")}: ${e.msg}`));
  return h(
    "div",
    { class: "alert", role: "alert" },
    h("strong", {}, `${p.title || "Error"} (${err.status}): `),
    p.detail || "",
    lines.length ? h("ul", {}, lines) : null,
  );
}

export const unavailable = (what) =>
  h("p", { class: "unavailable", role: "status" }, `Not available on this server: ${what}.`);

// Whether ``err`` is a route this server does not have.
export const missing = (err) => err instanceof ApiError && err.notAvailable;

// A labelled input. ``name`` is the API's field name, so a 422 finds it.
export function field(label, name, attrs = {}) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 7)}`;
  const control = attrs.options
    ? h("select", { id, name, ...attrs, options: null }, attrs.options.map(([v, t]) => h("option", { value: v }, t)))
    : h(attrs.rows ? "textarea" : "input", { id, name, type: "text", ...attrs });
  if (attrs.options && attrs.value !== undefined) control.value = attrs.value;
  const wrap = h("div", { class: "field" }, h("label", { for: id }, label), control);
  return wrap;
}

// A form whose submit calls ``action(values)``; the API's errors show at the fields they name
// and above the button. Returns the form.
export function form(children, submitText, action, { inline = false, danger = false } = {}) {
  const status = h("div", { "aria-live": "assertive" });
  const button = h("button", { type: "submit", class: danger ? "danger" : null }, submitText);
  const f = h("form", { class: inline ? "inline" : "", novalidate: true }, children, status, h("div", {}, button));
  f.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const e of f.querySelectorAll(".field-error")) e.remove();
    for (const e of f.querySelectorAll("[aria-invalid]")) e.removeAttribute("aria-invalid");
    status.replaceChildren();
    const values = {};
    for (const [k, v] of new FormData(f).entries()) values[k] = v;
    button.disabled = true;
    try {
      await action(values, f);
    } catch (err) {
      showFieldErrors(f, err);
      status.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  return f;
}

function showFieldErrors(f, err) {
  if (!(err instanceof ApiError)) return;
  let first = null;
  for (const e of err.fieldErrors) {
    const name = (e.loc || []).filter((x) => typeof x === "string").pop();
    const input = name && f.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input) continue;
    const id = `${input.id}-err`;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", id);
    input.after(h("p", { class: "field-error", id }, e.msg));
    first ??= input;
  }
  first?.focus();
}

export function pager(page, pageSize, total, go) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    h("button", { class: "secondary", disabled: page <= 1, onclick: () => go(page - 1) }, "‹ Previous"),
    h("span", {}, `Page ${page} of ${pages} · ${total} in all`),
    h("button", { class: "secondary", disabled: page >= pages, onclick: () => go(page + 1) }, "Next ›"),
  );
}

export function table(headers, rows, { stack = true } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: stack ? "stack" : "" },
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col", class: t.endsWith(" ") ? "num" : "" }, t.trim())))),
      h(
        "tbody",
        {},
        rows.map((cells) =>
          h("tr", {}, cells.map((c, i) => h("td", { "data-label": headers[i].trim(), class: headers[i].endsWith(" ") ? "num" : "" }, c))),
        ),
      ),
    ),
  );
}

// The same path with other query values (for links that keep the rest of the filter).
export function withQuery(changes) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) if (v === "" || v == null) q.delete(k); else q.set(k, v);
  const s = q.toString();
  return location.pathname + (s ? `?${s}` : "");
}

export const param = (name) => new URLSearchParams(location.search).get(name) || "";
export const lastSegment = () => decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");

// The sign-in form; ``done`` runs once signed in.
export function signinForm(done) {
  return form(
    [
      field("Email", "email", { type: "email", autocomplete: "email", required: true }),
      field("Password", "password", { type: "password", autocomplete: "current-password", required: true }),
    ],
    "Sign in",
    async (v) => {
      await signIn(v.email, v.password);
      done();
    },
  );
}

export function signupForm(done) {
  return form(
    [
      field("Name", "name", { autocomplete: "name", required: true }),
      field("Email", "email", { type: "email", autocomplete: "email", required: true }),
      field("Password", "password", { type: "password", autocomplete: "new-password", required: true }),
    ],
    "Create account",
    async (v) => {
      await signUp(v.name, v.email, v.password);
      done();
    },
  );
}

// The header's corner: who is signed in, and the way in or out.
export function showWho() {
  const box = document.getElementById("who");
  const w = who();
  if (!w) {
    box.replaceChildren(h("a", { href: `/signin?next=${encodeURIComponent(location.pathname + location.search)}` }, "Sign in"), h("a", { href: "/signup" }, "Sign up"));
    return;
  }
  const toConsole = isAdmin() && !location.pathname.startsWith("/console");
  box.replaceChildren(
    h("span", {}, w.name || w.email || "Signed in"),
    ...(toConsole ? [h("a", { href: "/console" }, "Console")] : []),
    h("button", { type: "button", onclick: async () => { await signOut(); location.assign("/"); } }, "Sign out"),
  );
}

// Run the page named by <main data-page>; an error nobody caught shows in the page.
export async function boot(pages) {
  showWho();
  const name = main().dataset.page;
  try {
    await pages[name]();
  } catch (err) {
    render(errorBox(err));
  }
}

// An Idempotency-Key.
export const newKey = () => randomId(16);
