"""Sphinx configuration of the collection's HTML docsite (`make docs-site`).

antsibull-docs writes the reStructuredText of every module, filter and role
from their documentation; Sphinx renders it with Ansible's theme. Offline: no
intersphinx, so references into Ansible's own documentation (such as its
common return values) stay plain text instead of failing the build.
"""

project = "prometheus_alerting.stack"
title = "prometheus_alerting.stack"
html_short_title = project
extensions = ["sphinx_antsibull_ext"]
pygments_style = "ansible"
highlight_language = "YAML+Jinja"
html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_copy_source = False
html_use_index = False
default_role = "any"
suppress_warnings = ["ref.ref"]
