"""Claims tested on the per-example outcomes: which cells a claim compares, how they pair, its effect and verdict.

A claim (`ClaimSpec` in the grid, or the default family below) says that the cells of side `a` score
higher (direction +1) or lower (-1) than the cells of side `b`. Its effect is computed as follows.

1. Each side takes the finished cells whose named fields match its selector (and the claim's targets).
2. Pairing. Among the cell fields model, method, strategy and k, those named by neither selector are
   *matched*: a cell of `a` pairs with the cells of `b` equal to it on them, and always on the target.
   One exception: a field that one side does not have at all (every cell of it has None there, as
   `base` has no strategy and no k) is not matched; the other side's values of it are averaged
   (so `loramoe` vs `base` compares every strategy and k of LoRAMoE with the one base cell).
   Groups of one side with no partner on the other are left out (the report says how many cells).
3. Averaging. Within a target, each side's per-example outcomes (`correct`: the primary metric, 0/1)
   are averaged over the cells of one matched group and seed (the values its selector lists, the
   fields only it has), then over the matched groups: mean_g(A_g) - mean_g(B_g) is the mean of the
   paired differences A_g - B_g, so this is the difference averaged over the matched fields. A
   seed-free cell serves every seed. Seeds a side has for every one of its groups are kept.
4. Examples: the ids every used cell of the target scored (intersection; a cell that scored other
   examples is noted). Fewer than 2 common examples leave the target out.
5. Statistics (`loralab.stats`, fixed seed 0, 10,000 bootstrap replicates and sign flips): one target
   -> `paired_difference` (McNemar's exact test with one seed each side) or, with several seeds on a
   side, `paired_difference_seeds(method="two_level")` (examples and each side's seeds resampled; the
   bootstrap test); several targets -> `pooled_difference`, the mean of the per-target differences with
   a bootstrap within targets (two-level where a target has seeds) and the stratified sign-flip test
   (the bootstrap test when seeds were resampled).
6. Verdicts: each family (headline, secondary) is Holm-adjusted with `verdict_family`; claims that
   could not be tested (no cells, no per-example outcomes) are not in it and say why.

The default family, when a config declares none: each trained method vs each untrained one (`base`),
each relevance strategy vs each baseline strategy (headline), the informed baselines vs the chance one
(PPL vs random; secondary); per model when there are several.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loralab.stats import (Effect, PooledEffect, Verdict, paired_difference, paired_difference_seeds,
                           pooled_difference, verdict_family)

FIELDS = ("model", "method", "strategy", "k")
FAMILIES = ("headline", "secondary")
SEED, N_BOOT, N_PERM = 0, 10_000, 10_000


@dataclass(frozen=True)
class Claim:
    """A claim to test: selectors map a cell field to the tuple of values it may have."""

    id: str
    text: str
    source: str
    a: Mapping[str, tuple[Any, ...]]
    b: Mapping[str, tuple[Any, ...]]
    direction: int = 1
    targets: tuple[str, ...] | None = None
    family: str = "headline"


@dataclass(frozen=True)
class ClaimResult:
    """A claim's effect and verdict (both None when it could not be tested: `reason` says why)."""

    claim: Claim
    effect: Effect | None
    verdict: Verdict | None
    n_targets: int = 0
    seeds_a: int = 0
    seeds_b: int = 0
    notes: tuple[str, ...] = ()
    reason: str = ""


