"""Event contracts: the seed payloads and the catalog commands."""
