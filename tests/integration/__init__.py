"""Tests: integration tier."""
