"""Forms of the console: runs-list filters, JSON payloads, bulk actions and the configuration pages."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms

from stepwise.runs.selectors import RunFilters
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import InvalidTrigger, payload_parse
from stepwise.tasks.registry import task_all
from stepwise.tasks.schedules import DECLARED_KEY_PREFIX, InvalidSchedule, cron_validate, timezone_validate
from stepwise.tasks.secrets import InvalidSecret, secret_name_validate


class RunFilterForm(forms.Form):
    """The filters above the runs list, read from the query string."""

    task = forms.CharField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *RunStatus.choices])
    tag = forms.CharField(required=False, max_length=128)
    version = forms.CharField(required=False, max_length=128)
    created_after = forms.DateTimeField(required=False, input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])
    created_before = forms.DateTimeField(required=False, input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])
    idempotency_key = forms.CharField(required=False, max_length=255)
    run_id = forms.CharField(required=False, max_length=40)
    environment = forms.SlugField(required=False, max_length=32)
    queue = forms.CharField(required=False, max_length=128)
    batch = forms.CharField(required=False, max_length=64)
    schedule = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1)

    def filters(self) -> RunFilters:
        """Return the valid filters; invalid fields are ignored (the form shows their errors)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        values = {name: data.get(name) or self.fields[name].initial or _empty(name) for name in self.fields}
        return RunFilters(**{**values, "schedule": str(values["schedule"] or "")})


def _empty(name: str) -> Any:
    return None if name.startswith("created_") else ""


class PayloadForm(forms.Form):
    """A JSON payload typed by a user (Test form, replay)."""

    payload = forms.CharField(widget=forms.Textarea, initial="{}")

    def clean_payload(self) -> Any:
        try:
            return payload_parse(self.cleaned_data["payload"])
        except InvalidTrigger as exc:
            raise forms.ValidationError(str(exc))


class BulkActionForm(forms.Form):
    """Selected runs and what to do with them."""

    action = forms.ChoiceField(choices=[("cancel", "Cancel"), ("replay", "Replay")])
    run_ids = forms.MultipleChoiceField(required=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Any run id is a valid choice; the service says whether the run exists.
        ids = self.data.getlist("run_ids") if hasattr(self.data, "getlist") else []
        self.fields["run_ids"].choices = [(i, i) for i in ids[:500]]


class DecisionForm(forms.Form):
    """Approve or reject a token waitpoint (an optional JSON object as the answer), time it out now or skip it."""

    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject"), ("timeout", "Time out now"),
                                          ("skip", "Skip")])
    data = forms.CharField(required=False, widget=forms.Textarea)

    def clean_data(self) -> dict[str, Any] | None:
        text = (self.cleaned_data.get("data") or "").strip()
        return _json_object(text, what="answer", example='{"note": "looks good"}') if text else None


class EventSendForm(forms.Form):
    """An event to send from the console: its name, environment and JSON payload."""

    name = forms.CharField(max_length=255)
    environment = forms.CharField(max_length=64)
    payload = forms.CharField(required=False, widget=forms.Textarea)

    def clean_payload(self) -> Any:
        text = (self.cleaned_data.get("payload") or "").strip()
        try:
            return payload_parse(text) if text else {}
        except InvalidTrigger as exc:
            raise forms.ValidationError(str(exc).replace("payload", "event payload")) from None


def _json_object(text: str, *, what: str, example: str) -> dict[str, Any]:
    try:
        value = payload_parse(text)
    except InvalidTrigger as exc:
        raise forms.ValidationError(str(exc).replace("payload", what)) from None
    if not isinstance(value, dict):
        raise forms.ValidationError(f"the {what} must be a JSON object, e.g. {example}")
    return value


class QueueLimitForm(forms.Form):
    """A queue's limits: per concurrency key, in total, and starts per period; an empty one is removed."""

    concurrency_limit = forms.IntegerField(
        required=False, error_messages={"invalid": "a concurrency limit must be a whole number, or empty for none"}
    )
    total_limit = forms.IntegerField(
        required=False, error_messages={"invalid": "a total limit must be a whole number, or empty for none"}
    )
    rate_limit = forms.CharField(required=False, max_length=40, strip=True)


def _checked(check: Callable[[str], object], value: str) -> str:
    """Return the value if a service's check accepts it; its refusal becomes the field's error."""
    try:
        check(value)
    except (InvalidSchedule, InvalidSecret) as exc:
        raise forms.ValidationError(str(exc)) from None
    return value


