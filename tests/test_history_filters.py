"""The history commands' filters as a user types them: statuses, times, ``--where`` conditions (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from metta_exp.errors import UsageError
from metta_exp.history.filters import (
    Condition,
    as_number,
    is_glob,
    override_key,
    parse_condition,
    parse_statuses,
    parse_time,
    typed,
)
from metta_exp.status import JobStatus
from metta_exp.text import fmt_gpu_hours

NOW = dt.datetime(2026, 12, 9, 15, 30).timestamp()  # a Wednesday afternoon, local time


def test_statuses_repeat_or_comma_separated_once_each_in_order() -> None:
    assert parse_statuses(["failed,cancelled", "FAILED", " pruned "]) == (
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.PRUNED,
    )
    assert parse_statuses([]) == ()


def test_an_unknown_status_names_the_closest_and_every_status() -> None:
    with pytest.raises(UsageError) as err:
        parse_statuses(["succeeded,faild"])
    assert str(err.value) == (
        "unknown status 'faild' (did you mean 'failed'?); the statuses: pending, launching, running, "
        "succeeded, failed, cancelled, skipped, pruned"
    )
    with pytest.raises(UsageError, match=r"^unknown status 'xyz'; the statuses: pending,"):
        parse_statuses(["xyz"])


@pytest.mark.parametrize(
    ("text", "ago"),
    [("30m", 1800), ("12h", 43200), ("7d", 7 * 86400), ("2w", 14 * 86400), ("1.5h", 5400), ("90s", 90)],
)
def test_an_age_is_that_long_before_now(text: str, ago: float) -> None:
    assert parse_time(text, "--since", NOW) == NOW - ago


def test_a_day_is_its_local_midnight_or_for_until_the_next_one() -> None:
    day = dt.datetime(2026, 12, 1).timestamp()
    assert parse_time("2026-12-01", "--since", NOW) == day
    assert parse_time("2026-12-01", "--until", NOW, end_of_day=True) == dt.datetime(2026, 12, 2).timestamp()
    assert parse_time("today", "--since", NOW) == dt.datetime(2026, 12, 9).timestamp()
    assert parse_time("yesterday", "--since", NOW) == dt.datetime(2026, 12, 8).timestamp()
    assert parse_time("Yesterday", "--until", NOW, end_of_day=True) == dt.datetime(2026, 12, 9).timestamp()


def test_a_time_is_local_unless_it_has_an_offset() -> None:
    assert parse_time("2026-12-01T14:30", "--since", NOW) == dt.datetime(2026, 12, 1, 14, 30).timestamp()
    assert (
        parse_time("2026-12-01 14:30:15", "--since", NOW) == dt.datetime(2026, 12, 1, 14, 30, 15).timestamp()
    )
    utc = dt.datetime(2026, 12, 1, 14, 30, tzinfo=dt.UTC).timestamp()
    assert parse_time("2026-12-01T14:30Z", "--since", NOW) == utc
    assert parse_time("2026-12-01T16:30+02:00", "--until", NOW, end_of_day=True) == utc  # a time: exact


@pytest.mark.parametrize(
    "text", ["7x", "", "d7", "2026-13-01", "2026-12-01T25:00", "last week", "-3d", "7 days"]
)
def test_a_time_that_does_not_parse_says_what_is_expected(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_time(text, "--since", NOW)
    assert str(err.value) == (
        f"--since '{text}' is not a time: give an age (30m, 12h, 7d, 2w), a date (2026-12-01) "
        "or a time (2026-12-01T14:30)"
    )


def test_conditions_parse_key_operator_value() -> None:
    assert parse_condition("trainer.learning_rate>=0.01") == Condition("trainer.learning_rate", ">=", "0.01")
    assert parse_condition("run~high_*") == Condition("run", "~", "high_*")
    assert parse_condition(" lr = 1e-3 ").number == 0.001
    assert parse_condition("+opt=adam") == Condition("opt", "=", "adam")
    assert parse_condition("note=") == Condition("note", "=", "")
    assert parse_condition("overview/reward<100") == Condition("overview/reward", "<", "100")
    assert str(parse_condition("lr!=0.1")) == "lr!=0.1"


@pytest.mark.parametrize("text", ["lr=>0.1", "lr<>3", "lr", "lr!3", "lr=~x", "lr =< 3", "=3", ">=3"])
def test_a_bad_operator_lists_the_ones_there_are(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_condition(text)
    assert str(err.value) == (
        f"--where '{text}': no operator it knows; write KEY=VALUE, KEY!=VALUE, KEY>=N, KEY<=N, KEY>N, KEY<N "
        "or KEY~GLOB"
    )


def test_an_order_needs_a_number() -> None:
    with pytest.raises(UsageError) as err:
        parse_condition("lr>=high")
    assert str(err.value) == "--where 'lr>=high': '>=' compares numbers, and 'high' is not one"


def test_conditions_compare_numbers_as_numbers_and_text_as_text() -> None:
    c = parse_condition
    assert c("lr=0.01").matches("1e-2") and c("lr=1e-2").matches(0.01)
    assert not c("lr=0.01").matches("0.02") and c("lr!=0.01").matches("0.02")
    assert c("opt=adam").matches("adam") and not c("opt=adam").matches("Adam")
    assert c("lr>=0.01").matches("0.01") and c("lr>=0.01").matches(0.5) and not c("lr>=0.01").matches("0.001")
    assert c("lr>0.01").matches("0.02") and not c("lr>0.01").matches("0.01")
    assert c("lr<0.01").matches("0.001") and c("lr<=0.01").matches("0.01")
    assert not c("lr>=0.01").matches("fast")  # not a number: no order
    assert c("run~high_*").matches("high_lr") and not c("run~high_*").matches("low_high_lr")
    for cond in ("lr=1", "lr!=1", "lr>0", "lr~*"):
        assert not c(cond).matches(None)  # a run without the key matches nothing


def test_values_and_keys() -> None:
    assert [typed(v) for v in ("0.01", "3", "-2", "1e-3", "true", "False", "null", "adam", "[1,2]", "0x10")] == [
        0.01, 3, -2, 0.001, True, False, None, "adam", "[1,2]", "0x10",
    ]  # fmt: skip
    assert as_number("nan") is None and as_number(True) is None and as_number("2") == 2.0
    assert [override_key(a) for a in ("a.b=1", "+a=1", "++a=1", "~a=1", "--flag=1", "x", "=1")] == [
        "a.b", "a", "a", "a", None, None, None,
    ]  # fmt: skip
    assert is_glob("lr_*") and is_glob("a?") and is_glob("[ab]") and not is_glob("lr_sweep")


def test_gpu_hours_read_at_a_glance() -> None:
    assert [fmt_gpu_hours(h) for h in (None, 0.0, 0.004, 0.04, 2.5, 37.46, 1234.4)] == [
        "-", "0", "<0.01", "0.04", "2.50", "37.5", "1,234",
    ]  # fmt: skip
