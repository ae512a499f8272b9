"""The grid's `eval: apply_chat_template`: in a cell's protocol only when on (earlier cells keep their ids), and
a model without a chat template fails its cells before anything trains."""

from __future__ import annotations

from loralab.bench import bench_from_mapping, expand, run_bench


def test_the_flag_enters_cell_ids_only_when_on(make_grid):
    def cells(**eval_spec):
        return expand(bench_from_mapping(make_grid(eval={"limit": 8, **eval_spec})))

    reference = [c.cell_id for c in cells()]
    assert [c.cell_id for c in cells(apply_chat_template=False)] == reference
    on = cells(apply_chat_template=True)
    assert set(c.cell_id for c in on).isdisjoint(reference)
    assert all(c.protocol["eval"] == {"split": "test", "limit": 8, "apply_chat_template": True} for c in on)


def test_a_model_without_a_chat_template_fails_its_cells(tmp_path, make_grid, monkeypatch):
    from loralab.recipes import train as train_recipe

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the evaluation cannot run")

    monkeypatch.setattr(train_recipe, "train_method", no_training)
    bench = bench_from_mapping(make_grid(methods=["base"], seeds=[0], library=None, strategies=[],
                                         selection=None, eval={"limit": 4, "apply_chat_template": True}))
    result = run_bench(bench, tmp_path)
    assert result.ran == 0 and len(result.failed) == 2
    assert all("apply_chat_template: the tokenizer of model 'tiny-llama' has no chat template" in f["error"]
               for f in result.failed)
