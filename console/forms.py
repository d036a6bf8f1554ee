"""Forms of the console: runs-list filters, JSON payloads and bulk actions."""
from __future__ import annotations

from typing import Any

from django import forms

from runs.selectors import RunFilters
from runs.services import InvalidTrigger, payload_parse
from runs.states import RunStatus


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

    def filters(self) -> RunFilters:
        """Return the valid filters; invalid fields are ignored (the form shows their errors)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return RunFilters(**{name: data.get(name) or self.fields[name].initial or _empty(name) for name in self.fields})


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
    """Approve or reject a token waitpoint, with an optional JSON object as the answer."""

    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    data = forms.CharField(required=False, widget=forms.Textarea)

    def clean_data(self) -> dict[str, Any] | None:
        text = (self.cleaned_data.get("data") or "").strip()
        if not text:
            return None
        try:
            value = payload_parse(text)
        except InvalidTrigger as exc:
            raise forms.ValidationError(str(exc).replace("payload", "answer")) from None
        if not isinstance(value, dict):
            raise forms.ValidationError("the answer must be a JSON object, e.g. {\"note\": \"looks good\"}")
        return value
