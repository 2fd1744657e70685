"""Rephrase and Respond, 2-step (Deng et al. 2023; arXiv 2407.06023 Sec. 4.1, Figs. 4–5).

Step 1 asks the model to rephrase the question; step 2 asks it to answer the rephrased
question alone. With ``n`` samples, each of the ``n`` rephrasings gets one answer, so the
``n`` traces are ``n`` independent System 2 runs. #Tokens counts both steps.
"""

from dataclasses import replace

from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.methods import register_method
from sys2distill.methods.base import Method, make_step
from sys2distill.records import Example, Trace

# Quoted from Figs. 4 (last letter) and 5 (coin flip) of arXiv 2407.06023. The paper's
# last-letter prompt says "these 2 words"; {num_words} keeps it true for k-word variants.
PROMPTS = {
    "rephrase": (
        "{question}\nBased on the information provided in the original query, could you please rephrase it "
        "and expand it to help you do better answering. Please ensure that your response solely includes the "
        "reformulated question, excluding any introductory phrases or explanatory remarks, while preserving "
        "all the details from the original query."
    ),
    "rephrase@last_letter": (
        "{question}\nBased on the details given in the initial inquiry, could you kindly rephrase the question "
        "and separate these {num_words} words in the revised question? Please ensure these {num_words} words "
        "remain unchanged from the original question."
    ),
    "respond": "{rephrased}",
    "respond@coin_flip": "{rephrased} Answer the Yes or No question.",
}


@register_method("rar_2step")
class RaR2Step(Method):
    label = "RaR 2-step"
    PROMPTS = PROMPTS

    def run(self, examples: list[Example], backend: Backend, params: SamplingParams) -> list[list[Trace]]:
        rephrase_prompts = [self.prompt("rephrase", ex) for ex in examples]
        rephrasings = backend.generate(rephrase_prompts, params)
        # One answer per rephrasing, seeded by the rephrasing itself (first_sample=0), so sample j
        # is the same however the samples are batched; the seed shift keeps step 2 from
        # replaying step 1's draws.
        respond_prompts = [self.prompt("respond", ex, rephrased=c.text)
                           for ex, cs in zip(examples, rephrasings) for c in cs]
        answers = backend.generate(respond_prompts, replace(params, n=1, seed=params.seed + 1, first_sample=0))
        traces, k = [], 0
        for ex, p1, cs in zip(examples, rephrase_prompts, rephrasings):
            row = []
            for j, c1 in enumerate(cs, params.first_sample):
                c2 = answers[k][0]
                row.append(self.trace(ex, j, [make_step("rephrase", p1, c1), make_step("respond", respond_prompts[k], c2)]))
                k += 1
            traces.append(row)
        return traces
