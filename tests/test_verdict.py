"""k-vote evaluation, the distillability verdict and the accuracy-vs-tokens plot, on plain lists."""

import pytest

from sys2distill.config import load_config
from scoring import score
from sys2distill.evaluator import vote
from sys2distill.plot import plot_accuracy_vs_tokens
from sys2distill.records import Example, Step, Trace
from sys2distill.tasks import REGISTRY
from sys2distill.verdict import verdict


def tr(ex, answer, tokens, j):
    return Trace(ex, "m", j, [Step("answer", [], str(answer), 1, tokens)], str(answer), answer, tokens)


@pytest.mark.parametrize("answers, expected", [
    (["18", "18", "7"], ("18", False)),
    (["7", "18", "18", "7"], ("7", True)),  # tie: the answer sampled first wins
    ([None, "5", None], ("5", False)),  # failed extractions vote for nobody
    (["Yes", "yes", "no"], ("Yes", False)),  # compared normalized, first spelling returned
    (["-5", "5", "-5"], ("-5", False)),  # a minus sign is part of the answer
    ([None, None], (None, False)),
])
def test_vote_with_ties(answers, expected):
    assert vote(answers) == expected


def test_kvote_uses_first_k_samples_and_counts_all_their_tokens():
    task = REGISTRY["gsm8k"](train_size=1, test_size=1)
    exs = [Example("a", "q", "18"), Example("b", "q", "7")]
    samples = {"a": [tr("a", "3", 10, 0), tr("a", "18", 20, 1), tr("a", "18", 30, 2)],
               "b": [tr("b", "7", 5, 0), tr("b", "1", 5, 1), tr("b", "2", 5, 2)]}
    greedy = {ex.id: v[:1] for ex, v in zip(exs, samples.values())}
    k1, k2, k3 = score(task, exs, greedy, "cot", "CoT", "system2", ks=[1, 2, 3], samples=samples).by_k
    assert (k1.k, k1.accuracy, k1.mean_tokens, k1.ties) == (1, 0.5, 7.5, 0.0)
    assert (k2.accuracy, k2.mean_tokens, k2.ties) == (0.5, 20.0, 1.0)  # both items tie at k=2
    assert (k3.accuracy, k3.mean_tokens, k3.ties) == (1.0, 37.5, 0.5)  # "18" wins 2-1; b's 3-way tie → "7"
    assert k3.accuracy_ci[1] == 1.0 and k3.accuracy_ci[0] > 0.1  # Wilson at 2/2: not the degenerate 1–1


def _verdict(s1, s2, d, s2_tokens, d_tokens):
    return verdict([bool(x) for x in s1], [bool(x) for x in s2], [bool(x) for x in d], s2_tokens, d_tokens,
                   labels=("Distilled CoT", "CoT", "System 1"))


def test_verdict_reports_gap_recovered_when_the_gap_is_clear():
    # 40 items: System 1 gets 8 right, System 2 28 (a superset), distilled 24 → (24 − 8) / (28 − 8) = 80%.
    s1, s2, d = [1] * 8 + [0] * 32, [1] * 28 + [0] * 12, [1] * 24 + [0] * 16
    v = _verdict(s1, s2, d, s2_tokens=[200.0] * 40, d_tokens=[20.0] * 40)
    assert v.gap.diff == pytest.approx(0.5) and v.gap.clear_of_zero and v.gap.wins == 20 and v.gap.losses == 0
    assert v.recovered == pytest.approx(0.8) and v.recovered_ci[0] <= 0.8 <= v.recovered_ci[1]
    assert v.token_ratio == pytest.approx(0.1) and v.token_ratio_ci == pytest.approx((0.1, 0.1))
    assert v.items_needed is None
    assert v.sentence.startswith("Distilled CoT recovers 80% (95% CI") and "of CoT's gain over System 1 (+50.0 points" in v.sentence
    assert "at 10% (10%–10%) of CoT's tokens (20.0 vs 200.0 per answer)" in v.sentence


@pytest.mark.parametrize("s2", [[1.0] * 2 + [0.0] * 8, [0.0] * 10])  # System 2 equal to, then below, System 1
def test_verdict_when_system2_is_no_better_has_no_gap_to_recover(s2):
    s1, d = [1.0] * 2 + [0.0] * 8, [1.0] * 5 + [0.0] * 5
    v = _verdict(s1, s2, d, [100.0] * 10, [10.0] * 10)
    assert v.recovered is None and v.recovered_ci is None and v.gap.diff <= 0
    assert "there is no System 2 gain to distil" in v.sentence and "recovers" not in v.sentence


