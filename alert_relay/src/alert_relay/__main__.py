"""``python -m alert_relay``."""

from alert_relay.cli import main

raise SystemExit(main())
