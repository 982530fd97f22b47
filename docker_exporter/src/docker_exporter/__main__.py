"""``python -m docker_exporter``."""

from docker_exporter.cli import main

raise SystemExit(main())
