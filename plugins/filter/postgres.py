"""Filters for the postgres_exporter role and its scrape job.

The targets' checks and the scrape job's entries are in
plugins/plugin_utils/postgres_targets.py (shared with prometheus_scrape_configs):

- ``postgres_exporter_targets``: the inventory's targets checked and completed;
  a bad target fails naming it, and no message shows a password.
- ``postgres_data_source_uri``: a target's DATA_SOURCE_URI, without credentials.
- ``postgres_static_configs``: a host's targets as ``static_configs`` of job
  ``postgres``.
"""

from ansible_collections.prometheus_alerting.stack.plugins.plugin_utils.postgres_targets import (
    postgres_data_source_uri,
    postgres_exporter_targets,
    postgres_static_configs,
)


class FilterModule:
    def filters(self):
        return {
            "postgres_exporter_targets": postgres_exporter_targets,
            "postgres_data_source_uri": postgres_data_source_uri,
            "postgres_static_configs": postgres_static_configs,
        }
