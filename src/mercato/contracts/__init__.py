"""Contracts shared by every service: the event payloads (and, under mercato.api, the gRPC code)."""
