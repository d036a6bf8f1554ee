#!/usr/bin/env python
"""Run Django administrative commands for Stepwise."""
from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepwise.console.settings")
    from django.core.management import execute_from_command_line

    import stepwise.console.celery  # noqa: F401  (the project's Celery app: commands that trigger send hints through it)

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
