"""notification: mail and an in-app inbox from the shop's events."""
