"""The web side of the project's Python services, as Prometheus' exporter-toolkit does it:
the web config file (TLS, basic auth, response headers, reread when its files
change) and listen addresses."""

__version__ = "1.1.0"
