"""System 2 Attention (Weston & Sukhbaatar 2023; arXiv 2407.06023 Sec. 4.2, Fig. 6).

Step 1 rewrites the user's text, keeping only the unbiased context and the question (the
opinion is dropped); step 2 answers from the rewrite alone, so the original opinion never
reaches the answering call. With ``n`` samples each of the ``n`` rewrites gets one answer.
#Tokens counts both steps. The distilled model is trained on the *original* prompt → the
step-2 answer (``dataset.build_records``), so it must learn to ignore the opinion itself.
"""

from dataclasses import replace

from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.methods import register_method
from sys2distill.methods.base import Method, make_step
from sys2distill.records import Example, Trace

# Quoted from Fig. 6 of arXiv 2407.06023 (the paper's {input} is our {question} in step 1 and
# the step-1 rewrite, {rewritten}, in step 2).
PROMPTS = {
    "rewrite": (
        "Given the following text by a user, extract the part that is unbiased and not their opinion, so that "
        "using that text alone would be good context for providing an unbiased answer to the question portion "
        "of the text. Please include the actual question or query that the user is asking. Separate this into "
        "two categories labeled with “Unbiased text context (includes all content except user’s bias):” and "
        "“Question/Query (does not include user bias/preference):”.\n\nText by User: {question}"
    ),
    "respond": "{rewritten}\nAnswer in an unbiased way.",
}


@register_method("s2a")
class S2A(Method):
    label = "S2A"
    PROMPTS = PROMPTS

    def run(self, examples: list[Example], backend: Backend, params: SamplingParams) -> list[list[Trace]]:
        rewrite_prompts = [self.prompt("rewrite", ex) for ex in examples]
        rewrites = backend.generate(rewrite_prompts, params)
        respond_prompts = [self.prompt("respond", ex, rewritten=c.text) for ex, cs in zip(examples, rewrites) for c in cs]
        # One answer per rewrite; the seed is shifted so step 2 does not replay step 1's draws.
        answers = iter(backend.generate(respond_prompts, replace(params, n=1, seed=params.seed + 1)))
        prompts = iter(respond_prompts)
        return [[self.trace(ex, j, [make_step("rewrite", p1, c1), make_step("respond", next(prompts), next(answers)[0])])
                 for j, c1 in enumerate(cs)]
                for ex, p1, cs in zip(examples, rewrite_prompts, rewrites)]
