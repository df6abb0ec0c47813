"""Declaring a service once, and running it embedded (all in one process) or alone."""

from mercato.platform.runtime.service import Service, ServiceContext

__all__ = ["Service", "ServiceContext"]
