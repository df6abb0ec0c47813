"""An admin in the console: the dashboard, a product created and seen in the storefront,
repriced under a shopper's cart, restocked, a shipment marked delivered (the shopper's order
page follows), an order's page with its story, dead letters, users; and a customer kept out."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from playwright.sync_api import expect

from mercato.platform.envelope import AMQP_PREFIX, Envelope
from mercato.platform.runtime.system import System
from tests.support import ADMIN, ServedSystem
from tests.web.conftest import Browsing, new_email, route_exists
from tests.web.test_storefront import add, check_out, sign_up, status


def sign_in_admin(tab: Browsing) -> Any:
    page = tab.goto("/console")
    page.get_by_label("Email").fill(ADMIN["email"])
    page.get_by_label("Password").fill(ADMIN["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Readiness")).to_be_visible()
    return page


def test_an_admin_runs_the_shop_from_the_console(browse: Callable[..., Browsing]) -> None:
    admin = browse()
    page = sign_in_admin(admin)
    expect(page.get_by_role("heading", name=re.compile("Orders per minute"))).to_be_visible()
    readiness = page.locator("section", has=page.get_by_role("heading", name="Readiness"))
    expect(readiness.get_by_role("row", name=re.compile("catalog"))).to_contain_text("ok")
    admin.shot("dashboard")

    # A new product, in the storefront at once.
    name = f"Teapot {new_email()[4:10]}"
    page = admin.goto("/console/catalog")
    page.get_by_text("New product").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Category", exact=True).fill("kitchen")
    page.get_by_label("Price", exact=True).fill("21.50")
    page.get_by_label("Stock on hand").fill("7")
    page.get_by_role("button", name="Create product").click()
    expect(page.get_by_role("row", name=re.compile(name)).first).to_contain_text("$21.50")
    admin.shot("catalog")

    shopper = browse()
    sign_up(shopper)
    add(shopper, name, name)

    # Repriced under the shopper's cart: the cart shows the new price and what it was.
    page = admin.goto("/console/catalog")
    page.get_by_role("button", name=f"Edit {name}").click()
    editor = page.locator("#editor")
    editor.get_by_label("Price", exact=True).fill("25")
    editor.get_by_role("button", name="Save").click()
    expect(page.get_by_role("row", name=re.compile(name)).first).to_contain_text("$25.00")
    cart = shopper.goto("/cart")
    expect(cart.locator(".price-changed")).to_contain_text("was $21.50")
    expect(cart.locator("#cart-total")).to_contain_text("$25.00")

    # Restock: the inventory's route, or a clear "not available" where this server lacks it.
    page.get_by_role("button", name=f"Restock {name}").click()
    editor.get_by_role("button", name="Restock", exact=True).click()
    if route_exists(admin.base_url, "/api/v1/inventory/x/restock"):
        expect(page.get_by_role("status").filter(has_text="restocked")).to_be_visible()
    else:
        expect(editor.get_by_role("alert")).to_contain_text("not available")

    # The shopper checks out; the admin, as the carrier, delivers; the order page follows.
    order = check_out(shopper, "4242 4242 4242 4242")
    order_id = order.url.rsplit("/", 1)[1]
    expect(status(order)).to_contain_text("DELIVERING")
    page = admin.goto("/console/shipments")
    row = page.get_by_role("row", name=re.compile(order_id))
    row.get_by_role("button", name="Mark delivered").click()
    expect(page.get_by_role("status").filter(has_text="Marked delivered")).to_be_visible()
    expect(status(order)).to_contain_text("COMPLETED")

    page = admin.goto(f"/console/orders/{order_id}")
    expect(page.get_by_role("heading", name=f"Order {order_id}")).to_be_visible()
    expect(status(page)).to_contain_text("COMPLETED")
    shipments = page.locator("section", has=page.get_by_role("heading", name="Shipments"))
    expect(shipments).to_contain_text("DELIVERED")
    story = page.locator("section", has=page.get_by_role("heading", name="Story"))
    if route_exists(admin.base_url, f"/api/v1/admin/orders/{order_id}/story"):
        expect(story).to_contain_text("OrderCreated")
    else:
        expect(story.locator(".unavailable")).to_be_visible()
    admin.shot("order")
    admin.readme_picture("console-order", 680)

    page = admin.goto("/console/orders?status=COMPLETED")
    expect(page.get_by_role("row", name=re.compile(order_id))).to_be_visible()
    # The time filter (the browser's clock and zone are the test's).
    hour_ago = (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page = admin.goto(f"/console/orders?from={hour_ago}")
    expect(page.get_by_role("row", name=re.compile(order_id))).to_be_visible()
    page = admin.goto(f"/console/orders?to={hour_ago}")
    expect(page.get_by_text("No order matches.")).to_be_visible()
    page = admin.goto("/console")
    expect(page.get_by_text(re.compile(r"^[1-9]\d* orders placed in the window"))).to_be_visible()
    cancellations = page.locator("section", has=page.get_by_role("heading", name="Cancellations"))
    expect(cancellations).to_be_visible()

    page = admin.goto("/console/dead-letters")
    if route_exists(admin.base_url, "/api/v1/admin/dead-letters"):
        expect(page.get_by_role("button", name="Filter")).to_be_visible()
        expect(page.locator(".unavailable")).to_have_count(0)
    else:
        expect(page.locator(".unavailable")).to_contain_text("Not available")
    admin.shot("dead-letters")

    page = admin.goto("/console/users")
    page.get_by_role("link", name=re.compile(".+")).filter(has_text="-").first.click()
    expect(page.get_by_label("customer")).to_be_checked()
    page.get_by_label("admin").check()
    page.get_by_role("button", name="Save roles").click()
    expect(page.get_by_text(re.compile("roles: admin, customer"))).to_be_visible()
    admin.shot("users")


def test_a_customer_is_refused_the_console(browse: Callable[..., Browsing]) -> None:
    tab = browse()
    sign_up(tab)
    page = tab.goto("/console")
    expect(page.get_by_role("alert")).to_contain_text("admin role")


def test_a_return_is_received_from_the_shipments_page(browse: Callable[..., Browsing]) -> None:
    shopper = browse()
    sign_up(shopper)
    add(shopper, "throw", "Wool throw")
    order = check_out(shopper, "4242 4242 4242 4242")
    order_id = order.url.rsplit("/", 1)[1]
    expect(status(order)).to_contain_text("DELIVERING")
    order.get_by_role("button", name="Cancel order").click()
    expect(order.get_by_text("Return:")).to_contain_text("IN_TRANSIT")

    admin = browse()
    sign_in_admin(admin)
    page = admin.goto("/console/shipments")
    row = page.get_by_role("row", name=re.compile(order_id)).filter(has_text="return")
    row.get_by_role("button", name="Mark delivered").click()
    expect(page.get_by_role("status").filter(has_text="Marked delivered")).to_be_visible()
    order = shopper.goto(f"/account/orders/{order_id}")
    expect(order.get_by_text("Return:")).to_contain_text("DELIVERED")


async def poison(system: System) -> str:
    """An OrderCreated whose payload fails its model: each consumer of it keeps a dead letter."""
    envelope = Envelope(type="OrderCreated", source="mercato/order", data={"orderId": ["web"]})
    headers, body = envelope.to_binary(getattr(system.bus, "prefix", AMQP_PREFIX))
    await system.bus.publish_raw("order.OrderCreated", headers, body)
    return envelope.id


def test_a_dead_letter_is_inspected_redriven_and_discarded(
    browse: Callable[..., Browsing], shop: ServedSystem
) -> None:
    admin = browse()
    sign_in_admin(admin)
    if not route_exists(admin.base_url, "/api/v1/admin/dead-letters"):
        page = admin.goto("/console/dead-letters")
        expect(page.locator(".unavailable")).to_contain_text("dead-letter list")
        return
    event_id = shop.call(poison)
    page = admin.goto("/console/dead-letters?service=inventory")
    for _ in range(50):  # the letter is written once inventory has given up on the event
        if page.get_by_role("row", name=re.compile("OrderCreated")).count():
            break
        page.wait_for_timeout(200)
        page = admin.goto("/console/dead-letters?service=inventory")
    page.get_by_role("row", name=re.compile("OrderCreated")).first.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Envelope")).to_be_visible()
    expect(page.locator("pre").last).to_contain_text(event_id)
    expect(page.get_by_role("row", name=re.compile("OrderCreated"))).to_contain_text("open")
    admin.shot("dead-letter")

    # A poison event fails again when redriven: still open, one attempt more, and said so.
    page.get_by_role("button", name="Redrive").click()
    expect(page.get_by_role("status").filter(has_text="Redriven")).to_be_visible()
    page.get_by_label("Reason").fill("malformed by a test; nothing to redo")
    page.get_by_role("button", name="Discard").click()
    expect(page.get_by_text("This letter is discarded.")).to_contain_text("nothing to redo")
    page = admin.goto("/console/dead-letters?status=discarded")
    expect(page.get_by_role("row", name=re.compile("OrderCreated")).first).to_contain_text(
        "discarded"
    )
