"""`benchmarks/run`'s rows of the precision targets: 7 (train step bf16 vs fp32), 9 (fraction of the matmul peak),
10 (quickstart bf16 vs fp32), 11 (bf16 vs fp32 eval agreement). Target 8 is `rows_mc` in `run` (as target 3).

Not a public module (a sibling import of `run`). Each function takes the script's JSON (None: no JSON) and the
run record, and returns its rows; a script that reported n/a (no native bf16) gives N/A rows with its reason."""

from __future__ import annotations

from typing import Any

from _table import Row, emulated, mem_pair, not_applicable, why


def rows_train_precision(data: dict[str, Any] | None, info: dict[str, Any] | None) -> list[Row]:
    row = Row(7, "Train step with bf16 autocast vs fp32, both loralab AnswerOnlyTrainer, same batches (bf16 / fp32)",
              "<= 0.5")
    if data is None:
        row.error = why(info)
        return [row]
    if not_applicable([row], data):
        return [row]
    loss = data["loss"]
    row.stats = data["ratio"]
    med = data["seconds_per_step_median"]
    row.time_note = f"{med['bf16']:.3f} / {med['fp32']:.3f} s/step"
    peak = data["memory"]["peak_mib"]
    row.memory = mem_pair(peak.get("bf16"), peak.get("fp32"))
    row.correctness_ok = bool(loss["ok"])
    row.notes += [f"{data['model']} / {data['task']}, batch {data['batch_size']}, {data['repeats']} x "
                  f"{data['steps']} steps interleaved",
                  (f"loss after {loss['steps']} steps (same batches, seed): fp32 {loss['final']['fp32']:.4f}, bf16 "
                   f"{loss['final']['bf16']:.4f} (relative difference {loss['final_rel_diff']:.1e}, allowed "
                   f"{loss['max_rel_diff_allowed']:g}; largest over the steps {loss['max_abs_diff']:.1e})")]
    emulated([row], data)
    return [row]


def rows_physical(data: dict[str, Any] | None, info: dict[str, Any] | None) -> list[Row]:
    rows = []
    for dtype in ("fp32", "bf16"):
        rows += [Row(9, f"Physical limit, {dtype}: LoRA train step (AnswerOnlyTrainer) achieved GFLOP/s / measured "
                        f"{dtype} matmul peak", "report"),
                 Row(9, f"Physical limit, {dtype}: eval forwards (loralab evaluate) achieved GFLOP/s / measured "
                        f"{dtype} matmul peak", "report")]
    if data is None:
        for row in rows:
            row.error = why(info)
        return rows
    for i, dtype in enumerate(("fp32", "bf16")):
        pair = rows[2 * i:2 * i + 2]
        d = data["dtypes"].get(dtype)
        if d is None:
            for row in pair:
                row.error = f"{dtype} not run (--dtypes)"
            continue
        if not_applicable(pair, d):
            continue
        peak = d["peak"]
        sweep = ", ".join(f"{n}: {r['gflops']:.0f}" for n, r in peak["per_size"].items())
        for row, part in zip(pair, ("train", "eval")):
            p = d[part]
            row.stats = p["fraction_of_peak"]
            row.measured = f"**{p['fraction_of_peak']['median']:.1%}** of peak"
            row.time_note = f"{p['gflops_median']:.1f} / {peak['gflops']:.1f} GFLOP/s"
            row.notes.append(f"peak = best square matmul ({sweep} GFLOP/s), same process and threads")
            excluded = f"attention products excluded (would add {p['attention_fraction_excluded']:.0%})"
            if part == "train":
                row.notes += [f"{data['model']} / {data['task']}, batch {data['batch_size']}, {data['steps']} steps; "
                              "FLOPs: 4 x base linears + 6 x LoRA linears per token row, 4 x head on kept rows "
                              "(frozen base: no weight gradients)", excluded]
            else:
                whole = [r["gflops_whole_evaluate"] for r in p["rounds"]]
                row.notes += [f"{data['limit']} {data['task']} test questions, forwards timed by hooks; whole "
                              f"`evaluate`: {sum(whole) / len(whole):.1f} GFLOP/s; FLOPs: 2 x all linears per row",
                              excluded]
        emulated(pair, d, "fractions")
    return rows


def rows_quickstart(data: dict[str, Any] | None, info: dict[str, Any] | None) -> list[Row]:
    row = Row(10, "Quickstart end to end (`loralab bench`, cut-down, see benchmarks/README.md), precision auto "
                  "(bf16) vs fp32 (auto / fp32)", "report")
    if data is None:
        row.error = why(info)
        return [row]
    if not_applicable([row], data):
        return [row]
    runs = data["runs"]
    row.stats = data["ratio"]
    row.time_note = f"{runs['bf16']['seconds']:.0f} / {runs['fp32']['seconds']:.0f} s"
    row.correctness_ok = bool(data["ok"])
    row.notes += ["one run each (fresh output folders: each builds its library)",
                  "exit codes 0 and every cell's recorded precision as asked: " + ("OK" if data["ok"] else "NO")]
    emulated([row], data)
    return [row]


def rows_agreement(data: dict[str, Any] | None, info: dict[str, Any] | None) -> list[Row]:
    row = Row(11, "bf16 vs fp32 eval agreement: per-example outcome, SmolLM2-135M on 4 suite tasks", "report")
    if data is None:
        row.error = why(info)
        return [row]
    if not_applicable([row], data):
        return [row]
    pooled, check = data["pooled"], data["logit_check"]
    row.measured = f"**{pooled['outcome_agreement']:.1%}** agree"
    row.correctness_ok = bool(check["ok"])
    kind = ("native bf16 autocast" if data["bf16"] == "native" else
            "EMULATED bf16 (matmul operands and results rounded to bf16, computed in fp32; not CPU autocast)")
    per = "; ".join(f"{t} {r['outcome_agreement']:.3f} ({r['diff']:+.3f})" for t, r in data["per_task"].items())
    row.notes += [kind, f"n={data['limit']} per task; agreement (bf16 - fp32 acc): {per}",
                  (f"pooled bf16 - fp32 = {pooled['diff']:+.3f}, 95 % CI [{pooled['ci_low']:+.3f}, "
                   f"{pooled['ci_high']:+.3f}], McNemar p {pooled['p_value']:.2f} ({pooled['n10']} right only in "
                   f"bf16, {pooled['n01']} only in fp32); same prediction {pooled['prediction_agreement']:.1%}"),
                  (f"logits change by {check['min_rel_diff']:.1e}-{check['max_rel_diff']:.1e} (relative; one bf16 "
                   f"rounding: {check['prompts'][0]['rel_diff_one_rounding']:.1e})")]
    return [row]
