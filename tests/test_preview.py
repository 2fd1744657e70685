"""show-prompt's step previews: every model call in run order, earlier outputs as placeholders, the
model's own chat template; and `init`'s mistakes as one line with nothing written."""

from sys2distill.methods import REGISTRY as METHODS
from sys2distill.preview import preview_steps, render
from sys2distill.tasks import REGISTRY as TASKS


def test_steps_in_run_order_with_placeholders():
    task = TASKS["last_letter"](train_size=1, test_size=1)
    ex = task.load("test")[0]
    rephrase, respond = preview_steps(METHODS["rar_2step"](task), ex)
    assert (rephrase.name, rephrase.needs) == ("rephrase", []) and ex.question in rephrase.messages[0]["content"]
    assert (respond.name, respond.needs) == ("respond", ["rephrase"])
    assert respond.messages == [{"role": "user", "content": "<output of step rephrase>"}]
    judge = TASKS["pairwise_judge"](train_size=1, test_size=1, eval_sets=[])
    steps = preview_steps(METHODS["bsm"](judge), judge.load("test")[0])
    assert [s.name for s in steps] == ["branch", "solve: <from step branch>", "merge"]
    assert steps[2].needs == ["branch", "solve: <from step branch>"] and "\x00" not in str(steps)


def test_render_is_what_the_hf_backend_sends(embedded_tokenizer, tiny_model):
    from sys2distill.backends.hf import HFBackend

    backend = HFBackend(loaded=(tiny_model(embedded_tokenizer), embedded_tokenizer))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}]
    assert render(embedded_tokenizer, messages) == backend.render(messages)
    assert render(embedded_tokenizer, messages[1:]).startswith("<|im_start|>system\n")  # the template's own default


def test_init_mistakes_are_one_line_and_write_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sys2distill.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"q": "2 + 2?", "a": "4"}\n' * 5)
    base = ["init", "--data", "d.jsonl", "--out", "c.yaml"]
    for args, message in [
        (["--question", "{question}", "--answer", "a", "--answer-type", "number"],
         "task.options.question names field 'question', which d.jsonl row"),
        (["--question", "{q}"], "pass --answer FIELD"),
        (["--question", "{q}", "--answer", "a", "--answer-type", "yes_no"], "gold answer '4' is not yes/no"),
        (["--question", "{q}", "--answer", "a", "--answer-type", "number", "--method", "rar3"], "--method 'rar3' is neither"),
        (["--question", "{q}", "--answer", "a", "--answer-type", "number", "--method", "no.yaml"], "chain file no.yaml not found"),
    ]:
        r = CliRunner().invoke(app, [*base, *args])
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert not (tmp_path / "c.yaml").exists()
    ok = CliRunner().invoke(app, [*base, "--question", "{q}", "--answer", "a", "--answer-type", "number", "--method", "cot"])
    assert ok.exit_code == 0, ok.stderr
    assert "target: answer_only" in (tmp_path / "c.yaml").read_text()  # CoT distils the voted answer, not its reasoning
    again = CliRunner().invoke(app, [*base, "--question", "{q}", "--answer", "a", "--answer-type", "number"])
    assert again.exit_code == 2 and "c.yaml exists" in again.stderr
