"""Every test in this folder attacks a real chatd subprocess: mark them all
`robustness` so `pytest -m robustness` runs this suite alone."""

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.robustness)
