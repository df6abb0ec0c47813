// The storefront: browse and search, a product, the cart, checkout, orders (live), inbox.

import { api, browsingSession, get, query, stream, who } from "./api.js";
import { orderView, productNames } from "./order.js";
import {
  badge, boot, errorBox, field, form, h, lastSegment, main, missing, money, newKey, pager,
  param, render, signinForm, signupForm, table, title, toast, unavailable, when, withQuery,
} from "./ui.js";

const TEST_CARDS = [
  ["4242 4242 4242 4242", "succeeds"],
  ["4000 0000 0000 0002", "is declined"],
  ["4000 0000 0000 9995", "has insufficient funds"],
  ["4000 0000 0000 0119", "fails with a processing error"],
];
// The unit price each product had when this browser put it in the cart, to show a change.
const SEEN = "mercato.seenPrices";
const seen = () => JSON.parse(localStorage.getItem(SEEN) || "{}");
const remember = (productId, price) => localStorage.setItem(SEEN, JSON.stringify({ ...seen(), [productId]: price }));

function needSignIn() {
  if (who()) return false;
  render(
    h("p", {}, "Sign in to see this page."),
    signinForm(() => location.reload()),
    h("p", {}, "New here? ", h("a", { href: `/signup?next=${encodeURIComponent(location.pathname)}` }, "Create an account"), "."),
  );
  return true;
}

function availability(p) {
  if (p.available === null || p.available === undefined) return h("span", { class: "muted" }, "Availability unknown");
  if (p.available <= 0) return h("span", { class: "stock-out" }, "Out of stock");
  if (p.available < 5) return h("span", { class: "stock-low" }, `Only ${p.available} left`);
  return h("span", { class: "stock-ok" }, `In stock (${p.available})`);
}

