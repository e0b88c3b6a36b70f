"""Markers of the ops tests, registered here so the suite runs under --strict-markers before pyproject lists them."""

from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "prometheus: runs a real Prometheus server (Debian's `prometheus`, from `make setup`)")
