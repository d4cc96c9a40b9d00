"""Ocean tools in-process: the real `defichain` client over real HTTP to the local Ocean server."""

import json
import subprocess
import sys
import time

import pytest

from settings import Settings
from tests.fakes.ocean_server import (
    ADDRESS,
    LEGACY_ADDRESS,
    MASTERNODE_ID,
    PROPOSAL_ID,
    TIP,
    TXID,
    VAULT_ID,
    hexid,
)
from tests.helpers import ROOT, free_port
from tools.ocean import make_tools


def _tools(url: str, timeout: float = 5, network: str = "mainnet") -> dict:
    settings = Settings(ocean_url=url, ocean_timeout=timeout, ocean_network=network)
    return {t.name: t for t in make_tools(settings)}


@pytest.fixture
def tools(fake):
    return _tools(fake.url)


def test_every_tool_reads_the_local_ocean(tools, fake):
    cases = [
        ("ocean_address", {"address": ADDRESS}, ["1234.56780000 DFI"], f"address/{ADDRESS}/balance"),
        ("ocean_address", {"address": ADDRESS, "info": "tokens"},
         ["100.00000000 DFI", "0.01000000 dBTC", "250.00000000 DUSD (loan token)"], "/tokens?size=200"),
        ("ocean_address", {"address": ADDRESS, "info": "transactions", "limit": 3},
         ["(showing 3 of 12)", "received 1.00000000 DFI", hexid("atx-2")], "/transactions?size=3"),
        ("ocean_address", {"address": ADDRESS, "info": "unspent"},
         ["617.28390000 DFI in output " + hexid("utxo-1") + ":1"], "/transactions/unspent"),
        ("ocean_address", {"address": ADDRESS, "info": "vaults"},
         [VAULT_ID, "ACTIVE", "collateral ratio 200% (minimum 150%)"], "/vaults"),
        ("ocean_blocks", {"limit": 1}, [f"Current block height: {TIP}"], "blocks?size=1"),
        ("ocean_blocks", {"action": "latest", "limit": 3}, [f"#{TIP - 2}", "showing 3, more exist"],
         "blocks?size=3"),
        ("ocean_blocks", {"action": "get", "block": TIP - 45},
         [f"Block #{TIP - 45}", hexid(f"block-{TIP - 45}")], f"blocks/{TIP - 45}"),
        ("ocean_blocks", {"action": "transactions", "block": TIP}, [hexid("btx-0"), "all 3"],
         f"blocks/{hexid(f'block-{TIP}')}/transactions"),
        ("ocean_governance", {"status": "voting"}, ["Fund the jellyfish pond", "asks 5000.00000000 DFI"],
         "governance/proposals?status=voting"),
        ("ocean_governance", {"proposal_id": PROPOSAL_ID}, ["yes 3,000 (75.00%)", "approval 50.00%"],
         f"governance/proposals/{PROPOSAL_ID}"),
        ("ocean_vault", {"vault_id": VAULT_ID}, ["collateral: 3,000.00 USD (1412.80000000 DFI)",
                                                 "loans: 1,500.00 USD (1500.00000000 DUSD)"],
         f"loans/vaults/{VAULT_ID}"),
        ("ocean_masternode", {"masternode_id": MASTERNODE_ID}, ["state: ENABLED", "minted blocks: 4,321",
                                                                "260 weeks (5 years)"],
         f"masternodes/{MASTERNODE_ID}"),
        ("ocean_price", {"symbol": "dBTC"}, ["Price of BTC: 43210.50000000 USD", "3 of 3 oracles"],
         "prices/BTC-USD"),
        ("ocean_stats", {}, ["DFI price: 2.1234 USD", "total value locked: 123,456,789.12 USD",
                             "masternodes: 11,234"], "/stats"),
        ("ocean_stats", {"kind": "burn"}, ["DFI burned: 156878239.12345678 DFI", "499.99999000 BTC"],
         "stats/burn"),
        ("ocean_stats", {"kind": "rewards"}, ["masternode: 66.6 DFI", "liquidity: 103.1 DFI"],
         "stats/rewards/distribution"),
        ("ocean_stats", {"kind": "supply"}, ["circulating 778,424,725.62 DFI", "maximum 1,200,000,000 DFI"],
         "stats/supply"),
        ("ocean_token", {"token": "dusd"}, ["Token DUSD (id 15", "loan token", "minted: 30000000 DUSD"],
         "tokens?size=200"),
        ("ocean_token", {"token": "2"}, ["Token dBTC (id 2"], "tokens/2"),
        ("ocean_transaction", {"txid": TXID}, [f"Transaction {TXID}", f"block: #{TIP - 5}",
                                               "total output: 12.34500000 DFI"], f"transactions/{TXID}"),
        ("ocean_poolpairs", {"limit": 2}, ["(showing 2 of 4)", "id 5 dBTC-DFI: liquidity 8,500,000.50 USD"],
         "poolpairs?size=200"),
        ("ocean_poolpairs", {"action": "get", "pair": "5"}, ["1 dBTC = 200,000 DFI", "APR: 25%"],
         "poolpairs/5"),
        ("ocean_poolpairs", {"action": "get", "pair": "BTC DFI"}, ["Pool pair dBTC-DFI (id 5)"],
         "poolpairs?"),
        ("ocean_poolpairs", {"action": "lookup", "pair": "DFI-USDT"}, ["dUSDT-DFI with id 6"], "poolpairs?"),
    ]
    for name, args, expected, path in cases:
        fake.reset()
        result = tools[name].invoke(args)
        for text in expected:
            assert text in result, (name, args, result)
        assert any(f"/v0/mainnet/{path.lstrip('/')}" in r or path in r for r in fake.requests), fake.requests
        assert len(result) <= 1500


