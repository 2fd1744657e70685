"""The pipeline of arXiv 2407.06023 Sec. 3 as resumable stages over one run folder.

generate  System 2 traces on unlabeled train inputs  → generate/<method>.jsonl
filter    consistency filter + distillation dataset   → filter/<method>.jsonl, distill/<method>.jsonl
train     fine-tune the same model on each dataset    → train/<method>/ (DONE.json when complete)
evaluate  System 1, System 2 and distilled on test    → evaluate/*.jsonl, evaluate/scores.json
report    the paper-style table                       → results.json, results.md

A stage whose outputs exist is skipped; generation resumes mid-way. Each stage records the
config keys it depends on, so rerunning a finished stage with a changed config is an error
instead of a silent mix of old and new results.
"""

from __future__ import annotations

import copy
import gc
import json
import platform
import os
import resource
import shutil
import time
from dataclasses import replace
from pathlib import Path

from sys2distill import backends, filters, methods, tasks
from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.backends.build import build_backend
from sys2distill.config import DistillSpec, RunConfig, dump_config
from sys2distill.dataset import build_records
from sys2distill.errors import UserError
from sys2distill.evaluator import FILTER_CHECK, ROWS, EvalRow, FilterCheck, check_filter, score_rows
from sys2distill.adaptive import StopRule
from sys2distill.generation import load_traces, run_method
from sys2distill.hub import distilled_model_name, write_dataset_card, write_model_card, write_model_cards
from sys2distill.models import check_model_name, model_identity
from sys2distill.records import Example, FilterDecision, Trace, read_records, write_jsonl
from sys2distill.registry import lookup
from sys2distill.report import RESULTS_JSON, Results, build_results, write_results
from sys2distill.tracking import Tracker, check_installed, stage_tokens

STAGES = ("generate", "filter", "train", "evaluate", "report")
# Config keys each stage's outputs depend on (cumulative: a stage depends on its inputs' keys).
_KEYS = {"generate": ["model", "task", "backend.dtype", "generation", "distill.methods", "prompts", "method_options",
                      "chains"]}
_KEYS["filter"] = _KEYS["generate"] + ["filter", "distill.target"]
_KEYS["train"] = _KEYS["filter"] + ["train"]
_KEYS["evaluate"] = _KEYS["train"] + ["evaluate"]
_KEYS["report"] = _KEYS["evaluate"]
# Keys inside those sections that never change a stage's outputs (how often generation writes to
# disk; ``chunk_size`` is its old name, still found in older run folders; where metrics are sent):
# left out of fingerprints.
_OUTPUT_NEUTRAL = (("generation", "chunk_sequences"), ("generation", "chunk_size"), ("train", "report_to"))


def _pick(cfg: dict, dotted: str):
    for k in dotted.split("."):
        cfg = cfg[k]
    return cfg


def _without_neutral(fingerprint: dict) -> dict:
    out = dict(fingerprint)
    for section, key in _OUTPUT_NEUTRAL:
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out


_ABSENT = object()


def _same(saved, new, default) -> bool:
    """Whether a saved fingerprint value matches the current one. A key the config gained after the
    run folder was made (absent from ``saved``) matches while it holds its default, so adding a
    config field does not invalidate every existing run."""
    if saved is _ABSENT:
        return new == default
    if isinstance(saved, dict) and isinstance(new, dict):
        default = default if isinstance(default, dict) else {}
        return set(saved) <= set(new) and all(_same(saved.get(k, _ABSENT), v, default.get(k, _ABSENT))
                                              for k, v in new.items())
    return saved == new


