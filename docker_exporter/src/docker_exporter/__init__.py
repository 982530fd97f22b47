"""Prometheus exporter for per-container Docker state."""

__version__ = "2.1.0"
