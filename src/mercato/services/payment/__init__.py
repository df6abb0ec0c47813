"""payment: card tokens, store-credit wallets, and the order's charge, refund or void."""
