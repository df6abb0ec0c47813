"""The messages' words: a Jinja2 template per kind, in plain text (``<kind>.txt.j2``, whose
``subject`` block is the subject line) and HTML (``<kind>.html.j2``, autoescaped: names and
reasons come from users)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from mercato.services.notification.domain import Kind, short_id
from mercato.services.notification.facts import Order, User

SHOP = "Mercato"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def money(amount: Any, currency: str = "USD") -> str:
    return f"{Decimal(str(amount)):,.2f} {currency}"


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("mercato.services.notification", "templates"),
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["money"] = money
    return env


def render(
    kind: Kind,
    user: User,
    event: dict[str, Any],
    order: Order | None = None,
    product: str | None = None,
) -> Rendered:
    env = _environment()
    order_id = event.get("orderId")
    values: dict[str, Any] = {
        "shop": SHOP,
        "user": user,
        "event": event,
        "order": order,
        "ref": short_id(order_id) if order_id else "",
        "currency": order.currency if order is not None else "USD",
        "product": product or event.get("productId", ""),
    }
    text = env.get_template(f"{kind.name}.txt.j2")
    subject = "".join(text.blocks["subject"](text.new_context(values))).strip()
    html = env.get_template(f"{kind.name}.html.j2")
    return Rendered(
        subject=" ".join(subject.split()),  # one line, whatever a name held
        text=text.render(values, subject=subject),
        html=html.render(values, subject=subject),
    )
