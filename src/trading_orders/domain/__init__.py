"""The pure core: orders, positions, profiles and the rules that decide between them."""
