"""Runtime tests: the demo pair embedded and as separate processes."""
