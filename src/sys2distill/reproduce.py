"""``sys2distill reproduce``: the paper's four experiments (arXiv 2407.06023 Sec. 4) in one command.

Each experiment is a shipped config (``configs/``) plus the overrides of a *scale*; each runs
as an ordinary pipeline in ``<out>/<experiment>/``, so finished stages are reused on a rerun
and a failed experiment does not stop the others. At the end one report, ``report.md`` and a
self-contained ``report.html``, puts every run's table beside the paper's numbers.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sys2distill.config import load_config
from sys2distill.errors import UserError
from sys2distill.html_report import write_html
from sys2distill.models import model_identity
from sys2distill.paper import CITATION, FINDINGS
from sys2distill.report import RESULTS_JSON, Results, SystemScore, markdown
from sys2distill.tasks.names import check_choice


@dataclass(frozen=True)
class Experiment:
    config: str  # a shipped config's name
    title: str
    data: str  # what this run reads, in words
    substitutions: str  # how it differs from the paper's setup, stated plainly


EXPERIMENTS = {
    "rar_last_letter": Experiment(
        "rar_last_letter", "RaR on last-letter concatenation (Table 1)",
        "synthetic two-word name lists (first names, train and test names disjoint); 8 samples per input, majority vote",
        "the paper used 1,200 random words (200 train / 200 test); ours are common first names."),
    "rar_coin_flip": Experiment(
        "rar_coin_flip", "RaR on coin-flip (Table 1)",
        "synthetic two-person coin-flip questions; 8 samples per input, majority vote",
        "the paper used 20k unlabeled train inputs and 1.33k test items; sizes here are far smaller."),
    "s2a_sycophancy": Experiment(
        "s2a_sycophancy", "S2A on sycophantic prompts (Table 2)",
        "TruthfulQA questions in SycophancyEval's four templates; scored by TruthfulQA's ROUGE-L reference rule; USC filter",
        "SycophancyEval's TriviaQA answer.jsonl is not available offline: TruthfulQA (Apache-2.0) fills the same "
        "templates, scored against its true/false references instead of TriviaQA aliases; 4 USC samples, not 20."),
    "bsm_judge": Experiment(
        "bsm_judge", "Branch-Solve-Merge LLM judge (Table 3)",
        "HH-RLHF harmless pairs (train inputs and a held-out split) and LLMBar's MT-bench human judgments (test); "
        "every pair judged in both orders; order-swap consistency filter",
        "OASST2 is not available offline: HH-RLHF harmless pairs stand in for it (human chosen/rejected). MT-bench is "
        "LLMBar's processed set (200 pairs, human majority, ties removed), not the full 3.3k votes. Responses are cut "
        "to the configured length and BSM uses at most the configured number of criteria."),
    "cot_gsm8k": Experiment(
        "cot_gsm8k", "CoT on GSM8K (Table 4)",
        "GSM8K train questions (unlabeled inputs) and the first test items; majority vote over k samples",
        "the paper's System 1 is 8-shot without CoT; ours answers zero-shot with 'final number only'."),
}

# The paper's Table 1 rows; the shipped coin-flip config, the README's first run, leaves out RaR 1-step.
RAR_ROWS = ["evaluate.systems=[system1,rar_1step,rar_2step]"]

# Overrides per scale. small: every experiment at a size whose total fits ~45 minutes on 2 CPU
# cores with the embedded model; medium: the shipped configs (with all of Table 1's rows); paper: the
# paper's data sizes and sample counts (Sec. 4 and Appendix), for GPUs or servers and the paper's own data.
SCALES: dict[str, dict[str, list[str]]] = {
    "small": {
        "rar_last_letter": ["task.train_size=24", "task.test_size=30", "evaluate.fidelity_samples=2"],
        "rar_coin_flip": ["task.train_size=24", "task.test_size=30", "evaluate.fidelity_samples=2", *RAR_ROWS],
        "s2a_sycophancy": ["task.train_size=12", "task.test_size=16", "generation.num_samples=3"],
        "bsm_judge": ["task.train_size=16", "task.test_size=10", "task.options.eval_size=10"],
        "cot_gsm8k": ["task.train_size=16", "task.test_size=16", "generation.num_samples=5", "generation.max_tokens=192",
                      "evaluate.max_tokens=192", "evaluate.k_votes=[1,5,10]", "evaluate.fidelity_samples=5",
                      "evaluate.systems=[system1,cot]"],
    },
    "medium": {name: RAR_ROWS if name == "rar_coin_flip" else [] for name in EXPERIMENTS},
    "paper": {
        "rar_last_letter": ["task.train_size=200", "task.test_size=200", "generation.num_samples=8"],
        "rar_coin_flip": ["task.train_size=20000", "task.test_size=1333", "generation.num_samples=8", *RAR_ROWS],
        "s2a_sycophancy": ["task.train_size=6668", "task.test_size=400", "generation.num_samples=20"],
        "bsm_judge": ["task.train_size=19672", "task.test_size=273", "task.options.eval_size=200",
                      "method_options.bsm.max_criteria=5", "task.options.max_chars=100000"],
        "cot_gsm8k": ["task.train_size=7473", "task.test_size=1319", "generation.num_samples=10",
                      "evaluate.k_votes=[1,5,10]"],
    },
}


def reproduce(scale: str = "small", model: str = "embedded", out: str | Path | None = None,
              only: list[str] | None = None, overrides: list[str] = (), loaded_base=None) -> Path:
    """Run the selected experiments at ``scale`` and write ``report.md`` / ``report.html`` in ``out``.

    Raises ``UserError`` naming the experiments that failed, after the report of the others is written.
    """
    from sys2distill.pipeline import Pipeline

    check_choice(scale, SCALES, "scale")
    names = only or list(EXPERIMENTS)
    for name in names:
        check_choice(name, EXPERIMENTS, "experiment")
    slug = "" if model == "embedded" else "-" + re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/").split("/")[-1])
    out = Path(out or f"runs/reproduce-{scale}{slug}")
    out.mkdir(parents=True, exist_ok=True)
    # Build every config first: a typo in an override fails before an hour of work starts.
    configs = {name: load_config(EXPERIMENTS[name].config, [
        *SCALES[scale][name], f"model={model}", f"name={name}", f"run_dir={out}/{{name}}",
        "distill.on_empty=skip", *overrides]) for name in names}
    status_path = out / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    for name, cfg in configs.items():
        start = time.perf_counter()
        try:
            Pipeline(cfg, loaded_base=loaded_base).run()
            status[name] = {"ok": True, "seconds": round(time.perf_counter() - start, 1)}
        except UserError as e:
            status[name] = {"ok": False, "error": str(e), "seconds": round(time.perf_counter() - start, 1)}
        status_path.write_text(json.dumps(status, indent=1))
    write_reproduction_report(out, scale, model, names, status)
    failed = [n for n in names if not status[n]["ok"]]
    if failed:
        reasons = "; ".join(f"{n}: {status[n]['error']}" for n in failed)
        raise UserError(f"{len(failed)} of {len(names)} experiments failed ({reasons}); the others are in {out / 'report.md'}")
    return out


def _machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores ({cpu}){gpu}, torch {torch.__version__}"


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, cwd=Path(__file__).parent).stdout.strip()
        return f"{sha}{' (with uncommitted changes)' if dirty else ''}" if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cell(score: SystemScore | None) -> str:
    if score is None:
        return "—"
    lo, hi = score.accuracy_ci
    return f"{100 * score.accuracy:.1f}% ({100 * lo:.0f}–{100 * hi:.0f}) / {score.mean_tokens:.0f}"


def _summary_row(name: str, results: Results) -> str:
    """System 1, the headline distilled model, and the System 2 method it was distilled from."""
    distilled = next((s for s in results.scores if s.kind == "distilled" and not results.from_system1(s)), None)
    system2 = results.score(distilled.source) if distilled else None
    v = next((v for v in results.verdicts if distilled and v.distilled == distilled.label), None)
    if distilled is None:
        not_trained = [f"{k}: not trained ({f.not_trained})" for k, f in results.filter.items() if f.not_trained]
        ours = "; ".join(not_trained) or "no model distilled from a System 2 method"
    else:
        ours = v.sentence if v else f"no verdict: {distilled.source} was not evaluated (add it to evaluate.systems)"
    return (f"| {EXPERIMENTS[name].title} | {_cell(results.score('system1'))} | {_cell(system2)} | {_cell(distilled)} | "
            f"{FINDINGS.get(results.task, '')} | {ours} |")


def _section(name: str, run_dir: Path, out: Path, status: dict) -> list[str]:
    exp = EXPERIMENTS[name]
    rel = run_dir.relative_to(out).as_posix()
    lines = ["", f"## {exp.title}", "", f"Run folder `{rel}/` · config `configs/{exp.config}.yaml` "
             f"with this scale's overrides (the resolved config: `{rel}/config.yaml`)", "",
             f"- **Data:** {exp.data}.", f"- **Substitutions:** {exp.substitutions}"]
    if not status.get("ok") or not (run_dir / RESULTS_JSON).exists():
        return lines + ["", f"**Not completed:** {status.get('error', 'no results.json in the run folder')}"]
    results = Results.load(run_dir)
    stages = results.stages
    lines += [f"- **Paper:** {FINDINGS.get(results.task, '')}.",
              f"- **Wall time:** {sum(v['seconds'] for v in stages.values()) / 60:.1f} min over its stages; "
              f"{sum(v.get('generated_tokens') or 0 for v in stages.values()):,} tokens generated in all."]
    body = markdown(results, level=2, assets=f"{rel}/").splitlines()[1:]  # its title is this section's
    return lines + body


def write_reproduction_report(out: Path, scale: str, model: str, names: list[str], status: dict) -> Path:
    """``report.md`` (tables, links to the run folders' plots) and ``report.html`` (the same, self-contained)."""
    done = {n: Results.load(out / n) for n in names if status.get(n, {}).get("ok") and (out / n / RESULTS_JSON).exists()}
    total = sum(status.get(n, {}).get("seconds", 0) for n in names)
    compute = sum(v["seconds"] for r in done.values() for v in r.stages.values())
    lines = [f"# Distilling System 2 into System 1 — reproduction at scale `{scale}`", "",
             f"- **Date:** {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- **Commit:** {_commit()}",
             f"- **Machine:** {_machine()}",
             f"- **Model:** {model_identity(model)}",
             f"- **Command:** `sys2distill reproduce --scale {scale}{'' if model == 'embedded' else f' --model {model}'}`",
             f"- **Wall time:** {compute / 60:.1f} min, the sum of every stage's wall time ({total / 60:.1f} min in this "
             "invocation; stages finished earlier are reused, not rerun)",
             f"- **Paper numbers:** {CITATION}.", "",
             "## Summary", "",
             "Accuracy (95% Wilson CI) / mean generated tokens per answer on each experiment's test split, "
             "greedy decoding; System 2 is the method the distilled model was distilled from. For the judge, "
             "accuracy is agreement with human labels.", "",
             "| experiment | System 1 | System 2 | distilled | paper | here |", "|---|---|---|---|---|---|"]
    for n in names:
        if n in done:
            lines.append(_summary_row(n, done[n]))
        else:
            lines.append(f"| {EXPERIMENTS[n].title} | — | — | — | | not completed: {status.get(n, {}).get('error', 'not run')} |")
    for n in names:
        lines += _section(n, out / n, out, status.get(n, {}))
    md = "\n".join(lines) + "\n"
    (out / "report.md").write_text(md, encoding="utf-8")
    write_html(md, out, out / "report.html", title=f"sys2distill reproduction — {scale}")
    return out / "report.md"
