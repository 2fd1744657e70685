"""Typed run configuration: YAML file + ``key=value`` overrides, command line wins.

Unknown keys are an error naming the closest valid key (TRL's rule), so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sys2distill import rundir
from sys2distill.errors import UserError
from sys2distill.redact import looks_secret


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TaskConfig(Section):
    name: str = "last_letter"  # a key of sys2distill.tasks.REGISTRY
    train_size: int = Field(200, ge=1)  # unlabeled distillation inputs (paper: 200 for last-letter)
    test_size: int = Field(200, ge=1)  # held-out evaluation items
    seed: int = 0  # drives the synthetic item generator
    source: str = "synthetic"  # "synthetic" or "rar" (the RaR paper's released test items)
    options: dict[str, Any] = {}  # task-specific constructor arguments, e.g. {num_words: 2}


class BackendConfig(Section):
    name: str = "hf"  # a key of sys2distill.backends.REGISTRY
    # auto: bfloat16 on a CUDA GPU or a CPU with native bf16 (AVX512-BF16 / AMX), else float32; the run
    # folder's backend.json records the choice (bf16 vs fp32 accuracy: bench/README.md)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "cpu"
    # hf: sequences (prompts × samples) decoded together, and a bound on their KV cache positions
    # (rows × (prompt + new tokens)); wide batches amortise each step's fixed cost (bench/README.md, sampling.py).
    # None: 512 rows and 131,072 positions when sampling several continuations per prompt in bf16 on a
    # CPU, 256 and 65,536 otherwise (either ≈ 3 GiB of SmolLM2-135M's KV cache; HFBackend.batch_limits).
    batch_size: int | None = Field(None, ge=1)
    max_batch_tokens: int | None = Field(None, ge=1)
    # openai: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, TGI, hosted APIs)
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else http://127.0.0.1:8000/v1
    # The variable holding the key (a key in the config would land in the run folder); when it is not the
    # default it must be set, the default may be unset for servers without keys (llama.cpp, vLLM).
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(16, ge=1)  # requests in flight; servers batch them
    timeout: float = Field(120.0, gt=0)  # seconds per request before it is retried
    max_retries: int = Field(5, ge=0)  # on 429, 5xx, timeouts and dropped connections, with backoff + jitter
    # vllm
    tensor_parallel_size: int = Field(1, ge=1)  # GPUs per model replica
    # any backend
    cache: bool | str = False  # true: <run_dir>/cache.sqlite; a path shares one cache between runs
    distributed: Literal["none", "ray"] = "none"  # ray: shard generation across Ray workers ($RAY_ADDRESS or local)
    num_workers: int = Field(2, ge=1)  # ray: replicas of the backend, the cluster's CPUs split between them

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) or looks_secret(v):
            raise ValueError("must be the name of the environment variable holding the API key, not the key itself: "
                             "`export OPENAI_API_KEY=<key>` and keep backend.api_key_env=OPENAI_API_KEY")
        return v


class GenerationConfig(Section):
    """Sampling of System 2 traces on the unlabeled inputs (paper Sec. 4.1: 8 samples)."""

    num_samples: int = Field(8, ge=1)
    temperature: float = Field(0.7, ge=0)  # > 0: self-consistency needs diverse samples
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(128, ge=1)  # per generation step
    seed: int = 0
    # Sequences (inputs × samples) per checkpointed write: a crash loses at most one chunk. It is
    # also the most the backend sees at once, so it should not be below backend.batch_size.
    chunk_sequences: int = Field(512, ge=1)
    adaptive: bool = False  # Adaptive-Consistency: stop sampling an input once its vote is settled
    adaptive_min_samples: int = Field(3, ge=1)  # samples drawn before the stopping rule may fire
    # beta: P(leader ahead of runner-up) needed to stop; predictive: P(the filter decides on all N
    # samples as on those drawn) needed to stop
    adaptive_confidence: float = Field(0.95, gt=0.5, lt=1)
    # beta: Aggarwal et al.'s rule (fewest samples, filter decisions may differ from fixed N);
    # exact: stop only once the majority filter's decision is settled (same kept answers as fixed N,
    # by construction); predictive: stop once that decision is settled with adaptive_confidence
    adaptive_rule: Literal["beta", "exact", "predictive"] = "beta"


class FilterConfig(Section):
    name: str = "majority"  # a key of sys2distill.filters.REGISTRY
    min_agreement: float = Field(0.5, ge=0, le=1)  # winner's share of the N samples needed to keep an input
    enabled: bool = True  # False keeps every input with a winner (the paper's "no filter" ablation)
    options: dict[str, Any] = {}  # filter-specific constructor arguments


class DistillSpec(Section):
    """One distilled model: a method's traces, how many samples per input, which filter.

    Written as a plain method name in YAML when the defaults do; the mapping form makes
    ablations such as the paper's "Distilled S2A without USC" (one sample, no filter).
    """

    method: str
    name: str | None = None  # run-folder key and report label suffix; default: the method name
    num_samples: int | None = Field(None, ge=1)  # default: generation.num_samples
    filter: FilterConfig | None = None  # default: the top-level filter

    @property
    def key(self) -> str:
        return self.name or self.method

    # The one place an entry's own setting falls back to the run's (generate, filter, train, model cards).
    def samples(self, generation: GenerationConfig) -> int:
        """Samples per input this entry is distilled from: its own ``num_samples``, else ``generation.num_samples``."""
        return self.num_samples or generation.num_samples

    def filter_or(self, default: FilterConfig) -> FilterConfig:
        """The filter this entry's inputs pass: its own, else the run's ``filter``."""
        return self.filter or default


class DistillConfig(Section):
    """Which methods' traces become training targets; one distilled model per entry."""

    methods: list[str | DistillSpec] = ["system1", "rar_2step"]  # system1 = the paper's "Distill System 1" baseline
    target: Literal["final_response", "answer_only"] = "final_response"  # final_response: a winning trace's last output
    # When the filter keeps no input for an entry: "error" stops the run with one line (nothing lost);
    # "skip" reports that entry as not trained and finishes the others (used by `sys2distill reproduce`).
    on_empty: Literal["error", "skip"] = "error"
    # Diagnostic models beside each System 2 entry, trained the same way on the same kept inputs:
    # "shuffled" with the kept answers permuted across inputs (what the answers' format alone teaches),
    # "gold" with the train labels (the ceiling for those inputs). "gold" reads the train labels, which
    # the pipeline otherwise never does: reports mark both as controls. Off by default.
    controls: list[Literal["shuffled", "gold"]] = []

    @property
    def specs(self) -> list[DistillSpec]:
        return [DistillSpec(method=m) if isinstance(m, str) else m for m in self.methods]

    @field_validator("methods")
    @classmethod
    def _unique_keys(cls, v: list) -> list:
        keys = [m if isinstance(m, str) else m.key for m in v]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ValueError(f"two entries share the name {sorted(dup)[0]!r}: give one a `name`")
        if rundir.CONTROLS in keys:
            raise ValueError(f"an entry may not be named {rundir.CONTROLS!r} (the folder of the control models): rename it")
        return v

    @field_validator("controls")
    @classmethod
    def _unique_controls(cls, v: list) -> list:
        return list(dict.fromkeys(v))


