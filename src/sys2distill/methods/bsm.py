"""Branch-Solve-Merge as an LLM judge (Saha et al. 2023; arXiv 2407.06023 Sec. 4.3, Figs. 7–9).

Branch: the model writes an evaluation plan, up to five criteria, for the user question.
Solve: for each criterion, the model scores both responses 1–5 on that criterion alone.
Merge: the model combines the per-criterion evaluations into one verdict, [[A]], [[B]] or
[[C]] (tie). Each stage is one batched backend call across all examples, samples and
criteria. #Tokens counts all three stages, as the paper's 2,000-token BSM rows do.

``merge: sum`` replaces the Merge generation with the sum of the Solve scores (no tokens): the
"scores combined into one verdict" reading, for models too small to write a merge.
"""

from __future__ import annotations

import re
from dataclasses import replace

from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.errors import UserError
from sys2distill.methods import register_method
from sys2distill.methods.base import Method, make_step
from sys2distill.records import Example, Step, Trace

# Quoted from Figs. 7–9 of arXiv 2407.06023 ("descrition" [sic]). The merge prompt's "five
# points" becomes {num_points}: the plan may list fewer criteria.
PROMPTS = {
    "branch": (
        "We want to evaluate the quality of the responses provided by two AI assistants to the user question displayed "
        "below. Your task is to propose an evaluation plan that can be executed to compare the two responses. The "
        "evaluation plan should consist of a list of up to five factors that one should consider such as helpfulness, "
        "relevance, accuracy, etc. In each line, write an evaluation criterion along with a short descrition of how we "
        "should evaluate that criterion.\nUser Question: {question}\nEvaluation Plan:"
    ),
    "solve": (
        "You are given a user question and responses provided by two AI assistants. Your task is to evaluate and score "
        "the quality of the responses based on a single evaluation criterion displayed below. Make sure to evaluate only "
        "based on the criterion specified and none other. In the first line, provide a score between 1 to 5 for "
        "Assistant A’s response. In the second line, provide a score between 1 to 5 for Assistant B’s response.\n"
        "[User Question]\n{question}\n[The Start of Assistant A’s Answer]\n{response_a}\n[The End of Assistant A’s Answer]\n"
        "[The Start of Assistant B’s Answer]\n{response_b}\n[The End of Assistant B’s Answer]\n[Evaluation Criterion]\n"
        "{eval_criterion}\n[End of Evaluation Criterion] Evaluation of {criterion_name}:"
    ),
    "merge": (
        "{solve_output}\nInstruction: You are requested to combine the {num_points} points that were previously discussed. "
        "For each point, provide a concise explanation to clarify its relevance. Also, include the respective score for "
        "each point to ensure a thorough understanding. Once you’ve done this, please draft a summary paragraph that "
        "encapsulates an overall evaluation based on these {num_points} points. Finally, present your conclusive "
        "judgement. Use the format \"[[A]]\" if you determine assistant A to be superior, \"[[B]]\" if you find "
        "assistant B to be better, and \"[[C]]\" in case of a tie."
    ),
}
# Used only when a plan has no parseable criterion line, so Solve still has something to score.
FALLBACK_CRITERIA = [("Helpfulness", "How well does the response address the user's question?")]
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\(\d+\)|[a-e][.)])\s*")
_SCORE = re.compile(r"(?<![\d.])([1-5])(?:\s*/\s*5|\s*out of 5)?(?!\d|\.\d)")


def parse_plan(plan: str, max_criteria: int) -> list[tuple[str, str]]:
    """(name, description) per plan line: "1. **Relevance**: does it …" → ("Relevance", "does it …").

    A line without a separator is its own description, named by its first words. Headers such
    as "Evaluation Plan:" and blank lines are skipped; at most ``max_criteria`` are kept.
    """
    out = []
    for raw in plan.splitlines():
        line = _LIST_MARK.sub("", raw.replace("**", "")).strip()
        if len(line) < 4 or line.rstrip(":").casefold() in {"evaluation plan", "plan", "criteria"}:
            continue
        out.append(_split(line))
        if len(out) == max_criteria:
            break
    return out