def versions() -> dict[str, str]:
    """The versions that made a result, for its report."""
    import importlib.metadata as md

    from sys2distill import __version__

    out = {"sys2distill": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def distilled_label(method_label: str) -> str:
    return "Distill System 1" if method_label == "System 1" else f"Distilled {method_label}"


class Pipeline:
    """One run: a config, a run folder, and the objects built from them on demand."""

    def __init__(self, cfg: RunConfig, backend: Backend | None = None, loaded_base=None):
        self.cfg = cfg
        self.dir = cfg.path
        # Fail fast: every name in the config is checked before any work starts.
        task_cls = lookup(tasks.REGISTRY, cfg.task.name, "task")
        for name in cfg.chains:
            if name in methods.REGISTRY:
                raise UserError(f"chain {name!r} has the name of a built-in method: rename it under `chains:`")
        for m in {*cfg.prompts, *cfg.method_options} & set(cfg.chains):
            raise UserError(f"chain {m!r} has its prompts and options in its steps: edit them under `chains:`, not in "
                            "`prompts:` or `method_options:`")
        method_names = {*(s.method for s in cfg.distill.specs), *cfg.evaluate.systems, *cfg.prompts, *cfg.method_options}
        for m in method_names:
            lookup({**methods.REGISTRY, **cfg.chains}, m, "method or chain" if cfg.chains else "method")
        for f in [cfg.filter, *(s.filter for s in cfg.distill.specs if s.filter)]:
            lookup(filters.REGISTRY, f.name, "filter")
        self.backend_cls = lookup(backends.REGISTRY, cfg.backend.name, "backend")
        if loaded_base is None:
            check_model_name(cfg.model)
        check_installed(cfg.train.report_to)
        if cfg.train.sft_args:  # a typo in an SFTConfig field fails now, not after hours of generation
            from sys2distill.trainer import sft_config

            sft_config(cfg.train, self.dir / "train")
        t = cfg.task
        try:
            self.task = task_cls(train_size=t.train_size, test_size=t.test_size, seed=t.seed, source=t.source, **t.options)
        except TypeError as e:
            raise UserError(f"bad task.options for {t.name!r}: {e}".replace("__init__() ", "")) from None
        # Fail fast, before any model is loaded: bad data, templates, chains and prompt overrides.
        self.task.check_data()
        for m in method_names:
            self.method(m)
        self._backend = backend
        self._loaded_base = loaded_base  # (model, tokenizer) for tests that build a tiny model in-process
        self.timings: dict[str, dict] = {}
        self.tracker = Tracker(cfg.train.report_to, self.dir, cfg.name)

    # -- shared pieces ---------------------------------------------------------------------
    def method(self, name: str):
        if name in self.cfg.chains:
            from sys2distill.methods.chain import Chain

            return Chain(name, self.cfg.chains[name], self.task)
        return methods.REGISTRY[name](self.task, self.cfg.prompts.get(name), self.cfg.method_options.get(name))

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = build_backend(self.cfg.backend, self.cfg.model, self.dir, loaded=self._loaded_base)
        return self._backend

    def examples(self, split: str) -> list[Example]:
        """The split's examples, frozen in the run folder the first time they are made."""
        path, marker = self.dir / "data" / f"{split}.jsonl", self.dir / "data" / "TASK.json"
        task = self.cfg.task.model_dump()
        if marker.exists() and json.loads(marker.read_text()) != task:
            raise UserError(f"run folder {self.dir} holds data made with a different task config: "
                            "pass --force generate to start over, or set name=<new run name>")
        if not path.exists():
            write_jsonl(path, self.task.load(split))
            marker.write_text(json.dumps(task))
        return read_records(path, Example)

    def sampling(self) -> SamplingParams:
        g = self.cfg.generation
        return SamplingParams(n=g.num_samples, temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens, seed=g.seed)

    # -- bookkeeping -----------------------------------------------------------------------
    def _fingerprint(self, stage: str, cfg: RunConfig | None = None) -> dict:
        cfg = (cfg or self.cfg).model_dump()
        return _without_neutral({k: _pick(cfg, k) for k in _KEYS[stage]})

    def _marker(self, stage: str) -> Path:
        return self.dir / stage / "STAGE.json"

    def _done(self, stage: str) -> bool:
        """Whether ``stage`` finished; a stage started or finished under other config values is an error.

        The marker is written when a stage *starts*, so a half-done stage (e.g. generation
        killed mid-way) is never resumed with different settings either.
        """
        marker = self._marker(stage)
        if not marker.exists():
            return False
        saved = json.loads(marker.read_text())
        new, default = self._fingerprint(stage), self._fingerprint(stage, RunConfig())
        saved_config = _without_neutral(saved["config"])
        changed = [k for k in new if not _same(saved_config.get(k, _ABSENT), new[k], default[k])]
        if changed:
            state = "finished" if saved.get("done") else "started"
            raise UserError(f"run folder {self.dir} has a {state} '{stage}' stage made with different "
                            f"{', '.join(changed)}: redo it with --force {stage} (Python: run(force=('{stage}',))), or start a new "
                            "run folder with name=<new run name>")
        return bool(saved.get("done"))

    def _write_marker(self, stage: str, **extra) -> None:
        marker = self._marker(stage)
        marker.parent.mkdir(parents=True, exist_ok=True)
        # Write + rename under a per-process name: every rank of `torchrun -m sys2distill train` writes it at once.
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"config": self._fingerprint(stage), **extra}, indent=1))
        os.replace(tmp, marker)

    def run(self, stages: tuple[str, ...] = STAGES, force: tuple[str, ...] = ()) -> Results | None:
        """Run ``stages`` in pipeline order, skipping finished ones; ``force`` redoes a stage and all after it.

        Returns the run's ``Results`` once it has a report (also when every stage was already done)."""
        unknown = [s for s in [*stages, *force] if s not in STAGES]
        if unknown:
            raise UserError(f"unknown stage {unknown[0]!r}: choose from {', '.join(STAGES)}")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.yaml").write_text(dump_config(self.cfg))
        if force:
            # Later stages were computed from the forced one's outputs: they go too.
            first = min(STAGES.index(s) for s in force)
            for stage in STAGES[first:]:
                shutil.rmtree(self.dir / stage, ignore_errors=True)
            if first == 0:
                shutil.rmtree(self.dir / "data", ignore_errors=True)
            for f in ("results.json", "results.md"):
                (self.dir / f).unlink(missing_ok=True)
        for stage in STAGES:
            if stage in stages and not self._done(stage):
                self._write_marker(stage, done=False)
                start = time.perf_counter()
                getattr(self, f"stage_{stage}")()
                peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
                self.timings[stage] = {"seconds": round(time.perf_counter() - start, 1), "peak_rss_gib": round(peak_gib, 2)}
                self._write_marker(stage, done=True, **self.timings[stage])
                self.tracker.log_stage(stage, self.timings[stage])
        return Results.load(self.dir) if (self.dir / RESULTS_JSON).exists() else None

    # -- stages ----------------------------------------------------------------------------
    def num_samples(self, method: str) -> int:
        """Samples generated per input for ``method``: the most any distilled model needs.

        Sample j of an input is seeded by (seed, prompt, j) alone, so a model distilled from
        fewer samples uses the first ones: ablations cost no extra generation.
        """
        g = self.cfg.generation.num_samples
        return max(s.num_samples or g for s in self.cfg.distill.specs if s.method == method)

    def make_filter(self, spec: DistillSpec):
        f = spec.filter or self.cfg.filter
        cls = lookup(filters.REGISTRY, f.name, "filter")
        try:
            return cls(min_agreement=f.min_agreement, enabled=f.enabled, **f.options)
        except TypeError as e:
            raise UserError(f"bad filter.options for {f.name!r}: {e}".replace("__init__() ", "")) from None

    def stop_rule(self, method: str) -> StopRule:
        g, n = self.cfg.generation, self.num_samples(method)
        if not g.adaptive:
            return StopRule.fixed(n)
        if g.adaptive_rule in ("exact", "predictive"):
            f = self.cfg.filter
            if f.name != "majority" or not f.enabled:
                raise UserError(f"generation.adaptive_rule={g.adaptive_rule} needs the majority filter (filter.name=majority, "
                                "enabled): it stops on that filter's decision; use adaptive_rule=beta otherwise")
            return StopRule(n, g.adaptive_min_samples, g.adaptive_confidence, rule=g.adaptive_rule, threshold=f.min_agreement)
        return StopRule(n, g.adaptive_min_samples, g.adaptive_confidence)

    def stage_generate(self) -> None:
        train = self.examples("train")
        for name in dict.fromkeys(s.method for s in self.cfg.distill.specs):
            n = self.num_samples(name)
            run_method(self.method(name), train, self.backend(), replace(self.sampling(), n=n),
                       self.dir / "generate" / f"{name}.jsonl", self.cfg.generation.chunk_sequences,
                       desc=f"generate {name} ×{n}{' (adaptive)' if self.cfg.generation.adaptive else ''}",
                       stop=self.stop_rule(name))

    def stage_filter(self) -> None:
        train = self.examples("train")
        for spec in self.cfg.distill.specs:
            traces = load_traces(self.dir / "generate" / f"{spec.method}.jsonl")
            rule = self.stop_rule(spec.method)
            missing = [ex.id for ex in train if not rule.done([t.answer for t in traces.get(ex.id, [])])]
            if missing:
                raise UserError(f"generate/{spec.method}.jsonl lacks samples for {len(missing)} inputs (e.g. {missing[0]}): "
                                "run the generate stage first")
            n = spec.num_samples or self.cfg.generation.num_samples
            traces = {ex.id: traces[ex.id][:n] for ex in train}
            filt = self.make_filter(spec)
            decisions = filt.apply(train, traces, self.backend() if filt.needs_backend else None)
            write_jsonl(self.dir / "filter" / f"{spec.key}.jsonl", decisions)
            records = build_records(train, traces, decisions, self.method("system1"), self.cfg.distill.target)
            write_jsonl(self.dir / "distill" / f"{spec.key}.jsonl", records)
            write_dataset_card(self.dir / "distill" / f"{spec.key}.jsonl", run_config=self.cfg)

    def stage_train(self) -> None:
        from sys2distill.trainer import train

        for spec in self.cfg.distill.specs:
            out = self.dir / "train" / spec.key
            if (out / "DONE.json").exists():
                continue
            data = self.dir / "distill" / f"{spec.key}.jsonl"
            if self.cfg.distill.on_empty == "skip" and data.is_file() and not data.read_text(encoding="utf-8").strip():
                out.mkdir(parents=True, exist_ok=True)
                (out / "SKIPPED.json").write_text(json.dumps({"reason": "the filter kept no input"}))
                continue
            loaded = None
            if self._loaded_base is not None:  # tests: train a copy of the in-process model
                import copy

                loaded = (copy.deepcopy(self._loaded_base[0]), self._loaded_base[1])
            train(self.dir / "distill" / f"{spec.key}.jsonl", self.cfg.model, out, self.cfg.train, loaded=loaded,
                  model_name=distilled_model_name(self.cfg.model, spec.key), run_name=f"{self.cfg.name}/{spec.key}")
            if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 wrote the checkpoint
                write_model_card(out, run_config=self.cfg, train_record=json.loads((out / "DONE.json").read_text()),
                                 results_markdown_table=None)
            gc.collect()

    def stage_evaluate(self) -> None:
        """Greedy answers of every system on the test split, scored once into ``evaluate/rows.jsonl``."""
        ev, test = self.cfg.evaluate, self.examples("test")
        greedy = SamplingParams(n=1, temperature=0.0, max_tokens=ev.max_tokens)
        out, chunk = self.dir / "evaluate", self.cfg.generation.chunk_sequences
        base = model_identity(self.cfg.model)
        rows, voted, greedy_traces = [], {}, {}
        for name in ev.systems:
            m = self.method(name)
            traces = greedy_traces[name] = run_method(m, test, self.backend(), greedy, out / f"{name}.jsonl", chunk,
                                                      desc=f"evaluate {name}")
            voted[name] = self._kvote_samples(name, m, self.backend(), test)
            rows += score_rows(self.task, test, traces, system=name, label=m.label, method=name, model=base,
                               kind="system1" if name == "system1" else "system2", ks=ev.k_votes, samples=voted[name])
        for spec in self.distilled_specs():
            m = self.method(spec.method)
            # System 2's majority answer on the *test* inputs, for the fidelity metric. The k-vote
            # samples are drawn the same way (sample j is seeded alone): reuse them when there are enough.
            n_fid = max(ev.fidelity_samples, 1)  # 0 falls back to one sample when System 2 was not evaluated
            if ev.fidelity_samples == 0 and spec.method in greedy_traces:
                system2 = greedy_traces[spec.method]
            elif voted.get(spec.method) and max(ev.k_votes) >= n_fid:
                system2 = {k: v[:n_fid] for k, v in voted[spec.method].items()}
            else:
                system2 = run_method(m, test, self.backend(), replace(self.sampling(), n=n_fid),
                                     out / f"fidelity_{spec.method}.jsonl", chunk, desc=f"fidelity samples {spec.method} ×{n_fid}")
            checkpoint = self.dir / "train" / spec.key
            distilled = build_backend(self.cfg.backend, str(checkpoint), self.dir, checkpoint=True)
            system = f"distill_{spec.key}"
            traces = run_method(self.method("system1"), test, distilled, greedy, out / f"{system}.jsonl",
                                chunk, desc=f"evaluate distilled {spec.key}")
            rows += score_rows(self.task, test, traces, system=system, kind="distilled", method="system1",
                               label=distilled_label(m.label) + (f" ({spec.name})" if spec.name else ""),
                               source=spec.method, model=str(checkpoint), ks=ev.k_votes, system2_samples=system2,
                               samples=self._kvote_samples(system, self.method("system1"), distilled, test))
            del distilled
            gc.collect()
        write_jsonl(out / ROWS, rows)
        labeled = self.train_labels()
        if labeled is not None:
            checks = [c for spec in self.cfg.distill.specs for c in check_filter(
                self.task, labeled, spec.key, read_records(self.dir / "filter" / f"{spec.key}.jsonl", FilterDecision))]
            write_jsonl(out / FILTER_CHECK, checks)

    def train_labels(self) -> list[Example] | None:
        """The train inputs *with* labels, for the filter's precision only (the evaluator's to read); None
        when the task cannot rebuild them identically (then precision is not reported)."""
        task = copy.copy(self.task)
        task.reveal_train_labels = True
        try:
            labeled = task.load("train")
        except (UserError, OSError):  # a source whose files are gone: precision is optional
            return None
        frozen = self.examples("train")
        if [(e.id, e.question) for e in labeled] != [(e.id, e.question) for e in frozen] or any(e.answer is None for e in labeled):
            return None
        return labeled

    def distilled_specs(self) -> list[DistillSpec]:
        """The distill entries that have a model (``distill.on_empty: skip`` leaves out empty ones)."""
        return [s for s in self.cfg.distill.specs if not (self.dir / "train" / s.key / "SKIPPED.json").exists()]

    def _kvote_samples(self, system: str, method, backend: Backend, test: list[Example]) -> dict[str, list[Trace]] | None:
        """max(k) answers per test input drawn as in ``generation``, for the k-vote columns (None: k_votes is [1])."""
        ev = self.cfg.evaluate
        if max(ev.k_votes) == 1:  # the default [1]: the greedy table is the k=1 result
            return None
        params = replace(self.sampling(), n=max(ev.k_votes))
        return run_method(method, test, backend, params, self.dir / "evaluate" / f"kvote_{system}.jsonl",
                          self.cfg.generation.chunk_sequences, desc=f"k-vote samples {system} ×{params.n}")

    def stage_report(self) -> None:
        self.results = write_results(build_results(
            read_records(self.dir / "evaluate" / ROWS, EvalRow),
            decisions={spec.key: read_records(self.dir / "filter" / f"{spec.key}.jsonl", FilterDecision)
                       for spec in self.cfg.distill.specs},
            checks=read_records(self.dir / "evaluate" / FILTER_CHECK, FilterCheck)
            if (self.dir / "evaluate" / FILTER_CHECK).exists() else None,
            trained={spec.key: self._trained(spec.key) for spec in self.cfg.distill.specs},
            stages=self._stage_records(),
            info={"task": self.cfg.task.name, "model": model_identity(self.cfg.model), "metric": self.task.metric,
                  "extraction_rule": self.task.extraction_rule, "task_version": self.task.version,
                  "config": self.cfg.model_dump(), "versions": versions()}), self.dir)
        write_model_cards(self.dir, self.cfg)  # each checkpoint's card gets the results table

    def _trained(self, key: str) -> dict:
        done, skipped = self.dir / "train" / key / "DONE.json", self.dir / "train" / key / "SKIPPED.json"
        if done.exists():
            return {"done": json.loads(done.read_text())}
        return {"not_trained": json.loads(skipped.read_text())["reason"]} if skipped.exists() else {}

    def _stage_records(self) -> dict[str, dict]:
        """Wall time and peak memory of each finished stage, and the tokens it generated."""
        out = {}
        for stage in ("generate", "filter", "train", "evaluate"):
            marker = self._marker(stage)
            m = json.loads(marker.read_text()) if marker.exists() else {}
            if m.get("done"):
                out[stage] = {"seconds": m["seconds"], "peak_rss_gib": m["peak_rss_gib"],
                              "generated_tokens": stage_tokens(self.dir, stage)}
        return out
