"""Two recommendation replicas on PostgreSQL handling events at the same moment: one
viewer's views of two products (the pair is counted once, each way), and two completed
orders with the same products (both count). See ``tests/services/replicas.py`` for how
the two are made to meet."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from mercato.services.recommendation.service import service
from mercato.services.recommendation.tables import pairs, popularity
from tests.services.recommendation.conftest import completed, product, view
from tests.services.replicas import Replicas, replicas

# The products' popularity rows, the last thing a view writes.
POPULARITY_ROWS = (
    "SELECT 1 FROM popularity WHERE product_id = ANY(string_to_array($1, ',')) FOR UPDATE"
)
PAIR_ROW = "SELECT 1 FROM pairs WHERE product_id = $1 FOR UPDATE"


@pytest.fixture
async def two(postgres_template: str) -> AsyncIterator[Replicas]:
    async with replicas(service, postgres_template) as found:
        assert await found.first.handle(product("p1"), product("p2"), product("p3")) == [None] * 3
        yield found


async def counts(two: Replicas) -> dict[tuple[str, str, str], int]:
    async with two.first.db.connect() as conn:
        rows = await conn.execute(sa.select(pairs))
        return {(r.product_id, r.kind, r.other_id): int(r.count) for r in rows}


async def test_one_viewers_views_on_two_replicas_pair_once(two: Replicas) -> None:
    # The test holds the popularity rows: the first view waits there with its view written
    # and its viewer's turn taken, the second waits for the turn; then it pairs what the
    # first committed. Without the turn, both would wait at the popularity rows having seen
    # nothing of the other's view: no pair at all.
    assert await two.first.handle(view("p1"), view("p2")) == [None, None]
    await two.at_once(POPULARITY_ROWS, "p1,p2", view("p1", user="v1"), view("p2", user="v1"))
    assert await counts(two) == {("p1", "alsoViewed", "p2"): 1, ("p2", "alsoViewed", "p1"): 1}


async def test_two_orders_on_two_replicas_both_count(two: Replicas) -> None:
    assert await two.first.handle(completed("o0", "p1", "p2")) == [None]
    await two.at_once(
        PAIR_ROW, "p1", completed("o1", "p1", "p2", "p3"), completed("o2", "p2", "p1")
    )
    assert await counts(two) == {
        ("p1", "boughtTogether", "p2"): 3,
        ("p2", "boughtTogether", "p1"): 3,
        ("p1", "boughtTogether", "p3"): 1,
        ("p3", "boughtTogether", "p1"): 1,
        ("p2", "boughtTogether", "p3"): 1,
        ("p3", "boughtTogether", "p2"): 1,
    }
    async with two.first.db.connect() as conn:
        bought = dict(
            (await conn.execute(sa.select(popularity.c.product_id, popularity.c.purchases))).all()
        )
    assert bought == {"p1": 3, "p2": 3, "p3": 1}
