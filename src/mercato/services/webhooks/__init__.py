"""webhooks: outside systems subscribe to the shop's events; each is POSTed to them, signed."""
