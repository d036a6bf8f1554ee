"""The stored form of an error names its causes: explicit, implicit, suppressed, long and cyclic chains."""
from __future__ import annotations

from stepwise.runs.engine.errors import MAX_CAUSES, error_describe, error_text
from stepwise.runs.engine.redaction import MASK, redact_for_run, sensitive_add, sensitive_forget
from tests.factories import chained_error_build


def caught(fn) -> BaseException:
    try:
        fn()
    except Exception as exc:
        return exc
    raise AssertionError("expected an exception")


def parse_total(order: dict) -> int:
    try:
        return order["total"]
    except KeyError as exc:
        raise ValueError("bad total") from exc


def charge(order: dict) -> int:
    try:
        return parse_total(order)
    except ValueError as exc:
        raise RuntimeError("charge failed") from exc


def test_an_explicit_chain_is_stored_nearest_cause_first_with_where_each_was_raised():
    error = error_describe(caught(lambda: charge({})))

    assert (error["type"], error["message"]) == ("RuntimeError", "charge failed")
    causes = [(c["type"], c["message"]) for c in error["causes"]]
    assert causes == [("ValueError", "bad total"), ("KeyError", "'total'")]
    assert error["where"].startswith("tests/runs/engine/test_error_causes.py:")
    assert error["where"].endswith(" in charge")
    assert [c["where"].rsplit(" in ", 1)[1] for c in error["causes"]] == ["parse_total", "parse_total"]
    assert "causes_left_off" not in error
    # The traceback still carries the whole text; the causes only add one line each.
    assert "The above exception was the direct cause" in error["traceback"]


def test_an_error_raised_while_handling_another_names_it_as_its_cause():
    def handle():
        try:
            {}["total"]
        except KeyError:
            raise ValueError("bad total")  # noqa: B904 (the implicit context is the point)

    error = error_describe(caught(handle))

    assert [(c["type"], c["message"]) for c in error["causes"]] == [("KeyError", "'total'")]


def test_raise_from_none_and_a_lone_error_have_no_causes():
    def suppressed():
        try:
            {}["total"]
        except KeyError:
            raise ValueError("bad total") from None

    assert error_describe(caught(suppressed))["causes"] == []
    assert error_describe(ValueError("never raised")) == {
        "type": "ValueError", "message": "never raised", "where": None, "causes": [],
        "traceback": "ValueError: never raised\n",
    }


def test_an_explicit_cause_wins_over_the_implicit_context():
    def both():
        try:
            {}["total"]
        except KeyError:
            raise ValueError("bad total") from OSError("disk gone")

    assert [c["type"] for c in error_describe(caught(both))["causes"]] == ["OSError"]


def test_a_long_chain_keeps_the_nearest_causes_and_counts_the_rest():
    error = error_describe(chained_error_build(8))

    assert error["message"] == "level 8"
    assert [c["message"] for c in error["causes"]] == [f"level {n}" for n in range(7, 7 - MAX_CAUSES, -1)]
    assert error["causes_left_off"] == 3  # levels 2 and 1, and the KeyError
    assert error_text(error).endswith("<- caused by ValueError: level 3  <- ... 3 more")


def test_a_cyclic_chain_ends_where_it_closes():
    first, second, third = ValueError("first"), KeyError("second"), OSError("third")
    first.__cause__, second.__cause__, third.__context__ = second, third, first

    error = error_describe(first)

    assert [c["message"] for c in error["causes"]] == ["'second'", "third"]
    second.__cause__ = second  # an error that is its own cause
    assert [c["message"] for c in error_describe(second)["causes"]] == []


def test_a_cause_whose_str_fails_is_still_described():
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    error = ValueError("outer")
    error.__cause__ = Broken()

    assert error_describe(error)["causes"][0]["message"] == "<Broken: str() failed>"


def test_the_chain_reads_as_one_line():
    error = error_describe(caught(lambda: parse_total({})))

    assert error_text(error) == "ValueError: bad total  <- caused by KeyError: 'total'"
    assert error_text({"type": "Canceled", "message": "by ada", "traceback": ""}) == "Canceled: by ada"


def test_secret_values_in_a_cause_are_masked_like_the_rest_of_the_error():
    token = "tok-4242-secret-value"

    def call_partner():
        try:
            raise PermissionError(f"partner refused {token}")
        except PermissionError as exc:
            raise ValueError("could not charge") from exc

    sensitive_add("run_causes", token)
    try:
        error = redact_for_run("run_causes", error_describe(caught(call_partner)))
    finally:
        sensitive_forget("run_causes")

    assert error["causes"][0]["message"] == f"partner refused {MASK}"
    assert token not in str(error)
