"""A shopper in the browser: sign up, search, fill the cart, check out, watch the order move,
find it in the history; a declined card; a cancel; the API's own errors at the fields."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.support import ADMIN
from tests.web.conftest import Browsing, new_email, route_exists

DECLINED = "4000 0000 0000 0002"


def sign_up(tab: Browsing) -> Any:
    page = tab.goto("/signup")
    page.get_by_label("Name").fill("Web Shopper")
    page.get_by_label("Email").fill(new_email())
    page.get_by_label("Password").fill("correct horse 9")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


def search(tab: Browsing, text: str) -> Any:
    page = tab.goto("/")
    page.get_by_label("Search products").fill(text)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name=re.compile(f"Results for “{text}”"))).to_be_visible()
    return page


def add(tab: Browsing, text: str, name: str) -> None:
    page = search(tab, text)
    page.get_by_role("button", name=f"Add {name} to cart").click()
    expect(page.get_by_role("status").filter(has_text=f"{name} added")).to_be_visible()


def check_out(tab: Browsing, card: str) -> Any:
    page = tab.goto("/checkout")
    page.get_by_label("Address line 1").fill("12 Analytical Row")
    page.get_by_label("City").fill("London")
    page.get_by_label("Postal code").fill("N1 7AA")
    page.get_by_label("Country").fill("GB")
    page.get_by_label("Card number").fill(card)
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url(re.compile(r"/account/orders/[^/]+$"))
    return page


def status(page: Any) -> Any:
    return page.locator("#order-status")


def test_a_shopper_signs_up_fills_a_cart_checks_out_and_watches_the_order(
    browse: Callable[..., Browsing],
) -> None:
    tab = browse()
    page = sign_up(tab)
    tab.shot("signed-in")
    tab.goto("/")
    tab.readme_picture("storefront", 560)
    add(tab, "mug", "Enamel camp mug")
    tab.shot("search")
    add(tab, "kettle", "Stovetop kettle")

    page = tab.goto("/cart")
    expect(page.locator("#cart-total")).to_contain_text("(2 items)")
    page.get_by_label("Quantity of Enamel camp mug").fill("3")
    page.get_by_role("row", name=re.compile("Enamel camp mug")).get_by_role(
        "button", name="Update"
    ).click()
    # 3 × 12.50 + 39.00, as the cart service totals it.
    expect(page.locator("#cart-total")).to_contain_text("$76.50")
    expect(page.locator("#cart-total")).to_contain_text("(4 items)")
    tab.shot("cart")

    page = check_out(tab, "4242 4242 4242 4242")
    order_id = page.url.rsplit("/", 1)[1]
    # The page follows the order's stream: no reload between CREATED and DELIVERING.
    expect(status(page)).to_contain_text("DELIVERING")
    expect(page.get_by_text("Card ending 4242")).to_be_visible()
    tab.shot("order")

    page = tab.goto("/account/orders")
    row = page.get_by_role("row", name=re.compile(order_id))
    expect(row).to_contain_text("DELIVERING")
    expect(row).to_contain_text("$76.50")
    tab.shot("history")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    page = tab.goto("/account/orders")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()  # the orders are gone


def test_a_declined_card_cancels_the_order_and_says_why(browse: Callable[..., Browsing]) -> None:
    tab = browse()
    sign_up(tab)
    add(tab, "lamp", "Desk lamp")
    page = check_out(tab, DECLINED)
    expect(status(page)).to_contain_text("CANCELLED")
    expect(status(page)).to_contain_text(re.compile("declined", re.I))
    expect(page.get_by_role("button", name="Cancel order")).to_have_count(0)
    tab.shot("declined")


def test_a_shopper_cancels_an_order_being_delivered(browse: Callable[..., Browsing]) -> None:
    tab = browse()
    sign_up(tab)
    add(tab, "pen", "Fountain pen")
    page = check_out(tab, "4242424242424242")
    expect(status(page)).to_contain_text("DELIVERING")
    page.get_by_label("Reason (optional)").fill("changed my mind")
    page.get_by_role("button", name="Cancel order").click()
    expect(status(page)).to_contain_text("CANCELLED")
    expect(page.get_by_text("Refunded")).to_be_visible()
    expect(page.get_by_text("Return:")).to_be_visible()
    tab.shot("cancelled")


def test_the_checkout_shows_the_apis_own_errors_at_the_fields(
    browse: Callable[..., Browsing],
) -> None:
    tab = browse()
    sign_up(tab)
    add(tab, "notebook", "Dot grid notebook")
    page = tab.goto("/checkout")
    page.get_by_label("Card number").fill("4242 4242 4242 4241")  # fails the Luhn check
    page.get_by_role("button", name="Place order").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Unprocessable")
    card = page.get_by_label("Card number")
    expect(card).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field-error").first).to_be_visible()
    # Nothing was ordered: the cart still holds the notebook.
    page = tab.goto("/cart")
    expect(page.locator("#cart-total")).to_contain_text("(1 items)")


def test_a_guest_browses_by_category_and_pages(browse: Callable[..., Browsing]) -> None:
    tab = browse()
    page = tab.goto("/")
    page.get_by_label("Category").select_option("outdoor")
    page.get_by_role("button", name="Search").click()
    cards = page.locator("ul.grid > li")
    expect(cards).to_have_count(2)
    page.get_by_role("link", name="Insulated bottle").click()
    expect(page.get_by_role("heading", name="Insulated bottle")).to_be_visible()
    expect(page.get_by_text("In stock")).to_be_visible()
    # Recommendations: the list, or "not available" where this server has no such route.
    expect(page.get_by_role("heading", name="You may also like")).to_be_visible()
    tab.shot("product")
    page.get_by_role("button", name="Add to cart").click()
    page.wait_for_url(re.compile("/signin"))  # a guest is asked to sign in first


def test_the_storefront_fits_a_phone(browse: Callable[..., Browsing]) -> None:
    tab = browse(viewport=(390, 844))
    page = tab.goto("/")
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= 390, f"the page is {wide}px wide on a 390px screen"
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    tab.shot("phone")
    # By keyboard alone: search with Enter, then Tab to a product's button and press it.
    page.get_by_label("Search products").focus()
    page.keyboard.type("lamp")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Results for “lamp”")).to_be_visible()
    page.wait_for_selector("main:not(:has(.loading))")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == (
            "Add Desk lamp to cart"
        ):
            break
    expect(page.get_by_role("button", name="Add Desk lamp to cart")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile("/signin"))  # a guest is asked to sign in first


def test_the_inbox_lists_notifications_or_says_it_is_not_available(
    browse: Callable[..., Browsing],
) -> None:
    tab = browse()
    sign_up(tab)
    page = tab.goto("/account/inbox")
    if route_exists(tab.base_url, "/api/v1/notifications"):
        expect(page.locator(".unavailable")).to_have_count(0)
        welcome = page.locator("li.unread").first  # the welcome, sent when the user was made
        expect(welcome).to_be_visible(timeout=15_000)
        welcome.get_by_role("button", name="Mark read").click()
        expect(page.locator("li.unread")).to_have_count(0)
    else:
        expect(page.locator(".unavailable")).to_contain_text("notification inbox")
    tab.shot("inbox")


def test_recommendations_show_or_say_they_are_not_available(
    browse: Callable[..., Browsing],
) -> None:
    tab = browse()
    page = tab.goto("/product/demo-mug")
    recs = page.locator("section", has=page.get_by_role("heading", name="You may also like"))
    if route_exists(tab.base_url, "/api/v1/recommendations?productId=demo-mug"):
        expect(recs.locator(".unavailable")).to_have_count(0)
    else:
        expect(recs.locator(".unavailable")).to_contain_text("Recommendations")


def user_id(tab: Browsing) -> str:
    """The signed-in user, as the page's own module reads the token."""
    return str(tab.page.evaluate("import('/static/api.js').then((m) => m.who().userId)"))


