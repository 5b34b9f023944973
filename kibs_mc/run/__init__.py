"""Running an experiment's replicates: the plan (``plan``: scenarios, seeds, chunks), the unit
of work (``chunk``), where it runs (``executor``), where results go (``store``), what the
machine can hold (``limits``), adaptive replicate counts (``adaptive``), one writer per run
directory (``lock``) and Ctrl-C between replicates (``interrupt``).

The modules are imported one by one (a Ray worker needs only ``chunk``), so this package
re-exports nothing.
"""

__all__ = ["adaptive", "chunk", "executor", "interrupt", "limits", "lock", "plan", "store"]
