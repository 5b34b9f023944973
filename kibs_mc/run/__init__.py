"""Running an experiment's replicates: the plan (``plan``: scenarios, seeds, chunks), the unit
of work (``chunk``), where it runs (``executor``), where results go (``store``), what the
machine can hold (``limits``) and adaptive replicate counts (``adaptive``).

The modules are imported one by one (a Ray worker needs only ``chunk``), so this package
re-exports nothing.
"""

__all__ = ["adaptive", "chunk", "executor", "limits", "plan", "store"]
