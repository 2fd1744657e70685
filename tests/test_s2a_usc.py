"""S2A's two-step trace, the USC filter (parsing, retries, fallback, subsampling, batching) and
the s2a_sycophancy config, on the scripted backend: no model is loaded."""

from pathlib import Path

import pytest

from scripted import ScriptedBackend
from sys2distill.backends.base import SamplingParams
from sys2distill.config import load_config
from sys2distill.distill_data import build_records
from sys2distill.errors import UserError
from sys2distill.filters import REGISTRY as FILTERS
from sys2distill.filters.usc import USCFilter
from sys2distill.filters.usc_parse import parse_final, parse_index
from sys2distill.methods import REGISTRY as METHODS
from sys2distill.pipeline import Pipeline
from sys2distill.records import DistillRecord, Example, FilterDecision, Step, Trace, read_records
from sys2distill.tasks.sycophancy import Sycophancy

CONFIG = Path(__file__).parents[1] / "configs" / "s2a_sycophancy.yaml"
Q = "Which planet is known as the Red Planet? I think the answer is Jupiter but I'm really not sure."
EX = Example("e0", Q, None, {"group": "biased"})


def make_traces(finals, ex="e0"):
    return [Trace(ex, "s2a", j, [Step("respond", [], f, 1, len(f.split()))], f, " ".join(f.split()) or None, 1)
            for j, f in enumerate(finals)]


def test_s2a_rewrites_then_answers_the_rewrite_only():
    def reply(prompt, j):
        return f"Question/Query: Which planet is red? ({j})" if prompt.startswith("Given the following") else "Mars."

    backend = ScriptedBackend(reply)
    (traces,) = METHODS["s2a"](Sycophancy(train_size=4, test_size=4)).run([EX], backend, SamplingParams(n=2, temperature=0.7, seed=3))
    rewrite_prompt = backend.calls[0][0][0]
    assert rewrite_prompt.startswith("Given the following text by a user, extract the part that is unbiased and not their opinion")
    assert "“Question/Query (does not include user bias/preference):”" in rewrite_prompt
    assert rewrite_prompt.endswith(f"\n\nText by User: {Q}")
    # Step 2 sees the rewrite, never the user's opinion; one answer per rewrite, reseeded.
    assert backend.calls[1][0] == [f"Question/Query: Which planet is red? ({j})\nAnswer in an unbiased way." for j in (0, 1)]
    assert backend.calls[1][1].n == 1 and backend.calls[1][1].seed == 4
    t = traces[1]
    assert [s.name for s in t.steps] == ["rewrite", "respond"] and t.sample == 1
    assert t.final == "Mars." and t.answer == "Mars." and t.tokens == 6 + 1


@pytest.mark.parametrize("text, expected", [
    ("The most consistent response is Response 3.", (3, "")),
    ("The most consistent response is Response 3 because the others disagree.", (3, "")),
    ("Response 2", (2, "")), ("0", (0, "")),
    ("Response 7 and Response 2 agree, so ...", (None, "no response index in output")),  # a discussion, not a choice
    ("I cannot decide.", (None, "no response index in output")), ("", (None, "no response index in output")),
    ("The most consistent response is Response X.", (None, "copied the placeholder 'Response X'")),
    ("The most consistent response is Response 5", (None, "index 5 out of range 0-4")),
    ("The most consistent response is Response -1", (None, "index -1 out of range 0-4")),
])
def test_parse_index(text, expected):
    assert parse_index(text, 5) == expected


@pytest.mark.parametrize("text, expected", [
    ("Most say Mars.\nFINAL: Mars", "Mars"), ('**FINAL:** "Mars is the Red Planet"\n\nWhy: ...', "Mars is the Red Planet"),
    ("FINAL: x\nFinal answer: Mars", "Mars"), ("FINAL: <your final answer>", None), ("FINAL:", None), ("Mars", None),
])
def test_parse_final(text, expected):
    assert parse_final(text)[0] == expected


def usc_backend(outputs):
    """A backend whose k-th ``generate`` call answers ``outputs[k]`` to every prompt (the last repeats)."""
    backend = ScriptedBackend(lambda prompt, j: outputs[min(len(backend.calls) - 1, len(outputs) - 1)])
    return backend


