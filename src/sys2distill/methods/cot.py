"""Zero-shot Chain-of-Thought (Kojima et al. 2022), in the wording of arXiv 2407.06023 Fig. 10."""

from sys2distill.methods import register_method
from sys2distill.methods.base import SingleStepMethod

# Quoted from Fig. 10 of arXiv 2407.06023; "Final answer:" is what the tasks' extractors look for.
PROMPTS = {
    "answer": (
        "Your task is to answer the question below. Give step by step reasoning before you answer, "
        "and when you’re ready to answer, please use the format \"Final answer: ...\"\n"
        "Question: {question}\nSolution:"
    )
}


@register_method("cot")
class CoT(SingleStepMethod):
    label = "CoT zero-shot"
    PROMPTS = PROMPTS
