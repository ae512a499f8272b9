"""The benchmark config: validation (one-line errors with "did you mean", nothing written) and grid expansion."""

from __future__ import annotations

import collections

import pytest
from helpers import run_cli

from loralab.bench import bench_from_mapping, expand, load_bench
from loralab.errors import ConfigError, UserInputError


def _counts(cells):
    return collections.Counter((c.method, c.strategy, c.k, c.seed) for c in cells)


def test_expansion_counts_and_seed_free_cells(make_grid):
    bench = bench_from_mapping(make_grid(methods=["base", "lora", "more", "loramoe", "xlora"], k=[1, 2]))
    cells = expand(bench)
    by_method = collections.Counter(c.method for c in cells)
    # base and lora (own library LoRA, copied) train nothing: once per target; more: per target and seed;
    # loramoe/xlora: per target, strategy, k and seed
    assert by_method == {"base": 2, "lora": 2, "more": 4, "loramoe": 32, "xlora": 32}
    assert all(c.seed is None and c.strategy is None for c in cells if c.method in ("base", "lora"))
    assert all(c.strategy is None and c.k is None and c.seed in (0, 1) for c in cells if c.method == "more")
    assert len({c.cell_id for c in cells}) == len(cells)
    assert cells[0].seed in (None, 0) and cells[-1].seed == 1  # seed by seed: the first seed completes first


def test_from_scratch_and_lora_without_own_adapter(make_grid, toy_tasks):
    library = {"tasks": [toy_tasks["greater"], toy_tasks["oddsum"], toy_tasks["colour"]]}  # parity has no LoRA
    bench = bench_from_mapping(make_grid(methods=["lora", "loramoe"], from_scratch=["loramoe"], library=library,
                                         strategies=["random"], selection=None))
    counts = _counts(expand(bench))
    assert counts[("loramoe", None, None, 0)] == 2  # from scratch: no selection
    assert counts[("lora", None, None, 0)] == 1 and counts[("lora", None, None, 1)] == 1  # parity: trained, seeded
    assert counts[("lora", None, None, None)] == 1  # colour: its library LoRA, seed-free


def test_cell_id_hashes_what_changes_numbers_only(make_grid):
    def ids(**kw):
        return [c.cell_id for c in expand(bench_from_mapping(make_grid(**kw)))]

    reference = ids()
    assert ids(eval={"limit": 8, "batch_size": 2}) == reference  # batch size does not change a score
    assert ids(device=None, keep_checkpoints=True, resources={"cpus": 2}) == reference
    assert set(ids(eval={"limit": 6})).isdisjoint(reference)
    cells = expand(bench_from_mapping(make_grid()))
    base = {c.cell_id for c in cells if c.method == "base"}
    retrained = set(ids(train={"max_steps": 2, "batch_size": 4, "rank": 4, "max_length": 64}))
    assert retrained & set(reference) == base  # base trains nothing: a new training budget does not rerun it
    library = {"tasks": make_grid()["library"]["tasks"], "hparams": {"max_steps": 3}}
    assert set(ids(library=library)) & set(reference) == base
    assert ids(seeds=[0]) == [i for i, c in zip(reference, expand(bench_from_mapping(make_grid())), strict=True)
                              if c.seed in (None, 0)]


@pytest.mark.parametrize("change, message", [
    ({"methods": ["base", "loramo"]}, "Did you mean 'loramoe'"),
    ({"stratgies": ["ppl"]}, "did you mean 'strategies'"),
    ({"strategies": ["random", "pll"]}, "Did you mean 'ppl'"),
    ({"models": ["tiny-lama"]}, "Did you mean 'tiny-llama'"),
    ({"k": [4]}, "k=4 but target 'parity' has only 3 library LoRAs"),
    ({"k": [0]}, "out of range (got 0; allowed: an integer >= 1)"),
    ({"seeds": [0, 0]}, "seeds lists 0 twice"),
    ({"strategies": []}, "list strategies"),
    ({"strategies": ["random"], "selection": {"ppl": {"n_examples": 4}}}, "not in strategies"),
    ({"selection": {"manual": {"n_examples": 4}}}, "selection.manual: unknown key 'n_examples'; allowed: relevance"),
    ({"selection": {"random": {"seed": 3}}}, "uses each cell's seed"),
    ({"selection": {"manual": {"relevance": {"parity": ["greatr"]}}}}, "Did you mean 'greater'"),
    ({"method_config": {"loramoe": {"num_expert": 2}}}, "method_config.loramoe"),
    ({"method_config": {"xlora": {}}}, "not in methods"),
    ({"train": {"max_step": 1}}, "did you mean 'max_steps'"),
    ({"eval": {"split": "dev"}}, "eval.split: not an allowed value (got 'dev'; allowed: 'train'"),
    ({"device": "gpu0"}, "device: not a torch device (got 'gpu0'; allowed: cpu, cuda"),
    ({"targets": ["no_such_task"]}, "unknown task 'no_such_task'"),
    ({"from_scratch": ["more"]}, "from_scratch lists 'more'"),
])
def test_bad_config_is_one_clear_error(make_grid, change, message):
    with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bench_from_mapping(make_grid(**change))


