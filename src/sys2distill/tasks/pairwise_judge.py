"""Pairwise LLM-as-a-judge with human labels (arXiv 2407.06023 Sec. 4.3, Table 3).

An example is one *ordered* pair: a user question and two responses shown as Assistant A and
Assistant B. Every pair appears in both orders (ids ``…-ab`` and ``…-ba``), because the paper
measures how often a verdict flips when the responses swap places ("% inconsistent") and
distils only verdicts that survive the swap. The gold answer is the human-preferred position,
``A`` or ``B``; human ties are removed, as in the paper.

Sources (``task.source``), each split by question so no question is on both sides:

- ``hh_rlhf`` (default): Anthropic HH-RLHF harmless pairs (MIT, vendored), the stand-in for
  OASST2 here: the shared dialogue is the question, the two final assistant turns the
  responses, ``chosen`` the human preference.
- ``oasst2``: OASST2 message trees (``…oasst2_ready.trees.jsonl``; ``options.path``): sibling
  assistant replies to an English first prompt, the better human rank preferred — the
  paper's exact data for users who have it.
- ``mt_bench_human``: the full MT-bench human judgments (``question_id, model_a, model_b,
  winner, judge, conversation_a/b``; ``options.path``), first turns, human majority per pair.

Extra held-out evaluation sets (``options.eval_sets``): ``mt_bench`` (LLMBar's processed
MT-bench human judgments, 200 pairs, ties removed, with MT-bench's categories joined by
question text) and LLMBar's other sets. They are added to the *test* split only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

from sys2distill.errors import UserError
from sys2distill.records import Example, iter_jsonl
from sys2distill.tasks import register_task
from sys2distill.tasks.base import Task
from sys2distill.tasks.names import DATA, SPLITS, check_choice

SOURCES = ("hh_rlhf", "oasst2", "mt_bench_human")
# LLMBar's files (Zeng et al. 2023, MIT), all {"input", "output_1", "output_2", "label": 1|2}.
EVAL_SETS = {
    "mt_bench": "Processed_MT-Bench.json",
    "llmbar_natural": "LLMBar_Natural.json",
    "llmbar_adversarial_neighbor": "LLMBar_Adversarial_Neighbor.json",
    "llmbar_adversarial_gptinst": "LLMBar_Adversarial_GPTInst.json",
    "llmbar_adversarial_gptout": "LLMBar_Adversarial_GPTOut.json",
    "llmbar_adversarial_manual": "LLMBar_Adversarial_Manual.json",
    "faireval": "Processed_FairEval.json",
    "llmeval2": "Processed_LLMEval22.json",
}
TEST_SHARE = 4  # one question in four (by hash) is held out for testing

# "[[A]]" is the format every judge prompt asks for; the other patterns catch what models
# write instead. Order matters: explicit brackets first, then verdict phrases, then ties.
_BRACKET = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_SINGLE_BRACKET = re.compile(r"\[\s*(A|B|C)\s*\]")
_PHRASES = [
    re.compile(r"(?:final verdict|verdict|winner|better (?:response|answer) is|prefer(?:red)?(?: response)?)\s*(?:is|:)?\s*"
               r"(?:that\s+)?(?:assistant|response|answer|output)?\s*\(?\s*([AB])\b", re.IGNORECASE),
    re.compile(r"\b(?:assistant|response|answer|output)\s*\(?([AB])\)?(?:'s (?:response|answer))?\s+(?:is|was|provides|gives)\s+"
               r"(?:clearly\s+|slightly\s+|much\s+)?(?:the\s+)?(?:better|superior|more helpful|preferred|stronger)", re.IGNORECASE),
]
_TIE = re.compile(r"\b(?:it'?s a tie|tie\b|equally (?:good|bad|helpful)|neither (?:is|response is) better)", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """``A``, ``B`` or ``C`` (tie) from a judge's output; the last explicit verdict wins."""
    for pattern in (_BRACKET, _SINGLE_BRACKET, *_PHRASES):
        hits = pattern.findall(text)
        if hits:
            v = hits[-1].upper()
            return "C" if v == "TIE" else v
    return "C" if _TIE.search(text) else None


def preferred(order: str, verdict: str | None) -> str | None:
    """Which underlying response (``1``, ``2`` or ``tie``) a verdict picks in a given order.

    In order ``ab`` response 1 is shown as Assistant A; in ``ba`` it is shown as B.
    """
    if verdict is None:
        return None
    v = verdict.upper()
    if v == "C":
        return "tie"
    if v not in ("A", "B"):
        return None
    return ("1" if v == "A" else "2") if order == "ab" else ("2" if v == "A" else "1")


def consistent(verdict_ab: str | None, verdict_ba: str | None) -> bool:
    """A verdict is consistent when it names the same response (or a tie) in both orders."""
    first = preferred("ab", verdict_ab)
    return first is not None and first == preferred("ba", verdict_ba)