async function addToCart(p, quantity = 1) {
  if (!who()) {
    location.assign(`/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
    return;
  }
  await api("POST", "/api/v1/cart/items", { productId: p.productId, quantity }, { idempotencyKey: newKey() });
  remember(p.productId, p.price);
  toast(`${p.name} added to your cart`);
}

function addButton(p) {
  const status = h("div", { "aria-live": "polite" });
  const button = h("button", {
    type: "button",
    disabled: p.available === 0,
    "aria-label": `Add ${p.name} to cart`,
    onclick: async () => {
      status.replaceChildren();
      try {
        await addToCart(p);
      } catch (err) {
        status.replaceChildren(errorBox(err));
      }
    },
  }, "Add to cart");
  return [button, status];
}

async function categories() {
  const all = await get(`/api/v1/products${query({ pageSize: 100 })}`);
  return [...new Set(all.items.map((p) => p.category).filter(Boolean))].sort();
}

async function browse() {
  const q = param("q");
  const category = param("category");
  const page = Number(param("page") || 1);
  const [found, cats] = await Promise.all([
    get(`/api/v1/products${query({ q, category, page, pageSize: 12 })}`),
    categories(),
  ]);
  const search = h(
    "form",
    { role: "search", method: "get", action: "/", class: "inline" },
    field("Search products", "q", { type: "search", value: q }),
    field("Category", "category", { options: [["", "All categories"], ...cats.map((c) => [c, c])], value: category }),
    h("button", { type: "submit" }, "Search"),
  );
  const heading = q || category ? `Results${q ? ` for “${q}”` : ""}${category ? ` in ${category}` : ""}` : "All products";
  render(
    search,
    h("h2", { id: "results" }, heading),
    found.items.length
      ? h(
          "ul",
          { class: "grid", "aria-labelledby": "results" },
          found.items.map((p) =>
            h(
              "li",
              { class: "card" },
              h("h3", {}, h("a", { href: `/product/${encodeURIComponent(p.productId)}` }, p.name)),
              h("span", { class: "muted" }, p.category),
              h("span", { class: "price" }, money(p.price, p.currency)),
              availability(p),
              ...addButton(p),
            ),
          ),
        )
      : h("p", {}, "No product matches."),
    pager(found.page, found.pageSize, found.total, (n) => location.assign(withQuery({ page: n }))),
  );
}

// The products beside this one, as the product's own answer carries them (``?recommendations=``):
// null where the recommendation service is not running, absent where the server has none.
function recommendations(p) {
  const box = h("section", { "aria-labelledby": "recs" }, h("h2", { id: "recs" }, "You may also like"));
  if (!Array.isArray(p.recommendations)) box.append(unavailable("Recommendations"));
  else if (!p.recommendations.length) box.append(h("p", { class: "muted" }, "No recommendations yet."));
  else box.append(h("ul", {}, p.recommendations.map((i) => h("li", {}, h("a", { href: `/product/${encodeURIComponent(i.productId)}` }, i.name), ` — ${money(i.price, p.currency)}`))));
  return box;
}

async function product() {
  const p = await get(`/api/v1/products/${encodeURIComponent(lastSegment())}${query({ recommendations: 4 })}`, { headers: { "X-Session-ID": browsingSession() } });
  title(p.name);
  const quantity = field("Quantity", "quantity", { type: "number", min: 1, max: 1000, value: 1, inputmode: "numeric" });
  const buy = form([quantity], "Add to cart", async (v) => {
    if (!who()) return location.assign(`/signin?next=${encodeURIComponent(location.pathname)}`);
    await api("POST", "/api/v1/cart/items", { productId: p.productId, quantity: Number(v.quantity) }, { idempotencyKey: newKey() });
    remember(p.productId, p.price);
    toast(`${p.name} added to your cart`);
  }, { inline: true });
  render(
    h("p", { class: "muted" }, h("a", { href: `/?category=${encodeURIComponent(p.category)}` }, p.category)),
    h("p", { class: "price" }, money(p.price, p.currency)),
    h("p", {}, availability(p)),
    h("p", {}, p.description),
    p.active ? buy : h("p", { class: "note" }, "This product is no longer sold."),
    recommendations(p),
  );
}

async function cart() {
  if (needSignIn()) return;
  const c = await get("/api/v1/cart");
  const before = seen();
  const status = h("div", { "aria-live": "polite" });
  const act = (fn) => async () => {
    status.replaceChildren();
    try {
      await fn();
      await cart();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  if (!c.items.length) {
    render(h("p", {}, "Your cart is empty. ", h("a", { href: "/" }, "Browse the shop"), "."));
    return;
  }
  const rows = c.items.map((line) => {
    const qty = h("input", { type: "number", min: 1, max: 1000, value: line.quantity, id: `qty-${line.productId}`, name: "quantity", inputmode: "numeric" });
    const was = before[line.productId];
    const changed = was !== undefined && Number(was) !== Number(line.price);
    return [
      h("a", { href: `/product/${encodeURIComponent(line.productId)}` }, line.name),
      h("span", {}, money(line.price, c.currency), changed ? h("span", { class: "note price-changed" }, ` Price changed: was ${money(was, c.currency)}`) : null),
      h("span", { class: "inline" },
        h("label", { for: qty.id, class: "visually-hidden" }, `Quantity of ${line.name}`), qty,
        h("button", { type: "button", class: "secondary", onclick: act(() => api("PATCH", `/api/v1/cart/items/${encodeURIComponent(line.productId)}`, { quantity: Number(qty.value) })) }, "Update")),
      money(line.lineTotal, c.currency),
      h("button", { type: "button", class: "danger", "aria-label": `Remove ${line.name}`, onclick: act(() => api("DELETE", `/api/v1/cart/items/${encodeURIComponent(line.productId)}`)) }, "Remove"),
    ];
  });
  render(
    status,
    table(["Product", "Unit price", "Quantity", "Line total ", ""], rows),
    h("p", { class: "price", id: "cart-total" }, `Total: ${money(c.total, c.currency)} (${c.itemCount} items)`),
    h("a", { class: "button", href: "/checkout" }, "Checkout"),
  );
  // Prices now seen: a later change shows against these.
  for (const line of c.items) remember(line.productId, line.price);
}

async function wallet() {
  try {
    const w = await get("/api/v1/wallet");
    return `store credit: ${money(w.balance, w.currency)}`;
  } catch (err) {
    if (missing(err)) return null;
    return "store credit";
  }
}

async function checkout() {
  if (needSignIn()) return;
  const c = await get("/api/v1/cart");
  if (!c.items.length) {
    render(h("p", {}, "Your cart is empty. ", h("a", { href: "/" }, "Browse the shop"), "."));
    return;
  }
  const credit = await wallet();
  const key = newKey(); // one order for this form, however often it is sent
  const card = h(
    "fieldset",
    { id: "card-fields" },
    h("legend", {}, "Card"),
    field("Card number", "cardNumber", { autocomplete: "cc-number", inputmode: "numeric", value: "4242 4242 4242 4242" }),
    h("div", { class: "inline" },
      field("Expiry (MM/YY)", "expiry", { autocomplete: "cc-exp", value: "12/30", size: 6 }),
      field("CVC", "cvc", { autocomplete: "cc-csc", inputmode: "numeric", value: "123", size: 5 })),
    field("Name on card", "holder", { autocomplete: "cc-name", value: who().name }),
    h("details", {}, h("summary", {}, "Sandbox test cards"),
      h("ul", {}, TEST_CARDS.map(([n, what]) => h("li", {}, h("code", {}, n), ` ${what}`)))),
  );
  const method = (value, text, checked) => {
    const id = `pay-${value}`;
    return h("span", {}, h("input", { type: "radio", name: "method", value, id, checked, onchange: () => { card.hidden = value !== "card"; } }), h("label", { for: id }, text));
  };
  const f = form(
    [
      h("p", {}, `${c.itemCount} items, total ${money(c.total, c.currency)}.`),
      h("fieldset", {}, h("legend", {}, "Shipping address"),
        field("Full name", "name", { autocomplete: "name", value: who().name }),
        field("Address line 1", "line1", { autocomplete: "address-line1" }),
        field("Address line 2 (optional)", "line2", { autocomplete: "address-line2" }),
        h("div", { class: "inline" },
          field("City", "city", { autocomplete: "address-level2" }),
          field("Postal code", "postalCode", { autocomplete: "postal-code", size: 10 }),
          field("Country", "country", { autocomplete: "country", size: 10 }))),
      h("fieldset", { class: "radio" }, h("legend", {}, "Payment"),
        method("card", "Card", true), credit ? method("wallet", `Wallet (${credit})`, false) : null),
      card,
    ],
    "Place order",
    async (v) => {
      const payment = v.method === "wallet"
        ? { method: "wallet" }
        : { method: "card", cardNumber: v.cardNumber, expiry: v.expiry, cvc: v.cvc, holder: v.holder };
      const shippingAddress = { name: v.name, line1: v.line1, city: v.city, postalCode: v.postalCode, country: v.country };
      if (v.line2) shippingAddress.line2 = v.line2;
      const r = await api("POST", "/api/v1/cart/checkout", { payment, shippingAddress }, { idempotencyKey: key });
      location.assign(`/account/orders/${encodeURIComponent(r.orderId)}`);
    },
  );
  render(f);
}

function signin() {
  const next = param("next") || "/";
  render(signinForm(() => location.assign(next.startsWith("/") ? next : "/")),
    h("p", {}, "New here? ", h("a", { href: "/signup" }, "Create an account"), "."));
}

function signup() {
  const next = param("next") || "/";
  render(signupForm(() => location.assign(next.startsWith("/") ? next : "/")),
    h("p", {}, "Have an account? ", h("a", { href: "/signin" }, "Sign in"), "."));
}

async function orders() {
  if (needSignIn()) return;
  const page = Number(param("page") || 1);
  const list = await get(`/api/v1/orders${query({ page, pageSize: 20 })}`);
  render(
    list.items.length
      ? table(["Order", "Placed", "Status", "Items ", "Total "], list.items.map((o) => [
          h("a", { href: `/account/orders/${encodeURIComponent(o.orderId)}` }, o.orderId),
          when(o.createdAt), badge(o.status), String(o.items.reduce((n, i) => n + i.quantity, 0)), money(o.total, o.currency),
        ]))
      : h("p", {}, "No orders yet."),
    pager(list.page, list.pageSize, list.total, (n) => location.assign(withQuery({ page: n }))),
  );
}

async function order() {
  if (needSignIn()) return;
  const id = lastSegment();
  title(`Order ${id}`);
  const names = {};
  const controller = new AbortController();
  const draw = async (o) => {
    await productNames(o, names);
    const cancellable = !["COMPLETED", "CANCELLED"].includes(o.status);
    const cancel = cancellable
      ? form([field("Reason (optional)", "reason", { maxlength: 500 })], "Cancel order", async (v) => {
          const done = await api("POST", `/api/v1/orders/${encodeURIComponent(id)}/cancel`, v.reason ? { reason: v.reason } : {});
          await draw(await get(`/api/v1/orders/${encodeURIComponent(id)}`));
          toast(`Order ${done.status.toLowerCase()}`);
        }, { inline: true })
      : null;
    render(...orderView(o, names), cancel ? h("h2", {}, "Cancel") : null, cancel, h("p", {}, h("a", { href: "/account/orders" }, "All your orders")));
  };
  await draw(await get(`/api/v1/orders/${encodeURIComponent(id)}`));
  // Live: the order as the stream sends it on every change; the order page again (with its
  // shipment) when the stream says so.
  stream(`/api/v1/orders/${encodeURIComponent(id)}/stream`, async (event) => {
    if (event === "order") await draw(await get(`/api/v1/orders/${encodeURIComponent(id)}`));
  }, controller.signal).catch((err) => { if (err.name !== "AbortError") main().append(errorBox(err)); });
  addEventListener("pagehide", () => controller.abort());
}

async function inbox() {
  if (needSignIn()) return;
  const page = Number(param("page") || 1);
  let list;
  try {
    list = await get(`/api/v1/notifications${query({ page, pageSize: 20 })}`);
  } catch (err) {
    render(missing(err) ? unavailable("The notification inbox") : errorBox(err));
    return;
  }
  const read = (n) => async () => {
    await api("POST", `/api/v1/notifications/${encodeURIComponent(n.id)}/read`);
    await inbox();
  };
  render(
    list.items.length
      ? h("ul", {}, list.items.map((n) => h("li", { class: n.readAt ? "" : "unread" },
          h("p", {}, h("strong", {}, n.subject), ` — ${when(n.createdAt)}`),
          h("p", {}, n.text),
          n.readAt ? null : h("button", { type: "button", class: "secondary", onclick: read(n) }, "Mark read"))))
      : h("p", {}, "No notifications."),
    pager(list.page, list.pageSize, list.total, (n) => location.assign(withQuery({ page: n }))),
  );
}

boot({ browse, product, cart, checkout, signin, signup, orders, order, inbox });
