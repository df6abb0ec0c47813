"""cart: one active cart per user, priced from the catalog, checked out into an order."""
