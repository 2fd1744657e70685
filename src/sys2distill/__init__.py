"""sys2distill: distil System 2 prompting methods into System 1 answers of the same model.

Implements Yu, Xu, Weston, Kulikov, "Distilling System 2 into System 1" (arXiv 2407.06023).
Python API::

    from sys2distill import load_config, Pipeline
    Pipeline(load_config("configs/rar_last_letter.yaml", ["task.test_size=50"])).run()
"""

__version__ = "0.1.0"
__all__ = ["Pipeline", "RunConfig", "STAGES", "load_config", "__version__"]


def __getattr__(name: str):
    # Lazy, so `sys2distill --help` and light submodules do not import torch.
    if name in ("RunConfig", "load_config"):
        from sys2distill import config

        return getattr(config, name)
    if name in ("Pipeline", "STAGES"):
        from sys2distill import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
