"""System 1: the model answers the question directly (arXiv 2407.06023, Sec. 3).

Its prompt is also the *input* of every distilled model: distillation teaches the model to
give the System 2 answer to exactly this prompt.
"""

from sys2distill.methods import register_method
from sys2distill.methods.base import SingleStepMethod

PROMPTS = {"answer": "{question}"}


@register_method("system1")
class System1(SingleStepMethod):
    label = "System 1"
    PROMPTS = PROMPTS