def _values(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def declared_claims(config: Mapping[str, Any]) -> list[Claim]:
    """The config's `claims` (as stored with the plan), in the order written."""
    return [Claim(c["id"], c["text"], c.get("source") or "declared in the config",
                  {k: _values(v) for k, v in c["a"].items()}, {k: _values(v) for k, v in c["b"].items()},
                  int(c.get("direction", 1)), tuple(c["targets"]) if c.get("targets") else None,
                  c.get("family", "headline")) for c in config.get("claims") or ()]


def default_claims(config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[Claim]:
    """The family tested when a config declares none (see the module docstring)."""
    methods = list(config.get("methods") or sorted({r["method"] for r in rows}))
    strategies = list(config.get("strategies") or sorted({r["strategy"] for r in rows if r["strategy"]}))
    models = list(config.get("models") or sorted({r["model"] for r in rows}))
    refs = untrained_methods(methods)
    source = "default family of this grid"
    out: list[Claim] = []
    for model in models:
        where = {"model": (model,)} if len(models) > 1 else {}
        tag = f"{model}:" if len(models) > 1 else ""
        for ref in refs:
            out += [Claim(f"{tag}{m}-vs-{ref}", f"{m} scores higher than {ref}", source, {**where, "method": (m,)},
                          {**where, "method": (ref,)}) for m in methods if m not in refs]
        pairs = [(r, b, "headline") for r in relevance_strategies(strategies) for b in baseline_strategies(strategies)]
        pairs += [(i, c, "secondary") for i, c in baseline_pairs(strategies)]
        out += [Claim(f"{tag}{x}-vs-{y}", f"selection by {x} scores higher than selection by {y}", source,
                      {**where, "strategy": (x,)}, {**where, "strategy": (y,)}, family=family)
                for x, y, family in pairs]
    return out


def _selector(name: str):
    from loralab.selection import all_selectors

    return all_selectors().get(name)  # None: a strategy of a plug-in not loaded here


def baseline_strategies(strategies: Sequence[str]) -> list[str]:
    """The comparison points (`Selector.baseline`: PPL-based and random selection in LoRALib), informed ones
    before seeded (chance) ones."""
    base = [s for s in strategies if _selector(s) is not None and _selector(s).baseline]
    return sorted(base, key=lambda s: _selector(s).seeded)


def relevance_strategies(strategies: Sequence[str]) -> list[str]:
    """The strategies tested against the baselines: every other known one."""
    return [s for s in strategies if _selector(s) is not None and not _selector(s).baseline]


def baseline_pairs(strategies: Sequence[str]) -> list[tuple[str, str]]:
    """Informed baselines against the seeded (chance) ones: does scoring the LoRAs do better than drawing them?"""
    base = baseline_strategies(strategies)
    return [(a, b) for a in base if not _selector(a).seeded for b in base if _selector(b).seeded]


def untrained_methods(methods: Sequence[str]) -> list[str]:
    """Methods that train nothing (`MethodSpec.trains`): the base model, the floor every method is held to."""
    from loralab.moe.registry import all_methods

    specs = all_methods()
    return [m for m in methods if m in specs and not specs[m].trains]


def selects(selector: Mapping[str, tuple[Any, ...]], cell: Mapping[str, Any]) -> bool:
    """Whether a cell (a row, or a plan cell's key) has one of the selector's values in every named field."""
    return all(cell[name] in values for name, values in selector.items())


def evaluate_claims(claims: Sequence[Claim], rows: Sequence[Mapping[str, Any]],
                outcomes: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[ClaimResult]:
    """Every claim's effect, then the verdicts, Holm-adjusted within each family; in the claims' order."""
    computed = [_compute(c, rows, outcomes) for c in claims]
    verdicts: dict[int, Verdict] = {}
    for family in FAMILIES:
        members = {str(i): r for i, r in enumerate(computed) if r.claim.family == family and r.effect is not None}
        found = verdict_family({i: r.effect for i, r in members.items()},
                               {i: r.claim.direction for i, r in members.items()}) if members else {}
        verdicts.update({int(i): v for i, v in found.items()})
    return [ClaimResult(r.claim, r.effect, verdicts.get(i), r.n_targets, r.seeds_a, r.seeds_b, r.notes, r.reason)
            for i, r in enumerate(computed)]


def _compute(claim: Claim, rows: Sequence[Mapping[str, Any]],
             outcomes: Mapping[str, Sequence[Mapping[str, Any]]]) -> ClaimResult:
    def untestable(reason: str) -> ClaimResult:
        return ClaimResult(claim, None, None, reason=reason)

    mine = [r for r in rows if claim.targets is None or r["target"] in claim.targets]
    side_a = [r for r in mine if selects(claim.a, r)]
    side_b = [r for r in mine if selects(claim.b, r)]
    if not side_a or not side_b:
        name, selector = ("a", claim.a) if not side_a else ("b", claim.b)
        return untestable(f"no finished cell matches {name} ({describe(selector)})")
    notes: list[str] = []
    without = [r for r in side_a + side_b if r["cell_id"] not in outcomes]
    if len(without) == len(side_a) + len(side_b):
        return untestable("its cells have no per-example outcomes (written by a loralab that did not store them); "
                          "re-run them to test it")
    if without:
        notes.append(f"{len(without)} cell(s) without per-example outcomes left out")
        side_a = [r for r in side_a if r["cell_id"] in outcomes]
        side_b = [r for r in side_b if r["cell_id"] in outcomes]
    named = set(claim.a) | set(claim.b)
    matched = [f for f in FIELDS if f not in named and _both_have(f, side_a, side_b)]
    groups_a, groups_b = _groups(side_a, matched), _groups(side_b, matched)
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    unpaired = sum(len(cells) for g, by_seed in groups_a.items() if g not in groups_b for cells in by_seed.values())
    unpaired += sum(len(cells) for g, by_seed in groups_b.items() if g not in groups_a for cells in by_seed.values())
    for target in sorted({g[-1] for g in groups_a} & {g[-1] for g in groups_b}):
        keys = sorted((g for g in groups_a if g[-1] == target and g in groups_b), key=repr)
        if not keys:
            continue
        a, b, note = _target_matrices([groups_a[g] for g in keys], [groups_b[g] for g in keys], outcomes)
        notes += [f"{target}: {n}" for n in note]
        if a is not None and b is not None:
            pairs[target] = (a, b)
    if unpaired:
        notes.append(f"{unpaired} cell(s) with no matching cell on the other side left out")
    if not pairs:
        return untestable("no target has cells of both sides scored on 2 or more common examples")
    effect = _effect(pairs)
    if isinstance(effect, PooledEffect):
        notes += effect.notes  # a pooled effect driven by one target
    return ClaimResult(claim, effect, None, len(pairs), max(a.shape[0] for a, _ in pairs.values()),
                       max(b.shape[0] for _, b in pairs.values()), tuple(notes))


def _both_have(name: str, side_a: Sequence[Mapping[str, Any]], side_b: Sequence[Mapping[str, Any]]) -> bool:
    """A free field is matched unless exactly one side has no value of it at all (averaged on the other)."""
    none_a = all(r[name] is None for r in side_a)
    none_b = all(r[name] is None for r in side_b)
    return none_a == none_b


def _groups(rows: Sequence[Mapping[str, Any]], matched: Sequence[str]) -> dict[tuple, dict[Any, list[str]]]:
    """(matched field values..., target) -> seed -> cell ids."""
    out: dict[tuple, dict[Any, list[str]]] = {}
    for r in rows:
        key = (*(r[f] for f in matched), r["target"])
        out.setdefault(key, {}).setdefault(r["seed"], []).append(r["cell_id"])
    return out


def _target_matrices(groups_a: list[dict[Any, list[str]]], groups_b: list[dict[Any, list[str]]],
                     outcomes: Mapping[str, Sequence[Mapping[str, Any]]]):
    """Both sides of one target as (n_seeds, n) matrices over the common examples, or None and why not."""
    notes: list[str] = []
    seeds_a, seeds_b = _seeds(groups_a), _seeds(groups_b)
    if not seeds_a or not seeds_b:
        return None, None, ["no seed that every matched cell group has"]
    for name, groups, seeds in (("a", groups_a, seeds_a), ("b", groups_b, seeds_b)):
        extra = sorted({s for g in groups for s in g if s is not None} - set(seeds))
        if extra:
            notes.append(f"{name}: seed(s) {', '.join(map(str, extra))} left out (not every matched cell has them)")
    used = {c for groups, seeds in ((groups_a, seeds_a), (groups_b, seeds_b)) for g in groups for s in seeds
            for c in _cells_of(g, s)}
    by_cell = {c: {str(o["id"]): float(o["correct"]) for o in outcomes[c]} for c in sorted(used)}
    common = set.intersection(*(set(v) for v in by_cell.values()))
    if any(len(v) != len(common) for v in by_cell.values()):
        notes.append(f"{len(common)} examples scored by every cell (some cells scored others, left out)")
    if len(common) < 2:
        return None, None, [*notes, "fewer than 2 common examples"]
    ids = sorted(common)

    def side(groups: list[dict[Any, list[str]]], seeds: list[Any]) -> np.ndarray:
        rows = []
        for seed in seeds:
            per_group = [np.mean([[by_cell[c][i] for i in ids] for c in _cells_of(g, seed)], axis=0) for g in groups]
            rows.append(np.mean(per_group, axis=0))
        return np.array(rows)

    return side(groups_a, seeds_a), side(groups_b, seeds_b), notes


def _seeds(groups: list[dict[Any, list[str]]]) -> list[Any]:
    """The seeds every group has (seed-free groups serve all); [None] when the side has no seeds at all."""
    seeded = [set(g) - {None} for g in groups if set(g) - {None}]
    if not seeded:
        return [None]
    return sorted(set.intersection(*seeded))


def _cells_of(group: dict[Any, list[str]], seed: Any) -> list[str]:
    """A group's cells of one seed, with its seed-free cells (which serve every seed)."""
    return [*group.get(seed, []), *(group.get(None, []) if seed is not None else [])]


def _effect(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Effect:
    """Seeds, where a side has several, are resampled with the examples (two-level bootstrap), so the interval
    is about the method (any seed), not only about the models these seeds trained."""
    options = {"n_boot": N_BOOT, "n_perm": N_PERM, "seed": SEED}
    if len(pairs) > 1:
        return pooled_difference(dict(pairs), method="two_level", **options)
    a, b = next(iter(pairs.values()))
    if a.shape[0] == b.shape[0] == 1:
        return paired_difference(a[0], b[0], **options)
    return paired_difference_seeds(a, b, method="two_level", **options)


def describe(selector: Mapping[str, tuple[Any, ...]]) -> str:
    """`method=loramoe, strategy=manual|embedding` (None as `none`)."""
    return ", ".join(f"{k}={'|'.join('none' if v is None else str(v) for v in values)}"
                     for k, values in selector.items()) or "every cell"
