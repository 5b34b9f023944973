"""kibs-mc: Monte Carlo experiments on the governance of collaborative innovation between
high-tech industrial clusters and knowledge-intensive business services (KIBS)."""

__version__ = "0.1.0"
