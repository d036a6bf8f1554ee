"""Tasks as registered code, their versions, queues and environments."""
from __future__ import annotations

from django.db import models


class Environment(models.Model):
    """A deployment environment (dev, staging, prod) with its own keys and secrets."""

    slug = models.SlugField(primary_key=True, max_length=32)
    name = models.CharField(max_length=64)
    # While paused, every queue of the environment is paused and new ones start paused; the queues
    # that were paused before are kept here, so a resume leaves exactly those paused.
    paused_at = models.DateTimeField(null=True, blank=True)
    queues_paused_before = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Task(models.Model):
    """A task id known to the platform; its code lives in the user's code base."""

    id = models.CharField(primary_key=True, max_length=128)
    queue_name = models.CharField(max_length=128)
    retry_policy = models.JSONField(default=dict)
    max_duration = models.FloatField(null=True, blank=True)
    module = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.id


class TaskVersion(models.Model):
    """The code a task had when a run started: a content hash plus an optional deploy label."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="versions")
    content_hash = models.CharField(max_length=64)
    deploy_label = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["task", "content_hash", "deploy_label"], name="uniq_task_version"
            )
        ]

    @property
    def label(self) -> str:
        short = self.content_hash[:10]
        return f"{self.deploy_label}@{short}" if self.deploy_label else short

    def __str__(self) -> str:
        return f"{self.task_id}:{self.label}"


class WorkerVersion(models.Model):
    """A version of task code that a running worker holds, as that worker last announced it."""

    worker = models.CharField(max_length=128)
    content_hash = models.CharField(max_length=64)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker", "content_hash"], name="uniq_worker_version")]
        indexes = [models.Index(fields=["content_hash", "seen_at"], name="worker_version_seen")]

    def __str__(self) -> str:
        return f"{self.worker}:{self.content_hash[:10]}"


class Queue(models.Model):
    """A named lane of one environment, pausable, with optional limits on how many of its runs execute at once.

    ``concurrency_limit`` holds per concurrency key (a run without a key counts every run of
    the queue); ``total_limit`` caps the queue as a whole, across keys. Both hold at once.
    ``rate_limit`` runs may start per ``rate_period`` seconds, evenly spaced: a claim starts a
    run only at or after ``rate_next_at`` and moves it one interval (period / limit) on.
    """

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="queues")
    name = models.CharField(max_length=128)
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    total_limit = models.PositiveIntegerField(null=True, blank=True)
    rate_limit = models.PositiveIntegerField(null=True, blank=True)
    rate_period = models.FloatField(null=True, blank=True)
    rate_next_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["environment", "name"], name="uniq_queue_name")]

    def __str__(self) -> str:
        return f"{self.environment_id}:{self.name}"

    @property
    def limited(self) -> bool:
        """Tell whether a claim must lock this queue's row to check a limit (concurrency, total or rate)."""
        return self.concurrency_limit is not None or self.total_limit is not None or self.rate_limit is not None

    @property
    def rate_interval(self) -> float | None:
        """Return the seconds between two starts under the rate limit, or None without one."""
        return None if self.rate_limit is None else self.rate_period / self.rate_limit


LIMITED_QUEUE = (
    models.Q(concurrency_limit__isnull=False) | models.Q(total_limit__isnull=False) | models.Q(rate_limit__isnull=False)
)


class Schedule(models.Model):
    """A cron expression in a time zone that triggers a task once per tick."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="schedules")
    task_id = models.CharField(max_length=128)
    cron = models.CharField(max_length=128)
    timezone = models.CharField(max_length=64, default="UTC")
    dedup_key = models.CharField(max_length=255)
    payload = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    declared = models.BooleanField(default=False)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "dedup_key"], name="uniq_schedule_dedup_key")
        ]

    def __str__(self) -> str:
        return f"{self.environment_id}:{self.dedup_key}"


class Secret(models.Model):
    """An environment variable of one environment, encrypted at rest."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=128)
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["environment", "name"], name="uniq_secret_name")]

    def __str__(self) -> str:
        return f"{self.environment_id}:{self.name}"


def default_api_key_scopes() -> list[str]:
    return ["read", "trigger"]


