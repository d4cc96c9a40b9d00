"""A local Ocean-compatible HTTP server for tests and benchmarks.

Same URL layout as the DeFiChain Ocean API that the `defichain` package calls,
`/{version}/{network}/<endpoint>`, with the same envelopes: `{"data": ...}`,
lists paginated by `size` / `next` with `page.next`, errors as
`{"error": {"code", "type", "message", ...}}`. The answers come from an
`OceanData` the test controls. Shapes follow the whale-api-client types the
package's docstrings point to (AddressToken, AddressActivity, Block,
Transaction, PriceTicker, StatsData, LoanVaultActive, MasternodeData,
GovernanceProposal, TokenData, PoolPairData).

Modes (`server.mode`):
- "ok": answer from the data; unknown ids give 404
- "error": every request gets HTTP 500 with an Ocean error body
- "hang": accept the connection, read the request, never answer (until `close()`
  or `release()`)
- "trickle": send the status line and headers, then one byte of body every
  `trickle_interval` seconds, never finishing (until released)

`requests` records every path asked for; `request_seen` is set on each one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ADDRESS = "df1qwfpdfkvphwme3039pal4awq6cz66racsm8uek9"  # a valid mainnet bech32 address
LEGACY_ADDRESS = "dEPoXJzwGia1aAbz6ZRB7FFSKSeWPn1v7A"  # a valid mainnet base58 (P2SH) address
EMPTY_ADDRESS = "8defichainBurnAddressXXXXXXXdRQkSm"  # the mainnet burn address (legacy P2PKH)
TIP = 3_512_345
BLOCK_TIME = 1_700_000_000


def hexid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


TXID = hexid("tx-1")
VAULT_ID = hexid("vault-1")
MASTERNODE_ID = hexid("masternode-1")
PROPOSAL_ID = hexid("proposal-1")


def _block(height: int) -> dict:
    return {
        "id": hexid(f"block-{height}"), "hash": hexid(f"block-{height}"),
        "previousHash": hexid(f"block-{height - 1}"), "height": height, "version": 536870912,
        "time": BLOCK_TIME + 30 * (height - TIP), "medianTime": BLOCK_TIME + 30 * (height - TIP) - 300,
        "transactionCount": 3 if height == TIP else 1, "difficulty": 123456789.5,
        "masternode": MASTERNODE_ID, "minter": "8KRsoeCRKHUFFmAGGJbRBAgraXiUPUVuXn", "minterBlockCount": 10,
        "reward": "405.04", "stakeModifier": hexid(f"stake-{height}"),
        "merkleroot": hexid(f"merkle-{height}"),
        "size": 1234, "sizeStripped": 1000, "weight": 4234,
    }


def _transaction(txid: str, height: int, order: int = 0, total: str = "12.34500000") -> dict:
    block = _block(height)
    return {
        "id": txid, "txid": txid, "order": order, "hash": txid, "version": 4, "size": 225, "vSize": 144,
        "weight": 573, "lockTime": 0, "vinCount": 1, "voutCount": 2, "totalVoutValue": total,
        "block": {"hash": block["hash"], "height": height, "time": block["time"],
                  "medianTime": block["medianTime"]},
    }


def _token_amount(token_id: str, symbol: str, value: str, name: str = "") -> dict:
    display = symbol if symbol in ("DFI", "DUSD") else f"d{symbol}"
    return {"id": token_id, "amount": value, "symbol": symbol, "displaySymbol": display,
            "symbolKey": symbol, "name": name or symbol}


def _poolpair(pair_id: str, a: tuple[str, str], b: tuple[str, str], reserves: tuple[str, str],
              usd: str, apr: float) -> dict:
    def side(token, reserve):
        return {"id": token[0], "symbol": token[1],
                "displaySymbol": token[1] if token[1] in ("DFI", "DUSD") else f"d{token[1]}",
                "name": token[1], "reserve": reserve, "blockCommission": "0",
                "fee": {"pct": "0.001", "inPct": "0.001", "outPct": "0.001"}}

    symbol = f"{a[1]}-{b[1]}"
    return {
        "id": pair_id, "symbol": symbol, "displaySymbol": f"{side(a, '0')['displaySymbol']}-"
                                                         f"{side(b, '0')['displaySymbol']}",
        "name": symbol, "status": True, "tokenA": side(a, reserves[0]), "tokenB": side(b, reserves[1]),
        "priceRatio": {"ab": "0", "ba": "0"}, "commission": "0.002",
        "totalLiquidity": {"token": "1000", "usd": usd}, "tradeEnabled": True,
        "ownerAddress": ADDRESS, "rewardPct": "0.1", "rewardLoanPct": "0", "customRewards": [],
        "creation": {"tx": hexid(f"pool-{pair_id}"), "height": 466822},
        "apr": {"total": apr, "reward": apr * 0.8, "commission": apr * 0.2},
        "volume": {"h24": 12345.678, "d30": 456789.01},
    }


def _token(token_id: str, symbol: str, name: str, **flags) -> dict:
    return {
        "id": token_id, "symbol": symbol, "symbolKey": symbol,
        "displaySymbol": symbol if symbol in ("DFI", "DUSD") or flags.get("isLPS") else f"d{symbol}",
        "name": name, "decimal": 8, "limit": "0", "mintable": not flags.get("isLPS", False),
        "tradeable": True, "isDAT": True, "isLPS": flags.get("isLPS", False),
        "isLoanToken": flags.get("isLoanToken", False), "finalized": True,
        "minted": flags.get("minted", "0"), "creation": {"tx": hexid(f"token-{token_id}"), "height": 1000},
        "destruction": {"tx": "0" * 64, "height": -1}, "collateralAddress": ADDRESS,
    }


@dataclass
class OceanData:
    """What the fake Ocean knows. Tests change fields before asking."""

    balances: dict = field(default_factory=lambda: {ADDRESS: "1234.56780000", LEGACY_ADDRESS: "0.50000000"})
    address_tokens: dict = field(default_factory=lambda: {ADDRESS: [
        _token_amount("0", "DFI", "100.00000000", "Default Defi token"),
        _token_amount("2", "BTC", "0.01000000", "Bitcoin"),
        _token_amount("15", "DUSD", "250.00000000", "Decentralized USD") | {"isLoanToken": True},
    ]})
    address_transactions: dict = field(default_factory=dict)
    address_unspent: dict = field(default_factory=dict)
    address_vaults: dict = field(default_factory=lambda: {ADDRESS: [VAULT_ID]})
    tip: int = TIP
    block_transactions: dict = field(default_factory=dict)
    transactions: dict = field(default_factory=lambda: {TXID: _transaction(TXID, TIP - 5)})
    proposals: list = field(default_factory=list)
    vaults: dict = field(default_factory=dict)
    masternodes: dict = field(default_factory=dict)
    prices: dict = field(default_factory=lambda: {"DFI-USD": "2.12345678", "BTC-USD": "43210.50000000",
                                                  "TSLA-USD": "250.10000000"})
    stats: dict = field(default_factory=dict)
    supply: dict = field(default_factory=lambda: {"max": 1200000000, "total": 1021541245.12,
                                                  "burned": 243116519.5, "circulating": 778424725.62})
    burn: dict = field(default_factory=dict)
    rewards: dict = field(default_factory=lambda: {
        "masternode": 66.6, "community": 19.9, "anchor": 0.081, "liquidity": 103.1, "loan": 50.1,
        "options": 39.7, "unallocated": 14.5})
    tokens: list = field(default_factory=list)
    poolpairs: list = field(default_factory=list)

    def __post_init__(self):
        self.address_transactions.setdefault(ADDRESS, [
            {
                "id": hexid(f"activity-{i}"), "hid": hexid(f"hid-{ADDRESS}"),
                "type": "vout" if i % 2 == 0 else "vin", "typeHex": "01" if i % 2 == 0 else "00",
                "txid": hexid(f"atx-{i}"),
                "block": {"hash": hexid(f"block-{TIP - i}"), "height": TIP - i,
                          "time": BLOCK_TIME - 30 * i, "medianTime": BLOCK_TIME - 30 * i},
                "script": {"type": "witness_v0_keyhash", "hex": "0014" + "ab" * 20},
                "vout": {"txid": hexid(f"atx-{i}"), "n": 0}, "value": f"{i + 1}.00000000",
            }
            for i in range(12)
        ])
        self.address_unspent.setdefault(ADDRESS, [
            {
                "id": hexid(f"unspent-{i}"), "hid": hexid(f"hid-{ADDRESS}"), "sort": str(i),
                "block": {"hash": hexid(f"block-{TIP - i}"), "height": TIP - i, "time": BLOCK_TIME,
                          "medianTime": BLOCK_TIME},
                "script": {"type": "witness_v0_keyhash", "hex": "0014" + "ab" * 20},
                "vout": {"txid": hexid(f"utxo-{i}"), "n": i, "value": "617.28390000"},
            }
            for i in range(2)
        ])
        block_hash = hexid(f"block-{TIP}")
        self.block_transactions.setdefault(block_hash, [
            _transaction(hexid(f"btx-{i}"), TIP, order=i) for i in range(3)
        ])
        if not self.proposals:
            self.proposals = [
                {
                    "proposalId": PROPOSAL_ID, "title": "Fund the jellyfish pond",
                    "context": "github.com/x/1",
                    "contextHash": "", "type": "CommunityFundProposal", "status": "Voting",
                    "amount": "5000.00000000", "currentCycle": 1, "totalCycles": 2,
                    "creationHeight": TIP - 100,
                    "cycleEndHeight": TIP + 1000, "proposalEndHeight": TIP + 2000, "payoutAddress": ADDRESS,
                    "votingPeriod": 40320, "approvalThreshold": "50.00%", "quorum": "1.00%",
                    "votesPossible": 11000, "votesPresent": 4000, "votesPresentPct": "36.36",
                    "votesYes": 3000, "votesYesPct": "75.00", "fee": 10, "options": [],
                },
                {
                    "proposalId": hexid("proposal-2"), "title": "Old idea", "context": "github.com/x/2",
                    "contextHash": "", "type": "VoteOfConfidence", "status": "Rejected",
                    "currentCycle": 1, "totalCycles": 1, "creationHeight": TIP - 90000,
                    "cycleEndHeight": TIP - 50000, "proposalEndHeight": TIP - 50000,
                    "votingPeriod": 40320, "approvalThreshold": "66.67%", "quorum": "1.00%", "fee": 50,
                },
            ]
        self.vaults.setdefault(VAULT_ID, {
            "vaultId": VAULT_ID, "loanScheme": {"id": "MIN150", "minColRatio": "150", "interestRate": "5"},
            "ownerAddress": ADDRESS, "state": "ACTIVE", "informativeRatio": "201.5",
            "collateralRatio": "200", "collateralValue": "3000", "loanValue": "1500", "interestValue": "0.5",
            "collateralAmounts": [_token_amount("0", "DFI", "1412.80000000")],
            "loanAmounts": [_token_amount("15", "DUSD", "1500.00000000")],
            "interestAmounts": [_token_amount("15", "DUSD", "0.50000000")],
        })
        self.masternodes.setdefault(MASTERNODE_ID, {
            "id": MASTERNODE_ID, "sort": "00000001", "state": "ENABLED", "mintedBlocks": 4321,
            "owner": {"address": "8Gy4RbdV7LrcsEHpyPrp6CbbZKCM6C3ayk"},
            "operator": {"address": "8Gy4RbdV7LrcsEHpyPrp6CbbZKCM6C3ayk"},
            "creation": {"height": 500000}, "timelock": 260,
        })
        if not self.stats:
            self.stats = {
                "count": {"blocks": self.tip + 1, "tokens": 212, "prices": 56, "masternodes": 11234},
                "tvl": {"total": 123456789.12, "dex": 80000000.5, "loan": 20000000.25,
                        "masternodes": 23456788.37},
                "burned": {"total": 243116519.5, "address": 150000000.1, "fee": 1000, "auction": 500.5,
                           "payback": 200.2, "emission": 93000000.7},
                "price": {"usd": 2.1234, "usdt": 2.1201},
                "masternodes": {"locked": [{"weeks": 0, "tvl": 1000000, "count": 9000}]},
                "emission": {"total": 158.7, "masternode": 52.6, "dex": 40.1, "community": 15.7,
                             "anchor": 0.06, "burned": 50.2},
                "loan": {"count": {"schemes": 6, "loanTokens": 30, "collateralTokens": 10, "openVaults": 9876,
                                   "openAuctions": 3},
                         "value": {"collateral": 50000000.5, "loan": 20000000.25}},
                "blockchain": {"difficulty": 123456789.5},
                "net": {"version": 4000000, "subversion": "/DeFiChain:4.0.0/", "protocolversion": 70038},
            }
        if not self.burn:
            self.burn = {
                "address": "8defichainBurnAddressXXXXXXXdRQkSm", "amount": "156878239.12345678",
                "tokens": ["499.99999000@BTC", "2000.00000000@DUSD"], "feeburn": 1000,
                "emissionburn": 93000000.7,
                "auctionburn": 500.5, "paybackburn": 200.2, "paybackburntokens": [], "dexfeetokens": [],
                "dfipaybackfee": 0, "dfipaybacktokens": [], "paybackfees": [], "paybacktokens": [],
                "dfip2203": [], "dfip2206f": [],
            }
        if not self.tokens:
            self.tokens = [
                _token("0", "DFI", "Default Defi token", minted="0"),
                _token("1", "ETH", "Ether", minted="120.5"),
                _token("2", "BTC", "Bitcoin", minted="501.2"),
                _token("3", "USDT", "Tether USD", minted="1000000"),
                _token("5", "BTC-DFI", "Bitcoin-Default Defi token", isLPS=True, minted="1234"),
                _token("15", "DUSD", "Decentralized USD", isLoanToken=True, minted="30000000"),
                _token("17", "USDT-DFI", "Tether USD-Default Defi token", isLPS=True, minted="99"),
            ]
        if not self.poolpairs:
            self.poolpairs = [
                _poolpair("4", ("1", "ETH"), ("0", "DFI"), ("100.5", "200000.25"), "850000.12", 0.35),
                _poolpair("5", ("2", "BTC"), ("0", "DFI"), ("10.0", "2000000.0"), "8500000.5", 0.25),
                _poolpair("6", ("3", "USDT"), ("0", "DFI"), ("212345.0", "100000.0"), "425000.0", 0.8),
                _poolpair("17", ("15", "DUSD"), ("0", "DFI"), ("1000000", "470000"), "1900000", 0.5),
            ]

    def blocks(self) -> list:
        return [_block(h) for h in range(self.tip, max(self.tip - 50, -1), -1)]

    def block(self, ref: str) -> dict | None:
        if ref.isdigit():
            height = int(ref)
            return _block(height) if height <= self.tip else None
        for height in range(self.tip, max(self.tip - 50, -1), -1):
            if hexid(f"block-{height}") == ref:
                return _block(height)
        return None


def _page(items: list, query: dict) -> dict:
    size = int(query.get("size", ["30"])[0])
    start = int(query.get("next", ["0"])[0] or 0)
    body = {"data": items[start:start + size]}
    if start + size < len(items):
        body["page"] = {"next": str(start + size)}
    return body


class _NotFound(Exception):
    pass


class OceanServer:
    """Serves `OceanData` at http://127.0.0.1:<port>/v0/<network>/..., in a thread."""

    def __init__(self, data: OceanData | None = None, network: str = "mainnet", port: int = 0):
        self.data = data or OceanData()
        self.network = network
        self.mode = "ok"
        self.trickle_interval = 0.2
        self.gzip = False  # compress answers for clients that accept gzip, as the public Ocean does
        self.requests: list[str] = []
        self.request_seen = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="fake-ocean")

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OceanServer:
        self._thread.start()
        return self

    def release(self) -> None:
        """Let requests held in "hang" mode go (they are answered with 503)."""
        self._release.set()

    def reset(self) -> None:
        self.release()
        self.mode = "ok"
        self.trickle_interval = 0.2
        self.gzip = False
        with self._lock:
            self.requests.clear()
        self.request_seen.clear()
        self._release = threading.Event()

    def close(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> OceanServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- routing -----------------------------------------------------------------------
    def answer(self, path: str, query: dict):
        d = self.data
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "v0" or parts[1] != self.network:
            raise _NotFound(f"no route {path}")
        p = parts[2:]
        match p:
            case ["stats"]:
                return {"data": d.stats}
            case ["stats", "supply"]:
                return {"data": d.supply}
            case ["stats", "burn"]:
                return {"data": d.burn}
            case ["stats", "rewards", "distribution"]:
                return {"data": d.rewards}
            case ["address", address, "balance"]:
                return {"data": d.balances.get(address, "0.00000000")}
            case ["address", address, "aggregation"]:
                txs = d.address_transactions.get(address, [])
                if not txs:
                    return {}
                return {"data": {"id": address, "statistic": {"txCount": len(txs), "txInCount": 0,
                                                              "txOutCount": len(txs)}}}
            case ["address", address, "tokens"]:
                return _page(d.address_tokens.get(address, []), query)
            case ["address", address, "transactions"]:
                return _page(d.address_transactions.get(address, []), query)
            case ["address", address, "transactions", "unspent"]:
                return _page(d.address_unspent.get(address, []), query)
            case ["address", address, "vaults"]:
                return _page([d.vaults[v] for v in d.address_vaults.get(address, []) if v in d.vaults], query)
            case ["blocks"]:
                return _page(d.blocks(), query)
            case ["blocks", ref]:
                block = d.block(ref)
                if block is None:
                    raise _NotFound("Unable to find block")
                return {"data": block}
            case ["blocks", block_hash, "transactions"]:
                return _page(d.block_transactions.get(block_hash, []), query)
            case ["transactions", txid]:
                if txid not in d.transactions:
                    raise _NotFound("Unable to find transaction")
                return {"data": d.transactions[txid]}
            case ["governance", "proposals"]:
                status = query.get("status", ["all"])[0].lower()
                found = [x for x in d.proposals if status == "all" or x["status"].lower() == status]
                return _page(found, query)
            case ["governance", "proposals", proposal_id]:
                for proposal in d.proposals:
                    if proposal["proposalId"] == proposal_id:
                        return {"data": proposal}
                raise _NotFound("Unable to find proposal")
            case ["loans", "vaults", vault_id]:
                if vault_id not in d.vaults:
                    raise _NotFound("Unable to find vault")
                return {"data": d.vaults[vault_id]}
            case ["masternodes", masternode_id]:
                if masternode_id not in d.masternodes:
                    raise _NotFound("Unable to find masternode")
                return {"data": d.masternodes[masternode_id]}
            case ["prices", key]:
                if key not in d.prices:
                    raise _NotFound("Unable to find price")
                token, currency = key.split("-", 1)
                block = _block(d.tip)
                return {"data": {"id": key, "sort": "0", "price": {
                    "id": f"{key}-{d.tip}", "key": key, "sort": "0", "token": token, "currency": currency,
                    "aggregated": {"amount": d.prices[key], "weightage": 30,
                                   "oracles": {"active": 3, "total": 3}},
                    "block": {"hash": block["hash"], "height": d.tip, "time": block["time"],
                              "medianTime": block["medianTime"]},
                }}}
            case ["tokens"]:
                return _page(d.tokens, query)
            case ["tokens", token_id]:
                for token in d.tokens:
                    if token["id"] == token_id:
                        return {"data": token}
                raise _NotFound("Unable to find token")
            case ["poolpairs"]:
                return _page(d.poolpairs, query)
            case ["poolpairs", pair_id]:
                for pair in d.poolpairs:
                    if pair["id"] == pair_id:
                        return {"data": pair}
                raise _NotFound("Unable to find poolpair")
        raise _NotFound(f"no route {path}")

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                if server.gzip and "gzip" in self.headers.get("Accept-Encoding", ""):
                    raw = gzip.compress(raw)
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _error(self, status: int, kind: str, message: str) -> None:
                self._send(status, {"error": {"code": status, "type": kind, "at": int(time.time() * 1000),
                                              "message": message, "url": self.path}})

            def _trickle(self, release: threading.Event) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.close_connection = True
                try:
                    # paced output is the behaviour under test, not synchronisation
                    while not release.wait(server.trickle_interval):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                except OSError:
                    pass

            def do_GET(self):
                split = urlsplit(self.path)
                with server._lock:
                    server.requests.append(self.path)
                server.request_seen.set()
                if server.mode == "hang":
                    server._release.wait()
                    self.close_connection = True
                    try:
                        self._error(503, "ServiceUnavailable", "released")
                    except OSError:
                        pass  # the client gave up long ago
                    return None
                if server.mode == "trickle":
                    return self._trickle(server._release)
                if server.mode == "error":
                    return self._error(500, "InternalServerError", "scripted failure")
                try:
                    body = server.answer(split.path, parse_qs(split.query))
                except _NotFound as exc:
                    return self._error(404, "NotFound", str(exc))
                return self._send(200, body)

        return Handler
