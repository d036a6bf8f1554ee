"""Fixtures of the operations tests: the API tests' clients and environments."""
from __future__ import annotations

from tests.api.conftest import api, environments, live_api, prod_api  # noqa: F401  (fixtures)
from tests.console.conftest import (  # noqa: E402, F401  (fixtures)
    console_url,  # noqa: E402, F401  (fixtures)
    signed_in,
    user,
)
