"""The web pages in a real browser: Playwright driving Debian's Chromium against the whole
system embedded behind uvicorn on a free port (demo catalog on, the sandbox carrier waiting to
be told). Each test gets a fresh browser context; an uncaught script error, a console error
or a control without a label fails it, and a screenshot of each page it names is kept under
``build/web/`` (or ``MERCATO_WEB_ARTIFACTS``). With ``MERCATO_WEB_README=1`` the journeys also
write the README's pictures (``docs/images/``)."""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mercato.services import all_services
from tests.support import ADMIN, ServedSystem
from tests.support import test_settings as make_settings

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MERCATO_WEB_ARTIFACTS", ROOT / "build" / "web"))
# Chromium logs every 4xx/5xx a script's fetch gets as "Failed to load resource": the pages
# show those answers themselves (a declined card, a route this server lacks).
NETWORK_LOG = re.compile(r"^Failed to load resource: the server responded with a status of")

# The form controls and buttons on the page that have no accessible name.
UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
    && !(e.tagName === "BUTTON" && e.textContent.trim()))
  .map((e) => e.outerHTML)"""


# Per module, not per session: while Playwright's sync API is open, the thread has an event
# loop running, and pytest-asyncio cannot run an async test after it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("MERCATO_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " (MERCATO_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    # A loaded machine (argon2 at every sign-up, the saga) needs more than the default 5 s.
    expect.set_options(timeout=15_000)

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSystem]:
    settings = make_settings(
        tmp_path_factory.mktemp("web"),
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        demo_catalog=True,
        access_token_ttl=3600,
        auth_rate_limit=1_000,  # every test signs someone up from the same address
    )
    system = ServedSystem(all_services(), settings)
    system.start()
    yield system
    system.stop()


class Browsing:
    """One test's browser tab on the shop, and what went wrong in it."""

    def __init__(self, page: Any, base_url: str, name: str):
        self.page = page
        self.base_url = base_url
        self.name = name
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and not NETWORK_LOG.match(message.text):
            self.errors.append(f"console: {message.text}")

    def goto(self, path: str) -> Any:
        """The page at ``path`` once its module has drawn it; a control without a name a
        screen reader can say counts as an error."""
        self.page.goto(self.base_url + path)
        self.page.wait_for_selector("main:not(:has(.loading))")
        nameless = self.page.evaluate(UNLABELLED)
        self.errors.extend(f"{path}: no label for {html}" for html in nameless)
        return self.page

    def readme_picture(self, name: str, height: int) -> None:
        """The top ``height`` pixels of the page, in 64 colours, as ``docs/images/NAME.png``
        (only with MERCATO_WEB_README=1)."""
        if os.environ.get("MERCATO_WEB_README") != "1":
            return
        from PIL import Image

        width = self.page.viewport_size["width"]
        png = self.page.screenshot(clip={"x": 0, "y": 0, "width": width, "height": height})
        image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64)
        image.save(ROOT / "docs" / "images" / f"{name}.png", optimize=True)

    def shot(self, what: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{what}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def browse(
    browser: Any, shop: ServedSystem, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Browsing]]:
    """Opens a tab (a fresh context: nobody signed in) on the shop; several per test may be
    open at once (a shopper and an admin)."""
    opened: list[tuple[Any, Browsing]] = []

    def open_tab(viewport: tuple[int, int] = (1100, 800)) -> Browsing:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(10_000)
        tab = Browsing(context.new_page(), shop.base_url, f"{request.node.name}-{len(opened)}")
        opened.append((context, tab))
        return tab

    yield open_tab
    errors = [e for _, tab in opened for e in tab.errors]
    for context, _ in opened:
        context.close()
    assert not errors, errors


def new_email() -> str:
    return f"web-{uuid.uuid4().hex[:10]}@example.com"


def route_exists(base_url: str, path: str) -> bool:
    """Whether this server has the route at all (not: whether the thing asked about exists):
    a page shows "not available" exactly when it has not."""
    answer = httpx.get(base_url + path)
    return not (answer.status_code == 404 and answer.json()["detail"].startswith("no route"))
