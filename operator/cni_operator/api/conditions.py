"""A condition as a decision states it, before status merges it with what was there (lastTransitionTime)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConditionUpdate:
    type: str  # one of api.vocabulary's condition types
    status: bool | None  # None: Unknown
    reason: str
    message: str = ""
