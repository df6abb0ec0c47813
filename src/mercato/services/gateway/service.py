"""The gateway as a service: no migrations of its own, no handlers, only the HTTP app."""

from __future__ import annotations

from mercato.platform.runtime.service import Service
from mercato.services.gateway.app import create_app

service = Service(name="gateway", http=create_app)