def test_missing_required_key(make_grid):
    data = make_grid()
    del data["targets"]
    with pytest.raises(ConfigError, match="missing required key"):
        bench_from_mapping(data)


def test_cli_bad_config_exits_2_and_writes_nothing(monkeypatch, capsys, tmp_path, make_grid, write_grid):
    out = tmp_path / "out"
    path = write_grid(make_grid(methods=["base", "rockett"]))
    code, _, stderr = run_cli(monkeypatch, capsys, "bench", str(path), "--out", str(out))
    assert code == 2 and "Did you mean 'rocket'" in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()
    code, _, stderr = run_cli(monkeypatch, capsys, "bench", "quickstrat", "--out", str(out))
    assert code == 2 and "Did you mean 'quickstart'" in stderr and not out.exists()
    code, _, stderr = run_cli(monkeypatch, capsys, "bench", str(write_grid(make_grid())), "--executor", "rya",
                              "--out", str(out))
    assert code == 2 and "unknown executor 'rya'" in stderr and not out.exists()
    code, _, stderr = run_cli(monkeypatch, capsys, "report", str(tmp_path / "none.sqlite"))
    assert code == 2 and "does not exist" in stderr


def test_cli_dry_run_counts_cells(monkeypatch, capsys, tmp_path, make_grid, write_grid):
    code, stdout, _ = run_cli(monkeypatch, capsys, "bench", str(write_grid(make_grid())), "--dry-run",
                              "--out", str(tmp_path / "out"))
    assert code == 0 and "tiny: 22 cells" in stdout and not (tmp_path / "out").exists()


def test_relative_paths_are_relative_to_the_config_file(tmp_path, make_grid, write_grid, toy_tasks):
    import shutil

    (tmp_path / "tasks").mkdir()
    for path in toy_tasks.values():
        shutil.copy(path, tmp_path / "tasks")
    data = make_grid(targets=["tasks/parity.jsonl"], library={"tasks": ["tasks/parity.jsonl", "tasks/greater.jsonl",
                                                                        "tasks/oddsum.jsonl"], "path": "lib"},
                     strategies=["random"], selection=None)
    bench = load_bench(write_grid(data))
    assert bench.target_names == ("parity",) and bench.library.path == str(tmp_path / "lib")
    assert bench.task_specs["greater"] == str(tmp_path / "tasks" / "greater.jsonl")


def test_one_driver_per_output_folder(tmp_path, make_grid):
    import fcntl

    from loralab.bench import run_bench

    tmp_path.joinpath("out").mkdir()
    with open(tmp_path / "out" / ".bench.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `loralab bench` holds it
        with pytest.raises(UserInputError, match="another `loralab bench` is running"):
            run_bench(bench_from_mapping(make_grid()), tmp_path / "out")
    assert not (tmp_path / "out" / "bench.sqlite").exists()


def test_a_merge_of_deterministically_chosen_loras_is_one_seed_free_cell(make_grid):
    """A merge trains nothing, so only a strategy that draws (random) gives it one cell per seed; a trained
    method keeps one per seed whatever the strategy."""
    bench = bench_from_mapping(make_grid(methods=["merge_linear", "loramoe"], seeds=[0, 1, 2]))
    cells = expand(bench)
    by = collections.Counter((c.method, c.strategy, c.seed) for c in cells)
    for strategy in ("ppl", "manual", "embedding"):  # 2 targets: one cell each
        assert by[("merge_linear", strategy, None)] == 2
        assert not any(by[("merge_linear", strategy, s)] for s in (0, 1, 2))
    assert [by[("merge_linear", "random", s)] for s in (0, 1, 2)] == [2, 2, 2]
    for strategy in ("random", "ppl", "manual", "embedding"):
        assert [by[("loramoe", strategy, s)] for s in (0, 1, 2)] == [2, 2, 2]
    assert len({c.cell_id for c in cells}) == len(cells) == 2 * (3 + 3) + 2 * 4 * 3
