"""Filters that prepare files for the staged_config module."""


def secret_files(values, directory=""):
    """``{name: value}`` -> staged_config ``files`` whose content is never diffed.

    ``directory`` (relative to staged_config's dest) is put in front of each name.
    """
    prefix = f"{directory.rstrip('/')}/" if directory else ""
    return {
        f"{prefix}{name}": {"content": str(value), "diff": False} for name, value in values.items()
    }


class FilterModule:
    def filters(self):
        return {"secret_files": secret_files}
