"""Tasks in one unified format: BIG-bench, GSM8K, JSONL/CSV files and Hugging Face datasets."""

from loralab.data.bigbench import load_bigbench_task
from loralab.data.files import example_record, load_csv_task, load_jsonl_task, write_jsonl
from loralab.data.gsm8k import load_gsm8k_task
from loralab.data.hf import load_hf_task
from loralab.data.loader import load_task, load_task_config
from loralab.data.schema import SPLITS, Example, GenerationSpec, Task
from loralab.data.suite import DOMAINS, SUITE, SuiteTask, suite_names, suite_task

__all__ = [
    "DOMAINS", "SPLITS", "SUITE", "Example", "GenerationSpec", "SuiteTask", "Task", "example_record",
    "load_bigbench_task", "load_csv_task", "load_gsm8k_task", "load_hf_task", "load_jsonl_task", "load_task",
    "load_task_config", "suite_names", "suite_task", "write_jsonl",
]
