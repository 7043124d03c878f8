"""Test configuration: make the src layout importable without an install, and the
fixtures several test modules share."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


@pytest.fixture
def rename_sbusied() -> Iterator[str]:
    """A seeded bug registered as a policy for one test: D51474 renaming a page it only
    share-busied (vm_fault_cow_may_rename always true)."""
    from faultline.kern import policy as P

    class RenameSbusied(P.SbusyPolicy):
        name = "test-fixture-rename-sbusied"

        def vm_fault_cow_may_rename(self, fs: object) -> bool:
            return True
    P.POLICIES[RenameSbusied.name] = RenameSbusied
    yield RenameSbusied.name
    del P.POLICIES[RenameSbusied.name]