class TrainConfig(Section):
    """Supervised fine-tuning on input → final answer (paper Sec. 4: loss on answer tokens only)."""

    mode: Literal["full", "lora"] = "full"
    learning_rate: float = Field(1e-4, gt=0)  # bench/sft_sweep.py at 135M; paper: 5.5e-6 for a 70B model
    epochs: float = Field(3.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=16)  # prompt + target tokens
    group_by_length: bool = True  # batch records of similar length (trainer.LengthBucketSampler): less padding
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    weight_decay: float = 0.0
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, le=1)
    seed: int = 0
    # Trackers for the training curves (transformers' own integrations) and the run's stage timings
    # and generated tokens (sys2distill.tracking): none, tensorboard, wandb, mlflow, trackio, or a list.
    report_to: str | list[str] = "none"
    # Any other trl.SFTConfig field, e.g. {activation_checkpointing: true, lr_scheduler_type: cosine};
    # checked against SFTConfig before any stage runs (trainer.sft_arguments). The keys above are shortcuts.
    sft_args: dict[str, Any] = {}

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, v: str | list[str]) -> str | list[str]:
        from sys2distill.tracking import TRACKERS

        for name in [v] if isinstance(v, str) else v:
            if name != "none" and name not in TRACKERS:
                close = difflib.get_close_matches(name, TRACKERS, n=1)
                raise ValueError(f"unknown tracker {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + f": choose none or from {', '.join(TRACKERS)}")
        return v


class EvalConfig(Section):
    """Greedy evaluation of every system on the test split."""

    systems: list[str] = ["system1", "rar_1step", "rar_2step"]  # System 1 and System 2 methods
    max_tokens: int = Field(256, ge=1)
    # System 2 samples (drawn as in `generation`) voted on test inputs for fidelity; 0 = compare with
    # System 2's greedy answer from this table instead (no extra sampling: for costly methods like BSM).
    fidelity_samples: int = Field(8, ge=0)
    # Majority vote over k answers sampled as in `generation` (paper Table 4: 1, 5, 10); max(k)
    # samples per system, the first k voted. [1] = the greedy table only, no extra sampling.
    k_votes: list[int] = [1]

    @field_validator("k_votes")
    @classmethod
    def _positive_ks(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError("must be a non-empty list of integers >= 1, e.g. [1, 5, 10]")
        return sorted(set(v))


class RouteConfig(Section):
    """The router (beyond the paper; ``router.py``): the distilled model where it is sure, its System 2 method
    where it is not. Scored as one more system by the evaluate stage."""

    entry: str | None = None  # a distill entry's key; None: the first trained entry of a System 2 method
    confidence: Literal["logprob", "agreement"] = "logprob"  # the distilled answer's probability, or sample agreement
    samples: int = Field(5, ge=2)  # agreement: System 1 answers sampled from the distilled model per input
    # Unlabeled inputs past task.train_size (never distilled on) on which the threshold is chosen, without labels
    holdout: int = Field(50, ge=10)
    max_agreement_loss: float = Field(0.02, ge=0, le=1)  # vs System 2's greedy agreement with its own majority answer
    budget: float | None = Field(None, gt=0, le=1)  # instead: the share of inputs System 2 may answer


class ChainStep(Section):
    """One generation of a chain: a chat prompt over ``{question}`` and earlier steps' outputs."""

    name: str  # the placeholder under which later steps receive this step's output, e.g. {rephrase}
    prompt: str  # str.format template: {question}, the task's fields (e.g. {num_words}), earlier step names
    system: str | None = None  # a system message before the prompt (None: the chat template's own default)
    max_tokens: int | None = Field(None, ge=1)  # None: generation.max_tokens (evaluate.max_tokens when evaluating)
    stop: list[str] = []  # the output is cut before the first of these
    n: int = Field(1, ge=1)  # branches: outputs sampled per trace, joined for later steps (BSM's Solve fan-out)
    join: str = "\n\n"  # how the n branch outputs are joined into {name}
    temperature: float | None = Field(None, ge=0)  # None: the call's (greedy when evaluating; branches want > 0)


class ChainConfig(Section):
    """A System 2 method written in YAML; the last step's output is the final response (Sec. 3)."""

    label: str | None = None  # how reports name it; None: the chain's name
    steps: list[ChainStep] = Field(min_length=1)


class RunConfig(Section):
    """Everything one ``sys2distill run`` needs."""

    name: str = "run"
    run_dir: str = "runs/{name}"  # where every stage writes; {name} is filled in
    model: str = "embedded"  # 'embedded' (SmolLM2-135M-Instruct), a local folder, or a Hub id
    task: TaskConfig = TaskConfig()
    backend: BackendConfig = BackendConfig()
    generation: GenerationConfig = GenerationConfig()
    filter: FilterConfig = FilterConfig()
    distill: DistillConfig = DistillConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvalConfig = EvalConfig()
    route: RouteConfig | None = None  # off by default; `route={}` turns it on with its defaults
    prompts: dict[str, dict[str, str]] = {}  # {method: {prompt_name: template}} overrides
    method_options: dict[str, dict[str, Any]] = {}  # {method: {option: value}}, e.g. {bsm: {max_criteria: 3}}
    # {name: chain or chain YAML file}: System 2 methods as prompt steps, named in distill.methods /
    # evaluate.systems like built-in methods; a file path is relative to the config file
    chains: dict[str, ChainConfig] = {}

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v:
            raise ValueError("must be a non-empty name without '/'")
        return v

    @model_validator(mode="after")
    def _no_secrets(self) -> RunConfig:
        """A config is written to the run folder (config.yaml, every stage's record, results.json): no key may be in it."""
        for key, value in _strings(self.model_dump()):
            if looks_secret(value):
                raise UserError(f"config key {key} holds what looks like an API key or token: a config is written to the "
                                "run folder, so put the key in an environment variable and name that variable in "
                                "backend.api_key_env")
        return self

    @property
    def path(self) -> Path:
        return Path(self.run_dir.format(name=self.name))


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a nested config dump, mapping keys included (a secret can hide in ``prompts`` or
    ``options``), with its dotted key."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            yield sub, str(k)
            yield from _strings(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{key}[{i}]")


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        # A section, or an optional one (``route: RouteConfig | None``)
        for ann in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                keys += _valid_keys(ann, prefix + name + ".")
    return keys


# Keys renamed with a change of unit: the hint says how to convert an old value.
RENAMED = {"generation.chunk_size": "it is now 'generation.chunk_sequences', counted in sequences "
                                    "(inputs × samples), not inputs: multiply the old value by generation.num_samples",
           # Not a rename: the key itself never goes in a config (it would be written to the run folder).
           "backend.api_key": "a key never goes in a config, which is written to the run folder: `export "
                              "OPENAI_API_KEY=<key>`, or put it in another variable and set backend.api_key_env=<its name>"}


def _explain(e: ValidationError) -> str:
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden" and err["loc"][0] == "chains":  # inside a chain: a step's or the chain's key
        fields = ChainStep.model_fields if "steps" in err["loc"] else ChainConfig.model_fields
        close = difflib.get_close_matches(str(err["loc"][-1]), list(fields), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"its keys are {', '.join(fields)}"
        return f"unknown chain key {key!r}: {hint}"
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, _valid_keys(RunConfig), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "run `sys2distill config` to see every key"
        hint = RENAMED.get(key, hint)
        return f"unknown config key {key!r}: {hint}"
    return f"bad value for config key {key!r}: {err['msg']} (got {err.get('input')!r})"


def _yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and where it is (line and column, 1-based)."""
    mark = getattr(e, "problem_mark", None)
    if mark is None:
        return str(e).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: {e.problem}"
    context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
    return where + (f" ({context} at line {start.line + 1}, column {start.column + 1})" if context and start else "")


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise UserError(f"override {item!r} is not key=value: write e.g. generation.num_samples=4")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as e:
        raise UserError(f"override {key}=... has a value that is not valid YAML ({_yaml_problem(e)}): "
                        f"quote it, e.g. {key}='...', or fix its brackets") from None
    return key.strip().split("."), value


CONFIG_DIR = Path(__file__).parent / "configs"  # the shipped configs (the repo's configs/ links here)


def shipped_configs() -> list[str]:
    return sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))


# task.options holding file paths (the dataset task's data, other tasks' input files)
PATH_OPTIONS = ("path", "test_path", "data_dir")


def _resolve_paths(data: dict, base: Path) -> None:
    """Make a config file's relative data paths absolute from ``base``, the file's folder.

    A path is changed only if it exists from ``base``: a path that exists only from the working
    directory (as configs were written before) or a Hub dataset id stays as it is.
    """
    options = (data.get("task") or {}).get("options") if isinstance(data.get("task"), dict) else None
    if isinstance(options, dict):
        for key in PATH_OPTIONS:
            value = options.get(key)
            if isinstance(value, str) and not Path(value).expanduser().is_absolute() and (base / value).exists():
                options[key] = str((base / value).resolve())


def read_chain(ref: str, base: Path = Path(".")) -> dict:
    """A chain YAML file, from ``base`` (the config's folder), the working directory, or shipped
    (``configs/chains/NAME.yaml``)."""
    candidates = [base / ref, Path(ref), CONFIG_DIR / "chains" / f"{ref}.yaml"]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        shipped = ", ".join(sorted(f.stem for f in (CONFIG_DIR / "chains").glob("*.yaml")))
        raise UserError(f"chain file {ref} not found (looked in {base} and the working directory): fix the path under "
                        f"`chains:` or name a shipped chain ({shipped})")
    try:
        chain = yaml.safe_load(found.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"chain file {found} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(chain, dict) or "steps" not in chain:
        raise UserError(f"chain file {found} must be a mapping with `steps:` (a list of {{name, prompt}}) and an "
                        "optional `label:`")
    return chain


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML config (optional), apply ``a.b=value`` overrides, validate.

    ``path`` is a config file, a shipped config's name, or a run folder: that folder's ``config.yaml``,
    with ``run_dir`` pointing at the folder itself wherever it now lies (unless ``name=`` or ``run_dir=`` is
    overridden: then the run goes where they say, as with a config file)."""
    data: dict[str, Any] = {}
    folder = None
    if path is not None and Path(path).is_dir():
        folder = Path(path)
        if not (folder / rundir.CONFIG).is_file():
            raise UserError(f"{path} is a folder without {rundir.CONFIG}, so not a run folder: pass a config file (e.g. "
                            "configs/cot_lookup.yaml) or a folder a run wrote (runs/<name>)")
        path = folder / rundir.CONFIG
    if path is not None:
        p = Path(path)
        if not p.is_file() and (CONFIG_DIR / f"{path}.yaml").is_file():
            p = CONFIG_DIR / f"{path}.yaml"  # a shipped config by name: `sys2distill run rar_last_letter`
        if not p.is_file():
            raise UserError(f"config file not found: {p}: pass a YAML file such as configs/rar_coin_flip.yaml "
                            f"or a shipped config's name ({', '.join(shipped_configs())})")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise UserError(f"config {p} is not valid YAML at {_yaml_problem(e)}: fix it there") from None
        except UnicodeDecodeError:
            raise UserError(f"config {p} is not UTF-8 text: pass a YAML file such as configs/rar_coin_flip.yaml") from None
        if not isinstance(data, dict):
            raise UserError(f"config {p} must be a YAML mapping of keys to values")
    renamed = any(item.split("=", 1)[0].strip() in ("name", "run_dir") for item in overrides)
    if folder is not None and not renamed:  # the folder as it is now (moved, or named from another working directory)
        data["run_dir"] = str(folder)
    base = p.parent if path is not None else Path.cwd()
    _resolve_paths(data, base)  # before the overrides: a path on the command line is relative to where you are
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {k!r} is not a section")
        node[keys[-1]] = value
    chains = data.get("chains")
    if isinstance(chains, dict):  # chain files are read in, so the run folder's config.yaml holds every prompt
        data["chains"] = {name: read_chain(c, base) if isinstance(c, str) else c for name, c in chains.items()}
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(_explain(e)) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)
