// One order as both the storefront and the console show it.

import { get } from "./api.js";
import { badge, h, money, table, when } from "./ui.js";

const STEPS = ["CREATED", "PAID", "RESERVED", "DELIVERING", "COMPLETED"];
// What an order's outcome may still wait for (``pending``), in words.
const PENDING = {
  payment: "the payment",
  reservation: "the stock reservation",
  refund: "the refund",
  stockRelease: "the stock's release",
  return: "the return of the goods",
};

export function steps(o) {
  const at = STEPS.indexOf(o.status);
  return h("ol", { class: "steps", "aria-label": "Progress" }, STEPS.map((s, i) =>
    h("li", { class: o.status === "CANCELLED" ? "" : i < at ? "done" : i === at ? "now" : "", "aria-current": i === at ? "step" : null }, s)));
}

export function orderView(o, names = {}) {
  const name = (id) => names[id] || id;
  const ship = o.shipment;
  return [
    h("p", { id: "order-status", "aria-live": "polite" }, "Status: ", badge(o.status), o.cancelReason ? ` — ${o.cancelReason}` : ""),
    o.pending?.length ? h("p", { class: "muted", id: "order-pending" }, `Still to come: ${o.pending.map((p) => PENDING[p] || p).join(", ")}.`) : null,
    steps(o),
    h("h2", {}, "Items"),
    table(["Product", "Quantity ", "Unit price ", "Status"], o.items.map((i) => [name(i.productId), String(i.quantity), money(i.price, o.currency), i.status])),
    h("p", { class: "price" }, `Total: ${money(o.total, o.currency)}`),
    h("div", { class: "cols" },
      h("section", {}, h("h2", {}, "Payment"),
        h("p", {}, o.payment.method === "card" ? `Card ending ${o.payment.last4 || "—"}` : "Wallet"),
        h("p", {}, o.payment.refunded ? "Refunded" : o.payment.paid ? "Paid" : "Not paid")),
      h("section", {}, h("h2", {}, "Delivery"),
        o.shippingAddress ? h("address", {}, [o.shippingAddress.name, o.shippingAddress.line1, o.shippingAddress.line2, `${o.shippingAddress.postalCode} ${o.shippingAddress.city}`, o.shippingAddress.country].filter(Boolean).flatMap((l) => [l, h("br")])) : null,
        ship ? h("p", {}, "Shipment: ", badge(ship.status), ship.expectedAt ? ` expected ${when(ship.expectedAt)}` : "") : h("p", { class: "muted" }, "Not shipped yet."),
        o.returnShipment ? h("p", {}, "Return: ", badge(o.returnShipment.status)) : null)),
    h("h2", {}, "History"),
    h("ol", {}, o.statusHistory.map((c) => h("li", {}, `${when(c.at)}: ${c.fromStatus || "—"} → ${c.toStatus}${c.reason ? ` (${c.reason})` : ""}`))),
  ];
}


// The names of the order's products, added to ``names`` (an id stays the name of a product the
// catalog no longer has).
export async function productNames(o, names = {}) {
  for (const i of o.items) {
    if (i.productId in names) continue;
    try {
      names[i.productId] = (await get(`/api/v1/products/${encodeURIComponent(i.productId)}`)).name;
    } catch {
      names[i.productId] = i.productId;
    }
  }
  return names;
}
