"""The standard suite: 40 named tasks (39 from BIG-bench 1.0.0, plus GSM8K) with a domain tag each.

Prompt format: BIG-bench's own fields (prefixes, output regex, ...), except that multiple-choice
questions are scored as *cloze*: the choices are not listed in the prompt (`append_choices_to_input`
false), which is how lm-evaluation-harness and OpenCompass's PPL inferencer score multiple choice by
likelihood. Listing them puts a 135M model at chance on social_iqa (acc 0.329 on 1,000 examples,
chance 0.333) and cloze does not (see README). `bigbench:<task>` or the path to a `task.json` reads a
task exactly as BIG-bench renders it.

Primary metrics: `acc` for multiple choice; `exact_match` for generation, which for the BIG-bench
tasks is BIG-bench's postprocessed output compared with whitespace stripped. BIG-bench's own
unstripped `exact_str_match` is reported beside it (see `loralab.eval.metrics`).

Domain tags (commonsense, math, logic, nli, sentiment, knowledge, language, reading) feed the manual
(task-relevance) LoRA selection. Task data comes from `loralab.data.sources` (a data directory, or
the PyPI packages downloaded once into the cache).
"""

from __future__ import annotations

from dataclasses import dataclass

from loralab.errors import UnknownNameError

SUITE_FORMAT = {"append_choices_to_input": False}
DOMAINS = ("commonsense", "math", "logic", "nli", "sentiment", "knowledge", "language", "reading")


@dataclass(frozen=True)
class SuiteTask:
    """A registered suite task.

    Args:
        name: Suite name (what `--task` accepts).
        source: "bigbench" or "gsm8k".
        path: BIG-bench relative task path (task or task/subtask).
        domain: One of `DOMAINS`.
        description: One line.
    """

    name: str
    source: str
    path: str
    domain: str
    description: str

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"suite task {self.name!r}: domain {self.domain!r} not in {DOMAINS}")


_BB = [
    ("abstract_narrative_understanding", "abstract_narrative_understanding/4_distractors", "reading",
     "Choose the proverb that best matches a short narrative (4 distractors)."),
    ("arithmetic_2_digit_addition", "arithmetic/2_digit_addition", "math", "Add two 2-digit numbers (generation)."),
    ("arithmetic_2_digit_multiplication", "arithmetic/2_digit_multiplication", "math",
     "Multiply two 2-digit numbers (generation)."),
    ("arithmetic_3_digit_subtraction", "arithmetic/3_digit_subtraction", "math",
     "Subtract 3-digit numbers (generation)."),
    ("color_rgb", "color/rgb", "knowledge", "Name the colour closest to an RGB triple."),
    ("cs_algorithms_valid_parentheses", "cs_algorithms/valid_parentheses", "logic",
     "Decide whether a bracket sequence is balanced."),
    ("discourse_marker_prediction", "discourse_marker_prediction", "language",
     "Pick the discourse marker that joins two sentences."),
    ("dyck_languages", "dyck_languages", "logic", "Close the open brackets of a Dyck-language sequence."),
    ("elementary_math_qa", "elementary_math_qa/question_only", "math", "Elementary math word problems, multiple choice."),
    ("epistemic_reasoning", "epistemic_reasoning", "nli", "Entailment under knowledge and belief statements."),
    ("fact_checker_fever", "fact_checker/fever", "knowledge", "Judge a claim true or false (FEVER)."),
    ("formal_fallacies_syllogisms_negation", "formal_fallacies_syllogisms_negation", "logic",
     "Decide whether an argument with negations is deductively valid."),
    ("goal_step_wikihow_goal_inference", "goal_step_wikihow/goal_inference", "commonsense",
     "Infer the goal that a wikiHow step serves."),
    ("goal_step_wikihow_step_inference", "goal_step_wikihow/step_inference", "commonsense",
     "Pick the step that achieves a wikiHow goal."),
    ("intent_recognition", "intent_recognition", "language", "Recognise the intent of a user utterance."),
    ("linguistic_mappings_past_tense", "linguistic_mappings/past_tense_json", "language",
     "Put an English verb phrase in the past tense (generation)."),
    ("linguistic_mappings_plural", "linguistic_mappings/plural_json", "language",
     "Give the plural of an English noun (generation)."),
    ("linguistic_mappings_sentence_negation", "linguistic_mappings/sentence_negation_json", "language",
     "Negate an English sentence (generation)."),
    ("logic_grid_puzzle", "logic_grid_puzzle", "logic", "Answer questions about a logic grid puzzle."),
    ("logical_deduction_five_objects", "logical_deduction/five_objects", "logic",
     "Order five objects from a set of constraints."),
    ("logical_fallacy_detection", "logical_fallacy_detection", "logic", "Detect whether an argument is a fallacy."),
    ("metaphor_boolean", "metaphor_boolean", "language", "Decide whether a paraphrase fits a metaphor."),
    ("modified_arithmetic_addition_plus_one", "modified_arithmetic/three_digit_addition_plus_one", "math",
     "Learn 'add then add one' from examples in the prompt (generation)."),
    ("movie_recommendation", "movie_recommendation", "knowledge", "Recommend the movie most like a given list."),
    ("multiemo_en", "multiemo/reviews_sentence_en", "sentiment", "Sentiment of an English review sentence."),
    ("navigate", "navigate", "logic", "Decide whether movement instructions return to the start."),
    ("parsinlu_qa", "parsinlu_qa", "knowledge", "Persian multiple-choice questions (ParsiNLU)."),
    ("play_dialog_same_or_different", "play_dialog_same_or_different", "reading",
     "Decide whether two lines of a play are spoken by the same character."),
    ("presuppositions_as_nli", "presuppositions_as_nli", "nli", "Entailment of presuppositions."),
    ("question_selection", "question_selection", "reading", "Pick the question that a passage answers."),
    ("reasoning_about_colored_objects", "reasoning_about_colored_objects", "logic",
     "Answer questions about coloured objects on a table."),
    ("salient_translation_error_detection", "salient_translation_error_detection", "language",
     "Classify the error in a German-English translation."),
    ("social_iqa", "social_iqa", "commonsense", "Social commonsense: motivations, reactions, next events."),
    ("sports_understanding", "sports_understanding", "commonsense", "Judge whether a sports sentence is plausible."),
    ("strategyqa", "strategyqa", "knowledge", "Yes/no questions that need implicit multi-step reasoning."),
    ("temporal_sequences", "temporal_sequences", "logic", "Find when a person could have done something."),
    ("tracking_shuffled_objects_three", "tracking_shuffled_objects/three_objects", "logic",
     "Track three objects through a sequence of swaps."),
    ("unit_conversion_si", "unit_conversion/si_conversion", "math", "Convert between SI units."),
    ("winowhy", "winowhy", "commonsense", "Judge the reason given for a Winograd coreference."),
]

SUITE: dict[str, SuiteTask] = {name: SuiteTask(name, "bigbench", path, dom, desc) for name, path, dom, desc in _BB}
SUITE["gsm8k"] = SuiteTask("gsm8k", "gsm8k", "gsm8k/test.jsonl", "math",
                           "Grade-school math word problems, answer after chain of thought (generation).")


def suite_task(name: str) -> SuiteTask:
    try:
        return SUITE[name]
    except KeyError:
        raise UnknownNameError("task", name, SUITE) from None


def suite_names(domain: str | None = None) -> list[str]:
    return sorted(n for n, t in SUITE.items() if domain is None or t.domain == domain)
