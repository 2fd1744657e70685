"""Universal Self-Consistency (Chen et al. 2023, arXiv 2311.17311; arXiv 2407.06023 Sec. 4.2).

Free-form answers rarely match exactly, so majority voting fails; USC shows the model all N
responses and asks for the one most consistent with the majority. Two variants:
``compose`` — the paper's Fig. 12 prompt, the model writes the answer after "FINAL:", which
becomes the training target; ``select`` — Chen et al.'s prompt, the model names a response
index and that response is the target. Prompts for all examples go to the backend in one
batch; an unparsable output is retried with sampling, then the example falls back to
exact-match majority voting (reason recorded). When N responses do not fit the context, 10 and
then 1 are drawn at random, as the paper did (recorded in ``details``).
"""

from __future__ import annotations

import random

from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.errors import UserError
from sys2distill.filters import register_filter
from sys2distill.filters.base import Filter
from sys2distill.filters.majority import MajorityFilter, majority_vote
from sys2distill.filters.usc_parse import parse_final, parse_index
from sys2distill.records import Example, FilterDecision, Trace
from sys2distill.tasks.base import normalize
from sys2distill.tasks.names import check_choice

# Fig. 12 of arXiv 2407.06023, with its "20" as {num_answers} and its unclosed quote kept.
COMPOSE_PROMPT = (
    "Read the question: {question}. {num_answers} answers have been provided: {answers} Carefully read all answers "
    "and compose the final answer such that it is consistent with the majority of variants provided. Provide final "
    "answer as \"FINAL: <your final answer>"
)
# Chen et al. 2023 (USC), Fig. 2; responses are numbered from 0 as there.
SELECT_PROMPT = (
    "I have generated the following responses to the question: {question}\n\n{answers}\n\nEvaluate these responses.\n"
    "Select the most consistent response based on majority consensus.\n"
    "Start your answer with \"The most consistent response is Response X\" (without quotes)."
)
PROMPTS = {"compose": COMPOSE_PROMPT, "select": SELECT_PROMPT}
SUBSAMPLE = (10, 1)  # the paper's fallback sizes when N responses overflow the context
RETRY_TEMPERATURE = 0.7  # a greedy retry would repeat the same unparsable output


def _count_tokens(backend: Backend, messages: list[dict[str, str]]) -> int:
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is not None and hasattr(backend, "render"):
        return len(tokenizer(backend.render(messages), add_special_tokens=False).input_ids)
    return len(messages[-1]["content"].split())  # backends without a tokenizer: words stand in for tokens


