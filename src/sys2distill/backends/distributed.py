"""Scale-out generation on a Ray cluster (issue 5, part 3): ``backend.distributed: ray``.

``num_workers`` Ray actors each build the configured backend once (HF on CPU/GPU, vLLM,
or an ``openai`` client); every ``generate`` call cuts its prompts into one shard per actor
and returns the results in input order, so the driver writes the run folder
as in a one-process run. With per-sample seeds (``backends.base``) the output does not
depend on how the prompts were sharded.

Long-lived actors rather than Ray Data: the pipeline calls ``generate`` once per
checkpointed chunk (``generation.chunk_sequences`` sequences) so a crash loses at most a chunk, and a
Ray Data ``map_batches`` actor pool lives for one dataset execution — each chunk would reload
the model in every worker and pay Ray Data's planning overhead, and results would need
re-sorting. Actors keep the model loaded across chunks; shards come back in input order.
"""

from __future__ import annotations

from sys2distill.backends.base import Messages, SamplingParams
from sys2distill.errors import UserError
from sys2distill.records import Completion

INSTALL = "pip install 'sys2distill[ray]'"


class _Worker:
    """One replica of the configured backend inside a Ray actor."""

    def __init__(self, name: str, kwargs: dict):
        from sys2distill import backends
        from sys2distill.registry import lookup

        self.error: UserError | None = None
        try:
            self.backend = lookup(backends.REGISTRY, name, "backend")(**kwargs)
        except UserError as e:  # model_id() raises it: Ray returns a method's exception intact, a constructor's as text
            self.error = e

    def model_id(self) -> str:
        if self.error:
            raise self.error
        return self.backend.model_id

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        return self.backend.generate(prompts, params)


class RayBackend:
    """Shard each ``generate`` call across ``num_workers`` replicas of backend ``name``."""

    def __init__(self, name: str, kwargs: dict, num_workers: int = 2, gpus_per_worker: float = 0):
        try:
            import ray
        except ImportError:
            raise UserError(f"backend.distributed=ray needs Ray: run `{INSTALL}`") from None
        if not ray.is_initialized():
            ray.init()  # joins the cluster named by $RAY_ADDRESS, else starts a local one
        # Split the cluster's CPUs between the workers (Ray sets each actor's torch/OMP threads to its
        # share), but never ask for more than one node has: an actor cannot span nodes.
        per_node = max(n["Resources"].get("CPU", 1) for n in ray.nodes() if n["Alive"])
        cpus = max(1, min(int(ray.cluster_resources().get("CPU", 1)) // num_workers, int(per_node)))
        actor = ray.remote(num_cpus=cpus, num_gpus=gpus_per_worker)(_Worker)
        self.workers = [actor.remote(name, kwargs) for _ in range(num_workers)]
        self._ray = ray
        # Wait for every replica: a bad model or an unreachable server fails here, at setup.
        try:
            self.model_id = self._get(lambda: ray.get([w.model_id.remote() for w in self.workers]))[0]
        except Exception:
            self.close()  # free the failed replicas' CPUs/GPUs on the cluster
            raise

    def _get(self, fetch):
        try:
            return fetch()
        except self._ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, UserError):  # a worker's one-line user error stays one line
                raise e.cause from None
            raise

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        # One contiguous shard per worker: engines batch within a call, so fewer, larger calls run faster.
        size = -(-len(prompts) // len(self.workers)) or 1
        parts = [prompts[i:i + size] for i in range(0, len(prompts), size)]
        refs = [w.generate.remote(part, params) for w, part in zip(self.workers, parts)]
        out = self._get(lambda: self._ray.get(refs))  # in shard order = input order
        return [row for part in out for row in part]

    def close(self) -> None:
        for w in self.workers:
            self._ray.kill(w)
