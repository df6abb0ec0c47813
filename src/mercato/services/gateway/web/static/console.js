// The operations console: every page reads and acts through the admin routes of the API.

import { api, get, isAdmin, query, who } from "./api.js";
import { orderView, productNames } from "./order.js";
import {
  badge, boot, errorBox, field, form, h, lastSegment, missing, money, newKey, pager, param,
  render, signinForm, table, title, toast, unavailable, when, withQuery,
} from "./ui.js";

const STATUSES = ["CREATED", "PAID", "RESERVED", "DELIVERING", "COMPLETED", "CANCELLED"];
const MINUTES = 15; // the dashboard's window

function needAdmin() {
  if (!who()) {
    render(h("p", {}, "The console is for administrators. Sign in with an admin account."), signinForm(() => location.reload()));
    return true;
  }
  if (!isAdmin()) {
    render(h("p", { class: "alert", role: "alert" }, "Your account does not have the admin role: the console's routes answer 403."));
    return true;
  }
  return false;
}

// A section that shows "not available" when its route is not on this server.
async function section(heading, load, what = heading) {
  const box = h("section", {}, h("h2", {}, heading));
  try {
    box.append(await load());
  } catch (err) {
    box.append(missing(err) ? unavailable(what) : errorBox(err));
  }
  return box;
}

// Orders newest first, page after page while ``more(lastOrderOfPage)`` says so (at most ``max`` pages).
async function recentOrders(filter, more, max = 5) {
  const found = [];
  for (let page = 1; page <= max; page += 1) {
    const list = await get(`/api/v1/orders${query({ ...filter, page, pageSize: 100 })}`);
    found.push(...list.items);
    if (found.length >= list.total || !list.items.length || !more(list.items[list.items.length - 1])) break;
  }
  return found;
}

const bar = (n, max) => h("span", {}, h("span", { class: "bar", "aria-hidden": "true", style: null, "data-w": n }), ` ${n}`);

function bars(node, max) {
  for (const b of node.querySelectorAll(".bar")) b.style.width = `${(8 * Number(b.dataset.w)) / Math.max(1, max)}rem`;
  return node;
}

async function dashboard() {
  if (needAdmin()) return;
  const since = Date.now() - MINUTES * 60_000;
  const services = section("Services", async () => {
    const s = await get("/api/v1/admin/system");
    return table(["Service", "Ready", "Outbox backlog ", "Oldest unsent ", "Dead letters "], s.services.map((x) => [
      x.name, badge(x.ready ? "ok" : "bad"), String(x.outboxBacklog),
      x.oldestUnsentAgeSeconds == null || !x.outboxBacklog ? "—" : `${Number(x.oldestUnsentAgeSeconds).toFixed(1)} s`,
      x.deadLetters ? h("a", { href: `/console/dead-letters?service=${encodeURIComponent(x.name)}` }, String(x.deadLetters)) : "0",
    ]));
  }, "The services' outbox backlog and dead-letter counts (GET /api/v1/admin/system)");
  const readiness = section("Readiness", async () => {
    const r = await fetch("/readyz");
    const body = await r.json();
    return table(["Service", "Check"], Object.entries(body.services || {}).map(([k, v]) => [k, badge(v === "ok" ? "ok" : "bad")]));
  });
  const perMinute = section(`Orders per minute, last ${MINUTES} minutes`, async () => {
    const orders = (await recentOrders({}, (o) => Date.parse(o.createdAt) >= since)).filter((o) => Date.parse(o.createdAt) >= since);
    const rows = [];
    let max = 1;
    for (let m = MINUTES - 1; m >= 0; m -= 1) {
      const start = Math.floor(Date.now() / 60_000) * 60_000 - m * 60_000;
      const inMinute = orders.filter((o) => Date.parse(o.createdAt) >= start && Date.parse(o.createdAt) < start + 60_000);
      const counts = STATUSES.map((s) => inMinute.filter((o) => o.status === s).length);
      max = Math.max(max, inMinute.length);
      rows.push([new Date(start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }), bar(inMinute.length), ...counts.map(String)]);
    }
    return bars(h("div", {}, h("p", { class: "muted" }, `${orders.length} orders placed in the window, by the status each has now.`),
      table(["Minute", "Orders", ...STATUSES.map((s) => `${s} `)], rows)), max);
  });
  const cancellations = section("Cancellations by reason", async () => {
    const cancelled = await recentOrders({ status: "CANCELLED" }, () => true, 3);
    const by = new Map();
    for (const o of cancelled) by.set(o.cancelReason || "(none given)", (by.get(o.cancelReason || "(none given)") || 0) + 1);
    const rows = [...by.entries()].sort((a, b) => b[1] - a[1]);
    const max = rows.length ? rows[0][1] : 1;
    return rows.length ? bars(table(["Reason", "Orders"], rows.map(([r, n]) => [r, bar(n)])), max) : h("p", {}, "No cancelled orders.");
  });
  render(
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: dashboard }, "Refresh"), ` Updated ${new Date().toLocaleTimeString()}`),
    h("div", { class: "cols" }, await services, await readiness),
    await perMinute,
    await cancellations,
  );
}

