"""Masking of sensitive values and secret-named keys, in plain Python."""
from __future__ import annotations

from stepwise.runs.engine.redaction import MASK, Redactor, redact_for_run, sensitive_add, sensitive_forget


def test_sensitive_values_are_masked_anywhere_in_nested_values():
    redactor = Redactor()
    redactor.add("s3cr3t-value")
    masked = redactor.value({"note": "key=s3cr3t-value;", "items": [("s3cr3t-value", 1)], "n": 2})
    assert masked == {"note": f"key={MASK};", "items": [[MASK, 1]], "n": 2}


def test_values_of_secret_named_keys_are_masked_without_being_registered():
    values = {"password": "hunter2", "Api-Key": "k", "x_auth_token": 7, "passengers": 3, "empty_secret": ""}
    masked = Redactor().value(values)
    assert masked == {"password": MASK, "Api-Key": MASK, "x_auth_token": MASK, "passengers": 3, "empty_secret": ""}


def test_a_secret_containing_another_is_masked_whole_and_tiny_values_are_ignored():
    redactor = Redactor()
    for value in ("abc", "token-1234", "token-1234-extended"):
        redactor.add(value)
    assert redactor.text("abc token-1234-extended token-1234") == f"abc {MASK} {MASK}"


def test_a_runs_values_are_masked_only_for_that_run_until_forgotten():
    sensitive_add("run_a", "only-for-run-a")
    try:
        assert redact_for_run("run_a", {"m": "x only-for-run-a"}) == {"m": f"x {MASK}"}
        assert redact_for_run("run_b", {"m": "x only-for-run-a"}) == {"m": "x only-for-run-a"}
    finally:
        sensitive_forget("run_a")
    assert redact_for_run("run_a", {"m": "only-for-run-a"}) == {"m": "only-for-run-a"}
