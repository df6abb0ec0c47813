"""audit: an append-only copy of every event, read back by operators."""
