"""The mercato command line, driven as an operator would."""
