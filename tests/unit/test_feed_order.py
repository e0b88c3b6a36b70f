"""The ordered feed's choice of the next group (`runtime.feed_loop.pick_group`)."""

from afd_async.runtime.feed_loop import pick_group


def pick(held, expected, *, max_hold=4, idle_s=0.0, hold_timeout_s=10.0):
    return pick_group({g: None for g in held}, expected, max_hold=max_hold, idle_s=idle_s, hold_timeout_s=hold_timeout_s)


def test_arrival_order_without_a_plan():
    assert pick([7, 3, 5], None) == 7
    assert pick([], None) is None


def test_ordered_mode_trains_the_expected_group_first():
    assert pick([5, 4, 6], 4) == 4


def test_ordered_mode_waits_for_a_missing_group_while_few_are_held_and_arrivals_are_recent():
    assert pick([5, 6], 4, max_hold=4, idle_s=1.0, hold_timeout_s=10.0) is None


def test_ordered_mode_gives_up_when_too_many_later_groups_are_held():
    assert pick([8, 5, 6, 7], 4, max_hold=4) == 5


def test_ordered_mode_gives_up_on_a_group_that_never_comes_after_the_hold_timeout():
    # k = 0: only one group can be ahead, so max_hold is never reached; the idle timeout must end the wait
    assert pick([5], 4, max_hold=16, idle_s=10.0, hold_timeout_s=10.0) == 5
    assert pick([5], 4, max_hold=16, idle_s=9.9, hold_timeout_s=10.0) is None