@register_filter("usc")
class USCFilter(Filter):
    """Ask the model which of an input's N responses the majority supports; keep that answer."""

    needs_backend = True

    def __init__(self, min_agreement: float = 0.5, enabled: bool = True, variant: str = "compose",
                 prompt: str | None = None, retries: int = 2, max_tokens: int | None = None,
                 context_limit: int | None = None, seed: int = 0):
        check_choice(variant, PROMPTS, "filter.options.variant")
        self.variant, self.template = variant, prompt or PROMPTS[variant]
        try:
            self.template.format(question="", answers="", num_answers=0)
        except (KeyError, IndexError) as e:
            raise UserError(f"filter.options.prompt uses unknown placeholder {e}: use {{question}}, {{answers}}, {{num_answers}}") from None
        # min_agreement applies to the majority fallback only: USC itself yields no vote share.
        self.fallback = MajorityFilter(min_agreement, enabled=True)
        self.enabled, self.retries, self.seed = enabled, retries, seed
        self.max_tokens = max_tokens or (256 if variant == "compose" else 32)  # an answer vs. "... Response 12"
        self.context_limit = context_limit  # default: the model's max_position_embeddings

    def prompt(self, example: Example, shown: list[Trace]) -> list[dict[str, str]]:
        word = "Answer" if self.variant == "compose" else "Response"
        first = 1 if self.variant == "compose" else 0  # Chen et al. number from 0; Fig. 12 lists answers
        answers = "\n".join(f"{word} {i + first}: {t.final}" for i, t in enumerate(shown))
        if self.variant == "compose":
            answers = f"\n{answers}\n"
        return [{"role": "user", "content": self.template.format(question=example.question, answers=answers,
                                                                 num_answers=len(shown))}]

    def _shown(self, example: Example, traces: list[Trace], backend: Backend) -> tuple[list[Trace], str]:
        """All N responses, or a random 10 then 1 when the prompt would overflow the context."""
        limit = self.context_limit or getattr(getattr(getattr(backend, "model", None), "config", None),
                                              "max_position_embeddings", None)
        rng = random.Random(f"usc-{self.seed}-{example.id}")
        shown = traces
        for k in SUBSAMPLE:
            if limit is None or len(shown) == 1 or _count_tokens(backend, self.prompt(example, shown)) + self.max_tokens <= limit:
                break
            shown = rng.sample(traces, min(k, len(traces)))
        note = f"subsampled {len(traces)}->{len(shown)} (context {limit})" if len(shown) < len(traces) else ""
        return shown, note

    def apply(self, examples: list[Example], traces: dict[str, list[Trace]], backend: Backend | None) -> list[FilterDecision]:
        if not self.enabled:  # the paper's "without USC" ablation: one sample, taken as is
            return [self._keep(traces[ex.id], traces[ex.id][0], traces[ex.id][0].answer, "USC disabled: first sample kept", {})
                    for ex in examples]
        decisions: dict[str, FilterDecision] = {}
        pending: dict[str, tuple[Example, list[Trace], dict]] = {}
        for ex in examples:
            shown, note = self._shown(ex, traces[ex.id], backend)
            details = {"variant": self.variant, "shown": [t.id for t in shown], "outputs": [], "errors": []}
            if note:
                details["subsampled"] = note
            if len(shown) == 1:  # nothing to reconcile
                decisions[ex.id] = self._keep(traces[ex.id], shown[0], shown[0].answer, "single response kept", details)
            else:
                pending[ex.id] = (ex, shown, details)
        for attempt in range(1 + self.retries):
            if not pending:
                break
            params = SamplingParams(n=1, temperature=RETRY_TEMPERATURE if attempt else 0.0, top_p=0.9,
                                    max_tokens=self.max_tokens, seed=self.seed + attempt)
            outs = backend.generate([self.prompt(ex, shown) for ex, shown, _ in pending.values()], params)
            for (ex_id, (ex, shown, details)), (c,) in zip(list(pending.items()), outs):
                details["outputs"].append(c.text)
                details["tokens"] = details.get("tokens", 0) + c.completion_tokens  # reports count the filter's cost
                decision = self._parse(traces[ex_id], shown, c.text, details)
                if decision is not None:
                    decisions[ex_id] = decision
                    del pending[ex_id]
        for ex_id, (_, _, details) in pending.items():
            d = self.fallback.decide(traces[ex_id])
            d.reason, d.details = f"usc unparsed after {1 + self.retries} tries, majority fallback: {d.reason}", details
            decisions[ex_id] = d
        return [decisions[ex.id] for ex in examples]

    def _parse(self, all_traces: list[Trace], shown: list[Trace], text: str, details: dict) -> FilterDecision | None:
        if self.variant == "compose":
            answer, why = parse_final(text)
            if answer is not None:
                return self._keep(all_traces, None, answer, "usc composed", details)
        else:
            i, why = parse_index(text, len(shown))
            if i is not None:
                return self._keep(all_traces, shown[i], shown[i].answer, f"usc selected response {i}", details)
        details["errors"].append(why)
        return None

    @staticmethod
    def _keep(traces: list[Trace], winner: Trace | None, answer: str | None, reason: str, details: dict) -> FilterDecision:
        """Keep ``answer`` (from ``winner``, or composed when None); vote shares are exact-match."""
        _, votes, _ = majority_vote([t.answer for t in traces])
        share = sum(t.answer is not None and answer is not None and normalize(t.answer) == normalize(answer)
                    for t in traces) / len(traces)
        kept = answer is not None
        return FilterDecision(example_id=traces[0].example_id, kept=kept, answer=answer, votes=votes, agreement=share,
                              reason=reason if kept else "chosen response has no extractable answer",
                              trace_ids=[winner.id] if winner is not None else [], details=details)
