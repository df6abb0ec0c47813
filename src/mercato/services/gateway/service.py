"""The gateway as a service: no migrations of its own, no handlers: the HTTP app, and
the task that follows the catalog's version (pages.py)."""

from __future__ import annotations

from mercato.platform.runtime.service import Service
from mercato.services.gateway.app import create_app
from mercato.services.gateway.pages import watch_catalog

service = Service(name="gateway", http=create_app, tasks=[watch_catalog])