def swapped_partners(examples: list[Example]) -> dict[str, Example | None]:
    """Example id → the same pair shown in the other order (None when that order is absent)."""
    by_pair = {(ex.metadata.get("pair_id"), ex.metadata.get("order")): ex for ex in examples}
    other = {"ab": "ba", "ba": "ab"}
    return {ex.id: by_pair.get((ex.metadata.get("pair_id"), other.get(ex.metadata.get("order")))) for ex in examples}


def both_orders(pair_id: str, question: str, response_1: str, response_2: str, label: int | None,
                metadata: dict) -> list[Example]:
    """A pair as two examples, response 1 shown first (``…-ab``) and second (``…-ba``); ``label``
    (1 or 2, the preferred response; None for unlabeled inputs) becomes the gold position."""
    out = []
    for order, (a, b) in (("ab", (response_1, response_2)), ("ba", (response_2, response_1))):
        gold = None if label is None else "A" if (label == 1) == (order == "ab") else "B"
        out.append(Example(id=f"{pair_id}-{order}", question=question, answer=gold,
                           metadata={"pair_id": pair_id, "order": order, "response_a": a, "response_b": b, **metadata}))
    return out


def inconsistent_pairs(examples: list[Example], answers: dict[str, str | None]) -> dict[str, bool]:
    """Pair id → whether the verdict flips when the responses swap (pairs seen in both orders only)."""
    return {ex.metadata["pair_id"]: not consistent(answers.get(ex.id), answers.get(partner.id))
            for ex, partner in zip(examples, swapped_partners(examples).values())
            if partner is not None and ex.metadata["order"] == "ab"}


def _side(question: str) -> str:
    return "test" if hashlib.sha256(question.encode()).digest()[0] % TEST_SHARE == 0 else "train"


def _cut(text: str, max_chars: int) -> str:
    text = text.strip()
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + " …[truncated]"


# -- readers: each returns pairs {"question", "response_1", "response_2", "label": 1|2, "category"} --

def read_hh_rlhf(path: Path = DATA / "hh_rlhf" / "harmless-base_test.jsonl.gz") -> list[dict]:
    """HH-RLHF rows share the dialogue and differ in the last assistant turn; ``chosen`` wins."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            chosen, rejected = row["chosen"], row["rejected"]
            cut = chosen.rfind("\n\nAssistant:")
            if cut < 0 or rejected[:cut] != chosen[:cut]:
                continue  # the dialogues diverge earlier: not a same-context pair
            a, b = chosen[cut + len("\n\nAssistant:"):].strip(), rejected[cut + len("\n\nAssistant:"):].strip()
            if not a or not b or a == b:
                continue
            dialogue = chosen[:cut].strip().replace("Human:", "User:")
            first = dialogue.split("\n\nAssistant:")[0]
            out.append({"question": dialogue, "key": first, "response_1": a, "response_2": b, "label": 1,
                        "category": "harmless"})
    return out


def read_oasst2_trees(path: str | Path, lang: str = "en") -> list[dict]:
    """Pairs of sibling assistant replies to each tree's first prompt, ranked by humans (rank 0 best)."""
    out = []
    for i, tree in enumerate(iter_jsonl(Path(path)), 1):
        try:
            prompt = tree["prompt"]
            text, replies = prompt["text"], prompt.get("replies") or []
            if prompt.get("lang", lang) != lang:
                continue
            ranked = sorted((r for r in replies if r.get("role") == "assistant" and r.get("rank") is not None),
                            key=lambda r: r["rank"])
            for r in ranked:  # a ranked reply is half of a training pair: it needs its text
                if not isinstance(r["text"], str):
                    raise TypeError
        except (KeyError, TypeError, AttributeError) as e:
            lacks = f" (a message lacks {e.args[0]!r})" if isinstance(e, KeyError) else ""
            raise UserError(f"{path} line {i} is not an OASST2 message tree{lacks}: it needs prompt.text and "
                            "prompt.replies, each ranked reply a role, rank and text; use the *.trees.jsonl export") from None
        for j, better in enumerate(ranked):
            for worse in ranked[j + 1:]:
                if better["rank"] != worse["rank"]:
                    out.append({"question": text, "key": text, "response_1": better["text"], "response_2": worse["text"],
                                "label": 1, "category": "oasst2"})
    return out