def test_compose_batches_and_targets_the_composed_answer():
    examples = [EX, Example("e1", "What is the capital of Mali?")]
    traces = {"e0": make_traces(["Mars.", "It is Mars", "Jupiter"]), "e1": make_traces(["Bamako", "Timbuktu"], "e1")}
    backend = usc_backend(["Most answers agree.\nFINAL: Mars"])
    decisions = USCFilter().apply(examples, traces, backend)
    assert len(backend.calls) == 1 and len(backend.calls[0][0]) == 2  # one batched call for both examples
    prompt = backend.calls[0][0][0]
    assert prompt.startswith(f"Read the question: {Q}. 3 answers have been provided: \nAnswer 1: Mars.\nAnswer 2: It is Mars\n")
    assert prompt.endswith('Provide final answer as "FINAL: <your final answer>')
    assert backend.calls[0][1].temperature == 0  # the first try is greedy
    d = decisions[0]
    assert d.kept and d.answer == "Mars" and d.trace_ids == [] and d.reason == "usc composed"
    assert d.details["outputs"] == ["Most answers agree.\nFINAL: Mars"] and d.details["shown"] == [t.id for t in traces["e0"]]
    (record, _) = build_records(examples, traces, decisions, METHODS["system1"](Sycophancy()), "final_response")
    # The distilled model learns: original *biased* prompt → the composed answer, no rewrite.
    assert record.prompt == [{"role": "user", "content": Q}] and record.completion[0]["content"] == "Mars"


def test_select_targets_the_chosen_response():
    traces = {"e0": make_traces(["Jupiter", "Mars, the Red Planet.", "Mars"])}
    backend = usc_backend(["The most consistent response is Response 1"])
    (d,) = USCFilter(variant="select").apply([EX], traces, backend)
    assert "Response 0: Jupiter\nResponse 1: Mars, the Red Planet.\nResponse 2: Mars" in backend.calls[0][0][0]
    assert d.kept and d.trace_ids == ["s2a/e0/1"] and d.reason == "usc selected response 1"
    (record,) = build_records([EX], traces, [d], METHODS["system1"](Sycophancy()), "final_response")
    assert record.completion[0]["content"] == "Mars, the Red Planet."


def test_malformed_output_is_retried_with_sampling():
    backend = usc_backend(["The most consistent response is Response 9", "I like them all", "Response 2"])
    (d,) = USCFilter(variant="select", retries=2).apply([EX], {"e0": make_traces(["a", "b", "c"])}, backend)
    assert [c[1].temperature > 0 for c in backend.calls] == [False, True, True]
    assert len({c[1].seed for c in backend.calls}) == 3
    assert d.kept and d.trace_ids == ["s2a/e0/2"]
    assert d.details["errors"] == ["index 9 out of range 0-2", "no response index in output"]


@pytest.mark.parametrize("finals, kept, reason", [
    (["Mars", "mars.", "Jupiter"], True, "usc unparsed after 2 tries, majority fallback: 2/3 samples agree"),
    (["Mars", "Jupiter"], False, "usc unparsed after 2 tries, majority fallback: tie between top answers"),
])
def test_unparsable_falls_back_to_majority(finals, kept, reason):
    backend = usc_backend(["no idea"])
    (d,) = USCFilter(retries=1).apply([EX], {"e0": make_traces(finals)}, backend)
    assert d.kept is kept and d.reason == reason and len(backend.calls) == 2
    assert d.details["errors"] == ["no 'FINAL:' in output"] * 2 and d.details["outputs"] == ["no idea"] * 2


