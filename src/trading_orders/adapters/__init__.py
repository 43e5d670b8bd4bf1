"""Concrete implementations of the ports, and the HTTP ingress that drives the service."""
