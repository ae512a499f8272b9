"""The options that several commands take, declared once: one spelling and one help text per concept.

Naming: `--task` is one task, `--tasks A,B` a list; `--limit`/`--split` are the examples a command
evaluates or reads; `--hparams FILE` the shared training hyperparameters, `--method-config FILE` a
method's own settings; `--include-own/--exclude-own` whether a target's own library LoRA may be used;
`--precision` the autocast of every forward a command runs (`loralab.utils.precision`).
Python parameter names match the library's (`out`, `limit`), so its error messages map onto these flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.models import ArgumentInfo, OptionInfo

from loralab.utils.precision import Requested


def _print_version(value: bool) -> None:
    if value:
        from loralab import __version__
        from loralab.cli.output import show

        show(__version__)
        raise typer.Exit()


# ------------------------------------------------------------------------------------------ app-wide

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages; also show the libraries' "
                                       "deprecation warnings and progress bars (hidden by default).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Errors and the final result only: no log lines, "
                                     "warnings, status lines or progress bars.")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch (default: torch's "
                    "choice). On a shared machine, 1 avoids thread oversubscription.")]
Version = Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                       help="Print the loralab version and exit.")]

# ------------------------------------------------------------------------------------------ what to run on

Model = Annotated[str, typer.Option("--model", help="Base model: an alias (loralab models ls), a local "
                                    "directory or a hub id.")]
BaseModel = Annotated[Optional[str], typer.Option("--model", help="Base model (default: the one recorded with "
                                                  "the adapter or library).")]
Task = Annotated[str, typer.Option("--task", help="A suite name, bigbench:<task>, a BIG-bench task.json/dir, a "
                                   "unified .jsonl/.csv or a task .yaml.")]
Tasks = Annotated[str, typer.Option("--tasks", help="Comma-separated tasks (suite names or task files).")]
Device = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:N or mps (default: the best "
                                               "available).")]
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Folder with bigbench/ and gsm8k/ "
                    "(default: $LORALAB_DATA_DIR, else downloaded once into the cache).")]
PRECISION_HELP = ("Autocast of every forward: auto (bf16 where the device multiplies bf16 natively, else fp32), "
                  "fp32, bf16 (warns where it would be emulated) or fp16 (CUDA only). Parameters, optimizer "
                  "state and router softmaxes stay fp32; the resolved name is recorded with the results.")
Precision = Annotated[Requested, typer.Option("--precision", help=PRECISION_HELP)]
BenchPrecision = Annotated[Optional[Requested], typer.Option("--precision", help=PRECISION_HELP + " Default: the "
                           "config's `precision` key (itself auto when absent).")]
Adapter = Annotated[Path, typer.Option("--adapter", help="Method checkpoint (loralab train --out) or PEFT "
                                       "adapter folder.")]

# ------------------------------------------------------------------------------------------ examples

Split = Annotated[str, typer.Option("--split", help="The split: train, validation, test or all.")]
Limit = Annotated[Optional[int], typer.Option("--limit", help="Only the first N examples of the split (by id; "
                                              "default: all).")]
EvalLimit = Annotated[int, typer.Option("--limit", help="Evaluate base and adapter on the first N examples of "
                                        "--split (0: skip the evaluation).")]
NumFewshot = Annotated[int, typer.Option("--num-fewshot", help="Few-shot demonstrations (from the train split) "
                                         "in each prompt.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.")]

# ------------------------------------------------------------------------------------------ training

Hparams = Annotated[Optional[Path], typer.Option("--hparams", help="YAML of the shared training hyperparameters "
                                                 "(LoRAHparams fields).")]
MethodConfig = Annotated[Optional[Path], typer.Option("--method-config", help="YAML of the method's settings "
                                                      "(its config dataclass fields).")]
MaxSteps = Annotated[Optional[int], typer.Option("--max-steps", help="Override max_steps.")]
ReportTo = Annotated[Optional[str], typer.Option("--report-to", help="Report training to HF Trainer's integrations: "
                    "none, all (every one installed), or comma-separated names transformers supports "
                    "(tensorboard, wandb, mlflow, ...); overrides the hyperparameters' report_to. TensorBoard "
                    "events are kept in the output's tensorboard/ folder.")]
Library = Annotated[Optional[Path], typer.Option("--library", help="LoRA library folder the experts come from.")]
Experts = Annotated[Optional[str], typer.Option("--experts", help="Comma-separated library tasks to use as "
                                                "experts: names, LoRA folders (LIB/MODEL/TASK) or the task files "
                                                "they were built from.")]
IncludeOwn = Annotated[bool, typer.Option("--include-own/--exclude-own", help="Whether the target task's own "
                                          "library LoRA may be used (default: left out, leave-one-out).")]
Seeds = Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated training seeds, e.g. 0,1,2: every "
                                              "cell runs once per seed and the table shows mean ± std (default: "
                                              "the hyperparameters' seed).")]

Resume = Annotated[Optional[bool], typer.Option("--resume/--no-resume", help="--resume: continue the interrupted "
                  "run from the last trainer checkpoint (saved every checkpoint_steps steps), and fail if there is "
                  "nothing to continue or it was trained with other settings (nothing is removed); --no-resume: "
                  "remove the checkpoints and start over. Default: resume a checkpoint of the same settings, else "
                  "start over.", show_default=False)]

# ------------------------------------------------------------------------------------------ configs

PrintConfig = Annotated[bool, typer.Option("--print-config", help="Print the resolved config (defaults, files, "
                                           "options and KEY=VALUE overrides applied) as YAML and exit: nothing is "
                                           "run or written.")]
OVERRIDES_HELP = ("KEY=VALUE overrides of the config, applied before it is checked: VALUE is YAML (4, 1e-3, true, "
                  "null, [a, b]); dotted keys reach nested sections.")


def overrides_argument(addresses: str) -> ArgumentInfo:
    """The `KEY=VALUE...` argument, with what its keys address on this command."""
    return typer.Argument(metavar="KEY=VALUE", help=f"{OVERRIDES_HELP} {addresses}", show_default=False)


# ------------------------------------------------------------------------------------------ trust

AllowPickle = Annotated[bool, typer.Option("--allow-pickle/--no-allow-pickle", help="Accept pickle (.bin) "
                                           "weights. Only for files you trust.")]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code/--no-trust-remote-code", help="Run model "
                                               "code from the hub. Only for repos you trust.")]
AllowBaseMismatch = Annotated[bool, typer.Option("--allow-base-mismatch", help="Use an adapter whose loralab "
                              "metadata records another base model (module names and shapes must still fit).")]


def out_option(help: str) -> OptionInfo:
    """`--out`, with the command's own description of what it writes."""
    return typer.Option("--out", help=help)


def names(text: str | None) -> list[str]:
    """A comma-separated list (`a, b,,c` -> [a, b, c]); None -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def checked_report_to(report_to: str | None) -> str | tuple[str, ...] | None:
    """`--report-to` in its canonical form (None: the hyperparameters decide); a name transformers does not know
    is one line naming the flag."""
    if report_to is None:
        return None
    from loralab.training.tracking import parse_report_to

    return parse_report_to(report_to, param="report_to")
