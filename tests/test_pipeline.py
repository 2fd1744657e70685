"""The whole pipeline on a tiny random model with the embedded model's real tokenizer."""

import json

import pytest

from sys2distill.config import load_config
from sys2distill.errors import UserError
from sys2distill.pipeline import Pipeline
from sys2distill.evaluator import EvalRow, FilterCheck
from sys2distill.records import DistillRecord, FilterDecision, Trace, read_records
from sys2distill.tasks.last_letter import LastLetter

OVERRIDES = [
    "task.name=last_letter", "task.train_size=6", "task.test_size=4",
    "generation.num_samples=2", "generation.temperature=0", "generation.max_tokens=6", "generation.chunk_sequences=8",
    "distill.methods=[system1,rar_2step,{method: rar_2step, name: one_sample, num_samples: 1, filter: {enabled: false}}]",
    "train.max_steps=2", "train.batch_size=4",
    "evaluate.systems=[system1,rar_1step,rar_2step]", "evaluate.max_tokens=6", "evaluate.fidelity_samples=2",
    "backend.batch_size=8",
]


@pytest.fixture
def tiny(embedded_tokenizer, tiny_model, monkeypatch):
    # A random model writes random tokens: let any last word count as an answer so the
    # filter keeps inputs and the train stage has data. Extraction has its own tests.
    monkeypatch.setattr(LastLetter, "extract_answer", lambda self, text: text.split()[-1] if text.split() else "empty")
    return tiny_model(embedded_tokenizer), embedded_tokenizer


def make(tmp_path, tiny, *extra):
    cfg = load_config(None, [*OVERRIDES, f"run_dir={tmp_path}/{{name}}", *extra])
    return Pipeline(cfg, loaded_base=tiny)


def test_end_to_end_then_resume(tmp_path, tiny):
    p = make(tmp_path, tiny)
    p.run()
    d = p.dir
    gen = read_records(d / "generate" / "rar_2step.jsonl", Trace)
    assert len(gen) == 6 * 2 and all(len(t.steps) == 2 for t in gen)
    assert all(t.tokens == sum(s.completion_tokens for s in t.steps) for t in gen)
    decisions = read_records(d / "filter" / "rar_2step.jsonl", FilterDecision)
    assert len(decisions) == 6 and all(dec.kept for dec in decisions)  # greedy samples agree
    records = read_records(d / "distill" / "rar_2step.jsonl", DistillRecord)
    by_id = {t.id: t for t in gen}
    for r in records:
        # Input = the System 1 prompt; target = the winning trace's final answer, no rephrasing.
        assert r.prompt[0]["content"].startswith("Take the last letters")
        assert r.completion[0]["content"] == by_id[r.metadata["source_trace_ids"][0]].final
        assert r.metadata["method"] == "rar_2step" and r.metadata["agreement"] == 1.0
    assert (d / "train" / "rar_2step" / "DONE.json").exists()

    results = json.loads((d / "results.json").read_text())
    labels = [s["label"] for s in results["scores"]]
    assert labels == ["System 1", "RaR 1-step", "RaR 2-step", "Distill System 1", "Distilled RaR 2-step",
                      "Distilled RaR 2-step (one_sample)"]
    # The one-sample ablation reuses the first of the generated samples: nothing extra generated.
    one = read_records(d / "distill" / "one_sample.jsonl", DistillRecord)
    assert all(r.metadata["source_trace_ids"] == [f"rar_2step/{r.id}/0"] for r in one)
    assert results["filter"]["one_sample"]["inputs"] == 6
    for s in results["scores"]:
        assert s["n"] == 4 and 0 <= s["accuracy"] <= 1
    rar2 = read_records(d / "evaluate" / "rar_2step.jsonl", Trace)
    assert results["scores"][2]["mean_tokens"] == pytest.approx(sum(t.tokens for t in rar2) / 4)
    assert results["scores"][4]["fidelity"] is not None
    assert set(results["stages"]) == {"generate", "filter", "train", "evaluate"}
    md = (d / "results.md").read_text()
    assert "| Distilled RaR 2-step |" in md and "Extraction rule" in md

    # One row per (system, test item), scored once: every number in results.json follows from them.
    rows = read_records(d / "evaluate" / "rows.jsonl", EvalRow)
    assert sorted((r.system, r.id) for r in rows) == sorted({(r.system, r.id) for r in rows}) and len(rows) == 6 * 4
    for s in results["scores"]:
        mine = [r for r in rows if r.system == s["system"]]
        assert s["accuracy"] == sum(r.correct for r in mine) / 4 and s["mean_tokens"] == sum(r.tokens for r in mine) / 4
    distilled = [r for r in rows if r.system == "distill_rar_2step"]
    assert {(r.kind, r.method, r.source, r.label) for r in distilled} == {
        ("distilled", "system1", "rar_2step", "Distilled RaR 2-step")}
    assert all(r.model == str(d / "train" / "rar_2step") and r.gold and r.steps for r in distilled)
    checks = read_records(d / "evaluate" / "filter_check.jsonl", FilterCheck)  # the filter's precision, from train labels
    kept = results["filter"]["rar_2step"]["kept"]
    assert len([c for c in checks if c.entry == "rar_2step"]) == kept
    assert results["filter"]["rar_2step"]["precision"] == sum(c.correct for c in checks if c.entry == "rar_2step") / kept
    assert [c["system"] for c in results["comparisons"]] == labels[1:]  # each paired with System 1
    golds = [r.gold for r in rows if r.system == "system1"]
    assert results["constant_baseline"][1] == max(golds.count(g) for g in golds) / 4

    # Rerun: every stage is found finished, nothing is regenerated or retrained.
    stamps = {f: f.stat().st_mtime_ns for f in d.rglob("*.jsonl")}
    done = (d / "train" / "rar_2step" / "DONE.json").read_text()
    again = make(tmp_path, tiny).run()  # the README's Python example after its CLI run: the finished results
    assert [s.label for s in again.scores] == labels and again.verdicts[0].sentence == results["verdicts"][0]["sentence"]
    assert {f: f.stat().st_mtime_ns for f in d.rglob("*.jsonl")} == stamps
    assert (d / "train" / "rar_2step" / "DONE.json").read_text() == done

    # A changed config on a finished stage is refused, not silently mixed in.
    # The command line on the finished run prints the table and the verdict, not only the folder.
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "sys2distill", "run", str(d / "config.yaml")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Distilled RaR 2-step" in r.stdout and results["verdicts"][0]["sentence"][:60] in " ".join(r.stdout.split())

    with pytest.raises(UserError, match="different generation"):
        make(tmp_path, tiny, "generation.max_tokens=7").run()
    # Redoing a later stage keeps the earlier ones.
    make(tmp_path, tiny, "evaluate.systems=[system1]").run(force=("evaluate", "report"))
    assert [s["system"] for s in json.loads((d / "results.json").read_text())["scores"]][0] == "system1"
    assert {f: f.stat().st_mtime_ns for f in (d / "generate").glob("*.jsonl")} == {
        f: t for f, t in stamps.items() if f.parent.name == "generate"}


