"""webhooks as the runtime sees it: a service of its own that the saga does without, bound to
every event type."""

from __future__ import annotations

from mercato.contracts.events import REGISTRY
from mercato.platform.bus.port import topic_matches
from mercato.services import OPTIONAL, SERVICES, ordered_names, process_plan
from mercato.services.webhooks.service import service


def test_webhooks_is_a_service_that_can_be_left_out() -> None:
    assert "webhooks" in SERVICES and "webhooks" in OPTIONAL
    assert "webhooks" in ordered_names()
    assert "webhooks" not in ordered_names(without=["webhooks"])
    assert ("webhooks",) not in process_plan(without=["webhooks"])


def test_its_queue_is_bound_to_every_event_type() -> None:
    patterns = {h.pattern for h in service.handlers}
    for spec in REGISTRY.values():
        topic = f"{spec.publisher}.{spec.type}" + (
            ".PAID" if spec.type == "OrderStatusChanged" else ""
        )
        assert any(topic_matches(p, topic) for p in patterns), spec.type
