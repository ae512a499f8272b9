"""The orchestration layer: one call per user job, each putting the components together.

    from loralab.recipes.evaluate import run_eval, export_task     # `loralab eval`, `loralab data export`
    from loralab.recipes.train import build_method, train_method   # `loralab train`
    from loralab.recipes.merge import merge_adapter                # `loralab merge`
    from loralab.recipes.hub import push_output                    # `loralab push` (the Hugging Face hub)
    from loralab.recipes.lmeval import LoralabLM                   # `loralab-lm-eval`, lm-eval's model type

Components (data, models, eval, training, library, moe, selection, stats, utils) never import this
layer, `loralab.bench` or `loralab.cli`; `tests/test_architecture.py` reads the imports to keep it so.
The lm-eval model type lives here rather than in `loralab.eval` because it attaches method checkpoints
(the MoE core), which sits above evaluation.
"""
