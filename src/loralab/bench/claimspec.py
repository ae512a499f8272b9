"""The schema of a benchmark config's `claims` (pre-registered comparisons) and their checks against the grid.

The schema (`ClaimSpec`, `CellSelector`) is part of `BenchConfig`, so types, unknown keys and values are
checked with the rest of the config; `check_claims` then needs the resolved grid: the names a selector
uses must be the grid's (with "did you mean"), and each side must select cells of the plan, disjoint
from the other side's. What a claim means (pairing, statistics, verdicts) is `loralab.bench.claims`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from annotated_types import Ge, MinLen, Predicate
from pydantic import StringConstraints

from loralab.errors import ConfigError, UnknownNameError
from loralab.utils.config import Describe

if TYPE_CHECKING:
    from loralab.bench.grid import Bench

Names = Annotated[tuple[str, ...], MinLen(1)]


def _is_sign(value: int) -> bool:
    return value in (1, -1)


ClaimId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=60),
                    Describe("letters, digits, '_', '-' and '.', starting with a letter or digit, at most 60")]
Direction = Annotated[int, Predicate(_is_sign), Describe("1 (a scores higher than b) or -1 (b scores higher)")]
K = Annotated[int, Ge(1)]


@dataclass(frozen=True)
class CellSelector:
    """One side of a claim: the cells whose every named field has the value given (or one of the values listed).

    Only the keys written count (`strategy: null` selects the cells without a strategy, such as `base`;
    leaving `strategy` out selects any). Kept as the mapping written; checked against the grid's names.
    """

    model: str | tuple[str, ...] | None = field(default=None, metadata={"schema": str | Names})
    method: str | tuple[str, ...] | None = field(default=None, metadata={"schema": str | Names})
    strategy: str | tuple[str | None, ...] | None = field(
        default=None, metadata={"schema": str | Annotated[tuple[str | None, ...], MinLen(1)] | None})
    k: int | tuple[int | None, ...] | None = field(
        default=None, metadata={"schema": K | Annotated[tuple[K | None, ...], MinLen(1)] | None})


@dataclass(frozen=True)
class ClaimSpec:
    """A pre-registered claim: `text` (the claim as published, quoted), where it comes from, and that the cells
    of `a` score higher (`direction: 1`) or lower (-1) than the matching cells of `b` on the same examples.

    `targets` limits it to some target tasks (by name; default: all); `family: headline` claims are tested
    together, with Holm's correction over them, `secondary` ones as a second family.
    """

    id: ClaimId
    text: Annotated[str, MinLen(1)]
    a: dict = field(metadata={"schema": CellSelector})
    b: dict = field(metadata={"schema": CellSelector})
    direction: Direction = 1
    source: str = ""
    targets: Names | None = None
    family: Literal["headline", "secondary"] = "headline"


def check_claims(bench: Bench, where: str) -> None:
    """Claim ids are distinct; selectors name the grid's models, methods, strategies and k, targets its
    targets (did you mean); each side selects cells of the plan, and no cell is on both sides."""
    from loralab.bench.claims import declared_claims, selects
    from loralab.bench.plan import expand

    cfg = bench.config
    allowed = {"model": cfg.models, "method": cfg.methods, "strategy": (*cfg.strategies, None), "k": (*cfg.k, None),
               "targets": bench.target_names}
    claims = declared_claims(cfg.to_dict())
    ids = [c.id for c in claims]
    twice = [i for n, i in enumerate(ids) if i in ids[:n]]
    if twice:
        raise ConfigError(f"{where}: claims lists the id {twice[0]!r} twice (ids must be distinct)")
    cells = [c.key for c in expand(bench)] if claims else []
    for i, claim in enumerate(claims):
        at = f"{where}: claims[{i}] ({claim.id})"
        named = [(f"{s}.{k}", k, v) for s, sel in (("a", claim.a), ("b", claim.b)) for k, v in sel.items()]
        for path, name, value in [*((p, n, v) for p, n, vs in named for v in vs),
                                  *(("targets", "targets", t) for t in claim.targets or ())]:
            if value not in allowed[name]:
                known = [str(v) for v in allowed[name] if v is not None]
                kind = "target" if name == "targets" else name
                raise ConfigError(f"{at}.{path}: {UnknownNameError(f'{kind} of this grid', str(value), known)}")
        mine = [c for c in cells if claim.targets is None or c["target"] in claim.targets]
        for side, selector in (("a", claim.a), ("b", claim.b)):
            if not selector:
                raise ConfigError(f"{at}.{side}: name at least one of model, method, strategy, k")
            if not any(selects(selector, c) for c in mine):
                wanted = ", ".join(f"{k} in {list(v)}" for k, v in selector.items())
                raise ConfigError(f"{at}.{side}: selects no cell of this grid ({wanted})")
        both = [c for c in mine if selects(claim.a, c) and selects(claim.b, c)]
        if both:
            raise ConfigError(f"{at}: a and b both select {len(both)} cell(s) (e.g. {both[0]['method']} on "
                              f"{both[0]['target']}): a claim compares two disjoint sets of cells")