def test_interrupted_generation_resumes(tmp_path, tiny):
    p = make(tmp_path, tiny, "distill.methods=[system1]")
    p.run(stages=("generate",))
    path = p.dir / "generate" / "system1.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5]) + lines[5][:20])  # killed mid-write of example 3
    marker = p.dir / "generate" / "STAGE.json"  # as a killed run leaves it: started, not done
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "done": False}))
    make(tmp_path, tiny, "distill.methods=[system1]").run(stages=("generate",))
    traces = read_records(path, Trace)
    assert sorted(t.id for t in traces) == sorted(f"system1/{e}/{j}" for e in {t.example_id for t in traces} for j in (0, 1))
    assert len(traces) == 12


def test_empty_dataset_is_a_clear_error_and_keeps_work(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(LastLetter, "extract_answer", lambda self, text: None)
    p = make(tmp_path, tiny, "distill.methods=[system1]")
    with pytest.raises(UserError, match=r"the filter kept none of the 6 inputs of distill entry 'system1' \(6 no answer "
                                        r"extracted\): set distill.on_empty=skip"):
        p.run()
    assert (p.dir / "generate" / "system1.jsonl").exists() and (p.dir / "filter" / "STAGE.json").exists()

    # distill.on_empty=skip: the same run, resumed, finishes with the empty entry reported as not trained.
    skip = make(tmp_path, tiny, "distill.methods=[system1]", "distill.on_empty=skip")
    skip.run()
    results = json.loads((skip.dir / "results.json").read_text())
    assert [s["label"] for s in results["scores"]] == ["System 1", "RaR 1-step", "RaR 2-step"]
    assert results["filter"]["system1"]["not_trained"] == "the filter kept no input"
    assert "not trained: the filter kept no input" in (skip.dir / "results.md").read_text()


def test_unknown_names_fail_fast(tmp_path):
    for bad, msg in [("task.name=last_leter", "unknown task 'last_leter': did you mean 'last_letter'"),
                     ("distill.methods=[rar2step]", "unknown method 'rar2step'"),
                     ("filter.name=usc2", "unknown filter 'usc2'"),
                     ("distill.methods=[{method: system1, filter: {name: majorty}}]", "unknown filter 'majorty'"),
                     ("distill.methods=[system1,{method: system1}]", "share the name 'system1'"),
                     ("task.options={num_wrds: 3}", "bad task.options for 'last_letter'")]:
        with pytest.raises(UserError, match=msg):
            Pipeline(load_config(None, [bad, f"run_dir={tmp_path}/x"]))


def test_forcing_a_stage_redoes_the_later_ones_and_task_changes_are_caught(tmp_path, tiny):
    p = make(tmp_path, tiny, "distill.methods=[system1]")
    p.run(stages=("generate", "filter"))
    assert (p.dir / "filter" / "STAGE.json").exists()
    with pytest.raises(UserError, match="started 'generate' stage made with different generation"):
        marker = p.dir / "generate" / "STAGE.json"
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "done": False}))
        make(tmp_path, tiny, "distill.methods=[system1]", "generation.max_tokens=5").run(stages=("generate",))
    make(tmp_path, tiny, "distill.methods=[system1]").run(stages=("generate",), force=("generate",))
    assert not (p.dir / "filter").exists()  # computed from the old traces: gone
    assert json.loads((p.dir / "generate" / "STAGE.json").read_text())["done"]
    with pytest.raises(UserError, match="data made with a different task"):
        make(tmp_path, tiny, "distill.methods=[system1]", "task.train_size=5").examples("train")


