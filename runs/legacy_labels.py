"""Move a deployment made before Stepwise's apps were renamed onto their new labels.

Stepwise 0.1 installed its apps as the top-level packages ``runs`` and ``tasks``, with the app labels
``runs`` and ``tasks``: their tables were ``runs_run``, ``tasks_task``... and a project could not have
apps of those names. They are now ``stepwise.runs`` and ``stepwise.tasks``, labelled ``stepwise_runs``
and ``stepwise_tasks``. On a database of the old layout this renames the tables and moves the
migration records and content types (the permissions and role groups hang on those) to the new labels,
in one transaction, before ``migrate`` reads what is applied (``manage.py migrate`` calls it first).

It acts only when nothing is recorded under the new label yet and the migrations recorded under the old
one are Stepwise's own (more than an ``0001_initial``, which any app has), so a project's own ``runs`` or
``tasks`` app is never touched.
"""
from __future__ import annotations

from django.apps import apps
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

OLD_LABELS = {"runs": "stepwise_runs", "tasks": "stepwise_tasks"}


def legacy_labels_move(connection: BaseDatabaseWrapper) -> list[str]:
    """Rename what is stored under the old labels; returns one line per label moved (none: nothing to do)."""
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    if MigrationRecorder.Migration._meta.db_table not in tables:
        return []
    recorder = MigrationRecorder(connection)
    applied = set(recorder.applied_migrations())
    ours = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    moves = []
    for old, new in OLD_LABELS.items():
        recorded = {name for app, name in applied if app == old}
        stepwise = {name for app, name in ours if app == new}
        if any(app == new for app, _ in applied) or not recorded <= stepwise or not recorded - {"0001_initial"}:
            continue  # already moved, or the label is a project's own app (only Stepwise has its later migrations)
        moves.append((old, new, recorded))
    if not moves:
        return []
    content_types = None
    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes.models import ContentType

        content_types = ContentType.objects
    done = []
    # One transaction (the editor's own; on SQLite it also turns foreign key checks off around it).
    with connection.schema_editor(atomic=True) as editor:
        for old, new, recorded in moves:
            renamed = 0
            models = list(apps.get_app_config(new).get_models(include_auto_created=True))
            for model in models:
                legacy = f"{old}_{model._meta.model_name}"
                if legacy in tables and model._meta.db_table not in tables:
                    editor.alter_db_table(model, legacy, model._meta.db_table)
                    renamed += 1
            recorder.migration_qs.filter(app=old, name__in=recorded).update(app=new)
            if content_types is not None:  # the permissions and role groups follow these rows
                content_types.using(connection.alias).filter(
                    app_label=old, model__in=[model._meta.model_name for model in models]).update(app_label=new)
            done.append(f"{old} -> {new}: {renamed} tables renamed, {len(recorded)} migration records moved")
    if content_types is not None:
        content_types.clear_cache()  # it may hold the rows under their old labels
    return done