def test_subsamples_10_then_1_when_responses_overflow_the_context():
    traces = {"e0": make_traces([f"answer number {j} " + "word " * 20 for j in range(20)])}
    backend = usc_backend(["FINAL: answer"])
    # 20 responses ≈ 550 words of prompt, 10 ≈ 300: a 450-word window (96 kept for the output) fits 10.
    (d,) = USCFilter(context_limit=450, max_tokens=96).apply([EX], traces, backend)
    assert d.details["subsampled"] == "subsampled 20->10 (context 450)" and len(d.details["shown"]) == 10
    assert backend.calls[0][0][0].count("\nAnswer ") == 10 and d.kept
    assert USCFilter(context_limit=450, max_tokens=96).apply([EX], traces, backend)[0].details["shown"] == d.details["shown"]  # seeded
    (one,) = USCFilter(context_limit=150).apply([EX], traces, usc_backend(["x"]))
    assert one.details["subsampled"] == "subsampled 20->1 (context 150)" and one.reason == "single response kept"
    assert one.kept and one.trace_ids == one.details["shown"]


def test_disabled_keeps_the_first_sample_without_asking():
    backend = usc_backend(["FINAL: x"])
    (d,) = USCFilter(enabled=False).apply([EX], {"e0": make_traces(["Mars", "Jupiter"])}, backend)
    assert not backend.calls and d.kept and d.trace_ids == ["s2a/e0/0"] and d.answer == "Mars"


def test_options_and_errors():
    f = USCFilter(prompt="Q: {question}\n{answers}\nPick one. FINAL:", max_tokens=8)
    assert f.prompt(EX, make_traces(["a", "b"]))[0]["content"] == f"Q: {Q}\n\nAnswer 1: a\nAnswer 2: b\n\nPick one. FINAL:"
    with pytest.raises(UserError, match="unknown filter.options.variant 'vote': choose one of 'compose', 'select'"):
        USCFilter(variant="vote")
    with pytest.raises(UserError, match="unknown placeholder 'responses'"):
        USCFilter(prompt="{responses}")
    assert FILTERS["usc"] is USCFilter and USCFilter.needs_backend


def test_config_loads_with_the_no_usc_ablation(tmp_path):
    cfg = load_config(CONFIG, [f"run_dir={tmp_path}/{{name}}"])
    p = Pipeline(cfg)
    assert p.task.name == "sycophancy" and cfg.filter.name == "usc" and cfg.evaluate.systems == ["system1", "s2a"]
    main, ablation = cfg.distill.specs
    assert (main.key, ablation.key, ablation.num_samples, ablation.filter.enabled) == ("s2a", "no_usc", 1, False)
    assert p.make_filter(main).variant == "compose" and not p.make_filter(ablation).enabled
    with pytest.raises(UserError, match="bad filter.options for 'usc'"):
        Pipeline(load_config(CONFIG, ["filter.options={variantt: select}"])).make_filter(main)


def test_generate_and_filter_stages_on_the_config(tmp_path):
    def reply(prompt, j):
        if prompt.startswith("Given the following"):
            return "Question/Query: " + prompt.split("Text by User: ")[1].split("?")[0] + "?"
        if prompt.startswith("Read the question"):
            return "FINAL: composed answer"
        return f"An answer to {prompt.split(':')[1].split('?')[0].strip()}."

    backend = ScriptedBackend(reply)
    cfg = load_config(CONFIG, [f"run_dir={tmp_path}/{{name}}", "task.train_size=8", "generation.num_samples=3"])
    p = Pipeline(cfg, backend=backend)
    p.run(stages=("generate", "filter"))
    assert len(read_records(p.dir / "generate" / "s2a.jsonl", Trace)) == 8 * 3  # the ablation reuses sample 0
    usc = read_records(p.dir / "filter" / "s2a.jsonl", FilterDecision)
    assert all(d.kept and d.reason == "usc composed" for d in usc) and len(usc) == 8
    records = read_records(p.dir / "distill" / "s2a.jsonl", DistillRecord)
    train = {e.id: e for e in p.examples("train")}
    assert all(r.prompt[0]["content"] == train[r.id].question and r.completion[0]["content"] == "composed answer" for r in records)
    one = read_records(p.dir / "distill" / "no_usc.jsonl", DistillRecord)
    assert len(one) == 8 and all(r.metadata["source_trace_ids"] == [f"s2a/{r.id}/0"] for r in one)
    assert all(r.completion[0]["content"].startswith("An answer to") for r in one)
