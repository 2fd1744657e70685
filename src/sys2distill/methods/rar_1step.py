"""Rephrase and Respond, 1-step (Deng et al. 2023; arXiv 2407.06023 Sec. 4.1, Fig. 3).

The model rewords and elaborates the question, then answers, in one generation; every
token of that generation counts towards #Tokens.
"""

from sys2distill.methods import register_method
from sys2distill.methods.base import SingleStepMethod

# Quoted from Fig. 3 of arXiv 2407.06023.
PROMPTS = {"answer": "{question}\nReword and elaborate on the inquiry, then provide an answer."}


@register_method("rar_1step")
class RaR1Step(SingleStepMethod):
    label = "RaR 1-step"
    PROMPTS = PROMPTS