def test_verdict_on_a_noisy_gap_says_how_many_items_would_be_needed():
    # The case: 1 of 20 vs 2 of 20 — a ratio here once printed "recovers 200% (CI -200%–600%)".
    s1, s2, d = [0.0] * 19 + [1.0], [0.0] * 18 + [1.0] * 2, [0.0] * 20
    v = _verdict(s1, s2, d, [50.0] * 20, [5.0] * 20)
    assert v.recovered is None and not v.gap.clear_of_zero and v.items_needed > 20
    assert "is not clear of zero on 20 test items" in v.sentence and f"about {v.items_needed} paired items" in v.sentence
    assert "recovers" not in v.sentence
    with pytest.raises(ValueError):
        _verdict([1.0], [1.0, 0.0], [1.0], [1.0], [1.0])


def test_verdict_warns_when_the_distilled_model_gives_one_answer_to_nearly_every_item():
    # 40 coin-flip items, half "yes": the distilled model says "yes" to 38 and so is right on 20 of them.
    golds = ["yes", "no"] * 20
    s1, s2 = [0] * 36 + [1] * 4, [1] * 24 + [0] * 16
    d_answers = ["yes"] * 38 + ["no", None]
    d = [a == g for a, g in zip(d_answers, golds)]
    v = verdict([bool(x) for x in s1], [bool(x) for x in s2], d, [60.0] * 40, [3.0] * 40,
                labels=("Distilled RaR", "RaR", "System 1"), d_answers=d_answers, golds=golds)
    assert v.one_answer == ("yes", pytest.approx(0.95), pytest.approx(0.5))
    assert v.sentence.endswith("Caution: Distilled RaR answers “yes” to 95% of the items, and always answering “yes” "
                               "scores 50.0%: it learnt the filter's commonest answer, not the method.")
    varied = ["yes"] * 35 + ["no"] * 5  # 88%: below the threshold (right on 21, above always "yes") ...
    d = [a == g for a, g in zip(varied, golds)]
    v = verdict([bool(x) for x in s1], [bool(x) for x in s2], d, [60.0] * 40, [3.0] * 40,
                labels=("Distilled RaR", "RaR", "System 1"), d_answers=varied, golds=golds)
    assert v.one_answer is None and "always answering" not in v.sentence
    # ... but 38 points commoner than the commonest gold answer: the milder caution
    assert v.skewed == ("yes", pytest.approx(0.875), pytest.approx(0.5))
    assert v.sentence.endswith("Caution: Distilled RaR answers “yes” to 88% of the items, where the commonest gold answer "
                               "covers 50%: part of what it learnt is that answer, not the method.")


def test_verdict_skew_caution_only_beyond_ten_points_over_gold():
    # 40 items, 20 gold answers twice each (commonest: 5%); a distilled model giving "1" to 5 items (12.5%)
    # is within 10 points of that; to 7 items (17.5%) beyond them.
    golds = [str(i % 20) for i in range(40)]
    s1, s2 = [False] * 40, [True] * 30 + [False] * 10
    for ones, caution in ((5, False), (7, True)):
        answers = ["1"] * ones + [f"other{i}" for i in range(40 - ones)]
        d = [a == g for a, g in zip(answers, golds)]
        v = verdict(s1, s2, d, [20.0] * 40, [2.0] * 40, labels=("D", "S2", "S1"), d_answers=answers, golds=golds)
        assert (v.skewed is not None) is caution and ("answers “1” to" in v.sentence) is caution


def test_verdict_pairs_the_distilled_model_with_every_baseline_and_the_gold_ceiling():
    n = 50
    s1, s2 = [False] * n, [True] * 25 + [False] * 25
    d = [True] * 22 + [False] * 28
    others = {"Distill System 1": [True] * 2 + [False] * 48, "D, shuffled answers (control)": [False] * n,
              "D, gold answers (control)": [True] * 40 + [False] * 10}
    v = verdict(s1, s2, d, [20.0] * n, [2.0] * n, labels=("D", "S2", "S1"), others=others,
                ceiling="D, gold answers (control)")
    assert [c.baseline for c in v.against] == list(others)
    assert [round(c.diff, 2) for c in v.against] == [0.40, 0.44, -0.36]
    assert v.against[0].clear_of_zero and v.against[1].clear_of_zero and v.against[2].diff_ci[1] < 0
    assert v.ceiling == ("D, gold answers (control)", pytest.approx(0.8))
    assert "Against Distill System 1: +40.0 points" in v.sentence and "Against D, gold" not in v.sentence
    assert "The gold-label ceiling (D, gold answers (control), trained on these inputs' train labels) is 80.0%: D " \
           "reaches 55% of it." in v.sentence
    with pytest.raises(ValueError):
        verdict(s1, s2, d, [20.0] * n, [2.0] * n, labels=("D", "S2", "S1"), others={"x": [True]})