class ScheduleForm(forms.Form):
    """A new schedule (or, with the dedup key of an existing one, its replacement)."""

    task_id = forms.ChoiceField(label="Task")
    cron = forms.CharField(
        max_length=128, label="Cron expression", help_text="minute hour day-of-month month weekday",
        widget=forms.TextInput(attrs={"placeholder": "0 9 * * 1-5", "class": "mono", "spellcheck": "false"}))
    timezone = forms.CharField(max_length=64, initial="UTC", label="Time zone",
                               widget=forms.TextInput(attrs={"list": "timezones", "spellcheck": "false"}))
    dedup_key = forms.CharField(
        max_length=255, label="Dedup key", help_text="one schedule per key: the same key replaces it",
        widget=forms.TextInput(attrs={"placeholder": "weekday-report", "spellcheck": "false"}))
    payload = forms.CharField(initial="{}", label="Payload (JSON object)", widget=forms.Textarea(
        attrs={"rows": 3, "class": "json-editor", "spellcheck": "false", "data-json-editor": "",
               "aria-describedby": "payload-validation"}))
    active = forms.BooleanField(required=False, initial=True, label="Active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["task_id"].choices = [(d.id, d.id) for d in task_all()]

    def clean_cron(self) -> str:
        return _checked(cron_validate, self.cleaned_data["cron"].strip())

    def clean_timezone(self) -> str:
        return _checked(timezone_validate, self.cleaned_data["timezone"].strip())

    def clean_dedup_key(self) -> str:
        key = self.cleaned_data["dedup_key"].strip()
        if key.startswith(DECLARED_KEY_PREFIX):
            raise forms.ValidationError(
                f"keys starting with '{DECLARED_KEY_PREFIX}' belong to schedules declared in code"
            )
        return key

    def clean_payload(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data["payload"], what="payload", example='{"report": "daily"}')


class ScheduleChangeForm(forms.Form):
    """A change to one schedule: a new cron and time zone, or switching it on or off."""

    cron = forms.CharField(required=False, max_length=128)
    timezone = forms.CharField(required=False, max_length=64)
    active = forms.TypedChoiceField(required=False, choices=[("1", "on"), ("0", "off")], coerce=lambda v: v == "1",
                                    empty_value=None)

    def clean_cron(self) -> str:
        value = self.cleaned_data["cron"].strip()
        return _checked(cron_validate, value) if value else ""

    def clean_timezone(self) -> str:
        value = self.cleaned_data["timezone"].strip()
        return _checked(timezone_validate, value) if value else ""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("cron") and not data.get("timezone") and data.get("active") is None:
            raise forms.ValidationError("nothing to change: give a cron expression, a time zone or active=1/0")
        return data

    def changes(self) -> dict[str, Any]:
        """Return the fields to change, for schedule_update."""
        return {name: value for name, value in self.cleaned_data.items() if value not in ("", None)}


class SecretForm(forms.Form):
    """A secret to create or overwrite; its value is never rendered back."""

    name = forms.CharField(max_length=128, widget=forms.TextInput(
        attrs={"placeholder": "DATABASE_URL", "autocomplete": "off", "spellcheck": "false"}))
    value = forms.CharField(strip=False, widget=forms.PasswordInput(
        render_value=False, attrs={"autocomplete": "off", "placeholder": "paste the value"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.is_bound:  # shown again only with errors, and without the value typed
            self.fields["value"].help_text = "Type the value again: it is never sent back to the browser."

    def clean_name(self) -> str:
        return _checked(secret_name_validate, self.cleaned_data["name"].strip())


class ApiKeyForm(forms.Form):
    """A new API key: its name and scopes (read and trigger unless more are ticked)."""

    name = forms.CharField(max_length=128, widget=forms.TextInput(attrs={"placeholder": "ci-deploys"}))
    scopes = forms.MultipleChoiceField(
        choices=[("read", "read: runs, waitpoints, queues, schedules"), ("trigger", "trigger: runs and events"),
                 ("operate", "operate: cancel, replay, approve"), ("admin", "admin: queues, schedules, secrets, keys")],
        initial=["read", "trigger"], widget=forms.CheckboxSelectMultiple, required=False,
        help_text="None ticked: read and trigger.",
    )


class MemberForm(forms.Form):
    """A user to give a role in the page's environment."""

    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"placeholder": "ada"}))
    role = forms.ChoiceField(choices=[("viewer", "viewer: watch runs"),
                                      ("operator", "operator: also cancel, replay, approve, trigger"),
                                      ("admin", "admin: also queues, schedules, secrets, keys, members")],
                             initial="viewer")
