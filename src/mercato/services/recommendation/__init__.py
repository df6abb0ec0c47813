"""recommendation: "also viewed", "bought together" and popular products, learnt from events."""
