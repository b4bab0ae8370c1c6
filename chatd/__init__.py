"""chatd: a single-threaded selectors chat server speaking chat/1."""

from importlib import metadata


def package_version() -> str:
    """The installed distribution's version (pyproject's `version`): the one source.

    A source tree run without installing has no metadata; it says so rather
    than inventing a number.
    """
    try:
        return metadata.version("chatd")
    except metadata.PackageNotFoundError:
        return "unknown"


__version__ = package_version()
