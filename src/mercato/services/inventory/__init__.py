"""inventory: stock on hand and reservations per product."""
