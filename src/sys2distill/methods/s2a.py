"""System 2 Attention (Weston & Sukhbaatar 2023; arXiv 2407.06023 Sec. 4.2, Fig. 6).

Step 1 rewrites the user's text, keeping only the unbiased context and the question (the
opinion is dropped); step 2 answers from the rewrite alone, so the original opinion never
reaches the answering call (see ``TwoStepMethod``).
#Tokens counts both steps. The distilled model is trained on the *original* prompt → the
step-2 answer (``dataset.build_records``), so it must learn to ignore the opinion itself.
"""

from sys2distill.methods import register_method
from sys2distill.methods.base import TwoStepMethod

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
class S2A(TwoStepMethod):
    label = "S2A"
    PROMPTS = PROMPTS
    steps = ("rewrite", "respond")
    rewrite_field = "rewritten"
