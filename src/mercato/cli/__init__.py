"""The ``mercato`` command."""
