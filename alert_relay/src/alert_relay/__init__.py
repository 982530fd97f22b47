"""Alertmanager webhook relay: stores each notification durably, forwards each alert once."""

__version__ = "1.1.0"
