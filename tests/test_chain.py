"""Chains (methods/chain.py): the built-in methods as YAML send the same prompts and draw the same
samples; branches; every mistake in a chain is one line before any model is loaded."""

import hashlib
from dataclasses import asdict

import pytest
import yaml

from scripted import ScriptedBackend
from sys2distill.backends.base import SamplingParams
from sys2distill.config import ChainConfig, load_config, read_chain
from sys2distill.errors import UserError
from sys2distill.methods import REGISTRY as METHODS
from sys2distill.methods.chain import Chain
from sys2distill.pipeline import Pipeline
from sys2distill.tasks import REGISTRY as TASKS


def reply(prompt: str, j: int) -> str:
    """A different text per prompt and sample index, so a wrong prompt or draw shows in the trace."""
    return f"out {hashlib.sha256(prompt.encode()).hexdigest()[:6]} {j} The answer is 7."


def chain(ref: str, task) -> Chain:
    return Chain(ref, ChainConfig.model_validate(read_chain(ref)), task)


def comparable(traces):
    return [[{k: v for k, v in asdict(t).items() if k != "method"} for t in row] for row in traces]


@pytest.mark.parametrize("chain_file, method, task, options", [
    ("rar_1step", "rar_1step", "last_letter", {}),
    ("rar_2step_last_letter", "rar_2step", "last_letter", {"num_words": 3}),
    ("rar_2step", "rar_2step", "gsm8k", {}),
    ("s2a", "s2a", "sycophancy", {}),
    ("cot", "cot", "gsm8k", {}),
])
def test_builtin_methods_as_chains_send_identical_prompts_and_draws(chain_file, method, task, options):
    t = TASKS[task](train_size=3, test_size=3, **options)
    examples = t.load("test")
    params = SamplingParams(n=3, temperature=0.7, max_tokens=9, seed=5, first_sample=2)
    builtin, chained = ScriptedBackend(reply), ScriptedBackend(reply)
    expected = METHODS[method](t).run(examples, builtin, params)
    got = chain(chain_file, t).run(examples, chained, params)
    assert chained.calls == builtin.calls  # every prompt text and every call's sampling parameters
    assert comparable(got) == comparable(expected)  # steps (names, messages, outputs, tokens), answers, samples
    assert {tr.method for row in got for tr in row} == {chain_file}


def test_chain_draws_the_same_samples_as_rar_2step_on_a_model(embedded_tokenizer, tiny_model):
    """On a real (tiny random) model: same chat-templated prompts and per-sample seeds, so same texts."""
    from sys2distill.backends.hf import HFBackend

    task = TASKS["last_letter"](train_size=2, test_size=2)
    backend = HFBackend(loaded=(tiny_model(embedded_tokenizer, initializer_range=1.0), embedded_tokenizer), batch_size=8)
    examples = task.load("test")
    params = SamplingParams(n=2, temperature=1.0, top_p=0.95, max_tokens=6, seed=3, first_sample=1)
    expected = METHODS["rar_2step"](task).run(examples, backend, params)
    got = chain("rar_2step_last_letter", task).run(examples, backend, params)
    assert comparable(got) == comparable(expected)
    assert len({t.steps[1].output for row in got for t in row}) > 1  # the draws differ: seeds matter here


def test_branches_are_drawn_per_sample_and_merged():
    task = TASKS["gsm8k"](train_size=1, test_size=2)
    spec = ChainConfig.model_validate({"steps": [
        {"name": "idea", "prompt": "Idea for: {question}", "n": 2, "join": "\n--\n", "max_tokens": 5},
        {"name": "merge", "prompt": "{question}\nIdeas:\n{idea}\nCombine them.", "stop": ["\n\n"]},
    ]})
    backend = ScriptedBackend(lambda p, j: f"draw {j}" if p.startswith("Idea") else "So 4 + 3 = 7. The answer is 7.")
    examples = task.load("test")
    traces = Chain("ideas", spec, task).run(examples, backend, SamplingParams(n=2, temperature=0.7, seed=4, first_sample=1))
    # Sample j's branches are draws 2j and 2j + 1: sample 1 → draws 2, 3; sample 2 → draws 4, 5.
    first = traces[0]
    assert [s.name for s in first[0].steps] == ["idea#1", "idea#2", "merge"]
    assert [s.output for s in first[0].steps[:2]] == ["draw 2", "draw 3"]
    assert [s.output for s in first[1].steps[:2]] == ["draw 4", "draw 5"]
    assert first[1].steps[2].messages[0]["content"] == f"{examples[0].question}\nIdeas:\ndraw 4\n--\ndraw 5\nCombine them."
    assert [t.sample for t in first] == [1, 2] and first[0].answer == "7"
    assert first[0].tokens == 2 + 2 + 10  # both branches and the merge (words, in the scripted backend)
    idea_call, merge_call = backend.calls
    assert (idea_call[1].n, idea_call[1].first_sample, idea_call[1].max_tokens, idea_call[1].seed) == (4, 2, 5, 4)
    assert (merge_call[1].n, merge_call[1].first_sample, merge_call[1].seed, merge_call[1].stop) == (1, 0, 5, ("\n\n",))
    assert len(merge_call[0]) == 4  # one merge per (example, sample)


