"""The shared platform: envelope, event bus, outbox and inbox, runtime, settings, logging."""
