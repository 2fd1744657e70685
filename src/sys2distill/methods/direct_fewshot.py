"""Few-shot System 1: the exemplars of ``cot_fewshot`` with their answers only ("The answer is 14.").

Beside few-shot CoT, the System 1 that differs from it in the reasoning alone (same exemplars, same
layout, no worked steps), so a gain of CoT over it is the reasoning's, not the exemplars'
(Wei et al. 2022, arXiv 2201.11903, "standard prompting"). Distilled models are still asked with the
zero-shot ``system1`` prompt, the question alone (arXiv 2407.06023 Sec. 3); as a distill entry this
method is a "Distill System 1" baseline whose samples saw the exemplars.
"""

from sys2distill.methods import register_method
from sys2distill.methods.cot_fewshot import FewShotMethod
from sys2distill.tasks.base import WorkedExample


@register_method("direct_fewshot")
class DirectFewShot(FewShotMethod):
    label = "System 1 few-shot"
    system1 = True

    @staticmethod
    def reply(example: WorkedExample) -> str:
        return f"The answer is {example.answer}."
