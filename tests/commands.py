"""Running a management command as a user would, with its output captured."""
from __future__ import annotations

import io

from django.core.management import call_command


def run_command(*args: str) -> str:
    """Run ``manage.py *args`` and return what it printed."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()
