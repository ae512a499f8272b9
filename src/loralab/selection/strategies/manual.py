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
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from loralab.errors import ConfigError
from loralab.selection.base import SelectionContext, Selector
from loralab.selection.registry import register_selector
from loralab.utils.config import Describe, check, read_yaml_mapping


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
            where, data = str(Path(relevance)), read_yaml_mapping(relevance)
        library = {e.task for e in context.entries}
        wanted = parse_relevance(data, context.target.name, library, where)
        self._scores = {e.task: wanted.get(e.task, 0.0) for e in context.candidates}

    def scores(self, context: SelectionContext) -> dict[str, float]:
        if self._scores is None:
            self.prepare(context)
        return dict(self._scores)


# The file's shape: target -> [tasks] | {task: score}; names are checked against the library afterwards.
RelevanceMap = dict[str, Annotated[tuple[str, ...] | dict[str, float],
                                   Describe("a list of relevant tasks or a mapping of task to score")]]


def parse_relevance(data: Mapping[str, Any], target: str, library: set[str], where: str,
                    at: tuple[str, ...] = ()) -> dict[str, float]:
    """The target's scores from a {target: [tasks] | {task: score}} map, after checking the whole map.

    `library` holds the task names of the model's library adapters; with the suite's names and the
    target's, they are the names the map may use. `where` is the file, `at` the map's place inside it
    (a benchmark config's `selection.manual.relevance`).
    """
    from loralab.data.suite import SUITE

    parsed: dict[str, dict[str, float]] = {}
    checked = check(RelevanceMap, data, where, at=at)  # types, nulls, non-finite scores: one line each
    known = library | set(SUITE) | {target}
    for key, value in checked.items():
        _check_known(key, known, where, at, "target key", library)
        scores = dict.fromkeys(value, 1.0) if isinstance(value, tuple) else value
        for name in scores:
            _check_known(name, known, where, (*at, key), "listed task", library)
        parsed[key] = scores
    if target not in parsed:
        have = ", ".join(sorted(parsed)) or "none"
        raise ConfigError(f"{_where(where, at)}: has no entry for the target task {target!r} (it has: {have}); add "
                          f"'{target}: [relevant tasks]', or leave out the relevance file to use domain tags")
    return parsed[target]


def _check_known(name: str, known: set[str], where: str, at: tuple[str, ...], role: str, library: set[str]) -> None:
    if name not in known:
        close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"{_where(where, at)}: unknown {role} {name!r}, neither a library task of this model nor a "
                          f"suite task.{hint} Library tasks: {', '.join(sorted(library)) or 'none'}")


def _where(where: str, at: tuple[str, ...]) -> str:
    return ": ".join([where, ".".join(at)]) if at else where
