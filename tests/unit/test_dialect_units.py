"""Time and memory parsers: documented forms, round trips (hypothesis) and rejected values."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burst_agent.dialects.units import (
    UnitError,
    format_pbs_memory,
    format_pbs_time,
    format_slurm_memory,
    format_slurm_time,
    parse_pbs_memory,
    parse_pbs_time,
    parse_slurm_memory,
    parse_slurm_time,
)

SLURM_FORM_UNIT = {"m": 60, "m:s": 1, "h:m:s": 1, "d-h": 3600, "d-h:m": 60, "d-h:m:s": 1}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 5400), ("5:30", 330), ("2:00:00", 7200), ("1-12", 129600), ("1-00:30", 88200),
     ("2-01:02:03", 176523), ("UNLIMITED", None), ("infinite", None), ("0", None)],
)
def test_slurm_time_forms(text, seconds):
    assert parse_slurm_time(text) == seconds


@pytest.mark.parametrize(("text", "seconds"), [("3600", 3600), ("45:30", 2730), ("01:00:00", 3600),
                                               ("1:02:00:00", 93600)])
def test_pbs_time_forms(text, seconds):
    assert parse_pbs_time(text) == seconds


@pytest.mark.parametrize("text", ["abc", "1:2:3:4", "1-2-3", "-5", "1:60:00", "1-24", "", "1.5", "٣"])
def test_bad_slurm_times_are_errors(text):
    with pytest.raises(UnitError):
        parse_slurm_time(text)


@pytest.mark.parametrize("text", ["0", "1:2:3:4:5", "00:00", "x", "1:61", "2h"])
def test_bad_pbs_times_are_errors(text):
    with pytest.raises(UnitError):
        parse_pbs_time(text)


@pytest.mark.parametrize(("text", "mb"), [("4096", 4096), ("4G", 4096), ("4gb", 4096), ("512m", 512),
                                          ("1T", 1048576), ("1536K", 2), ("100kB", 1), ("0", 0)])
def test_slurm_memory(text, mb):
    assert parse_slurm_memory(text) == mb


@pytest.mark.parametrize(("text", "mb"), [("1048576", 1), ("1", 1), ("8gb", 8192), ("8GB", 8192),
                                          ("512mb", 512), ("2048kb", 2), ("1tb", 1048576), ("1kw", 1)])
def test_pbs_memory(text, mb):
    assert parse_pbs_memory(text) == mb


@pytest.mark.parametrize("text", ["4Q", "G", "-1G", "1.5G", "4 G", "4GBB"])
def test_bad_memory_is_an_error(text):
    with pytest.raises(UnitError):
        parse_slurm_memory(text)
    with pytest.raises(UnitError):
        parse_pbs_memory(text.lower() + "x")


@settings(max_examples=200)
@given(st.integers(1, 10**7), st.sampled_from(sorted(SLURM_FORM_UNIT)))
def test_slurm_time_round_trips(value, form):
    seconds = value * SLURM_FORM_UNIT[form]
    assert parse_slurm_time(format_slurm_time(seconds, form)) == seconds


@settings(max_examples=200)
@given(st.integers(1, 10**8), st.sampled_from(["s", "m:s", "h:m:s", "d:h:m:s"]))
def test_pbs_time_round_trips(seconds, form):
    assert parse_pbs_time(format_pbs_time(seconds, form)) == seconds


@settings(max_examples=200)
@given(st.integers(0, 10**9), st.sampled_from(["", "K", "M"]), st.integers(0, 3))
def test_slurm_memory_round_trips(mb, unit, case):
    text = format_slurm_memory(mb, unit)
    text = [text, text.lower(), text + "B", text.lower() + "b"][case] if unit else text
    assert parse_slurm_memory(text) == mb


@settings(max_examples=200)
@given(st.integers(0, 10**6), st.sampled_from(["G", "T"]))
def test_slurm_memory_round_trips_in_large_units(count, unit):
    mb = count * (1024 if unit == "G" else 1024**2)
    assert parse_slurm_memory(format_slurm_memory(mb, unit)) == mb


@settings(max_examples=200)
@given(st.integers(0, 10**9), st.sampled_from(["b", "kb", "mb"]))
def test_pbs_memory_round_trips(mb, unit):
    assert parse_pbs_memory(format_pbs_memory(mb, unit)) == mb
    assert parse_pbs_memory(format_pbs_memory(mb, unit).upper()) == mb