def test_the_numbers_come_from_the_server(tools, fake):
    fake.data.balances[ADDRESS] = "42.00000001"
    assert "42.00000001 DFI" in tools["ocean_address"].invoke({"address": ADDRESS})
    fake.data.tip = TIP + 7
    assert f"Current block height: {TIP + 7}" in tools["ocean_blocks"].invoke({"limit": 1})


def test_gzip_answers_are_decoded(tools, fake):
    fake.gzip = True
    fake.data.balances[ADDRESS] = "77.70000000"
    assert "77.70000000 DFI" in tools["ocean_address"].invoke({"address": ADDRESS})
    assert "Pool pair dBTC-DFI (id 5)" in tools["ocean_poolpairs"].invoke({"action": "get", "pair": "5"})


def test_pagination_is_followed_with_next(tools, fake):
    fake.data.tokens = fake.data.tokens + [
        {**fake.data.tokens[1], "id": str(1000 + i), "symbol": f"T{i}", "symbolKey": f"T{i}",
         "displaySymbol": f"dT{i}"} for i in range(250)
    ]
    assert "Token dT249 (id 1249" in tools["ocean_token"].invoke({"token": "T249"})
    assert any("next=200" in r for r in fake.requests)


def test_long_results_are_capped_and_counted(tools, fake):
    many = [{**fake.data.address_tokens[ADDRESS][0], "id": str(i), "symbol": f"TOK{i}",
             "displaySymbol": f"dTOK{i}", "amount": f"{i}.00000000", "name": "x" * 500} for i in range(120)]
    fake.data.address_tokens[LEGACY_ADDRESS] = many
    result = tools["ocean_address"].invoke({"address": LEGACY_ADDRESS, "info": "tokens", "limit": 50})
    assert "(showing 20 of 120)" in result
    assert result.count("\n- ") == 20
    assert "x" * 50 not in result


def test_bad_arguments_never_reach_ocean(tools, fake):
    cases = [
        ("ocean_address", {"address": "df1qnotanaddress"}, "doesn't look like a DeFiChain address"),
        ("ocean_blocks", {"action": "get", "block": -5}, "can't be negative"),
        ("ocean_blocks", {"action": "get"}, "give a block height or a block hash"),
        ("ocean_transaction", {"txid": "1234"}, "doesn't look like a transaction id"),
        ("ocean_vault", {"vault_id": "my vault"}, "doesn't look like a vault id"),
        ("ocean_masternode", {"masternode_id": TXID[:40]}, "doesn't look like a masternode id"),
        ("ocean_governance", {"proposal_id": "abc"}, "doesn't look like a proposal id"),
        ("ocean_price", {"symbol": "$$$"}, "doesn't look like a token symbol"),
        ("ocean_poolpairs", {"action": "lookup", "pair": "DFI"}, "two token symbols"),
        ("ocean_stats", {"kind": "everything"}, "Invalid input: kind: Input should be"),
    ]
    for name, args, message in cases:
        result = tools[name].invoke(args)
        assert result.startswith("Invalid input: ") and message in result, (name, result)
    assert fake.requests == []


def test_unknown_things_give_short_not_found_answers(tools, fake):
    cases = [
        ("ocean_blocks", {"action": "get", "block": TIP + 100}, f"Ocean doesn't know block {TIP + 100}"),
        ("ocean_transaction", {"txid": "ab" * 32}, "Ocean doesn't know that transaction"),
        ("ocean_vault", {"vault_id": "cd" * 32}, "Ocean doesn't know that vault"),
        ("ocean_masternode", {"masternode_id": "ef" * 32}, "Ocean doesn't know that masternode"),
        ("ocean_governance", {"proposal_id": "01" * 32}, "Ocean doesn't know that proposal"),
        ("ocean_price", {"symbol": "NOPE"}, "Ocean doesn't know a USD price for NOPE"),
        ("ocean_token", {"token": "NOPE"}, "Ocean doesn't know a token with the symbol NOPE"),
        ("ocean_poolpairs", {"action": "lookup", "pair": "DFI-TSLA"}, "pairs with DFI: BTC-DFI"),
    ]
    for name, args, message in cases:
        result = tools[name].invoke(args)
        assert result.startswith("Ocean lookup failed: ") and message in result, (name, result)
        assert len(result) < 300


