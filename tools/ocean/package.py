"""The parts of the `defichain` package the Ocean tools use, loaded without side effects.

Importing anything under `defichain` first runs `defichain/__init__.py`, which
imports the transaction builder, whose `transactions/utils/token.py` builds an
`Ocean()` at import time: a GET to the public Ocean with no timeout. On a
green-threaded server that request could stall whoever triggered the import.

`load()` therefore registers a bare package object for `defichain` (its
`__init__` not executed), imports only the modules listed below, which need
nothing else from the package, and then takes every `defichain*` entry it
added back out of `sys.modules`. We keep a private copy of those modules; code
elsewhere that imports `defichain` later still gets the complete package.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import SimpleNamespace

_MODULES = {
    "Address": "defichain.ocean.modules.address",
    "Blocks": "defichain.ocean.modules.blocks",
    "Governance": "defichain.ocean.modules.governance",
    "Loan": "defichain.ocean.modules.loan",
    "Masternodes": "defichain.ocean.modules.masternodes",
    "Poolpairs": "defichain.ocean.modules.poolpairs",
    "Prices": "defichain.ocean.modules.prices",
    "Stats": "defichain.ocean.modules.stats",
    "Tokens": "defichain.ocean.modules.tokens",
    "Transactions": "defichain.ocean.modules.transactions",
    "Connection": "defichain.ocean.connection",
}
_EXTRA = {
    "bech32": "defichain.libs.bech32",
    "networks": "defichain.networks.networks",
}

_lock = threading.Lock()
_loaded: SimpleNamespace | None = None


def _import_all() -> SimpleNamespace:
    found = {}
    for attr, name in _MODULES.items():
        found[attr] = getattr(importlib.import_module(name), attr)
    for attr, name in _EXTRA.items():
        found[attr] = importlib.import_module(name)
    return SimpleNamespace(**found)


def load() -> SimpleNamespace:
    """The Ocean module classes, the Connection class, bech32 and the network definitions."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        if "defichain" in sys.modules:
            # someone already imported the whole package: its side effects are behind us
            _loaded = _import_all()
            return _loaded
        spec = importlib.util.find_spec("defichain")
        if spec is None:
            raise ImportError("the 'defichain' package is not installed: pip install -r requirements.txt")
        before = set(sys.modules)
        sys.modules["defichain"] = importlib.util.module_from_spec(spec)
        try:
            _loaded = _import_all()
        finally:
            for name in set(sys.modules) - before:
                if name == "defichain" or name.startswith("defichain."):
                    del sys.modules[name]
        return _loaded
