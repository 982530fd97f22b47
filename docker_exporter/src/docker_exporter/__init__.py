"""Prometheus exporter for per-container Docker state."""

__version__ = "1.0.0"