def test_server_errors_become_a_short_result(tools, fake):
    fake.mode = "error"
    result = tools["ocean_address"].invoke({"address": ADDRESS})
    assert result == "Ocean lookup failed: Ocean has a problem right now (HTTP 500)."
    assert fake.requests, "the request reached the server"


def test_connection_refused_is_reported_at_once():
    tool = _tools(f"http://127.0.0.1:{free_port()}", timeout=5)["ocean_stats"]
    started = time.monotonic()
    result = tool.invoke({})
    assert result == "Ocean lookup failed: Ocean is not reachable right now."
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("mode", ["hang", "trickle", "stall"])
def test_a_server_that_never_finishes_is_cut_off_at_the_timeout(fake, mode):
    """hang: no answer at all; trickle: a byte every 0.2 s; stall: headers, then silence."""
    fake.mode = "trickle" if mode == "stall" else mode
    if mode == "stall":
        fake.trickle_interval = 60
    tool = _tools(fake.url, timeout=1)["ocean_address"]
    started = time.monotonic()
    result = tool.invoke({"address": ADDRESS})
    elapsed = time.monotonic() - started
    assert fake.request_seen.is_set(), "the request was accepted by the server"
    assert result == "Ocean lookup failed: Ocean is not answering right now (no reply within 1 s)."
    assert 0.9 <= elapsed < 3  # the 1 s deadline; without it: never (margin for a loaded machine)


def test_one_deadline_covers_all_requests_of_a_call(fake):
    """A symbol lookup pages through tokens; the whole call stays within the timeout."""
    tool = _tools(fake.url, timeout=1)["ocean_token"]
    fake.mode = "trickle"
    started = time.monotonic()
    result = tool.invoke({"token": "DUSD"})
    assert "not answering" in result
    assert time.monotonic() - started < 3  # one 1 s deadline, not one per request (loaded-machine margin)


def test_testnet_uses_the_testnet_path(fake):
    fake.network = "testnet"
    try:
        from tools.ocean import package

        testnet_address = package.load().bech32.encode("tf", 0, list(range(20)))
        fake.data.balances[testnet_address] = "9.00000000"
        tools = _tools(fake.url, network="testnet")
        assert "9.00000000 DFI" in tools["ocean_address"].invoke({"address": testnet_address})
        assert fake.requests[-1].startswith(f"/v0/testnet/address/{testnet_address}/balance")
        refused = tools["ocean_address"].invoke({"address": ADDRESS})
        assert "is a mainnet address, but I'm looking at DeFiChain testnet" in refused
    finally:
        fake.network = "mainnet"


def test_bad_network_setting_fails_fast():
    with pytest.raises(ValueError, match="OCEAN_NETWORK"):
        make_tools(Settings(ocean_network="moonnet"))


def test_friendly_names_describe_the_lookup(tools):
    from tools import friendly_name

    assert friendly_name(tools["ocean_address"], {"address": ADDRESS}) == \
        "Let me gather some information out of the Ocean for you: Get Utxo Balance 🌊"
    assert friendly_name(tools["ocean_address"], {"address": ADDRESS, "info": "vaults"}).endswith(
        "List Address Vaults 🌊")
    assert friendly_name(tools["ocean_stats"], {"kind": "burn"}).endswith("Get Burn Info 🌊")
    assert friendly_name(tools["ocean_poolpairs"], {"action": "lookup"}).endswith("Find Pool Pair 🌊")
    assert all(set(t.metadata) == {"friendly", "ocean"} for t in tools.values())  # nothing offline


def test_importing_and_building_the_tools_sends_nothing():
    """Neither importing the tools nor building them, nor loading the package parts, connects anywhere,
    and defichain's own __init__ (whose token.py sends an unbounded request) never runs."""
    code = r"""
import json, socket, sys
attempts, imported = [], []
real_connect = socket.socket.connect
def connect(self, address):
    attempts.append(repr(address))
    return real_connect(self, address)
socket.socket.connect = connect
real_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    attempts.append(repr(host))
    return real_getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
class Recorder:
    def find_spec(self, name, path=None, target=None):
        imported.append(name)
        return None
sys.meta_path.insert(0, Recorder())

import tools
from settings import Settings
from tools.ocean import make_tools, package, validate
built = make_tools(Settings())
package.load()
validate.address("df1qwfpdfkvphwme3039pal4awq6cz66racsm8uek9", "mainnet")
print(json.dumps({
    "tools": len(built),
    "attempts": attempts,
    "ocean_module": "defichain.ocean.modules.address" in imported,
    "token_module": "defichain.transactions.utils.token" in imported,
    "builder": any(n.startswith("defichain.transactions") for n in imported),
    "left_in_sys_modules": sorted(m for m in sys.modules if m.startswith("defichain")),
    "flask": sorted(m for m in sys.modules if m.split(".")[0] in ("flask", "flask_socketio")),
}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"tools": 10, "attempts": [], "ocean_module": True, "token_module": False,
                      "builder": False, "left_in_sys_modules": [], "flask": []}
