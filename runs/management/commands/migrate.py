"""``manage.py migrate``, first moving a Stepwise 0.1 deployment onto the apps' new labels (runs.legacy_labels)."""
from __future__ import annotations

from django.core.management.commands import migrate
from django.db import connections

from stepwise.runs.legacy_labels import legacy_labels_move


class Command(migrate.Command):
    def handle(self, *args, **options):
        for line in legacy_labels_move(connections[options["database"]]):
            if options["verbosity"] >= 1:
                self.stdout.write(f"Stepwise's apps were renamed: {line}")
        return super().handle(*args, **options)