async function orders() {
  if (needAdmin()) return;
  const status = param("status");
  const userId = param("userId");
  const from = param("from");
  const to = param("to");
  const page = Number(param("page") || 1);
  const filter = h("form", { method: "get", action: "/console/orders", class: "inline" },
    field("Status", "status", { options: [["", "Any"], ...STATUSES.map((s) => [s, s])], value: status }),
    field("User id", "userId", { value: userId }),
    field("Placed from", "from", { type: "datetime-local", value: from }),
    field("Placed until", "to", { type: "datetime-local", value: to }),
    h("button", { type: "submit" }, "Filter"));
  let items;
  let paging = null;
  if (from || to) {
    // The API lists newest first by status and user; the time window is cut from those pages.
    const lo = from ? Date.parse(from) : -Infinity;
    const hi = to ? Date.parse(to) : Infinity;
    items = (await recentOrders({ status, userId }, (o) => Date.parse(o.createdAt) >= lo, 10))
      .filter((o) => Date.parse(o.createdAt) >= lo && Date.parse(o.createdAt) <= hi);
  } else {
    const list = await get(`/api/v1/orders${query({ status, userId, page, pageSize: 25 })}`);
    items = list.items;
    paging = pager(list.page, list.pageSize, list.total, (n) => location.assign(withQuery({ page: n })));
  }
  render(filter,
    items.length ? table(["Order", "Placed", "User", "Status", "Total ", "Cancel reason"], items.map((o) => [
      h("a", { href: `/console/orders/${encodeURIComponent(o.orderId)}` }, o.orderId), when(o.createdAt),
      h("a", { href: `/console/orders?userId=${encodeURIComponent(o.userId)}` }, o.userId), badge(o.status),
      money(o.total, o.currency), o.cancelReason || "",
    ])) : h("p", {}, "No order matches."),
    paging);
}

