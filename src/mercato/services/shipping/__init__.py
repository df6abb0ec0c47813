"""shipping: shipments to customers, returns to the warehouse, and the sandbox carrier."""
