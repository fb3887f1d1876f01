"""Coretype cool-down: K capacity failures within the window skip a coretype for a while."""

from burst_agent.pipeline.cooldown import Cooldown


def test_k_failures_within_the_window_start_a_cool_down_that_ends():
    cool = Cooldown(after=3, window_s=60, cooldown_s=600)
    assert not cool.failed("nickel", 0) and not cool.failed("nickel", 10)
    assert cool.failed("nickel", 20) and cool.cooling(21) == {"nickel": 620}
    assert not cool.failed("nickel", 30)  # already cooling: not a new start
    assert cool.cooling(620) == {}


def test_failures_spread_wider_than_the_window_never_add_up():
    cool = Cooldown(after=2, window_s=60, cooldown_s=600)
    assert not any(cool.failed("onyx", t) for t in (0, 61, 122, 183))
    assert not cool.failed("emerald", 0) and cool.cooling(1) == {}
