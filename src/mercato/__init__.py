"""Mercato: an event-driven e-commerce backend."""

__version__ = "0.1.0"
