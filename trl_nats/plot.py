"""Training curves of one job as a PNG: loss, reward margin and accuracy by step, one line per attempt.

Drawn from the job's metrics events (its history in the events stream), so it works for
any job, running or finished, from any machine that reaches NATS. Needs matplotlib
(``pip install 'trl-nats[plot]'``); nothing else in the core imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from trl_nats.messages import MetricsEvent

PANELS = (
    ("loss", "loss"),
    ("rewards/margins", "reward margin (chosen - rejected)"),
    ("rewards/accuracies", "reward accuracy"),
)


class PlotUnavailable(RuntimeError):
    pass


def curves(events: Iterable[object]) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """metric -> attempt -> [(step, value)], the last value per step (a resumed attempt repeats steps)."""
    out: dict[str, dict[int, dict[int, float]]] = {}
    for e in events:
        if not isinstance(e, MetricsEvent):
            continue
        for name, _ in PANELS:
            if name in e.metrics:
                out.setdefault(name, {}).setdefault(e.attempt, {})[e.step] = e.metrics[name]
    return {name: {a: sorted(points.items()) for a, points in by_attempt.items()} for name, by_attempt in out.items()}


def plot_job(job_id: str, events: Iterable[object], out: str | Path) -> Path:
    """Write the PNG; raises ValueError when the job has no metrics to draw yet."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("trl-nats plot needs matplotlib: pip install 'trl-nats[plot]'") from None
    data = curves(events)
    if not data:
        raise ValueError(f"job {job_id} has no loss, reward margin or accuracy metrics yet: nothing to plot")
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(8, 9), sharex=True)
    for ax, (name, label) in zip(axes, PANELS, strict=True):
        by_attempt = data.get(name, {})
        for attempt, points in sorted(by_attempt.items()):
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="." if len(points) < 50 else None, label=f"attempt {attempt}")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if not by_attempt:
            ax.text(0.5, 0.5, f"no {name} in this job's metrics", ha="center", va="center", transform=ax.transAxes)
        elif len(by_attempt) > 1:
            ax.legend()
    axes[-1].set_xlabel("step")
    fig.suptitle(f"job {job_id}")
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
