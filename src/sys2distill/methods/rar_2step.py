"""Rephrase and Respond, 2-step (Deng et al. 2023; arXiv 2407.06023 Sec. 4.1, Figs. 4–5).

Step 1 asks the model to rephrase the question; step 2 asks it to answer the rephrased
question alone (see ``TwoStepMethod``). #Tokens counts both steps.
"""

from sys2distill.methods import register_method
from sys2distill.methods.base import TwoStepMethod

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
class RaR2Step(TwoStepMethod):
    label = "RaR 2-step"
    PROMPTS = PROMPTS
    steps = ("rephrase", "respond")
    rewrite_field = "rephrased"
