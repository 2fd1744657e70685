"""`sys2distill reproduce` on a tiny model: run folders, failure handling, resume, and the report
checked in a real headless browser (Debian's chromium)."""

import json
import os
import shutil
from pathlib import Path

import pytest

from sys2distill.errors import UserError
from sys2distill.reproduce import reproduce
from sys2distill.tasks.coin_flip import CoinFlip
from sys2distill.tasks.last_letter import LastLetter

TINY = ["task.train_size=4", "task.test_size=3", "generation.num_samples=2", "generation.max_tokens=4", "generation.temperature=0",
        "train.max_steps=1", "train.batch_size=4", "evaluate.max_tokens=4", "evaluate.fidelity_samples=2",
        "backend.batch_size=8"]


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture
def tiny(embedded_tokenizer, tiny_model, monkeypatch):
    # A random model writes no answers: any last word counts, so filters keep inputs (parsing has its own tests).
    last_word = lambda self, text: text.split()[-1] if text.split() else "empty"  # noqa: E731
    monkeypatch.setattr(LastLetter, "extract_answer", last_word)
    monkeypatch.setattr(CoinFlip, "extract_answer", last_word)
    return tiny_model(embedded_tokenizer), embedded_tokenizer


def test_reproduce_reports_failures_resumes_and_renders(tmp_path, tiny, monkeypatch):
    out = tmp_path / "repro"
    original_load = CoinFlip.load

    def broken(self, split):
        raise UserError("coin data unreadable: reinstall the package")

    monkeypatch.setattr(CoinFlip, "load", broken)
    with pytest.raises(UserError, match="1 of 2 experiments failed .*rar_coin_flip: coin data unreadable"):
        reproduce("small", out=out, only=["rar_last_letter", "rar_coin_flip"], overrides=TINY, loaded_base=tiny)
    md = (out / "report.md").read_text()
    assert "RaR on last-letter concatenation (Table 1)" in md and "**Not completed:** coin data unreadable" in md
    assert json.loads((out / "status.json").read_text())["rar_coin_flip"]["ok"] is False

    # Fixed and rerun: the finished experiment is reused as is, the failed one completes.
    stamps = {f: f.stat().st_mtime_ns for f in (out / "rar_last_letter").rglob("*.jsonl")}
    monkeypatch.setattr(CoinFlip, "load", original_load)
    reproduce("small", out=out, only=["rar_last_letter", "rar_coin_flip"], overrides=TINY, loaded_base=tiny)
    assert {f: f.stat().st_mtime_ns for f in (out / "rar_last_letter").rglob("*.jsonl")} == stamps
    md = (out / "report.md").read_text()
    for text in ("## Summary", "Commit:", "Machine:", "98.0%", "75.69% / 50.3",  # the paper's Table 1 beside ours
                 "Substitutions:", "Kept answers right", "generated tokens", "Distilled RaR 2-step",
                 "](rar_coin_flip/accuracy_vs_tokens.png)"):
        assert text in md, text
    assert "Not completed" not in md
    page = (out / "report.html").read_text()
    # Self-contained: every image is a data URI, nothing is fetched from disk or network.
    assert page.count("<img") == 2 and page.count('src="data:image/png;base64,') == 2
    assert "http://" not in page and "https://" not in page and "<table>" in page

    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run) to test the HTML report")
        pytest.skip("no chromium here: apt-get install chromium to check the rendered report")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page_ = b.new_page(viewport={"width": 1280, "height": 900})
        page_.goto(Path(out / "report.html").as_uri())
        page_.wait_for_load_state("load")
        tables = page_.eval_on_selector_all("table", "ts => ts.map(t => [t.rows.length, t.getBoundingClientRect().height])")
        images = page_.eval_on_selector_all("img", "is => is.map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])")
        shot = out / "report.png"
        page_.screenshot(path=str(shot), full_page=True)
        b.close()
    # summary + (results, paired with System 1, filter, answers, stages) per experiment
    assert len(tables) == 1 + 5 * 2 and all(rows >= 2 and height > 20 for rows, height in tables)
    assert len(images) == 2 and all(done and natural > 100 and shown > 100 for done, natural, shown in images)
    from PIL import Image

    img = Image.open(shot).convert("L")
    assert img.height > 2000 and len(set(img.getdata())) > 50  # a long, drawn page, not a blank one


def test_summary_row_compares_the_distilled_model_with_its_own_system2():
    """The BSM row once showed CoT's numbers in the System 2 column."""
    from sys2distill.report import Results, SystemScore
    from sys2distill.reproduce import _summary_row

    def s(system, kind, acc, source=None):
        return SystemScore(system=system, label=system.upper(), kind=kind, source=source, n=10, correct=int(10 * acc),
                           accuracy=acc, accuracy_ci=(0.0, 1.0), mean_tokens=10 * acc, extraction_failures=0.0)

    results = Results(task="pairwise_judge", model="m", extraction_rule="r", task_version=1, config={}, comparisons=[],
                      verdicts=[], filter={}, stages={}, versions={},
                      scores=[s("system1", "system1", 0.1), s("cot", "system2", 0.2), s("bsm", "system2", 0.7),
                              s("distill_bsm", "distilled", 0.5, source="bsm")])
    row = _summary_row("bsm_judge", results).split(" | ")
    assert row[1].startswith("10.0%") and row[2].startswith("70.0%") and row[3].startswith("50.0%")


def test_the_report_never_imports_the_pipeline():
    import subprocess
    import sys

    code = ("import sys, sys2distill.report, sys2distill.verdict, sys2distill.reproduce; "
            "print([m for m in ('sys2distill.pipeline', 'sys2distill.trainer') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
