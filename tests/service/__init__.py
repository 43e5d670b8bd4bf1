"""Tests: service tier."""
