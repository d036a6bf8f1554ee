# The sweeper's two timer indexes hold only the runs of the status each is read for (RETRYING,
# EXECUTING): triggering and finishing a run no longer write an entry into them. Built and dropped
# CONCURRENTLY on PostgreSQL, so a large runs table keeps taking writes while this migrates.

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class _OnlineOnPostgres:
    """CONCURRENTLY on PostgreSQL; the plain operation elsewhere (SQLite has no such option)."""

    plain: type[migrations.AddIndex | migrations.RemoveIndex]

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexOnline(_OnlineOnPostgres, AddIndexConcurrently):
    plain = migrations.AddIndex


class RemoveIndexOnline(_OnlineOnPostgres, RemoveIndexConcurrently):
    plain = migrations.RemoveIndex


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('stepwise_runs', '0017_attempt_span_in_attempt_row'),
    ]

    operations = [
        AddIndexOnline(
            model_name='run',
            index=models.Index(condition=models.Q(('status', 'RETRYING')), fields=['next_attempt_at'],
                               name='run_retry_due'),
        ),
        AddIndexOnline(
            model_name='run',
            index=models.Index(condition=models.Q(('status', 'EXECUTING')), fields=['lease_expires_at'],
                               name='run_lease_expiry'),
        ),
        RemoveIndexOnline(model_name='run', name='run_status_next'),
        RemoveIndexOnline(model_name='run', name='run_status_lease'),
    ]
