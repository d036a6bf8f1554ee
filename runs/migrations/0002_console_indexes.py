"""Indexes that keep the console's runs-list filters fast with millions of runs."""
from django.db import migrations, models


def _tags_gin_index(apps, schema_editor):
    # jsonb @> (the tag filter) is served by a GIN index; SQLite has no such index.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX IF NOT EXISTS run_tags_gin ON stepwise_runs_run USING gin (tags jsonb_path_ops)")


def _drop_tags_gin_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS run_tags_gin")


class Migration(migrations.Migration):
    dependencies = [("stepwise_runs", "0001_initial")]

    operations = [
        migrations.AddIndex(model_name="run", index=models.Index(fields=["status", "-id"], name="run_status_id")),
        migrations.AddIndex(model_name="run", index=models.Index(fields=["version", "-id"], name="run_version_id")),
        migrations.AddIndex(
            model_name="run", index=models.Index(fields=["idempotency_key"], name="run_idempotency_key")
        ),
        migrations.RunPython(_tags_gin_index, _drop_tags_gin_index),
    ]
