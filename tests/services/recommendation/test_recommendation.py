"""recommendation fed its events: "also viewed" from sessions and users, "bought together"
from completed orders, the category's popular products as the cold start; never the product
itself, never an inactive or deleted one; duplicates, replays and reordering change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest

from mercato.api.recommendation.v1 import recommendation_pb2 as pb
from mercato.contracts.events import ProductDeleted, ProductUpdated
from mercato.platform.bus.port import topic_of
from tests.services.recommendation.conftest import (
    RecommendationRig,
    completed,
    product,
    view,
)


async def catalog(rig: RecommendationRig, *ids: str, category: str = "cups") -> None:
    await rig.feed(*(product(p, category) for p in ids))


async def test_products_viewed_in_one_session_or_by_one_user_are_also_viewed(
    rig: RecommendationRig,
) -> None:
    await catalog(rig, "p1", "p2", "p3", "p4", "p5")
    await rig.feed(view("p1", session="s1"), view("p2", session="s1"), view("p3", session="s1"))
    await rig.feed(view("p1", user="u1"), view("p2", user="u1"))
    await rig.feed(view("p4", session="s2"))  # alone in its session: no pair
    found = await rig.recommend("p1", limit=2)
    # p2 went with p1 for two viewers, p3 for one.
    assert found == [("p2", "alsoViewed"), ("p3", "alsoViewed")]
    assert ("p1", "alsoViewed") in await rig.recommend("p3")
    assert all(p != "p1" for p, _ in await rig.recommend("p1"))


async def test_viewing_again_counts_nothing_more_and_anonymous_views_pair_nothing(
    rig: RecommendationRig,
) -> None:
    await catalog(rig, "p1", "p2", "p3")
    await rig.feed(view("p1", user="u1"), view("p2", user="u1"), view("p1", user="u1"))
    await rig.feed(view("p2", user="u1"), view("p2", user="u1"))
    await rig.feed(view("p1", user="u2"), view("p3", user="u2"))
    # Each once: p2 and p3 both went with p1 for one viewer (tie: by id).
    assert (await rig.recommend("p1", limit=2)) == [("p2", "alsoViewed"), ("p3", "alsoViewed")]
    await rig.feed(view("p1"), view("p3"))  # no user, no session
    assert (await rig.recommend("p1", limit=2)) == [("p2", "alsoViewed"), ("p3", "alsoViewed")]


async def test_bought_together_outranks_also_viewed(rig: RecommendationRig) -> None:
    await catalog(rig, "p1", "p2", "p3", "p4")
    await rig.feed(view("p1", session="s"), view("p2", session="s"))
    await rig.feed(view("p1", session="t"), view("p2", session="t"))
    await rig.feed(completed("o1", "p1", "p3"), completed("o2", "p1", "p3", "p3"))
    found = await rig.recommend("p1", limit=2)
    assert found == [("p3", "boughtTogether"), ("p2", "alsoViewed")]
    assert await rig.recommend("p3", limit=1) == [("p1", "boughtTogether")]


async def test_the_cold_start_falls_back_to_the_popular_products_of_the_category(
    rig: RecommendationRig,
) -> None:
    await catalog(rig, "c1", "c2", "c3")
    await catalog(rig, "m1", category="mugs")
    await rig.feed(view("c3"), view("c3"), completed("o1", "c2"))  # a purchase weighs more
    assert await rig.recommend("c1") == [
        ("c2", "popularInCategory"),
        ("c3", "popularInCategory"),
    ]
    # Pairs first, the category's popular products after them, nothing twice.
    await rig.feed(view("c1", session="s"), view("c3", session="s"))
    assert await rig.recommend("c1") == [
        ("c3", "alsoViewed"),
        ("c2", "popularInCategory"),
    ]
    # A product the service does not know: the catalog's most popular.
    assert (await rig.recommend("unknown", limit=1)) == [("c2", "popularInCategory")]


async def test_deleted_and_inactive_products_are_never_recommended(
    rig: RecommendationRig,
) -> None:
    await catalog(rig, "p1", "p2", "p3")
    await rig.feed(view("p1", session="s"), view("p2", session="s"), view("p3", session="s"))
    await rig.feed(ProductUpdated(productId="p2", price=Decimal(10), active=False))
    assert [p for p, _ in await rig.recommend("p1")] == ["p3"]
    await rig.feed(ProductUpdated(productId="p2", price=Decimal(12), active=True))
    assert [p for p, _ in await rig.recommend("p1")] == ["p2", "p3"]
    await rig.feed(ProductDeleted(productId="p2"))
    assert [p for p, _ in await rig.recommend("p1")] == ["p3"]
    # A late update (published before the deletion, or after) never brings it back.
    await rig.feed(ProductUpdated(productId="p2", price=Decimal(9), active=True))
    assert [p for p, _ in await rig.recommend("p1")] == ["p3"]


async def test_an_answer_carries_the_newest_name_and_price_whatever_the_order(
    rig: RecommendationRig,
) -> None:
    now = datetime.now(UTC)
    await catalog(rig, "p1")
    newer = ProductUpdated(productId="p2", price=Decimal("7.5"), name="Blue cup")
    created = product("p2", price="10")
    # The update was published after the creation but arrives first.
    await rig.feed(rig.envelope(newer, now), rig.envelope(created, now - timedelta(seconds=1)))
    reply = await rig.stub.Recommend(pb.RecommendRequest(product_id="p1"))
    assert [(r.product_id, r.name, r.price.amount) for r in reply.items] == [
        ("p2", "Blue cup", "7.5")
    ]
    # An update alone (its creation never seen) is not shown: no name to show.
    await rig.feed(ProductUpdated(productId="p9", price=Decimal(1)))
    assert [p for p, _ in await rig.recommend("p1")] == ["p2"]


async def test_a_redelivered_event_counts_once(rig: RecommendationRig) -> None:
    await catalog(rig, "p1", "p2", "p3")
    twice = rig.envelope(completed("o1", "p1", "p2"))
    for _ in range(3):
        assert await rig.system.bus.publish([(topic_of(twice), twice)]) == [True]
    rig.fed += 1
    await rig.feed(completed("o2", "p1", "p3"), view("p1", session="s"), view("p3", session="s"))
    # p3: one order and one viewer; p2: one order (three deliveries).
    assert await rig.recommend("p1") == [("p3", "boughtTogether"), ("p2", "boughtTogether")]


async def test_a_users_list_comes_from_what_they_viewed_and_is_theirs_alone(
    rig: RecommendationRig,
) -> None:
    await catalog(rig, "p1", "p2", "p3", "p4")
    await rig.feed(view("p2", session="s"), view("p3", session="s"))
    await rig.feed(view("p1", user="u1"), view("p2", user="u1"))
    mine = await rig.recommend(user_id="u1", metadata=rig.token("u1"))
    # Not the products they viewed; what went with them first.
    assert mine[0] == ("p3", "alsoViewed")
    assert {p for p, _ in mine} == {"p3", "p4"}
    admin = await rig.recommend(user_id="u1", metadata=rig.token("a", ("admin",)))
    assert admin == mine
    for metadata, code in (
        (None, grpc.StatusCode.UNAUTHENTICATED),
        (rig.token("u2"), grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rig.recommend(user_id="u1", metadata=metadata)
        assert err.value.code() == code


@pytest.mark.parametrize(
    "request_",
    [
        pb.RecommendRequest(),
        pb.RecommendRequest(product_id="p1", limit=51),
        pb.RecommendRequest(product_id="p1", limit=-1),
        pb.RecommendRequest(product_id="x" * 201),
    ],
)
async def test_a_bad_request_is_refused(
    rig: RecommendationRig, request_: pb.RecommendRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rig.stub.Recommend(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
