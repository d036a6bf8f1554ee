"""The console's form of an alert rule: lists typed as comma-separated text, checked by the same service as the API."""
from __future__ import annotations

from typing import Any

from django import forms

from stepwise.tasks.alerts import CONDITIONS

CONDITION_LABELS = {
    "run.failed": "A run failed",
    "run.crashed": "A run crashed",
    "run.timed_out": "A run timed out",
    "queue.backlog": "A queue's backlog passes a threshold",
    "queue.age": "A queue's oldest run waits too long",
}


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class AlertRuleForm(forms.Form):
    """A new alert rule; ``rule_fields()`` gives what ``alert_rule_create`` takes."""

    name = forms.CharField(max_length=128, widget=forms.TextInput(attrs={"placeholder": "billing failures"}))
    conditions = forms.MultipleChoiceField(choices=[(c, CONDITION_LABELS[c]) for c in CONDITIONS],
                                           widget=forms.CheckboxSelectMultiple, label="Alert when")
    tasks = forms.CharField(required=False, max_length=2000, label="Tasks",
                            help_text="Task ids or patterns, comma-separated (billing-*); empty: every task.")
    queues = forms.CharField(required=False, max_length=2000, label="Queues",
                             help_text="Queue names or patterns for the queue conditions; empty: every queue.")
    backlog_threshold = forms.IntegerField(required=False, min_value=1, max_value=10_000_000,
                                           label="Backlog threshold (queued runs)")
    age_threshold_seconds = forms.IntegerField(required=False, min_value=1, max_value=10_000_000,
                                               label="Age threshold (seconds)")
    emails = forms.CharField(required=False, max_length=2000, label="E-mail to",
                             widget=forms.TextInput(attrs={"placeholder": "oncall@example.com"}))
    webhook_url = forms.CharField(required=False, max_length=500, label="Webhook URL",
                                  widget=forms.URLInput(attrs={"placeholder": "https://hooks.example.com/stepwise"}))
    dedup_seconds = forms.IntegerField(initial=3600, min_value=60, max_value=7 * 86400,
                                       label="At most one alert per task or queue every (seconds)")

    def rule_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {**data, "tasks": _split(data["tasks"]), "queues": _split(data["queues"]),
                "emails": _split(data["emails"])}
