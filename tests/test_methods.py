"""Methods on a scripted backend: prompts (golden), steps, tokens and answer extraction."""

import pytest

from scripted import ScriptedBackend
from sys2distill.backends.base import SamplingParams
from sys2distill.errors import UserError
from sys2distill.methods import REGISTRY
from sys2distill.records import Example
from sys2distill.tasks import REGISTRY as TASKS

Q = 'Take the last letters of the words in "Edgar Bob" and concatenate them.'
EX = Example("e0", Q, None, {"num_words": 2, "words": ["Edgar", "Bob"]})


@pytest.fixture
def task():
    return TASKS["last_letter"](train_size=2, test_size=2)


def test_registry_names():
    assert {"system1", "rar_1step", "rar_2step", "cot"} <= set(REGISTRY)


def test_system1_single_step(task):
    backend = ScriptedBackend(lambda p, j: "The answer is rb.")
    (traces,) = REGISTRY["system1"](task).run([EX], backend, SamplingParams(n=3, temperature=0.7))
    assert len(traces) == 3 and [t.sample for t in traces] == [0, 1, 2]
    t = traces[0]
    assert t.steps[0].messages == [{"role": "user", "content": Q}]
    assert t.final == "The answer is rb." and t.answer == "rb" and t.tokens == 4


def test_rar_1step_prompt_is_the_papers(task):
    backend = ScriptedBackend(lambda p, j: "Reworded... so the answer is rb")
    REGISTRY["rar_1step"](task).run([EX], backend, SamplingParams())
    assert backend.calls[0][0] == [Q + "\nReword and elaborate on the inquiry, then provide an answer."]


def test_rar_2step_chains_rephrasings_and_counts_both_steps(task):
    def reply(prompt, j):
        if prompt.startswith(Q):
            return f"rephrased question {j}"
        return "So the answer is rb" if prompt.endswith("0") else "the answer is xy"

    backend = ScriptedBackend(reply)
    (traces,) = REGISTRY["rar_2step"](task).run([EX], backend, SamplingParams(n=2, temperature=0.7, seed=5))
    step1_prompt = backend.calls[0][0][0]
    assert step1_prompt == (Q + "\nBased on the details given in the initial inquiry, could you kindly rephrase the "
                            "question and separate these 2 words in the revised question? Please ensure these 2 words "
                            "remain unchanged from the original question.")
    assert backend.calls[1][0] == ["rephrased question 0", "rephrased question 1"]
    assert backend.calls[1][1].n == 1 and backend.calls[1][1].seed == 6
    assert [t.answer for t in traces] == ["rb", "xy"]
    assert [s.name for s in traces[0].steps] == ["rephrase", "respond"]
    assert traces[0].tokens == 3 + 5  # both steps' generated tokens


def test_rar_2step_coin_flip_variant():
    task = TASKS["coin_flip"](train_size=2, test_size=2)
    ex = Example("c0", "A coin is heads up. Ka flips the coin. Is the coin still heads up?")
    backend = ScriptedBackend(lambda p, j: "Is it heads up?" if "rephrase" in p else "No.")
    (traces,) = REGISTRY["rar_2step"](task).run([ex], backend, SamplingParams())
    assert "could you please rephrase it and expand it" in backend.calls[0][0][0]
    assert backend.calls[1][0] == ["Is it heads up? Answer the Yes or No question."]
    assert traces[0].answer == "no"


def test_prompt_overrides_and_errors(task):
    m = REGISTRY["system1"](task, {"answer": "Q: {question}\nA:"})
    assert m.prompt("answer", EX)[0]["content"] == f"Q: {Q}\nA:"
    with pytest.raises(UserError, match="has no prompt 'answr'"):
        REGISTRY["system1"](task, {"answr": "x"})
    with pytest.raises(UserError, match="unknown placeholder 'nme'"):
        REGISTRY["system1"](task, {"answer": "{nme}"}).prompt("answer", EX)


def test_cot_prompt(task):
    text = REGISTRY["cot"](task).prompt("answer", EX)[0]["content"]
    assert text.startswith("Your task is to answer the question below.") and text.endswith(f"Question: {Q}\nSolution:")
