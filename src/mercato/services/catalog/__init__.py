"""catalog: products, prices, and the availability shown to shoppers."""
