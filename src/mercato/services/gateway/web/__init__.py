"""The web pages: the storefront at ``/`` and the operations console at ``/console``.

Each page is a small HTML shell (header, navigation, a ``<main>`` the page's module fills)
and plain JavaScript modules under ``/static`` that call the public JSON API with the
signed-in user's bearer token: the same validation, roles and problem+json errors as any
other client, and no business rule of their own. Everything is served from the package (no
CDN, no build step). The console's shell is served to anyone; what it shows comes from admin
routes, which answer 401/403 to anyone else, and the page says so.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
Area = Literal["store", "console"]

router = APIRouter(include_in_schema=False)
router.mount("/static", StaticFiles(directory=STATIC), name="web-static")

# path → (area, page, title); a page is one function of store.js or console.js.
PAGES: dict[str, tuple[Area, str, str]] = {
    "/": ("store", "browse", "Shop"),
    "/product/{productId}": ("store", "product", "Product"),
    "/cart": ("store", "cart", "Your cart"),
    "/checkout": ("store", "checkout", "Checkout"),
    "/signin": ("store", "signin", "Sign in"),
    "/signup": ("store", "signup", "Create an account"),
    "/account/orders": ("store", "orders", "Your orders"),
    "/account/orders/{orderId}": ("store", "order", "Order"),
    "/account/inbox": ("store", "inbox", "Notifications"),
    "/console": ("console", "dashboard", "Dashboard"),
    "/console/orders": ("console", "orders", "Orders"),
    "/console/orders/{orderId}": ("console", "order", "Order"),
    "/console/catalog": ("console", "catalog", "Catalog and stock"),
    "/console/shipments": ("console", "shipments", "Shipments"),
    "/console/dead-letters": ("console", "deadLetters", "Dead letters"),
    "/console/dead-letters/{letterId}": ("console", "deadLetter", "Dead letter"),
    "/console/users": ("console", "users", "Users"),
}

NAV: dict[Area, list[tuple[str, str]]] = {
    "store": [
        ("/", "Shop"),
        ("/cart", "Cart"),
        ("/account/orders", "Orders"),
        ("/account/inbox", "Inbox"),
    ],
    "console": [
        ("/console", "Dashboard"),
        ("/console/orders", "Orders"),
        ("/console/catalog", "Catalog"),
        ("/console/shipments", "Shipments"),
        ("/console/dead-letters", "Dead letters"),
        ("/console/users", "Users"),
        ("/", "Storefront"),
    ],
}


def shell(area: Area, page: str, title: str, path: str) -> str:
    """The page's HTML: everything but what its module fetches."""
    brand = "Mercato" if area == "store" else "Mercato console"
    links = "".join(
        f'<li><a href="{href}"{current}>{escape(text)}</a></li>'
        for href, text in NAV[area]
        for current in [" aria-current=page" if href == path else ""]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · {brand}</title>
<link rel="stylesheet" href="/static/site.css">
<link rel="icon" href="data:,">
<script type="module" src="/static/{area}.js"></script>
</head><body class="{area}">
<a class="skip" href="#main">Skip to content</a>
<header><a class="brand" href="{"/" if area == "store" else "/console"}">{brand}</a>
<nav aria-label="Main"><ul>{links}</ul></nav>
<div id="who" class="who" aria-live="polite"></div></header>
<main id="main" tabindex="-1" data-page="{page}">
<h1>{escape(title)}</h1>
<noscript><p>These pages need JavaScript; the JSON API is at <a href="/docs">/docs</a>.</p>
</noscript><p class="loading">Loading…</p></main>
<div id="toast" class="toast" role="status" aria-live="polite"></div>
</body></html>"""


def _page(path: str, area: Area, page: str, title: str) -> None:
    async def endpoint(request: Request) -> HTMLResponse:
        return HTMLResponse(
            shell(area, page, title, path),
            headers={
                "Cache-Control": "no-cache",
                # Only the gateway's own scripts, styles and API: no inline script can run.
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
            },
        )

    router.add_api_route(path, endpoint, methods=["GET"], response_class=HTMLResponse)


for _path, (_area, _name, _title) in PAGES.items():
    _page(_path, _area, _name, _title)
