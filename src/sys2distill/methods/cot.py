"""Zero-shot Chain-of-Thought (Kojima et al. 2022), in the wording of arXiv 2407.06023 Fig. 10."""

from sys2distill.methods import register_method
from sys2distill.methods.base import SingleStepMethod
from sys2distill.methods.system1 import JUDGE_LAYOUT

# Quoted from Fig. 10 of arXiv 2407.06023; "Final answer:" is what the tasks' extractors look for.
PROMPTS = {
    "answer": (
        "Your task is to answer the question below. Give step by step reasoning before you answer, "
        "and when you’re ready to answer, please use the format \"Final answer: ...\"\n"
        "Question: {question}\nSolution:"
    ),
    # The CoT judge of Table 3: MT-bench's pair-v2 prompt (Zheng et al. 2023), explanation before the verdict.
    "answer@pairwise_judge": (
        "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
        "the user question displayed below. You should choose the assistant that follows the user's instructions and "
        "answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
        "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
        "comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the "
        "order in which the responses were presented does not influence your decision. Do not allow the length of the "
        "responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
        "possible. After providing your explanation, output your final verdict by strictly following this format: "
        "\"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie.\n\n" + JUDGE_LAYOUT
    ),
}


@register_method("cot")
class CoT(SingleStepMethod):
    label = "CoT zero-shot"
    PROMPTS = PROMPTS
