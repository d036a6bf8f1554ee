"""API key scopes, the append-only audit log, and queues that belong to an environment."""
import django.db.models.deletion
from django.db import migrations, models

import stepwise.tasks.models

APPEND_ONLY_SQL = """
CREATE FUNCTION stepwise_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER tasks_auditentry_append_only BEFORE UPDATE OR DELETE ON stepwise_tasks_auditentry
    FOR EACH ROW EXECUTE FUNCTION stepwise_audit_append_only();
"""
DROP_APPEND_ONLY_SQL = """
DROP TRIGGER IF EXISTS tasks_auditentry_append_only ON stepwise_tasks_auditentry;
DROP FUNCTION IF EXISTS stepwise_audit_append_only();
"""


def append_only(apps, schema_editor):
    # PostgreSQL refuses UPDATE and DELETE of audit rows even from outside the app (TRUNCATE, an
    # owner's deliberate act, still works); on the embedded SQLite only the model guards them.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_ONLY_SQL, None)  # no parameters: the % is PL/pgSQL's


def append_only_undo(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_APPEND_ONLY_SQL, None)


def existing_keys_keep_operating(apps, schema_editor):
    # Keys made before scopes could do everything; they keep reading, triggering and operating,
    # but no longer administer (keys, secrets, queues, schedules) until given "admin" again.
    apps.get_model("stepwise_tasks", "ApiKey").objects.update(scopes=["read", "trigger", "operate"])


def queues_per_environment(apps, schema_editor):
    # A queue's limit and pause held for every environment; each environment now starts with its own copy.
    Environment = apps.get_model("stepwise_tasks", "Environment")
    OldQueue = apps.get_model("stepwise_tasks", "Queue")
    NewQueue = apps.get_model("stepwise_tasks", "EnvironmentQueue")
    slugs = list(Environment.objects.values_list("slug", flat=True))
    NewQueue.objects.bulk_create(
        NewQueue(environment_id=slug, name=q.name, concurrency_limit=q.concurrency_limit, paused=q.paused)
        for q in OldQueue.objects.all() for slug in slugs
    )


class Migration(migrations.Migration):

    dependencies = [
        ("stepwise_tasks", "0004_worker_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="scopes",
            field=models.JSONField(default=stepwise.tasks.models.default_api_key_scopes),
        ),
        migrations.RunPython(existing_keys_keep_operating, migrations.RunPython.noop),
        migrations.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(auto_now_add=True)),
                ("environment", models.CharField(blank=True, max_length=32)),
                ("actor", models.CharField(max_length=150)),
                ("user_id", models.BigIntegerField(blank=True, null=True)),
                ("api_key_id", models.BigIntegerField(blank=True, null=True)),
                ("via", models.CharField(max_length=16)),
                ("action", models.CharField(max_length=64)),
                ("target", models.CharField(blank=True, max_length=255)),
                ("data", models.JSONField(blank=True, default=dict)),
            ],
            options={
                "ordering": ["-id"],
                "verbose_name_plural": "audit entries",
                "indexes": [models.Index(fields=["environment", "-id"], name="audit_env_newest")],
            },
        ),
        migrations.RunPython(append_only, append_only_undo),
        migrations.CreateModel(
            name="EnvironmentQueue",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=128)),
                ("concurrency_limit", models.PositiveIntegerField(blank=True, null=True)),
                ("paused", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("environment", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                                  related_name="queues", to="stepwise_tasks.environment")),
            ],
        ),
        migrations.RunPython(queues_per_environment, migrations.RunPython.noop),
        migrations.DeleteModel(name="Queue"),
        migrations.RenameModel(old_name="EnvironmentQueue", new_name="Queue"),
        migrations.AddConstraint(
            model_name="queue",
            constraint=models.UniqueConstraint(fields=("environment", "name"), name="uniq_queue_name"),
        ),
    ]
