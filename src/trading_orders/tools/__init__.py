"""Command-line tools around the service: profile generation and an order producer."""
