"""The router (config ``route``): its label-free threshold, its curve, and its rows in a run."""

import json
import math

import pytest
from test_pipeline import make, tiny  # noqa: F401  (tiny: the fixture)

from sys2distill import router
from sys2distill.answering import Answer, answer_file
from sys2distill.errors import UserError
from sys2distill.evaluator import EvalRow
from sys2distill.records import Trace, read_records


def test_the_threshold_is_chosen_without_labels_against_system2s_majority():
    confidence = [0.9, 0.8, 0.3, 0.2]
    distilled = ["a", "b", "x", "y"]  # sure and right on the first two, unsure and wrong on the last two
    greedy2 = ["a", "b", "c", "d"]
    majority2 = ["a", "b", "c", None]  # the last input has no majority: it counts for nothing
    # System 2's greedy answer agrees with its majority on all 3 inputs that have one; sending the two unsure
    # inputs to System 2 (threshold 0.8: below it, System 2) matches that, and fewer does not.
    c = router.choose(confidence, distilled, greedy2, majority2, max_agreement_loss=0.0)
    assert (c.threshold, c.fallback_share, c.agreement, c.system2_agreement) == (0.8, 0.5, 1.0, 1.0)
    loose = router.choose(confidence, distilled, greedy2, majority2, max_agreement_loss=0.34)
    assert (loose.threshold, loose.fallback_share) == (0.2, 0.0)  # 2 of 3 agree: within 34 points of 100%
    budget = router.choose(confidence, distilled, greedy2, majority2, budget=0.25)
    assert (budget.threshold, budget.fallback_share) == (0.3, 0.25)  # the most System 2 answers a quarter allows
    everything = router.choose([0.5, 0.5], ["x", "y"], ["a", "b"], ["a", "b"], max_agreement_loss=0.0)
    assert everything.threshold == math.inf and everything.fallback_share == 1.0  # always reachable


def test_the_curve_runs_from_the_distilled_model_to_system2_and_counts_both_costs():
    points = router.curve([0.9, 0.4, 0.1], [True, False, False], [3, 3, 3], [True, True, False], [20, 20, 20])
    got = [x for p in points for x in (p.fallback_share, p.accuracy, p.mean_tokens)]
    assert got == pytest.approx([0.0, 1 / 3, 3.0, 1 / 3, 1 / 3, 3 + 20 / 3, 2 / 3, 2 / 3, 3 + 40 / 3, 1.0, 2 / 3, 23.0])
    assert router.agreement_confidence("a", ["a", "b", "a", None]) == 0.5 and router.agreement_confidence(None, ["a"]) == 0


def test_the_router_is_scored_as_a_system_and_added_to_a_finished_run(tmp_path, tiny):  # noqa: F811
    p = make(tmp_path, tiny)
    p.run()
    d = p.dir
    stamps = {f: f.stat().st_mtime_ns for f in [*d.glob("generate/*.jsonl"), *d.glob("train/*/DONE.json")]}
    results = make(tmp_path, tiny, "route={holdout: 10, budget: 0.5}").run()
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps  # only the router's work is done
    rows = read_records(d / "evaluate" / "rows.jsonl", EvalRow)
    by = {(r.system, r.id): r for r in rows}
    routed = [r for r in rows if r.kind == "route"]
    assert len(routed) == 4 and {r.system for r in routed} == {"route_rar_2step"}
    choice = json.loads((d / "evaluate" / "route_rar_2step.json").read_text())
    for r in routed:
        distilled, system2 = by["distill_rar_2step", r.id], by["rar_2step", r.id]
        assert r.routed == (r.confidence < (choice["choice"]["threshold"] or math.inf))
        assert r.answer == (system2 if r.routed else distilled).answer
        assert r.tokens == distilled.tokens + (system2.tokens if r.routed else 0)
        assert 0 <= r.confidence <= 1
    # The threshold came from inputs past the train split: neither distilled on nor test inputs, and unlabeled.
    held = [t.example_id for t in read_records(d / "evaluate" / "route_rar_2step" / "holdout_distilled.jsonl", Trace)]
    train = {json.loads(line)["id"] for line in (d / "data" / "train.jsonl").open()}
    assert len(held) == 10 and not set(held) & train and choice["holdout"] == 10
    assert choice["choice"]["fallback_share"] <= 0.5 and len(choice["curve"]) >= 2
    (route,) = results.routes
    assert route.label == "Router: Distilled RaR 2-step → RaR 2-step" and route.against_system2.n == 4
    md = (d / "results.md").read_text()
    assert "## Router: Distilled RaR 2-step → RaR 2-step" in md
    assert ("It costs more than RaR 2-step alone" in md) == (route.mean_tokens > route.system2_mean_tokens)
    # The same router on new inputs (sys2distill answer --system route): its threshold, System 2 where unsure.
    inputs = tmp_path / "new.jsonl"
    inputs.write_text("".join(json.dumps({"question": f"Take the last letters of the words in \"A{i} B{i}\" and "
                                                      "concatenate them.", "num_words": 2}) + "\n" for i in range(6)))
    answers = read_records(answer_file(make(tmp_path, tiny, "route={holdout: 10, budget: 0.5}"), inputs, "route"), Answer)
    threshold = choice["choice"]["threshold"] or math.inf
    assert [a.routed for a in answers] == [a.confidence < threshold for a in answers]
    fallback = {t.example_id: t for t in read_records(d / "answers" / "new.route.traces_rar_2step.jsonl", Trace)}
    assert set(fallback) == {a.id for a in answers if a.routed}
    assert all(a.output == fallback[a.id].final for a in answers if a.routed)
    with pytest.raises(UserError, match="has no router: run `sys2distill run"):
        answer_file(make(tmp_path, tiny), inputs, "route")
    with pytest.raises(UserError, match="route.entry 'nope' is not a trained distill entry of this run"):
        make(tmp_path, tiny, "route={entry: nope}").run()


def test_a_task_whose_longer_train_split_is_not_an_extension_is_refused(tmp_path, tiny, monkeypatch):  # noqa: F811
    from sys2distill.stages import routing
    from sys2distill.tasks.last_letter import LastLetter

    p = make(tmp_path, tiny, "distill.methods=[rar_2step]", "evaluate.systems=[system1,rar_2step]")
    p.run()
    original = LastLetter.load
    monkeypatch.setattr(LastLetter, "load", lambda self, split: original(self, split)[::-1] if self.train_size > 6
                        else original(self, split))
    with pytest.raises(UserError, match="draws a longer train split that does not begin with this run's train inputs"):
        routing.holdout_inputs(p.ctx, 10)
