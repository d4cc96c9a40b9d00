"""The Ocean tools as LangChain StructuredTools: names, typed arguments, descriptions, metadata."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Literal

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field, ValidationError

from tools.ocean import lookups, validate
from tools.ocean.client import OceanConfig, OceanError, OceanNotFound, run
from tools.ocean.formatting import cap

log = logging.getLogger("jellychat.ocean")

INVALID = "Invalid input: "  # the start of an error the model can fix by asking again
FAILED = "Ocean lookup failed: "  # the start of an error about the Ocean itself


def friendly(label: str) -> str:
    return f"Let me gather some information out of the Ocean for you: {label} 🌊"


def _validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()))
        problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return INVALID + "; ".join(problems)


# --- argument schemas ---------------------------------------------------------------------

_LIMIT = Field(5, description="How many list entries to show, 1 to 20.")


class AddressArgs(BaseModel):
    address: str = Field(description="A DeFiChain address: mainnet df1… (bech32) or 8…/d… (legacy); "
                                     "testnet tf1…, 7… or t….")
    info: Literal["balance", "tokens", "transactions", "unspent", "vaults"] = Field(
        "balance",
        description="balance: the DFI held as UTXO; tokens: token balances (including DFI as a token); "
                    "transactions: recent UTXO transactions; unspent: unspent outputs; vaults: loan vaults "
                    "owned by the address.",
    )
    limit: int = _LIMIT


class BlocksArgs(BaseModel):
    action: Literal["latest", "get", "transactions"] = Field(
        "latest",
        description="latest: the newest blocks (limit 1 gives the current block height); get: one block; "
                    "transactions: the transactions in one block.",
    )
    block: int | str | None = Field(None, description="For get/transactions: a block height (e.g. 3000000) "
                                                      "or a 64-hex block hash.")
    limit: int = _LIMIT


class GovernanceArgs(BaseModel):
    proposal_id: str | None = Field(None, description="A proposal id (64 hex characters) to get one "
                                                      "proposal; leave empty to list proposals.")
    status: Literal["all", "voting", "rejected", "completed"] = Field(
        "all", description="When listing: only proposals with this status.")
    limit: int = _LIMIT


class VaultArgs(BaseModel):
    vault_id: str = Field(description="The vault id: 64 hex characters.")


class MasternodeArgs(BaseModel):
    masternode_id: str = Field(description="The masternode id: 64 hex characters.")


class PriceArgs(BaseModel):
    symbol: str = Field(description="Token symbol, e.g. DFI, BTC, ETH, DUSD, TSLA.")


class StatsArgs(BaseModel):
    kind: Literal["general", "burn", "rewards", "supply"] = Field(
        "general",
        description="general: block count, DFI price, TVL, masternode/token counts, loans; burn: DFI and "
                    "tokens burned; rewards: how the block reward is split; supply: DFI max/minted/burned/"
                    "circulating supply.",
    )


class TokenArgs(BaseModel):
    token: str = Field(description="Token id (e.g. 0) or symbol (e.g. DFI, BTC, DUSD, or a pool share "
                                   "like BTC-DFI).")


class TransactionArgs(BaseModel):
    txid: str = Field(description="The transaction id: 64 hex characters.")


class PoolPairArgs(BaseModel):
    action: Literal["list", "get", "lookup"] = Field(
        "list",
        description="list: pool pairs by liquidity; get: details of one pair; lookup: find a pair's id "
                    "from two token symbols.",
    )
    pair: str | None = Field(None, description="For get: a pool pair id (e.g. 5) or two symbols; for lookup: "
                                               "two symbols, e.g. 'DFI-USDT' or 'BTC DFI'.")
    limit: int = _LIMIT


# --- the tools ----------------------------------------------------------------------------

_ADDRESS_LABELS = {
    "balance": "Get Utxo Balance", "tokens": "List Address Tokens",
    "transactions": "List Address Transactions", "unspent": "List Unspent Outputs",
    "vaults": "List Address Vaults",
}
_BLOCK_LABELS = {"latest": "Get Latest Blocks", "get": "Get Block", "transactions": "List Block Transactions"}
_STATS_LABELS = {"general": "Get Stats", "burn": "Get Burn Info", "rewards": "Get Reward Distribution",
                 "supply": "Get Supply"}
_PAIR_LABELS = {"list": "List Pool Pairs", "get": "Get Pool Pair", "lookup": "Find Pool Pair"}


class OceanTools:
    """Builds the tools for one configuration; each call validates, then runs bounded."""

    def __init__(self, config: OceanConfig):
        self.config = config

    def _call(self, work: Callable, missing: str) -> str:
        try:
            return cap(run(self.config, work))
        except OceanNotFound as exc:
            raise ToolException(f"{FAILED}Ocean doesn't know {exc.reason or missing}.") from None
        except OceanError as exc:
            raise ToolException(f"{FAILED}{exc.reason}.") from None
        except Exception:  # noqa: BLE001 - an odd answer must not fail the turn
            log.exception("an Ocean lookup failed unexpectedly")
            raise ToolException(f"{FAILED}Ocean's answer was not what I expected.") from None

    # each method: validate (InvalidArgument -> tool error), then call Ocean
    def address(self, address: str, info: str = "balance", limit: int = 5) -> str:
        addr = validate.address(address, self.config.network)
        n = validate.limit(limit)
        work = {
            "balance": lambda c: lookups.address_balance(c, addr),
            "tokens": lambda c: lookups.address_tokens(c, addr, n),
            "transactions": lambda c: lookups.address_transactions(c, addr, n),
            "unspent": lambda c: lookups.address_unspent(c, addr, n),
            "vaults": lambda c: lookups.address_vaults(c, addr, n),
        }[info]
        return self._call(work, "that address")

    def blocks(self, action: str = "latest", block: int | str | None = None, limit: int = 5) -> str:
        if action == "latest":
            n = validate.limit(limit)
            return self._call(lambda c: lookups.latest_blocks(c, n), "any blocks")
        if block is None or block == "":
            raise validate.InvalidArgument("give a block height or a block hash")
        ref = validate.block(block)
        missing = f"block {ref}" if ref.isdigit() else "a block with that hash"
        if ref.isdigit():
            missing += " (it may not be mined yet)"
        if action == "get":
            return self._call(lambda c: lookups.block(c, ref), missing)
        n = validate.limit(limit)
        return self._call(lambda c: lookups.block_transactions(c, ref, n), missing)

    def governance(self, proposal_id: str | None = None, status: str = "all", limit: int = 5) -> str:
        if proposal_id:
            pid = validate.hex_id(proposal_id, "proposal id")
            return self._call(lambda c: lookups.proposal(c, pid), "that proposal")
        n = validate.limit(limit)
        return self._call(lambda c: lookups.proposals(c, status, n), "any proposals")

    def vault(self, vault_id: str) -> str:
        vid = validate.hex_id(vault_id, "vault id")
        return self._call(lambda c: lookups.vault(c, vid), "that vault")

    def masternode(self, masternode_id: str) -> str:
        mid = validate.hex_id(masternode_id, "masternode id")
        return self._call(lambda c: lookups.masternode(c, mid), "that masternode")

    def price(self, symbol: str) -> str:
        sym = validate.symbol(symbol)
        return self._call(lambda c: lookups.price(c, sym), f"a USD price for {sym}")

    def stats(self, kind: str = "general") -> str:
        work = {"general": lookups.stats, "burn": lookups.burn, "rewards": lookups.rewards,
                "supply": lookups.supply}[kind]
        return self._call(work, "those statistics")

    def token(self, token: str) -> str:
        ref = validate.token(token)
        return self._call(lambda c: lookups.token(c, ref), f"the token {ref}")

    def transaction(self, txid: str) -> str:
        tid = validate.hex_id(txid, "transaction id")
        return self._call(lambda c: lookups.transaction(c, tid), "that transaction")

    def poolpairs(self, action: str = "list", pair: str | None = None, limit: int = 5) -> str:
        if action == "list":
            n = validate.limit(limit)
            return self._call(lambda c: lookups.poolpairs(c, n), "any pool pairs")
        text = str(pair if pair is not None else "").strip()
        if action == "get" and text.lstrip("#").isdigit():
            pid = text.lstrip("#")
            return self._call(lambda c: lookups.poolpair(c, pid), f"pool pair id {pid}")
        a, b = validate.pair(text)
        if action == "get":
            return self._call(lambda c: lookups.poolpair(c, (a, b)), f"a pool pair of {a} and {b}")
        return self._call(lambda c: lookups.lookup_pair(c, a, b), f"a pool pair of {a} and {b}")


def _guarded(method: Callable) -> Callable:
    """Turn InvalidArgument into a tool error the agent can relay."""

    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except validate.InvalidArgument as exc:
            raise ToolException(INVALID + str(exc)) from None

    return call


def _tool(method, name, description, schema, label) -> StructuredTool:
    metadata = {"friendly": label, "ocean": True}
    return StructuredTool.from_function(
        func=_guarded(method),
        name=name,
        description=description,
        args_schema=schema,
        handle_tool_error=True,
        handle_validation_error=_validation_error,
        metadata=metadata,
    )


def _label(table: dict, key: str, default: str) -> Callable:
    return lambda args: friendly(table.get((args or {}).get(key) or default, table[default]))


_DESCRIPTIONS = {
    "ocean_address": "Live data about one DeFiChain {net} address from the Ocean API: its UTXO DFI balance, "
                     "token balances, recent transactions, unspent outputs or loan vaults.",
    "ocean_blocks": "Live block data from the Ocean API: the latest blocks and the current block height, "
                    "one block by height or hash, or the transactions in a block.",
    "ocean_governance": "On-chain governance from the Ocean API: list proposals (CFPs and votes of "
                        "confidence), optionally by status, or get one proposal with its votes.",
    "ocean_vault": "One loan vault by its id from the Ocean API: owner, state, collateral, loans, "
                   "collateral ratio.",
    "ocean_masternode": "One masternode by its id from the Ocean API: state, owner and operator, minted "
                        "blocks, timelock.",
    "ocean_price": "The current oracle price of a token in USD from the Ocean API (DFI, BTC, ETH, DUSD, "
                   "TSLA, ...).",
    "ocean_stats": "DeFiChain-wide live statistics from the Ocean API: general stats (block count, DFI "
                   "price, TVL, masternode count, loans), DFI burned, block reward distribution, or DFI "
                   "supply.",
    "ocean_token": "One token by id or symbol from the Ocean API: name, kind (DAT, loan token, pool share), "
                   "minted amount, creation block.",
    "ocean_transaction": "One transaction by its id from the Ocean API: block, time, inputs, outputs, total "
                         "value.",
    "ocean_poolpairs": "DEX pool pairs from the Ocean API: list pairs by liquidity, get one pair (reserves, "
                       "price, APR, volume) by id or by its two symbols, or look up a pair's id from symbols "
                       "like 'DFI-USDT'.",
}


def _proposal_label(args) -> str:
    return friendly("Get Proposal" if (args or {}).get("proposal_id") else "List Proposals")


def make_tools(settings, store=None) -> list:
    """The read-only Ocean tools for `settings` (OCEAN_URL, OCEAN_NETWORK, OCEAN_TIMEOUT).

    Builds objects only: no request is sent and no `defichain` module is imported here.
    """
    ocean = OceanTools(OceanConfig.from_settings(settings))
    specs = [
        ("ocean_address", ocean.address, AddressArgs, _label(_ADDRESS_LABELS, "info", "balance")),
        ("ocean_blocks", ocean.blocks, BlocksArgs, _label(_BLOCK_LABELS, "action", "latest")),
        ("ocean_governance", ocean.governance, GovernanceArgs, _proposal_label),
        ("ocean_vault", ocean.vault, VaultArgs, friendly("Get Vault")),
        ("ocean_masternode", ocean.masternode, MasternodeArgs, friendly("Get Masternode")),
        ("ocean_price", ocean.price, PriceArgs, friendly("Get Price")),
        ("ocean_stats", ocean.stats, StatsArgs, _label(_STATS_LABELS, "kind", "general")),
        ("ocean_token", ocean.token, TokenArgs, friendly("Get Token")),
        ("ocean_transaction", ocean.transaction, TransactionArgs, friendly("Get Transaction")),
        ("ocean_poolpairs", ocean.poolpairs, PoolPairArgs, _label(_PAIR_LABELS, "action", "list")),
    ]
    net = ocean.config.network
    return [
        _tool(method, name, _DESCRIPTIONS[name].format(net=net), schema, label)
        for name, method, schema, label in specs
    ]
