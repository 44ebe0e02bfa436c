"""benchmarks/bench_api.py says whether the issue's latency goals are met, from the shipped read path's figures."""

from __future__ import annotations

import importlib.util

from lstm_pipeline.settings import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location("bench_api", PROJECT_ROOT / "benchmarks" / "bench_api.py")
bench_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_api)


def _row(p99_ms: float, errors: int = 0, writer: dict | None = None) -> dict:
    return {"sent": 2000, "errors": errors, "p50_ms": 2.0, "p99_ms": p99_ms, **({"writer": writer} if writer else {})}


def test_both_goals_met_are_said_with_the_figures():
    lines = bench_api.goal_verdict({
        ("snapshot", False): _row(12.5), ("snapshot", True): _row(40.0, writer={"writes": 90, "failed": 0}),
        ("naive", False): _row(80.0, errors=7), ("naive", True): _row(9000.0, errors=300),  # a comparison only
    }, 200.0)
    assert lines == [
        "goal p99 < 20 ms at 200 req/s with no backfill: MET (p99 12.5 ms at 200 req/s, 0 failed requests)",
        "goal no failed request with a backfill writing: MET (0 failed of 2000 requests, 0 failed of 90 writes, p99 "
        "40.0 ms)",
    ]


def test_a_slow_p99_failed_requests_or_failed_writes_are_not_met():
    slow = bench_api.goal_verdict({("snapshot", False): _row(20.0), ("snapshot", True): _row(5.0, errors=1)}, 200.0)
    assert [line.split(": ")[1].split(" (")[0] for line in slow] == ["NOT MET", "NOT MET"]
    erring = bench_api.goal_verdict({("snapshot", False): _row(3.0, errors=2),
                                     ("snapshot", True): _row(5.0, writer={"writes": 9, "failed": 1})}, 250.0)
    assert [line.split(": ")[1].split(" (")[0] for line in erring] == ["NOT MET", "NOT MET"]


def test_a_run_below_the_goals_rate_does_not_judge_the_latency_goal():
    lines = bench_api.goal_verdict({("snapshot", False): _row(3.0), ("snapshot", True): _row(5.0)}, 50.0)
    assert lines[0].startswith("goal p99 < 20 ms at 200 req/s with no backfill: NOT JUDGED (p99 3.0 ms at 50 req/s")
