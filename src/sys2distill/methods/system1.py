"""System 1: the model answers the question directly (arXiv 2407.06023, Sec. 3).

Its prompt is also the *input* of every distilled model: distillation teaches the model to
give the System 2 answer to exactly this prompt.
"""

from sys2distill.methods import register_method
from sys2distill.methods.base import SingleStepMethod

# The pairwise judge's System 1 is Fig. 13 of arXiv 2407.06023 (MT-bench's judge layout, verdict
# only): it is also the distilled BSM judge's input.
JUDGE_LAYOUT = (
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{response_a}\n[The End of Assistant A's Answer]"
    "\n\n[The Start of Assistant B's Answer]\n{response_b}\n[The End of Assistant B's Answer]"
)
PROMPTS = {
    "answer": "{question}",
    "answer@pairwise_judge": (
        "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
        "the user question displayed below. Output your final verdict by strictly following this format: \"[[A]]\" if "
        "assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie.\n\n" + JUDGE_LAYOUT
    ),
}


@register_method("system1")
class System1(SingleStepMethod):
    label = "System 1"
    system1 = True
    PROMPTS = PROMPTS
