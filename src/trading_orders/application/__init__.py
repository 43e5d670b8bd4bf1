"""The use cases: the order service and the ports it drives."""