class ApiKey(models.Model):
    """A bearer key scoped to one environment; only its sha256 is stored."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=128)
    prefix = models.CharField(max_length=32)
    key_hash = models.CharField(max_length=64, unique=True)
    # Capabilities the key carries (stepwise.tasks.access.Capability values): least privilege by default.
    scopes = models.JSONField(default=default_api_key_scopes)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}…"


class WebhookSecret(models.Model):
    """A signing secret for webhook triggers of one environment; several may be valid at once."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="webhook_secrets")
    name = models.CharField(max_length=128)
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class WebhookDelivery(models.Model):
    """A webhook delivery id already accepted, so a replay inside the window is refused."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    delivery_id = models.CharField(max_length=255)
    run_id = models.CharField(max_length=40)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "delivery_id"], name="uniq_webhook_delivery")
        ]


class AuditLogAppendOnly(Exception):
    """An attempt to change or delete an audit entry: the log only grows."""


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditLogAppendOnly("audit entries are never changed")

    def delete(self):
        raise AuditLogAppendOnly("audit entries are never deleted")


class AuditEntry(models.Model):
    """One change made by a person or an API key, through the console, the API or the CLI; append-only.

    Plain values rather than foreign keys: an entry outlives the user, key or queue it names, and
    a cascade would have to change it.
    """

    at = models.DateTimeField(auto_now_add=True)
    environment = models.CharField(max_length=32, blank=True)
    actor = models.CharField(max_length=150)  # a username, "api key <name> (<prefix>…)", or "cli:<os user>"
    user_id = models.BigIntegerField(null=True, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    via = models.CharField(max_length=16)  # console, api, cli
    action = models.CharField(max_length=64)  # "queue.pause", "secret.set", "run.cancel"...
    target = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["environment", "-id"], name="audit_env_newest")]
        verbose_name_plural = "audit entries"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AuditLogAppendOnly("audit entries are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogAppendOnly("audit entries are never deleted")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"


class AlertRule(models.Model):
    """When to tell whom about an environment's failing runs or backed-up queues (README: Alerts)."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=128)
    # What fires it (stepwise.tasks.alerts.CONDITIONS): run.failed, run.crashed, run.timed_out, queue.backlog,
    # queue.age.
    conditions = models.JSONField(default=list)
    # Task ids (shell patterns: "billing-*") whose runs it watches; empty: every task.
    tasks = models.JSONField(default=list, blank=True)
    # Queue names (shell patterns) whose backlog it watches; empty: every queue.
    queues = models.JSONField(default=list, blank=True)
    backlog_threshold = models.PositiveIntegerField(null=True, blank=True)  # queued runs, at least
    age_threshold_seconds = models.PositiveIntegerField(null=True, blank=True)  # oldest queued run, at least
    emails = models.JSONField(default=list, blank=True)
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.BinaryField(null=True, blank=True)  # encrypted like secrets; shown once
    # At most one notification per rule and task (or queue) in this many seconds; the rest are counted.
    dedup_seconds = models.PositiveIntegerField(default=3600)
    active = models.BooleanField(default=True)
    # Runs that finished up to here were looked at: a new rule does not alert on history.
    checked_until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment", "name"]
        constraints = [models.UniqueConstraint(fields=["environment", "name"], name="uniq_alert_rule_name")]

    def __str__(self) -> str:
        return f"{self.environment_id}:{self.name}"


class AlertIncident(models.Model):
    """An open run of trouble for one rule and subject ("task:<id>", "queue:<name>"): what deduplicates alerts."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="incidents")
    subject = models.CharField(max_length=255)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    notified_at = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)  # occurrences since it opened
    unsent = models.PositiveIntegerField(default=0)  # occurrences since the last notification
    # The latest runs counted since the last notification (at most ten), named in the next one.
    unsent_runs = models.JSONField(default=list, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "subject"], condition=models.Q(resolved_at__isnull=True),
                                               name="uniq_open_alert_incident")]


class AlertDelivery(models.Model):
    """One notification to one channel, kept until it is sent (retried while the receiver is down)."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8)  # email | webhook
    delivery_id = models.CharField(max_length=64, unique=True)  # the Stepwise-Delivery header: same on every try
    body = models.JSONField()
    status = models.CharField(max_length=8, default="pending")  # pending | sent | failed
    tries = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["next_try_at"], name="alert_delivery_due",
                                condition=models.Q(status="pending"))]


class BulkAction(models.Model):
    """Cancel or replay every run matching a runs-list filter, done in batches by the scheduler."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=8)  # cancel | replay
    filters = models.JSONField(default=dict)  # the runs-list filters, as their query-string values
    actor = models.CharField(max_length=150)
    total = models.PositiveIntegerField()  # how many runs matched when it was confirmed
    done = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # Runs are taken newest first below this id; it starts above the newest run at confirmation.
    cursor = models.CharField(max_length=40)
    status = models.CharField(max_length=10, default="running")  # running | finished
    problems = models.JSONField(default=list, blank=True)  # the first few reasons runs were skipped
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
