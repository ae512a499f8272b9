"""`manual`: task relevance that a person states, or the suite's domain tags when nobody did.

The relevance file is YAML keyed by target task, in either form:

    social_iqa: [winowhy, sports_understanding]        # listed tasks score 1, the others 0
    navigate: {logical_deduction_five_objects: 0.9, winowhy: 0.2}   # scores; unlisted tasks 0

Every key and every listed task must be a library task of this model or a suite task, so a typo
fails loudly (with "did you mean") instead of silently scoring 0; the file must have an entry for
the target. Without a file, a candidate scores 1 when its library entry's domain tag equals the
target's (`loralab tasks ls`) and 0 otherwise. Equal scores are ranked by task name, so the choice
is deterministic.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.errors import ConfigError
from loralab.selection.base import SelectionContext, Selector
from loralab.selection.registry import register_selector


@dataclass
class ManualConfig:
    """Args: relevance: A YAML file (path) or an already-read mapping; None: same domain = relevant."""

    relevance: str | os.PathLike[str] | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.relevance is not None and not isinstance(self.relevance, (str, os.PathLike, Mapping)):
            raise ConfigError(f"relevance must be a YAML file path or a mapping, got {type(self.relevance).__name__}")


@register_selector
class ManualSelector(Selector):
    name = "manual"
    description = "task relevance from a YAML map, else same domain tag = relevant"
    score_name = "relevance"
    higher_is_better = True
    needs_model = False
    config_cls = ManualConfig
    _scores: dict[str, float] | None = None

    def prepare(self, context: SelectionContext) -> None:
        relevance = self.config.relevance
        if relevance is None:
            self._scores = {e.task: 1.0 if e.domain == context.target.domain else 0.0 for e in context.candidates}
            return
        if isinstance(relevance, Mapping):
            where, data = "relevance map", dict(relevance)
        else:
            from loralab.utils.config import read_yaml_mapping

            where, data = str(Path(relevance)), read_yaml_mapping(relevance)
        library = {e.task for e in context.entries}
        wanted = parse_relevance(data, context.target.name, library, where)
        self._scores = {e.task: wanted.get(e.task, 0.0) for e in context.candidates}

    def scores(self, context: SelectionContext) -> dict[str, float]:
        if self._scores is None:
            self.prepare(context)
        return dict(self._scores)


def parse_relevance(data: Mapping[str, Any], target: str, library: set[str], where: str) -> dict[str, float]:
    """The target's scores from a {target: [tasks] | {task: score}} map, after checking the whole map.

    `library` holds the task names of the model's library adapters; with the suite's names and the
    target's, they are the names the map may use.
    """
    from loralab.data.suite import SUITE

    known = library | set(SUITE) | {target}
    parsed: dict[str, dict[str, float]] = {}
    for key, value in data.items():
        _check_known(key, known, where, "target key", library)
        if isinstance(value, (list, tuple)):
            for name in value:
                _check_known(name, known, f"{where} [{key}]", "listed task", library)
            parsed[key] = {name: 1.0 for name in value}
        elif isinstance(value, Mapping):
            scores = {}
            for name, score in value.items():
                _check_known(name, known, f"{where} [{key}]", "listed task", library)
                if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                    raise ConfigError(f"{where} [{key}]: the score of {name!r} must be a finite number, got {score!r}")
                scores[name] = float(score)
            parsed[key] = scores
        else:
            raise ConfigError(f"{where} [{key}]: must be a list of relevant tasks or a mapping of task to score, "
                              f"got {type(value).__name__} {value!r:.60}")
    if target not in parsed:
        have = ", ".join(sorted(parsed)) or "none"
        raise ConfigError(f"{where} has no entry for the target task {target!r} (it has: {have}); add "
                          f"'{target}: [relevant tasks]', or leave out the relevance file to use domain tags")
    return parsed[target]


def _check_known(name: Any, known: set[str], where: str, role: str, library: set[str]) -> None:
    if not isinstance(name, str):
        raise ConfigError(f"{where}: every {role} must be a task name (a string), got {name!r}")
    if name not in known:
        close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"{where}: unknown {role} {name!r}, neither a library task of this model nor a suite "
                          f"task.{hint} Library tasks: {', '.join(sorted(library)) or 'none'}")