def test_a_shopper_pays_with_the_wallet_where_the_server_has_one(
    browse: Callable[..., Browsing],
) -> None:
    tab = browse()
    sign_up(tab)
    add(tab, "bottle", "Insulated bottle")
    if not route_exists(tab.base_url, "/api/v1/wallet"):
        page = tab.goto("/checkout")
        expect(page.get_by_label("Card", exact=True)).to_be_checked()
        expect(page.get_by_label(re.compile("^Wallet"))).to_have_count(0)
        return
    with httpx.Client(base_url=tab.base_url) as http:
        token = http.post("/api/v1/auth/login", json=ADMIN).json()["accessToken"]
        credited = http.post(
            f"/api/v1/admin/wallets/{user_id(tab)}/credit",
            json={"amount": 100, "reason": "web test"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert credited.status_code == 200, credited.text
    page = tab.goto("/checkout")
    page.get_by_label(re.compile("^Wallet")).check()
    expect(page.get_by_label("Card number")).to_be_hidden()
    page.get_by_label("Address line 1").fill("1 Row")
    page.get_by_label("City").fill("Leeds")
    page.get_by_label("Postal code").fill("LS1")
    page.get_by_label("Country").fill("GB")
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url(re.compile(r"/account/orders/[^/]+$"))
    expect(status(page)).to_contain_text("DELIVERING")
    expect(page.get_by_text("Wallet", exact=True)).to_be_visible()
