"""Pure evaluation of a role's approval policy against the decisions taken so far (no writes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageSpec:
    position: int
    required: int


@dataclass(frozen=True)
class Vote:
    stage: int
    approver: str
    approve: bool


@dataclass
class StageProgress:
    position: int
    required: int
    approved_by: list[str] = field(default_factory=list)

    @property
    def satisfied(self) -> bool:
        return len(self.approved_by) >= self.required

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.approved_by))


@dataclass
class Outcome:
    stages: list[StageProgress]
    denied_by: str | None = None

    @property
    def approved(self) -> bool:
        return self.denied_by is None and all(stage.satisfied for stage in self.stages)

    @property
    def current_stage(self) -> int | None:
        """Index of the first stage still waiting, or None when decided."""
        if self.denied_by is not None:
            return None
        for stage in self.stages:
            if not stage.satisfied:
                return stage.position
        return None


def evaluate(stages: Sequence[StageSpec], votes: Iterable[Vote]) -> Outcome:
    """Stages pass in order; each needs `required` distinct approvers; one deny ends everything."""
    progress = [
        StageProgress(position=s.position, required=s.required) for s in sorted(stages, key=lambda s: s.position)
    ]
    by_position = {p.position: p for p in progress}
    outcome = Outcome(stages=progress)
    for vote in votes:
        if not vote.approve:
            outcome.denied_by = vote.approver
            continue
        stage = by_position.get(vote.stage)
        if stage is not None and vote.approver not in stage.approved_by:
            stage.approved_by.append(vote.approver)
    return outcome
