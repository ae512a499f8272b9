"""The LoRA-MoE core and the methods built on it (LoRAMoE, MoRE, X-LoRA, ... and the baselines).

    from loralab.recipes.train import build_method, train_method   # build / train a method by name
    from loralab.moe.registry import MethodSpec, register_method   # add one (see `registry`)

Modules (nothing is imported here, so `import loralab.moe.<module>` loads only what it needs):

* `registry`: `MethodSpec` (what a method is, how the runner treats it, its contract-test settings),
  `TrainRequest`, the `METHODS` registry and `register_method`.
* `builder`: the build set-up every method shares (`MethodBuilder`: base keys, routing state, targets,
  injection, freezing, the `MoEModel`; `expert_weights`), and target selection by kind.
* `model`: `MoEModel` (the wrapper: routing context, auxiliary loss, merge, save) and `load_method`.
* `layer`: `MoELoRALinear`, a base linear plus a bank of LoRA experts mixed by a router.
* `routers`: token, task-embedding and externally computed routers, top-k gating.
* `state`: `RoutingState`, the per-forward context (task ids, types, mask, router records) layers share.
* `losses`: auxiliary losses as pure functions of the recorded router outputs.
* `stats`: router statistics from those records (training logs and analysis).
* `config`: `MethodConfig`, the base class of method configs (YAML/JSON round trips, one-line errors).
* `experts`: library LoRAs as experts (A/B per module, hash-verified).
* `adapters`: `attach_adapter`, one entry point for a PEFT adapter or a method checkpoint.
* `analysis`: router analysis of a trained method, per task (`loralab analyze-router`).
* `rank_report`: MoRE's chosen ranks, read from a checkpoint alone.
* `methods/`: the built-in methods, one module each; each registers itself when the registry is first read.
"""
