"""Tests: e2e tier."""
