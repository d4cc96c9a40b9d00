"""Read-only tools for live DeFiChain data from the Ocean API, through the `defichain` package."""

from tools.ocean.toolset import make_tools

__all__ = ["make_tools"]