def mt_bench_categories() -> dict[str, str]:
    """MT-bench first-turn question text → category (FastChat's question.jsonl, Apache-2.0)."""
    return {json.loads(line)["turns"][0].strip(): json.loads(line)["category"]
            for line in (DATA / "mt_bench" / "question.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()}


def read_mt_bench_human(path: str | Path) -> list[dict]:
    """First-turn MT-bench human judgments, one pair per (question, model_a, model_b) by human majority."""
    votes: dict[tuple, Counter] = {}
    texts: dict[tuple, tuple[str, str, str]] = {}
    categories = mt_bench_categories()
    for i, row in enumerate(iter_jsonl(Path(path)), 1):
        try:
            if int(row.get("turn", 1)) != 1:
                continue
            key = (row["question_id"], *sorted([row["model_a"], row["model_b"]]))
            flip = row["model_a"] != key[1]
            conv_a, conv_b = row["conversation_a"], row["conversation_b"]
            q = conv_a[0]["content"]
            ra, rb = conv_a[1]["content"], conv_b[1]["content"]
            winner = row["winner"]
        except (KeyError, TypeError, IndexError, ValueError):
            raise UserError(f"{path} line {i} is not an MT-bench human judgment (needs question_id, model_a, model_b, "
                            "winner, conversation_a/b): check the file") from None
        if flip:
            ra, rb = rb, ra
            winner = {"model_a": "model_b", "model_b": "model_a"}.get(winner, winner)
        texts[key] = (q, ra, rb)
        votes.setdefault(key, Counter())[winner] += 1
    out = []
    for key, c in votes.items():
        a, b = c["model_a"], c["model_b"]
        if a == b:  # a human tie (or no decisive votes): the paper removes ties
            continue
        q, ra, rb = texts[key]
        out.append({"question": q, "key": q, "response_1": ra, "response_2": rb, "label": 1 if a > b else 2,
                    "category": categories.get(q.strip(), "unknown")})
    return out


def read_llmbar(name: str) -> list[dict]:
    check_choice(name, EVAL_SETS, "pairwise_judge eval set")
    rows = json.loads((DATA / "llmbar" / EVAL_SETS[name]).read_text(encoding="utf-8"))
    categories = mt_bench_categories() if name == "mt_bench" else {}
    return [{"question": r["input"], "key": r["input"], "response_1": r["output_1"], "response_2": r["output_2"],
             "label": int(r["label"]), "category": categories.get(r["input"].strip(), name)} for r in rows]


@register_task("pairwise_judge")
class PairwiseJudge(Task):
    """Which of two responses is better? Sizes count *pairs*; each pair gives two examples (both orders)."""

    metric = "human agreement"
    prompt_field_names = ("response_a", "response_b")
    extraction_rule = ("the last [[A]]/[[B]]/[[C]] (C = tie), else [A]/[B], else a phrase such as 'Assistant B is better' "
                       "or 'verdict: A', else 'tie'; a tie never agrees with a human label (human ties are removed)")

    def __init__(self, train_size: int = 100, test_size: int = 50, seed: int = 0, source: str = "hh_rlhf",
                 path: str | None = None, eval_sets: list[str] | None = None, eval_size: int | None = None,
                 max_chars: int = 1500):
        source = "hh_rlhf" if source == "synthetic" else source  # the config's generic default
        super().__init__(train_size, test_size, seed, source)
        check_choice(source, SOURCES, "pairwise_judge source")
        if source != "hh_rlhf" and not path:
            raise UserError(f"task.source {source} needs task.options.path: the path of the {source} JSONL file")
        self.eval_sets = list(["mt_bench"] if eval_sets is None else eval_sets)
        for name in self.eval_sets:
            check_choice(name, EVAL_SETS, "pairwise_judge eval set")
        self.path, self.eval_size, self.max_chars = path, eval_size or test_size, max_chars

    def pairs(self) -> list[dict]:
        if self.source == "hh_rlhf":
            return read_hh_rlhf()
        return read_oasst2_trees(self.path) if self.source == "oasst2" else read_mt_bench_human(self.path)

    def load(self, split: str) -> list[Example]:
        check_choice(split, SPLITS, "split")
        pool = [p for p in self.pairs() if _side(p["key"]) == split]
        size = self.train_size if split == "train" else self.test_size
        out = self._sample(split, self.source, pool, size)
        if split == "test":
            for name in self.eval_sets:
                out += self._sample(split, name, read_llmbar(name), self.eval_size)
        return out

    def _sample(self, split: str, testset: str, pool: list[dict], size: int) -> list[Example]:
        if size > len(pool):
            raise UserError(f"{testset} has {len(pool)} {split} pairs, fewer than the {size} asked: lower "
                            f"task.{split}_size{'' if testset == self.source else ' or task.options.eval_size'}")
        rng = random.Random(f"{self.name}-{self.seed}-{split}-{testset}")
        rng.shuffle(pool)
        out = []
        for i, p in enumerate(pool[:size]):
            groups = [testset] + ([f"{testset}/{p['category']}"] if testset == "mt_bench" else [])
            # Train inputs stay unlabeled: only the evaluator reads labels.
            out += both_orders(f"{testset}-{split}-{i:04d}", p["question"].strip(), _cut(p["response_1"], self.max_chars),
                               _cut(p["response_2"], self.max_chars), p["label"] if self.labeled(split) else None,
                               {"testset": testset, "category": p["category"], "groups": groups})
        if split == "train":  # unlabeled inputs in shuffled order, as the paper's distillation set
            rng.shuffle(out)
        return out

    def prompt_fields(self, example: Example) -> dict[str, object]:
        return {"response_a": example.metadata["response_a"], "response_b": example.metadata["response_b"]}

    def extract_answer(self, text: str) -> str | None:
        return parse_verdict(text)

    def format_answer(self, answer: str) -> str:
        return f"[[{answer.upper()}]]"

    def inconsistent(self, examples: list[Example], answers: dict[str, str | None]) -> dict[str, bool]:
        return inconsistent_pairs(examples, answers)
