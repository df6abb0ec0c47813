"""order: orders, their items and status history, and the saga that carries them through."""
