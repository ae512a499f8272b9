"""GSM8K (Cobbe et al., 2021) as a generation task, prompted and extracted as lm-evaluation-harness does.

Prompt: "Question: {question}\\nAnswer:"; the reference is the number after "####" in the rationale.
`exact_match` uses the flexible extraction (last number in the output), `exact_match_strict` the
"#### N" pattern. The single published file (1,319 test problems) is split deterministically like
BIG-bench (70/10/20), so the suite has train data for LoRA training.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from loralab.data.files import _read_text
from loralab.data.schema import Example, GenerationSpec, Task
from loralab.data.split import assign_split, content_id
from loralab.errors import TaskFormatError

GSM8K_GENERATION = GenerationSpec(
    max_new_tokens=256,
    stop=("Question:", "</s>", "<|im_end|>"),
    answer_regex=r"(-?[$0-9.,]{2,})|(-?[0-9]+)",
    answer_pick="last",
    normalize="number",
    strict_regex=r"#### (\-?[0-9\.\,]+)",
)
_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)


def load_gsm8k_task(path: str | Path, *, name: str = "gsm8k") -> Task:
    path = Path(path)
    examples = []
    seen = set()
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskFormatError(f"{where}: invalid JSON ({exc.msg})") from None
        except RecursionError:
            raise TaskFormatError(f"{where}: JSON nested too deeply to be a record") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) or not isinstance(rec.get("answer"), str):
            raise TaskFormatError(f"{where}: a GSM8K line needs string fields 'question' and 'answer'")
        match = _ANSWER.search(rec["answer"])
        if match is None:
            raise TaskFormatError(f"{where}: answer has no '#### N' final answer")
        ex_id = content_id({"task": "gsm8k", "question": rec["question"], "answer": rec["answer"]})
        if ex_id in seen:
            continue
        seen.add(ex_id)
        examples.append(Example(
            id=ex_id,
            body=f"Question: {rec['question']}\nAnswer:",
            targets=(match.group(1).replace(",", ""),),
            split=assign_split(ex_id),
            metadata={"demonstration": " " + rec["answer"]},
        ))
    return Task(name=name, kind="generation", examples=examples, metric="exact_match",
                generation=GSM8K_GENERATION, fewshot_separator="\n\n", source=str(path))
