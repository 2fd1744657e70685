import pytest

from sys2distill.adaptive import StopRule, prob_leader_ahead


@pytest.mark.parametrize("v1, v2, p", [(0, 0, 0.5), (1, 0, 0.75), (3, 0, 0.9375), (2, 1, 11 / 16), (5, 5, 0.5)])
def test_beta_posterior_probability(v1, v2, p):
    assert prob_leader_ahead(v1, v2) == pytest.approx(p)


def test_stop_rule():
    rule = StopRule(max_samples=8, min_samples=3, confidence=0.95)
    assert not rule.done(["a", "a"])  # below min_samples
    assert not rule.done(["a", "a", "a"])  # 0.9375 < 0.95
    assert rule.done(["a"] * 4)  # 0.969
    assert not rule.done(["a", "b", "a", "b"])
    assert rule.done(["a", "A.", "a", "b", "a", "a", "b"])  # 5 vs 2 with 1 left: the vote can't flip
    assert rule.done([None] * 8)  # the cap
    assert not rule.done([None] * 5)


def test_adaptive_run_draws_the_fixed_runs_first_samples(tmp_path, embedded_tokenizer, tiny_model, monkeypatch):
    """The property bench/adaptive.py relies on: sampling adaptively = a prefix of fixed-N sampling."""
    from sys2distill.backends.base import SamplingParams
    from sys2distill.backends.hf import HFBackend
    from sys2distill.generation import run_method
    from sys2distill.methods import REGISTRY
    from sys2distill.tasks import REGISTRY as TASKS

    # A random model writes no yes/no: let the text's length parity vote, so inputs stop at different points.
    monkeypatch.setattr(TASKS["coin_flip"], "extract_answer", lambda self, text: "yes" if len(text) % 2 else "no")
    task = TASKS["coin_flip"](train_size=6, test_size=1)
    examples, method = task.load("train"), REGISTRY["system1"](task)
    # Peaked next-token distributions (large weights): the two runs batch rows differently, and in a
    # random model's ~40k-token nucleus the rounding of a different matmul blocking alone moves a draw
    # (seen on an AMD EPYC VM); the property under test is the seeding, not bit-equal batching.
    model = tiny_model(embedded_tokenizer, initializer_range=1.0)
    backend = HFBackend(loaded=(model, embedded_tokenizer), batch_size=16)
    params = SamplingParams(n=5, temperature=1.0, top_p=0.95, max_tokens=5, seed=3)
    fixed = run_method(method, examples, backend, params, tmp_path / "fixed.jsonl", 4, desc="fixed")
    # A rule that stops each input after a different number of samples, decided by its text.
    rule = StopRule(max_samples=5, min_samples=2, confidence=0.7)
    adaptive = run_method(method, examples, backend, params, tmp_path / "adaptive.jsonl", 4, desc="adaptive", stop=rule)
    lengths = {len(v) for v in adaptive.values()}
    assert min(lengths) < 5  # some inputs stopped early
    for ex in examples:
        got = [(t.sample, t.final) for t in adaptive[ex.id]]
        assert got == [(t.sample, t.final) for t in fixed[ex.id][: len(got)]]


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_exact_rule_gives_the_fixed_n_filter_decision(threshold):
    """Exact mode stops early only when the majority filter's verdict on all N samples is settled."""
    import random

    from sys2distill.filters.majority import MajorityFilter
    from sys2distill.records import Trace

    rng, n, saved = random.Random(0), 8, 0
    f = MajorityFilter(min_agreement=threshold)
    rule = StopRule(n, min_samples=1, rule="exact", threshold=threshold)
    for case in range(3000):
        pool = rng.choice([["a"], ["a", "b"], ["a", "b", None], ["a", "b", "c", None], ["a", "a", "a", "b"]])
        answers = [rng.choice(pool) for _ in range(n)]
        traces = [Trace("x", "m", j, [], str(a), a, 1) for j, a in enumerate(answers)]
        k = next(k for k in range(1, n + 1) if rule.done(answers[:k]))
        full, prefix = f.decide(traces), f.decide(traces[:k])
        assert (prefix.kept, prefix.answer if prefix.kept else None) == (full.kept, full.answer if full.kept else None), answers
        saved += n - k
    assert saved > 0


def _decision(answers, threshold):
    from sys2distill.filters.majority import majority_vote

    winner, _, share = majority_vote(answers)
    return winner if winner is not None and share >= threshold else None


@pytest.mark.parametrize("threshold", [0.25, 0.5, 0.75])
def test_predictive_rule_is_certain_exactly_when_the_decision_is_settled(threshold):
    """Where the exact rule says the fixed-N decision is settled, the predictive probability is 1."""
    import random

    rng, n = random.Random(1), 8
    exact = StopRule(n, min_samples=1, rule="exact", threshold=threshold)
    predictive = StopRule(n, min_samples=1, rule="predictive", threshold=threshold, simulations=2000)
    for _ in range(200):
        pool = rng.choice([["a"], ["a", "b"], ["a", "b", None], ["a", "b", "c"]])
        answers = [rng.choice(pool) for _ in range(rng.randint(1, n - 1))]
        p = predictive.prob_decision_holds(answers)
        assert p == predictive.prob_decision_holds(list(answers))  # deterministic: a resumed run stops alike
        if exact.done(answers):
            assert p == 1.0, answers
    if threshold == 0.5:  # open votes are uncertain, and more so the earlier and the closer they are
        holds = predictive.prob_decision_holds
        assert holds(["a", "b"]) < holds(["a", "a", "a", "b"]) < 1.0
        assert holds(["a", "a"]) < holds(["a"] * 4) < 1.0


def test_predictive_rule_keeps_fixed_n_decisions_at_its_confidence_with_fewer_samples():
    """On inputs whose answer distribution is drawn from a Dirichlet, stopping at confidence 0.98
    reproduces ≥ 97% of fixed-N decisions (measured: 298/300) and draws ≥ 10% fewer samples than
    the exact rule (measured: 3,227 vs 3,790 of 4,800)."""
    import numpy as np

    rng, n, t = np.random.default_rng(0), 16, 0.5
    exact = StopRule(n, min_samples=1, rule="exact", threshold=t)
    predictive = StopRule(n, min_samples=2, confidence=0.98, rule="predictive", threshold=t, simulations=1000)
    same = drawn_exact = drawn_pred = 0
    cases = 300
    for _ in range(cases):
        p = rng.dirichlet([0.5, 0.5, 0.5, 0.5])
        answers = list(rng.choice(["a", "b", "c", None], size=n, p=p))
        k = next(k for k in range(1, n + 1) if predictive.done(answers[:k]))
        same += _decision(answers[:k], t) == _decision(answers, t)
        drawn_pred += k
        drawn_exact += next(k for k in range(1, n + 1) if exact.done(answers[:k]))
    assert same >= 0.97 * cases
    assert drawn_pred < 0.9 * drawn_exact
