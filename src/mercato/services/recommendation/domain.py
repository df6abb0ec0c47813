"""recommendation's rules: who a viewer is, which pairs an event counts, how answers rank.

No infrastructure here.

Ranking: a product's partners score ``BOUGHT_WEIGHT`` per completed order that held both plus
one per viewer who viewed both; the reason is ``boughtTogether`` when any order held both,
else ``alsoViewed``. A partner scores at least 1. When they are too few, the list is filled
with the popular products of the category (``popularInCategory``: the whole catalog when
there is no category to go by), scored below 1 by their popularity (``PURCHASE_WEIGHT``
views per completed order), so the score always falls along the list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    ALSO_VIEWED = "alsoViewed"
    BOUGHT_TOGETHER = "boughtTogether"
    POPULAR_IN_CATEGORY = "popularInCategory"


BOUGHT_WEIGHT = 2
PURCHASE_WEIGHT = 5
MAX_PAIRED = 50  # a new view is paired with the viewer's last 50 other products
MAX_ORDER_PRODUCTS = 20  # an order's first 20 products (by id) are paired
MAX_SEEDS = 20  # a user's answer starts from the last 20 products they viewed
DEFAULT_LIMIT = 10
MAX_LIMIT = 50


def viewer_of(user_id: str | None, session_id: str | None) -> str | None:
    """Who viewed: the signed-in user, else the browsing session, else no one known (the
    view counts towards popularity only)."""
    if user_id:
        return f"u:{user_id}"
    if session_id:
        return f"s:{session_id}"
    return None


def user_viewer(user_id: str) -> str:
    return f"u:{user_id}"


def both_ways(product_id: str, others: Iterable[str]) -> dict[tuple[str, str], int]:
    """One more for each pair of ``product_id`` with another, kept both ways round."""
    counts: dict[tuple[str, str], int] = {}
    for other in others:
        if other != product_id:
            counts[(product_id, other)] = counts[(other, product_id)] = 1
    return counts


def order_products(product_ids: Iterable[str]) -> list[str]:
    return sorted(set(product_ids))[:MAX_ORDER_PRODUCTS]


def order_pairs(products: Sequence[str]) -> dict[tuple[str, str], int]:
    return {(a, b): 1 for a in products for b in products if a != b}


@dataclass(frozen=True, slots=True)
class Candidate:
    product_id: str
    reason: Reason
    score: float


def rank(partners: Iterable[tuple[str, str, int]], exclude: set[str]) -> list[Candidate]:
    """The partners (other product, kind, count) of the seed products, best first."""
    bought: dict[str, int] = {}
    viewed: dict[str, int] = {}
    for other, kind, count in partners:
        if other in exclude:
            continue
        into = bought if kind == Reason.BOUGHT_TOGETHER else viewed
        into[other] = into.get(other, 0) + int(count)
    found = [
        Candidate(
            p,
            Reason.BOUGHT_TOGETHER if bought.get(p) else Reason.ALSO_VIEWED,
            float(BOUGHT_WEIGHT * bought.get(p, 0) + viewed.get(p, 0)),
        )
        for p in {*bought, *viewed}
    ]
    return sorted(found, key=lambda c: (-c.score, c.product_id))


def popular(ranked: Sequence[tuple[str, int]]) -> list[Candidate]:
    """Products with their popularity, most popular first, scored in [0, 1)."""
    top = max((p for _, p in ranked), default=0)
    return [Candidate(pid, Reason.POPULAR_IN_CATEGORY, p / (top + 1)) for pid, p in ranked]
