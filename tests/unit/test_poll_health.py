"""``poll_health``: one poller for "every node Ready" after kubespray and after a fetch."""

from __future__ import annotations

from collections.abc import Callable

from kubebastion.api import ClusterHealth, poll_health


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def answers(*healthy: bool) -> Callable[[], ClusterHealth]:
    seen = iter(healthy)
    return lambda: ClusterHealth(next(seen), "detail")


def test_returns_at_the_first_healthy_answer() -> None:
    clock = FakeClock()
    health = poll_health(answers(False, False, True, False), timeout=60, interval=2,
                         clock=clock, sleep=clock.sleep)
    assert health.healthy and clock.now == 4.0


def test_gives_the_last_answer_at_the_timeout() -> None:
    clock = FakeClock()
    health = poll_health(answers(*[False] * 10), timeout=5, interval=2, clock=clock,
                         sleep=clock.sleep)
    assert not health.healthy and clock.now == 6.0