# Greedy samples agree. With 2 of 4 drawn and t = 0.5: Beta P(leader ahead) = 0.875; predictive
# P(decision holds) = 11/12 (only "b, b" next ties it); exact needs a lead > the 2 left, i.e. 3.
@pytest.mark.parametrize("rule, per_input", [("beta", 2), ("predictive", 2), ("exact", 3)])
def test_adaptive_generation_feeds_the_filter(tmp_path, tiny, rule, per_input):
    p = make(tmp_path, tiny, "distill.methods=[system1]", "generation.num_samples=4", "generation.adaptive=true",
             "generation.adaptive_min_samples=2", "generation.adaptive_confidence=0.8", f"generation.adaptive_rule={rule}",
             "filter.min_agreement=0.5")
    p.run(stages=("generate", "filter"))
    traces = read_records(p.dir / "generate" / "system1.jsonl", Trace)
    assert len(traces) == 6 * per_input
    decisions = read_records(p.dir / "filter" / "system1.jsonl", FilterDecision)
    assert all(d.kept and d.agreement == 1.0 for d in decisions)


def test_config_keys_added_later_keep_old_run_folders_valid(tmp_path, tiny):
    """A run folder made before a config field existed stays valid while that field holds its default."""
    p = make(tmp_path, tiny, "distill.methods=[system1]")
    p.run(stages=("generate",))
    marker = p.dir / "generate" / "STAGE.json"
    saved = json.loads(marker.read_text())
    del saved["config"]["generation.top_p"], saved["config"]["method_options"]  # as an older version wrote it
    marker.write_text(json.dumps(saved))
    make(tmp_path, tiny, "distill.methods=[system1]").run(stages=("generate",))  # accepted, nothing redone
    assert json.loads(marker.read_text()) == saved
    with pytest.raises(UserError, match="different generation.top_p"):
        make(tmp_path, tiny, "distill.methods=[system1]", "generation.top_p=0.9").run(stages=("generate",))


def test_write_granularity_is_not_part_of_a_stage_fingerprint(tmp_path, tiny):
    """How often generation writes to disk never changes its samples, so changing it (or an older
    run folder recording the old ``chunk_size`` key) must not make a finished stage stale."""
    p = make(tmp_path, tiny, "distill.methods=[system1]")
    p.run(stages=("generate",))
    marker = p.dir / "generate" / "STAGE.json"
    saved = json.loads(marker.read_text())
    assert not [k for k in saved["config"] if "chunk" in k]
    # As versions before per-key fingerprints wrote it: whole sections, with the write size's old name.
    dump = p.cfg.model_dump()
    saved["config"] = {k: dump[k] for k in ("model", "task", "prompts", "method_options", "chains")}
    saved["config"] |= {"backend.dtype": p._fingerprint("generate")["backend.dtype"], "distill.methods": ["system1"],
                        "generation": {**dump["generation"], "chunk_size": 16}}
    del saved["config"]["generation"]["chunk_sequences"]
    marker.write_text(json.dumps(saved))
    traces = (p.dir / "generate" / "system1.jsonl").read_bytes()
    make(tmp_path, tiny, "distill.methods=[system1]", "generation.chunk_sequences=3").run(stages=("generate",))
    assert (p.dir / "generate" / "system1.jsonl").read_bytes() == traces  # accepted as finished, nothing redone
    assert json.loads(marker.read_text()) == saved