function shipmentActions(s, after) {
  if (s.status !== "IN_TRANSIT") return "";
  const id = encodeURIComponent(s.shipmentId);
  const status = h("span", { "aria-live": "polite" });
  const act = (path, body, text) => async () => {
    status.replaceChildren();
    try {
      await api("POST", `/api/v1/shipments/${id}/${path}`, body);
      await after();
      toast(text);
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  const reason = h("input", { id: `reason-${s.shipmentId}`, name: "reason", value: "the carrier could not deliver", maxlength: 500 });
  return h("div", {},
    h("button", { type: "button", onclick: act("delivered", undefined, "Marked delivered") }, "Mark delivered"), " ",
    h("label", { for: reason.id, class: "visually-hidden" }, "Failure reason"), reason, " ",
    h("button", { type: "button", class: "danger", onclick: () => act("failed", { reason: reason.value || undefined }, "Marked failed")() }, "Mark failed"),
    status);
}

const shipmentRows = (list, after) => list.map((s) => [s.shipmentId, s.kind, badge(s.status), s.expectedAt ? when(s.expectedAt) : "—", s.reason || "", shipmentActions(s, after)]);
const SHIPMENT_HEADERS = ["Shipment", "Kind", "Status", "Expected", "Reason", "Carrier"];

async function order() {
  if (needAdmin()) return;
  const id = lastSegment();
  title(`Order ${id}`);
  const o = await get(`/api/v1/orders/${encodeURIComponent(id)}`);
  const eid = encodeURIComponent(id);
  const payments = section("Payments", async () => {
    const p = await get(`/api/v1/payments${query({ orderId: id })}`);
    return p.items.length ? table(["Payment", "Method", "Status", "Amount ", "Captured ", "Refunded ", "Reason"], p.items.map((x) => [
      x.paymentId, x.method === "card" ? `card ·${x.last4 || ""}` : x.method || "—", badge(x.status), money(x.amount, x.currency),
      money(x.captured, x.currency), money(x.refunded, x.currency), [x.reason, ...(x.refunds || []).map((r) => `${money(r.amount, x.currency)} refunded ${when(r.at)}: ${r.reason}`)].filter(Boolean).join("; "),
    ])) : h("p", {}, "No payment.");
  }, "The payment service's records (GET /api/v1/payments)");
  const shipments = section("Shipments", async () => {
    const s = await get(`/api/v1/shipments${query({ orderId: id })}`);
    return s.items.length ? table(SHIPMENT_HEADERS, shipmentRows(s.items, order)) : h("p", {}, "No shipment.");
  });
  const story = section("Story", async () => {
    const s = await get(`/api/v1/admin/orders/${eid}/story`);
    const index = new Map(s.events.map((e, i) => [e.id, i + 1]));
    return table(["#", "+ms ", "Event", "Source", "Caused by", "Data"], s.events.map((e, i) => [
      h("span", { id: `ev-${e.id}` }, String(i + 1)), String(e.sinceFirstMs), e.data?.status && e.type === "OrderStatusChanged" ? `${e.type} → ${e.data.status}` : e.type, e.source,
      e.causationId && index.has(e.causationId) ? h("a", { href: `#ev-${e.causationId}` }, `#${index.get(e.causationId)}`) : e.causationId || "—",
      h("details", {}, h("summary", {}, "data"), h("pre", {}, JSON.stringify(e.data, null, 2))),
    ]));
  }, "The order's story of events (GET /api/v1/admin/orders/{id}/story)");
  render(h("p", {}, "Customer: ", h("a", { href: `/console/orders?userId=${encodeURIComponent(o.userId)}` }, o.userId), ` · placed ${when(o.createdAt)}`),
    ...orderView(o, await productNames(o)), await payments, await shipments, await story);
}

function productForm(p, done) {
  const fields = [
    field("Name", "name", { value: p?.name ?? "", required: true }),
    field("Category", "category", { value: p?.category ?? "" }),
    field("Description", "description", { value: p?.description ?? "", rows: 2 }),
    h("div", { class: "inline" },
      field("Price", "price", { type: "number", step: "0.01", min: 0, value: p?.price ?? "" }),
      field("Currency", "currency", { value: p?.currency ?? "USD", size: 4 }),
      field(p ? "Stock on hand (sets it)" : "Stock on hand", "quantity", { type: "number", min: 0, value: p ? "" : 0 }),
      field("Sold", "active", { options: [["true", "Active"], ["false", "Inactive"]], value: String(p?.active ?? true) })),
  ];
  return form(fields, p ? "Save" : "Create product", async (v) => {
    const body = { name: v.name, category: v.category, description: v.description, currency: v.currency, active: v.active === "true" };
    // A number only when one was typed: the API says what is wrong with what was sent.
    if (v.price !== "") body.price = Number(v.price);
    else if (!p) body.price = null;
    if (v.quantity !== "") body.quantity = Number(v.quantity);
    if (p && body.price === undefined) delete body.currency;
    const saved = p
      ? await api("PATCH", `/api/v1/products/${encodeURIComponent(p.productId)}`, body)
      : await api("POST", "/api/v1/products", body, { idempotencyKey: newKey() });
    await done(saved);
    toast(`${saved.name} saved`);
  });
}

function restockForm(p, done) {
  return form([field(`Restock ${p.name}: quantity`, "quantity", { type: "number", min: 1, value: 10 }), field("Reason", "reason", { value: "restock" })],
    "Restock", async (v) => {
      try {
        await api("POST", `/api/v1/inventory/${encodeURIComponent(p.productId)}/restock`, { quantity: Number(v.quantity), reason: v.reason || undefined });
      } catch (err) {
        if (missing(err)) throw new Error("Restocking is not available on this server (no inventory route); set the stock on hand with Edit.");
        throw err;
      }
      await done();
      toast(`${p.name} restocked`);
    }, { inline: true });
}

async function lowStock(products) {
  const lowest = [...products].filter((p) => p.active).sort((a, b) => (a.available ?? 0) - (b.available ?? 0)).slice(0, 10);
  const rows = [];
  let thresholds = true;
  for (const p of lowest) {
    let stock = null;
    if (thresholds) {
      try {
        stock = await get(`/api/v1/inventory/${encodeURIComponent(p.productId)}`);
      } catch (err) {
        if (missing(err)) thresholds = false;
        else throw err;
      }
    }
    const available = stock ? stock.available : p.available;
    const low = stock ? available <= stock.lowStockThreshold : null;
    if (stock && !low) continue;
    rows.push([p.name, String(available ?? "—"), stock ? String(stock.lowStockThreshold) : "—", stock ? String(stock.reserved) : "—"]);
  }
  return h("div", {},
    thresholds ? null : unavailable("The inventory's stock levels and thresholds"),
    thresholds ? null : h("p", { class: "muted" }, "Shown instead: the active products with the least available, as the catalog last heard."),
    rows.length ? table(["Product", "Available ", "Low below ", "Reserved "], rows) : h("p", {}, "No product is low on stock."));
}

async function catalog() {
  if (needAdmin()) return;
  const page = Number(param("page") || 1);
  const list = await get(`/api/v1/products${query({ includeInactive: true, page, pageSize: 50, sort: "name" })}`);
  const all = list.total <= 100 ? (await get(`/api/v1/products${query({ includeInactive: true, pageSize: 100 })}`)).items : list.items;
  const editor = h("div", { id: "editor" });
  const open = (node) => {
    editor.replaceChildren(node);
    editor.querySelector("input")?.focus();
  };
  const rows = list.items.map((p) => [
    h("a", { href: `/product/${encodeURIComponent(p.productId)}` }, p.name), p.category, money(p.price, p.currency),
    String(p.available ?? "—"), p.active ? "yes" : "no",
    h("span", { class: "inline" },
      h("button", { type: "button", class: "secondary", "aria-label": `Edit ${p.name}`, onclick: () => open(h("section", {}, h("h2", {}, `Edit ${p.name}`), productForm(p, catalog))) }, "Edit"),
      h("button", { type: "button", class: "secondary", "aria-label": `Restock ${p.name}`, onclick: () => open(h("section", {}, h("h2", {}, `Restock ${p.name}`), restockForm(p, catalog))) }, "Restock")),
  ]);
  render(
    h("details", {}, h("summary", {}, "New product"), productForm(null, catalog)),
    editor,
    h("h2", {}, "Products"),
    table(["Name", "Category", "Price ", "Available ", "Active", ""], rows),
    pager(list.page, list.pageSize, list.total, (n) => location.assign(withQuery({ page: n }))),
    await section("Low stock", () => lowStock(all)),
  );
}

async function shipments() {
  if (needAdmin()) return;
  const orderId = param("orderId");
  const lookup = h("form", { method: "get", action: "/console/shipments", class: "inline" }, field("Order id", "orderId", { value: orderId }), h("button", { type: "submit" }, "Show shipments"));
  const rows = [];
  // Deliveries under way, and returns of orders cancelled while out for delivery.
  const orders = orderId
    ? [await get(`/api/v1/orders/${encodeURIComponent(orderId)}`)]
    : [...(await recentOrders({ status: "DELIVERING" }, () => true, 2)),
       ...(await recentOrders({ status: "CANCELLED" }, () => false, 1)).filter((o) => o.shipmentId)];
  for (const o of orders) {
    const s = await get(`/api/v1/shipments${query({ orderId: o.orderId })}`);
    for (const x of s.items) {
      if (!orderId && x.status !== "IN_TRANSIT") continue;
      rows.push([h("a", { href: `/console/orders/${encodeURIComponent(o.orderId)}` }, o.orderId), ...shipmentRows([x], shipments)[0]]);
    }
  }
  render(lookup,
    h("p", { class: "muted" }, orderId ? "" : "Shipments in transit: deliveries, and returns (delivered = back in the warehouse). Act as the sandbox carrier:"),
    rows.length ? table(["Order", ...SHIPMENT_HEADERS], rows) : h("p", {}, "No shipment in transit."));
}

async function deadLetters() {
  if (needAdmin()) return;
  const service = param("service");
  const type = param("type");
  const status = param("status");
  const cursor = param("cursor");
  const filter = h("form", { method: "get", action: "/console/dead-letters", class: "inline" },
    field("Service", "service", { value: service }), field("Event type", "type", { value: type }),
    field("Status", "status", { options: [["", "Any"], ["open", "open"], ["redriven", "redriven"], ["discarded", "discarded"]], value: status }),
    h("button", { type: "submit" }, "Filter"));
  let list;
  try {
    list = await get(`/api/v1/admin/dead-letters${query({ service, type, status, cursor })}`);
  } catch (err) {
    render(filter, missing(err) ? unavailable("The dead-letter list") : errorBox(err));
    return;
  }
  render(filter,
    list.items.length ? table(["Letter", "Service", "Event", "Attempts ", "Last failed", "Status", "Error"], list.items.map((d) => [
      h("a", { href: `/console/dead-letters/${encodeURIComponent(d.id)}` }, d.id), d.service, d.eventType, String(d.attempts),
      when(d.lastFailedAt), badge(d.status), d.error.length > 120 ? `${d.error.slice(0, 120)}…` : d.error,
    ])) : h("p", {}, "No dead letters."),
    list.nextCursor ? h("p", {}, h("a", { href: withQuery({ cursor: list.nextCursor }) }, "Next page ›")) : null);
}

async function deadLetter() {
  if (needAdmin()) return;
  const id = lastSegment();
  const path = `/api/v1/admin/dead-letters/${encodeURIComponent(id)}`;
  let d;
  try {
    d = await get(path);
  } catch (err) {
    render(missing(err) ? unavailable("The dead-letter list") : errorBox(err));
    return;
  }
  title(`Dead letter ${d.eventType} at ${d.service}`);
  const actions = d.status === "open" ? h("div", { class: "cols" },
    form([h("p", {}, "Deliver the event to the service again.")], "Redrive", async () => {
      const after = await api("POST", `${path}/redrive`);
      await deadLetter();
      toast(after.status === "open" ? `Redriven: it failed again (attempt ${after.attempts})` : `Redriven: ${after.status}`);
    }),
    form([field("Reason", "reason", { required: true })], "Discard", async (v) => {
      await api("POST", `${path}/discard`, { reason: v.reason });
      await deadLetter();
      toast("Discarded");
    }, { danger: true })) : h("p", {}, `This letter is ${d.status}.`, d.discardReason ? ` Reason: ${d.discardReason}` : "");
  render(
    table(["Service", "Event", "Event id", "Attempts ", "First failed", "Last failed", "Status"], [[d.service, d.eventType, d.eventId, String(d.attempts), when(d.firstFailedAt), when(d.lastFailedAt), badge(d.status)]]),
    h("h2", {}, "Error"), h("pre", {}, d.error),
    h("h2", {}, "Envelope"), h("pre", {}, JSON.stringify(d.envelope, null, 2)),
    actions,
    h("p", {}, h("a", { href: "/console/dead-letters" }, "All dead letters")));
}

async function users() {
  if (needAdmin()) return;
  const userId = param("userId");
  const lookup = h("form", { method: "get", action: "/console/users", class: "inline" }, field("User id", "userId", { value: userId }), h("button", { type: "submit" }, "Look up"));
  let found = null;
  if (userId) {
    const u = await get(`/api/v1/users/${encodeURIComponent(userId)}`);
    const box = (role) => {
      const id = `role-${role}`;
      return h("span", {}, h("input", { type: "checkbox", id, name: "roles", value: role, checked: u.roles.includes(role) }), h("label", { for: id }, role));
    };
    const roles = form([h("fieldset", { class: "radio" }, h("legend", {}, "Roles"), box("customer"), box("admin"))], "Save roles", async (_, f) => {
      const chosen = [...f.querySelectorAll("input[name=roles]:checked")].map((i) => i.value);
      await api("PUT", `/api/v1/users/${encodeURIComponent(u.userId)}/roles`, { roles: chosen });
      await users();
      toast("Roles saved");
    });
    found = h("section", {}, h("h2", {}, u.name), h("p", {}, `${u.email} · since ${when(u.createdAt)} · roles: ${u.roles.join(", ")}`), roles,
      h("p", {}, h("a", { href: `/console/orders?userId=${encodeURIComponent(u.userId)}` }, "Their orders")));
  }
  const recent = await recentOrders({}, () => false, 1);
  const ids = [...new Set(recent.map((o) => o.userId))].slice(0, 20);
  render(lookup, found,
    h("h2", {}, "Recent customers"),
    ids.length ? h("ul", {}, ids.map((id) => h("li", {}, h("a", { href: `/console/users?userId=${encodeURIComponent(id)}` }, id)))) : h("p", {}, "No orders yet."));
}

boot({ dashboard, orders, order, catalog, shipments, deadLetters, deadLetter, users });