def _split(line: str) -> tuple[str, str]:
    m = re.match(r"(.{2,60}?)\s*(?::|\s[-–—]\s)\s*(.+)", line)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return " ".join(line.split()[:4]).rstrip(".,;"), line


def parse_scores(text: str) -> tuple[int, int] | None:
    """The first two 1–5 scores in a Solve output (A's first, as the prompt asks), or None."""
    scores = [int(s) for s in _SCORE.findall(text)]
    return (scores[0], scores[1]) if len(scores) >= 2 else None


@register_method("bsm")
class BranchSolveMerge(Method):
    label = "BSM"
    PROMPTS = PROMPTS
    OPTIONS = {"max_criteria": 5, "merge": "llm", "solve_max_tokens": None}

    def __init__(self, task, prompts=None, options=None):
        super().__init__(task, prompts, options)
        if self.options["merge"] not in ("llm", "sum"):
            raise UserError(f"method_options.bsm.merge must be 'llm' (the paper's Merge prompt) or 'sum' (add the "
                            f"Solve scores), not {self.options['merge']!r}")

    def run(self, examples: list[Example], backend: Backend, params: SamplingParams) -> list[list[Trace]]:
        branch_prompts = [self.prompt("branch", ex) for ex in examples]
        plans = backend.generate(branch_prompts, params)
        # One Solve call per (example, sample, criterion), all in one batch; later stages are
        # seeded by their own prompts (which contain the plan), as in ``TwoStepMethod``.
        jobs = []  # (example index, sample offset, criterion name, solve prompt)
        for i, (ex, cs) in enumerate(zip(examples, plans)):
            for s, c in enumerate(cs):
                for name, desc in parse_plan(c.text, self.options["max_criteria"]) or FALLBACK_CRITERIA:
                    jobs.append((i, s, name, self.prompt("solve", ex, eval_criterion=desc, criterion_name=name)))
        solve_params = replace(params, n=1, seed=params.seed + 1, first_sample=0,
                               max_tokens=self.options["solve_max_tokens"] or params.max_tokens)
        solved = backend.generate([p for *_, p in jobs], solve_params)
        steps: dict[tuple[int, int], list[Step]] = {}
        for (i, s, name, p), (c,) in zip(jobs, solved):
            steps.setdefault((i, s), []).append(make_step(f"solve: {name}", p, c))
        keys = [(i, s) for i, cs in enumerate(plans) for s in range(len(cs))]
        finals = self._merge(examples, keys, steps, backend, params)
        return [[self.trace(ex, j, [make_step("branch", branch_prompts[i], c), *steps[(i, s)], finals[(i, s)]])
                 for s, (j, c) in enumerate(enumerate(cs, params.first_sample))]
                for i, (ex, cs) in enumerate(zip(examples, plans))]

    def _merge(self, examples, keys, steps, backend: Backend, params: SamplingParams) -> dict[tuple[int, int], Step]:
        if self.options["merge"] == "sum":
            return {k: _sum_step(steps[k]) for k in keys}
        prompts = []
        for i, s in keys:
            solve_output = "\n\n".join(f"Evaluation of {st.name.removeprefix('solve: ')}:\n{st.output.strip()}" for st in steps[(i, s)])
            prompts.append(self.prompt("merge", examples[i], solve_output=solve_output, num_points=len(steps[(i, s)])))
        merged = backend.generate(prompts, replace(params, n=1, seed=params.seed + 2, first_sample=0))
        return {k: make_step("merge", p, c) for k, p, (c,) in zip(keys, prompts, merged)}


def _sum_step(solves: list[Step]) -> Step:
    """Merge without a model call: add each criterion's scores; unparseable Solve outputs count for neither."""
    a = b = parsed = 0
    for st in solves:
        scores = parse_scores(st.output)
        if scores:
            a, b, parsed = a + scores[0], b + scores[1], parsed + 1
    if not parsed:
        text = "No scores could be read from the Solve outputs."
    else:
        text = f"Total score A {a}, B {b} over {parsed} criteria: [[{'A' if a > b else 'B' if b > a else 'C'}]]"
    return Step(name="merge (sum of scores)", messages=[], output=text, prompt_tokens=0, completion_tokens=0)
