"""Between order's domain and its gRPC messages."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

from mercato.api.common.v1 import common_pb2
from mercato.api.order.v1 import order_pb2 as pb
from mercato.contracts.events import Address, PaymentMethod
from mercato.platform.times import rfc3339
from mercato.services.order.domain import Change, InvalidOrder, merge_lines
from mercato.services.order.drafts import Draft
from mercato.services.order.store import Stored


def money(amount: Decimal) -> str:
    """A decimal string without padding ("25.25", "10"), whichever database kept it."""
    return format(amount.normalize(), "f")


def order_reply(stored: Stored, history: Sequence[Change] = ()) -> pb.Order:
    o = stored.order
    reply = pb.Order(
        order_id=o.order_id,
        user_id=o.user_id,
        status=o.status.value,
        items=[
            pb.OrderItem(
                product_id=line.product_id,
                quantity=line.quantity,
                price=common_pb2.Money(amount=money(line.price), currency=o.currency),
                status=line.status.value,
            )
            for line in o.lines
        ],
        total=common_pb2.Money(amount=money(o.total), currency=o.currency),
        history=[
            pb.StatusChange(
                at=rfc3339(c.at),
                from_status=c.from_status.value if c.from_status else "",
                to_status=c.to_status.value,
                reason=c.reason or "",
            )
            for c in history
        ],
        payment=pb.Payment(
            method=o.payment.method if o.payment else "",
            last4=(o.payment.last4 or "") if o.payment else "",
            payment_id=o.payment_id or "",
            paid=o.paid,
            refunded=o.refunded,
        ),
        shipment_id=o.shipment_id or "",
        cancel_reason=o.cancel_reason or "",
        created_at=rfc3339(o.created_at),
        updated_at=rfc3339(stored.updated_at),
        cart_id=stored.cart_id or "",
        version=stored.version,
        settled=o.settled,
        pending=o.pending,
    )
    if o.shipping_address is not None:
        reply.shipping_address.CopyFrom(address_message(o.shipping_address))
    return reply


def address_message(a: Address) -> pb.Address:
    return pb.Address(
        name=a.name,
        line1=a.line1,
        line2=a.line2 or "",
        city=a.city,
        postal_code=a.postalCode,
        country=a.country,
    )


def address_of(message: pb.Address) -> Address:
    return Address(
        name=message.name,
        line1=message.line1,
        line2=message.line2 or None,
        city=message.city,
        postalCode=message.postal_code,
        country=message.country,
    )


def payment_of(message: pb.PaymentMethod) -> PaymentMethod:
    """The payment method asked for; a card needs the payment service's token."""
    try:
        method = PaymentMethod(
            method=message.method,  # type: ignore[arg-type]
            token=message.token or None,
            last4=message.last4 or None,
        )
    except ValidationError as exc:
        raise InvalidOrder("payment.method is 'card' (with a token) or 'wallet'") from exc
    if method.method == "card" and method.token is None:
        raise InvalidOrder("a card payment needs the token the payment service gave for it")
    if method.method == "wallet" and method.token is not None:
        raise InvalidOrder("a wallet payment takes no token")
    return method


def draft_reply(draft: Draft, placed: pb.Order | None = None) -> pb.Draft:
    reply = pb.Draft(
        order_id=draft.order_id,
        user_id=draft.user_id,
        items=[
            pb.DraftItem(
                product_id=x.product_id,
                quantity=x.quantity,
                price=common_pb2.Money(amount=money(x.price), currency=draft.currency),
            )
            for x in draft.lines
        ],
        total=common_pb2.Money(amount=money(draft.total), currency=draft.currency),
        placed=draft.placed,
    )
    if placed is not None:
        reply.order.CopyFrom(placed)
    return reply


def draft_of(spec: pb.DraftSpec) -> Draft:
    """A draft as an admin wrote it out (ids, items and their prices)."""
    if not spec.order_id or not spec.user_id or max(len(spec.order_id), len(spec.user_id)) > 200:
        raise InvalidOrder("every draft needs an orderId and a userId (at most 200 characters)")
    currencies = {item.price.currency or "USD" for item in spec.items} or {"USD"}
    if len(currencies) > 1:
        raise InvalidOrder(f"the items of {spec.order_id} are in different currencies")
    if any(len(x.product_id) > 200 for x in spec.items):
        raise InvalidOrder(f"a productId of {spec.order_id} is longer than 200 characters")
    try:
        items = [(x.product_id, int(x.quantity), Decimal(x.price.amount)) for x in spec.items]
    except InvalidOperation as exc:
        raise InvalidOrder(f"a price of {spec.order_id} is not a number") from exc
    lines = merge_lines(items) if items else ()
    return Draft(spec.order_id, spec.user_id, currencies.pop(), lines, placed=False)