def test_system_message_and_own_temperature():
    task = TASKS["gsm8k"](train_size=1, test_size=1)
    spec = ChainConfig.model_validate({"steps": [{"name": "a", "prompt": "{question}", "system": "Be brief.",
                                                  "temperature": 0.9}]})
    backend = ScriptedBackend(lambda p, j: "7")
    (traces,) = Chain("c", spec, task).run(task.load("test"), backend, SamplingParams(temperature=0.0))
    assert traces[0].steps[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert backend.calls[0][1].temperature == 0.9


def pipeline(tmp_path, chains, *extra):
    (tmp_path / "chains.yaml").write_text(yaml.safe_dump({"chains": chains}))
    return Pipeline(load_config(tmp_path / "chains.yaml", [f"run_dir={tmp_path}/run", "task.name=last_letter",
                                                           "distill.methods=[system1, c]", "evaluate.systems=[c]", *extra]))


@pytest.mark.parametrize("steps, message", [
    ([{"name": "a", "prompt": "{question} {b}"}, {"name": "b", "prompt": "{a}"}],
     r"step 'a' uses \{b\}, the output of a later step: .* move step 'b' before 'a'"),
    ([{"name": "a", "prompt": "{a}"}], r"step 'a' uses \{a\}, the output of itself"),
    ([{"name": "rephrase", "prompt": "{question}"}, {"name": "b", "prompt": "{rephrased}"}],
     r"uses \{rephrased\}, which is no step, task field or \{question\}: did you mean \{rephrase\}\?"),
    ([{"name": "a", "prompt": "{question}", "n": 3}], r"cannot have n > 1: add a step that merges"),
    ([{"name": "a", "prompt": "{question}"}, {"name": "a", "prompt": "{question}"}], "two steps share this name"),
    ([{"name": "num_words", "prompt": "{question}"}], "a step name must be a plain identifier other than question, num_words"),
    ([{"name": "a", "prompt": "{} {question}"}], "positional placeholder"),
    ([{"name": "a", "prompt": "{question"}], "prompt is not a valid template"),
])
def test_chain_mistakes_are_one_line_before_any_model_loads(tmp_path, monkeypatch, steps, message):
    import sys2distill.models as models

    monkeypatch.setattr(models, "load_model_and_tokenizer", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(UserError, match=message):
        pipeline(tmp_path, {"c": {"steps": steps}})


def test_task_fields_are_placeholders_and_names_are_checked(tmp_path):
    ok = pipeline(tmp_path, {"c": {"steps": [{"name": "a", "prompt": "{question} ({num_words} words)"}]}})
    assert ok.method("c").label == "c"
    with pytest.raises(UserError, match="has the name of a built-in method"):
        pipeline(tmp_path, {"cot": {"steps": [{"name": "a", "prompt": "{question}"}]}}, "distill.methods=[cot]")
    with pytest.raises(UserError, match="chain 'c' has its prompts and options in its steps"):
        pipeline(tmp_path, {"c": {"steps": [{"name": "a", "prompt": "{question}"}]}}, "prompts={c: {a: x}}")
    with pytest.raises(UserError, match="unknown method or chain 'rephrase_answr': did you mean 'rephrase_answer'"):
        pipeline(tmp_path, {"rephrase_answer": {"steps": [{"name": "a", "prompt": "{question}"}]}},
                 "distill.methods=[system1]", "evaluate.systems=[rephrase_answr]")


def test_chain_files_are_read_into_the_config(tmp_path, monkeypatch):
    """A chain file is found from the config's folder; the run folder's config then holds its prompts."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two.yaml").write_text(yaml.safe_dump({"label": "Two", "steps": [
        {"name": "plan", "prompt": "{question}\nPlan."}, {"name": "answer", "prompt": "{plan}\nAnswer."}]}))
    (tmp_path / "sub" / "run.yaml").write_text("chains:\n  two: two.yaml\n  rar: rar_2step\ndistill:\n  methods: [two]\n")
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = load_config("sub/run.yaml")
    assert cfg.chains["two"].label == "Two" and [s.name for s in cfg.chains["two"].steps] == ["plan", "answer"]
    assert cfg.chains["rar"].steps[0].name == "rephrase"  # a shipped chain, by name
    from sys2distill.config import dump_config

    (tmp_path / "again.yaml").write_text(dump_config(cfg))
    assert load_config(tmp_path / "again.yaml") == cfg
    with pytest.raises(UserError, match="chain file nope.yaml not found"):
        load_config("sub/run.yaml", ["chains.x=nope.yaml"])
    with pytest.raises(UserError, match="did you mean 'max_tokens'"):
        load_config(None, ["chains={c: {steps: [{name: a, prompt: x, max_token: 3}]}}"])


def test_editing_a_chain_invalidates_its_generated_traces(tmp_path):
    steps = [{"name": "a", "prompt": "{question}"}]
    p = pipeline(tmp_path, {"c": {"steps": steps}})
    from sys2distill import rundir

    rundir.write_record(p.dir, "generate", {"config": p._fingerprint("generate"), "done": True})
    assert not pipeline(tmp_path, {"c": {"steps": steps}})._plan("generate").run  # finished: skipped
    with pytest.raises(UserError, match="'generate' stage made with different chains"):
        pipeline(tmp_path, {"c": {"steps": [{"name": "a", "prompt": "{question}\nThink."}]}})._plan("generate")