def test_verdict_warns_when_the_commonest_gold_answer_beats_the_distilled_model():
    # 100 items, 57 "no": the distilled model answers both ways, independently of the gold, and is right
    # on 52 — less than always answering "no" (as the embedded model's first run did).
    golds = ["no"] * 57 + ["yes"] * 43
    d = [True] * 39 + [False] * 18 + [True] * 13 + [False] * 30
    d_answers = [("no" if ok else "yes") if g == "no" else ("yes" if ok else "no") for g, ok in zip(golds, d)]
    s1, s2 = [True] * 16 + [False] * 84, [True] * 39 + [False] * 61
    v = verdict(s1, s2, d, [84.0] * 100, [4.5] * 100, labels=("Distilled RaR", "RaR", "System 1"),
                d_answers=d_answers, golds=golds)
    assert v.one_answer is None and v.below_constant == ("no", pytest.approx(0.57))
    assert ("Caution: always answering “no” (the commonest gold answer) scores 57.0%, more than Distilled RaR's "
            "52.0%. Caution: Distilled RaR answers “no” to 69% of the items") in v.sentence  # and “no” is 12 points commoner
    better = [True] * 60 + [False] * 40  # 60% beats the constant: no such caution
    v = verdict(s1, s2, better, [84.0] * 100, [4.5] * 100, labels=("Distilled RaR", "RaR", "System 1"),
                d_answers=d_answers, golds=golds)
    assert v.below_constant is None and "always answering" not in v.sentence


def test_plot_is_a_png(tmp_path):
    scores = [{"label": "System 1", "kind": "system1", "accuracy": 0.1, "mean_tokens": 12.0, "by_k": None},
              {"label": "CoT zero-shot", "kind": "system2", "accuracy": 0.5, "mean_tokens": 250.0,
               "by_k": [{"k": 1, "accuracy": 0.4, "mean_tokens": 240.0}, {"k": 5, "accuracy": 0.55, "mean_tokens": 1200.0}]},
              {"label": "Distilled CoT zero-shot", "kind": "distilled", "accuracy": 0.08, "mean_tokens": 0.0}]
    path = plot_accuracy_vs_tokens(scores, tmp_path / "run" / "accuracy_vs_tokens.png", title="gsm8k")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_cot_gsm8k_config_loads():
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[1] / "configs" / "cot_gsm8k.yaml")
    assert cfg.task.name == "gsm8k" and cfg.evaluate.k_votes[0] == 1 and max(cfg.evaluate.k_votes) > 1
    assert cfg.distill.target == "answer_only" and {"system1", "cot", "cot_fewshot"} <= set(cfg.evaluate.systems)
    assert load_config(None, []).evaluate.k_votes == [1]
    assert load_config(None, ["evaluate.k_votes=[10,1,5,5]"]).evaluate.k_votes == [1, 5, 10]


def test_pipeline_reports_kvote_verdict_and_plot(tmp_path, embedded_tokenizer, tiny_model, monkeypatch):
    import json

    from sys2distill.pipeline import Pipeline
    from sys2distill.tasks.gsm8k import GSM8K

    # A random model writes random tokens: read its first character as the answer, so votes vary.
    monkeypatch.setattr(GSM8K, "extract_answer", lambda self, text: str(len(text) % 2))
    data = tmp_path / "gsm8k"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"question": f"{i} + 1?", "answer": f"#### {i % 2}"}) + "\n"
                                                     for i in range(3)))
    cfg = load_config(None, [f"run_dir={tmp_path}/{{name}}", "task.name=gsm8k", "task.train_size=3", "task.test_size=3",
                             f"task.options={{data_dir: {data}}}", "distill.methods=[cot]", "distill.target=answer_only",
                             "filter.min_agreement=0", "evaluate.systems=[system1,cot]", "evaluate.k_votes=[1,2]",
                             "evaluate.fidelity_samples=2", "generation.num_samples=2", "generation.max_tokens=4",
                             "evaluate.max_tokens=4", "train.max_steps=1", "train.batch_size=4", "backend.batch_size=16"])
    p = Pipeline(cfg, loaded_base=(tiny_model(embedded_tokenizer), embedded_tokenizer))
    p.run()
    results = json.loads((p.dir / "results.json").read_text())
    for s in results["scores"]:
        assert [e["k"] for e in s["by_k"]] == [1, 2] and s["by_k"][1]["mean_tokens"] > s["by_k"][0]["mean_tokens"]
    assert not (p.dir / "evaluate" / "fidelity_cot.jsonl").exists()  # reused the k-vote samples
    (v,) = results["verdicts"]
    assert v["distilled"] == "Distilled CoT zero-shot" and v["system2"] == "CoT zero-shot" and v["n"] == 3
    md = (p.dir / "results.md").read_text()
    assert "## Distillability verdict" in md and "## Majority vote over k samples" in md
    assert "![accuracy vs generated tokens](accuracy_vs_tokens.png)" in md
    assert (p.dir / "accuracy_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
