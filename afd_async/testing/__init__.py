"""Helpers for tests and benchmarks that need real services (not mocks)."""
