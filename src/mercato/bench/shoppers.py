"""Shoppers through the public API: the set-up (products with stock, shoppers signed up and
in — argon2 makes that slow, so it is never measured), the shopping trip (browse and search,
add to cart, check out, wait for the outcome) in a closed loop or arriving at a fixed rate, and
what is collected from the orders afterwards."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mercato.bench.client import FAILURES, Client, Response
from mercato.bench.hammer import error_kind

WORDS = ("cup", "kettle", "teapot", "mug", "press", "grinder", "scale", "filter")
CARD = {
    "method": "card",
    "cardNumber": "4242424242424242",
    "expiry": "12/39",
    "cvc": "123",
    "holder": "Bench Shopper",
}
# The sandbox declines it when the payment is authorized (payment/domain.py SANDBOX_CARDS).
DECLINED_CARD = {**CARD, "cardNumber": "4000000000000002"}
ADDRESS = {
    "name": "Bench Shopper",
    "line1": "1 Load Street",
    "city": "London",
    "postalCode": "N1 7AA",
    "country": "GB",
}
PASSWORD = "Shopper-bench-9Tq4-Wv2x"
Headers = dict[str, str]
Tick = Callable[[int], None]


class SetupFailed(RuntimeError):
    pass


def expect(response: Response, *statuses: int) -> dict[str, Any]:
    if response.status_code not in statuses:
        raise SetupFailed(
            f"{response.method} {response.path}: {response.status_code} {response.text[:300]}"
        )
    return dict(response.json()) if response.content else {}


async def post_retrying(
    http: Client, url: str, body: dict[str, Any], headers: Headers | None = None
) -> Response:
    """POST during set-up, again on 503 (a service still starting, or busy hashing passwords
    for the other shoppers signing up)."""
    for attempt in range(10):
        response = await http.post(url, json=body, headers=headers)
        if response.status_code != 503:
            break
        await asyncio.sleep(0.2 * 2 ** min(attempt, 4))
    return response


async def sign_in(http: Client, email: str, password: str) -> Headers:
    answer = await post_retrying(http, "/api/v1/auth/login", {"email": email, "password": password})
    body = expect(answer, 200)
    return {"Authorization": f"Bearer {body['accessToken']}"}


async def create_products(
    http: Client, admin: Headers, count: int, stock: int, tag: str, tick: Tick
) -> list[str]:
    """``count`` products with ``stock`` units each, once inventory shows them available."""
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        body = {
            "name": f"Bench {WORDS[i % len(WORDS)]} {tag} {i}",
            "description": f"A {WORDS[(i + 3) % len(WORDS)]} for the bench",
            "category": "bench",
            "price": round(5 + (i % 20) * 1.25, 2),
            "quantity": stock,
        }
        async with gate:
            made = expect(await post_retrying(http, "/api/v1/products", body, admin), 201)
        product_id = str(made["productId"])
        deadline = time.monotonic() + 60
        while True:
            shown = expect(await http.get(f"/api/v1/products/{product_id}"), 200)
            if shown.get("available") == stock:
                break
            if time.monotonic() > deadline:
                raise SetupFailed(f"product {product_id}: inventory never showed its stock")
            await asyncio.sleep(0.05)
        tick(1)
        return product_id

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def sign_up_shoppers(http: Client, count: int, tag: str, tick: Tick) -> list[Headers]:
    gate = asyncio.Semaphore(2)  # argon2: more at once only queue on the cores

    async def one(i: int) -> Headers:
        email = f"shopper{i}-{tag}@bench.example"
        async with gate:
            body = {"email": email, "password": PASSWORD, "name": f"Shopper {i}"}
            # 409: an attempt that timed out at the gateway did sign up.
            expect(await post_retrying(http, "/api/v1/auth/register", body), 201, 409)
            headers = await sign_in(http, email, PASSWORD)
        tick(1)
        return headers

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@dataclass(frozen=True)
class Mix:
    """What shoppers do besides paying with a good card and waiting, for runs that test more
    than speed (the fault suite): the shares of checkouts paid with a card that declines, of
    orders the shopper cancels (half of them at once, half once reserved), and of checkouts
    sent a second time with the same key. ``keyed``: every checkout carries an
    Idempotency-Key, and one that got no answer (or a 5xx) is sent again with it."""

    declined: float = 0.0
    cancelled: float = 0.0
    repeated: float = 0.0
    keyed: bool = False


@dataclass
class Placed:
    """One accepted checkout: who placed it, when the request was sent, how the wait ended."""

    order_id: str
    shopper: int
    sent: float
    outcome: str = ""
    order: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    declined: bool = False  # paid with the card that declines
    cancel_asked: bool = False  # the shopper asked to cancel it (and was answered)

    def reached(self, status: str) -> float | None:
        """When the order first reached ``status`` (its history, the system's clock)."""
        for change in self.order.get("statusHistory", []):
            if change["toStatus"] == status:
                return datetime.fromisoformat(change["at"]).timestamp()
        return None


@dataclass
class Load:
    started: float = 0.0
    seconds: float = 0.0
    placed: list[Placed] = field(default_factory=list)
    browse: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    # Open loop only (``rate``): arrivals due, those that found no free shopper, and how late
    # the load generator started each arrival (its own loop busy).
    rate: float | None = None
    arrivals: int = 0
    missed: int = 0
    late: list[float] = field(default_factory=list)
    # With a keyed Mix: (Idempotency-Key, order id) of every 202, repeats and retries included.
    answers: list[tuple[str, str]] = field(default_factory=list)


class Trips:
    """The requests of one shopping trip — search, look at a product, add to cart, check out,
    wait for RESERVED or cancelled — for the closed loop and the open loop alike."""

    def __init__(
        self,
        http: Client,
        shoppers: list[Headers],
        products: list[str],
        load: Load,
        wait_timeout: float,
        mix: Mix = Mix(),
    ) -> None:
        self.http, self.shoppers, self.products = http, shoppers, products
        self.load, self.wait_timeout, self.mix = load, wait_timeout, mix
        self.rngs = [random.Random(n) for n in range(len(shoppers))]

    async def request(self, label: str, method: str, url: str, ok: int, **kw: Any) -> Any:
        try:
            response = await self.http.request(method, url, **kw)
        except FAILURES as exc:
            self.load.errors[error_kind(label, exc)] += 1
            return None
        if response.status_code != ok:
            self.load.errors[error_kind(label, response)] += 1
            return None
        return response.json()

    async def wait(self, placed: Placed, who: Headers) -> str:
        """Long-poll until RESERVED or cancelled. The order is made from the checkout's
        event, so for a moment after the 202 it is not there yet (404): ask again."""
        url = f"/api/v1/orders/{placed.order_id}/wait"
        params: dict[str, str | float] = {"until": "RESERVED", "timeout": self.wait_timeout}
        give_up = time.monotonic() + self.wait_timeout * 3
        while time.monotonic() < give_up:
            try:
                response = await self.http.get(
                    url, params=params, headers=who, timeout=self.wait_timeout + 10
                )
            except FAILURES as exc:
                self.load.errors[error_kind("GET wait", exc)] += 1
                await asyncio.sleep(0.1)  # not in a tight loop while the gateway is away
                continue
            if response.status_code == 404:
                await asyncio.sleep(0.02)
            elif response.status_code != 200:
                self.load.errors[error_kind("GET wait", response)] += 1
                await asyncio.sleep(0.1)
            elif (outcome := str(response.json()["outcome"])) != "timeout":
                return outcome
        self.load.errors["GET wait gave up"] += 1
        return "gave up"

    async def empty_cart(self, n: int) -> None:
        """A checkout that failed (a 503 after its deadline, say) may or may not have taken
        the cart: start again from an empty one, so no order carries leftovers."""
        who = self.shoppers[n]
        cart = await self.request("GET cart", "GET", "/api/v1/cart", 200, headers=who)
        for line in cart["items"] if cart else []:
            url = f"/api/v1/cart/items/{line['productId']}"
            await self.request("DELETE cart/items", "DELETE", url, 200, headers=who)

    async def trip(self, n: int) -> bool:
        """Shopper ``n`` (cart empty) shops once; whether the order was placed and its wait
        ended. The cart is empty again afterwards."""
        who, rng, load = self.shoppers[n], self.rngs[n], self.load
        params = {"q": rng.choice(WORDS), "pageSize": 10}
        if await self.request("GET products?q", "GET", "/api/v1/products", 200, params=params):
            load.browse += 1
        product = rng.choice(self.products)
        if await self.request("GET product", "GET", f"/api/v1/products/{product}", 200):
            load.browse += 1
        item = {"productId": product, "quantity": rng.randint(1, 2)}
        add = "/api/v1/cart/items"
        if not await self.request("POST cart/items", "POST", add, 200, json=item, headers=who):
            await self.empty_cart(n)
            return False
        mix = self.mix
        declined = bool(mix.declined) and rng.random() < mix.declined
        body = {"payment": DECLINED_CARD if declined else CARD, "shippingAddress": ADDRESS}
        sent = time.time()
        key = uuid.uuid4().hex if mix.keyed else None
        answer = await self.checkout(who, body, key)
        if not answer:
            await self.empty_cart(n)
            return False
        placed = Placed(str(answer["orderId"]), n, sent, key=key, declined=declined)
        load.placed.append(placed)
        if key is not None and mix.repeated and rng.random() < mix.repeated:
            await self.checkout(who, body, key)  # the answer is checked from load.answers
        cancel = bool(mix.cancelled) and rng.random() < mix.cancelled
        if cancel and rng.random() < 0.5:
            await self.cancel(placed, who)
        placed.outcome = await self.wait(placed, who)
        if cancel and not placed.cancel_asked:
            await self.cancel(placed, who)
        return True

    async def checkout(self, who: Headers, body: dict[str, Any], key: str | None) -> Any:
        """POST checkout; the 202's body, or None. With a key, a request that got no answer
        or a 5xx is sent again with the same key (for up to about half a minute), as a
        client should: the key makes it one order however many times it arrives."""
        url = "/api/v1/cart/checkout"
        if key is None:
            return await self.request("POST checkout", "POST", url, 202, json=body, headers=who)
        headers = {**who, "Idempotency-Key": key}
        for attempt in range(20):
            try:
                response = await self.http.post(url, json=body, headers=headers)
            except FAILURES as exc:
                self.load.errors[error_kind("POST checkout", exc)] += 1
            else:
                if response.status_code == 202:
                    answer = response.json()
                    self.load.answers.append((key, str(answer["orderId"])))
                    return answer
                self.load.errors[error_kind("POST checkout", response)] += 1
                if response.status_code < 500:
                    return None
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        return None

    async def cancel(self, placed: Placed, who: Headers) -> None:
        """Ask to cancel: again while the order is not there yet (404: the checkout's event
        is on its way) or the answer is lost; 409, already over, is an answer too."""
        url = f"/api/v1/orders/{placed.order_id}/cancel"
        for _ in range(40):
            try:
                response = await self.http.post(url, headers=who)
            except FAILURES as exc:
                self.load.errors[error_kind("POST cancel", exc)] += 1
            else:
                if response.status_code in (200, 409):
                    placed.cancel_asked = response.status_code == 200
                    return
                self.load.errors[error_kind("POST cancel", response)] += 1
                if response.status_code < 500 and response.status_code != 404:
                    return
            await asyncio.sleep(0.25)


async def shop(
    http: Client,
    shoppers: list[Headers],
    products: list[str],
    orders: int | None,
    duration: float | None,
    tick: Tick,
    wait_timeout: float = 30,
    mix: Mix = Mix(),
) -> Load:
    """Closed loop: every shopper shops trip after trip (at most one order in flight each),
    until ``orders`` trips were started or ``duration`` seconds passed (then in-flight orders
    finish their wait). A trip that placed nothing (the system refused or did not answer)
    is followed by a pause, so a system that is down is not asked in a tight loop."""
    load = Load(started=time.time())
    trips = Trips(http, shoppers, products, load, wait_timeout, mix)
    stop_at = time.monotonic() + duration if duration else float("inf")
    budget = orders if orders is not None else -1

    def claim() -> bool:
        nonlocal budget
        if time.monotonic() >= stop_at or budget == 0:
            return False
        budget -= 1 if budget > 0 else 0
        return True

    async def shopper(n: int) -> None:
        await trips.empty_cart(n)
        while claim():
            if await trips.trip(n):
                tick(1)
            else:
                await asyncio.sleep(0.1)

    await asyncio.gather(*(shopper(n) for n in range(len(shoppers))))
    load.seconds = time.time() - load.started
    return load


def arrivals(rate: float, orders: int | None, duration: float | None) -> int:
    """How many arrivals an open-loop run offers: one every 1/``rate`` s from 0 while before
    ``duration``, and no more than ``orders``."""
    if duration is None and orders is None:
        raise ValueError("an open loop needs a duration or a number of orders")
    # Rounded first: 0.1/s × 30 s is 3.0000000000000004 in floating point, yet 3 arrivals.
    due = math.ceil(round(rate * duration, 9)) if duration is not None else None
    return min(n for n in (due, orders) if n is not None)


async def shop_open(
    http: Client,
    shoppers: list[Headers],
    products: list[str],
    rate: float,
    orders: int | None,
    duration: float | None,
    tick: Tick,
    wait_timeout: float = 30,
) -> Load:
    """Open loop: a trip arrives every 1/``rate`` s (evenly spaced), however fast the system
    answers, and takes a free shopper of the pool; an arrival that finds none is counted as
    missed. Arrivals stop after ``duration`` s or ``orders`` arrivals, then the trips in flight
    finish. ``tick`` counts the arrivals done (trip over, or missed)."""
    load = Load(rate=rate)
    trips = Trips(http, shoppers, products, load, wait_timeout)
    await asyncio.gather(*(trips.empty_cart(n) for n in range(len(shoppers))))
    free = deque(range(len(shoppers)))
    tasks: list[asyncio.Task[None]] = []  # all kept: a trip's failure is raised at the end

    async def run(n: int) -> None:
        try:
            await trips.trip(n)
        finally:
            free.append(n)
            tick(1)

    load.started, start = time.time(), time.monotonic()
    for k in range(arrivals(rate, orders, duration)):
        due = start + k / rate
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        load.late.append(max(time.monotonic() - due, 0.0))
        load.arrivals += 1
        if not free:
            load.missed += 1
            tick(1)
            continue
        tasks.append(asyncio.create_task(run(free.popleft())))
    await asyncio.gather(*tasks)
    load.seconds = time.time() - load.started
    return load


SETTLED = {"CANCELLED", "RESERVED", "DELIVERING", "COMPLETED"}


def settled(order: dict[str, Any]) -> bool:
    """Final for the bench: cancelled with any capture refunded, or reserved (or beyond) and
    paid (the carrier never delivers during a run, see MERCATO_CARRIER_DELAY)."""
    status, payment = order.get("status"), order.get("payment", {})
    if status == "CANCELLED":
        return not payment.get("paid") or bool(payment.get("refunded"))
    return status in SETTLED and bool(payment.get("paid")) and not payment.get("refunded")


async def collect(
    http: Client,
    headers: Callable[[Placed], Headers],
    placed: list[Placed],
    timeout: float,
) -> list[Placed]:
    """Read every placed order until it is settled or ``timeout`` passes; the unsettled ones."""
    gate = asyncio.Semaphore(16)
    deadline = time.monotonic() + timeout

    async def read(p: Placed) -> None:
        async with gate:
            response = await http.get(f"/api/v1/orders/{p.order_id}", headers=headers(p))
        if response.status_code == 200:
            p.order = response.json()

    pending = list(placed)
    while pending:
        await asyncio.gather(*(read(p) for p in pending))
        pending = [p for p in pending if not settled(p.order)]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    return pending
