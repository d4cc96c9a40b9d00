"""Ocean tools: argument checks and offline routing (no network involved)."""

import base58
import pytest

from agent.offline import ocean as routing
from tests.fakes.ocean_server import ADDRESS, LEGACY_ADDRESS, MASTERNODE_ID, PROPOSAL_ID, TXID, VAULT_ID
from tools.ocean import package, validate
from tools.ocean.validate import InvalidArgument

BURN_ADDRESS = "8defichainBurnAddressXXXXXXXdRQkSm"


def _testnet_addresses() -> list[str]:
    bech32 = package.load().bech32
    program = list(range(20))
    return [
        bech32.encode("tf", 0, program),
        base58.b58encode_check(bytes([0x0F]) + bytes(program)).decode(),  # P2PKH, starts with 7
        base58.b58encode_check(bytes([0x80]) + bytes(program)).decode(),  # P2SH, starts with t
    ]


@pytest.mark.parametrize("address", [ADDRESS, ADDRESS.upper(), LEGACY_ADDRESS, BURN_ADDRESS])
def test_mainnet_addresses_pass(address):
    assert validate.address(address, "mainnet") == (address.lower() if address.startswith("DF1") else address)


def test_testnet_addresses_pass_on_testnet_only():
    for address in _testnet_addresses():
        assert address[0] in "t7"
        assert validate.address(address, "testnet") == address
        with pytest.raises(InvalidArgument, match="is a testnet address, but I'm looking at .* mainnet"):
            validate.address(address, "mainnet")


@pytest.mark.parametrize("bad", [
    ADDRESS[:-1] + ("8" if ADDRESS[-1] != "8" else "9"),  # one typo breaks the bech32 checksum
    LEGACY_ADDRESS[:-1] + "B",  # one typo breaks the base58 checksum
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",  # a bitcoin address
    "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    "hello",
    "df1" + "q" * 39,
])
def test_bad_addresses_are_refused_with_a_clear_message(bad):
    with pytest.raises(InvalidArgument, match="doesn't look like a DeFiChain address"):
        validate.address(bad, "mainnet")


def test_private_keys_and_evm_addresses_get_their_own_warnings():
    wif = base58.b58encode_check(bytes([0x80]) + bytes(range(32)) + b"\x01").decode()
    with pytest.raises(InvalidArgument, match="private key.*Never share"):
        validate.address(wif, "mainnet")
    with pytest.raises(InvalidArgument, match="EVM"):
        validate.address("0x" + "ab" * 20, "mainnet")
    with pytest.raises(InvalidArgument, match="no address"):
        validate.address("  ", "mainnet")


def test_ids_heights_symbols_pairs():
    assert validate.hex_id(TXID.upper(), "transaction id") == TXID
    assert validate.hex_id("0x" + TXID, "transaction id") == TXID
    with pytest.raises(InvalidArgument, match="64 hexadecimal characters.*got 63 characters"):
        validate.hex_id(TXID[:-1], "transaction id")
    with pytest.raises(InvalidArgument, match="doesn't look like a vault id"):
        validate.hex_id("z" * 64, "vault id")

    assert validate.height("3,000,000") == 3_000_000
    assert validate.height(0) == 0
    assert validate.block(" #12 ") == "12"
    assert validate.block(TXID) == TXID
    for bad, message in ((-1, "negative"), ("abc", "not a block height"), (True, "whole number"),
                         (10**12, "beyond")):
        with pytest.raises(InvalidArgument, match=message):
            validate.height(bad)

    assert [validate.symbol(s) for s in ("dfi", "dBTC", "$TSLA", "bitcoin", "dUSD", "DUSD")] == \
        ["DFI", "BTC", "TSLA", "BTC", "DUSD", "DUSD"]
    with pytest.raises(InvalidArgument, match="token symbol"):
        validate.symbol("DROP TABLE")
    assert validate.pair("dBTC-DFI") == ("BTC", "DFI")
    assert validate.pair("btc dfi") == ("BTC", "DFI")
    assert validate.pair("DFI/USDT") == ("DFI", "USDT")
    with pytest.raises(InvalidArgument, match="two token symbols"):
        validate.pair("DFI")
    assert validate.token("#15") == "15"
    assert validate.token("btc-dfi") == "BTC-DFI"
    assert validate.limit(500) == 20 and validate.limit("x") == 5 and validate.limit(0) == 1


ROUTES = [routing.route_address, routing.route_blocks, routing.route_governance, routing.route_vault,
          routing.route_masternode, routing.route_price, routing.route_stats, routing.route_token,
          routing.route_transaction, routing.route_poolpairs]


def _route(question: str, history=None):
    for route in ROUTES:
        args = route(question, history or [])
        if args is not None:
            return route.__name__.removeprefix("route_"), args
    return None


@pytest.mark.parametrize("question, expected", [
    (f"What's the balance of {ADDRESS}?", ("address", {"address": ADDRESS, "info": "balance"})),
    (f"which tokens does {LEGACY_ADDRESS} hold", ("address", {"address": LEGACY_ADDRESS, "info": "tokens"})),
    (f"show the transactions of {ADDRESS}", ("address", {"address": ADDRESS, "info": "transactions"})),
    (f"does {ADDRESS} have a vault?", ("address", {"address": ADDRESS, "info": "vaults"})),
    (f"unspent outputs of {ADDRESS}", ("address", {"address": ADDRESS, "info": "unspent"})),
    ("What is the current block height?", ("blocks", {"action": "latest", "limit": 1})),
    ("show me the latest blocks", ("blocks", {"action": "latest", "limit": 5})),
    ("tell me about block 3000000", ("blocks", {"action": "get", "block": "3000000"})),
    ("transactions in block #3,512,345", ("blocks", {"action": "transactions", "block": "3512345"})),
    ("What is the DFI price?", ("price", {"symbol": "DFI"})),
    ("price of bitcoin", ("price", {"symbol": "BTC"})),
    ("How much is one TSLA worth?", ("price", {"symbol": "TSLA"})),
    ("What is the circulating supply of DFI?", ("stats", {"kind": "supply"})),
    ("How much DFI has been burned so far?", ("stats", {"kind": "burn"})),
    ("What is the TVL right now?", ("stats", {"kind": "general"})),
    ("how is the block reward split currently? show the reward distribution", ("stats", {"kind": "rewards"})),
    (f"vault {VAULT_ID}", ("vault", {"vault_id": VAULT_ID})),
    (f"is masternode {MASTERNODE_ID} enabled?", ("masternode", {"masternode_id": MASTERNODE_ID})),
    (f"transaction {TXID}", ("transaction", {"txid": TXID})),
    (f"proposal {PROPOSAL_ID}", ("governance", {"proposal_id": PROPOSAL_ID})),
    ("what are the current proposals?", ("governance", {"status": "voting"})),
    ("show rejected CFPs", ("governance", {"status": "rejected"})),
    ("token id 15", ("token", {"token": "15"})),
    ("what is the id of the DFI-USDT pool pair?", ("poolpairs", {"action": "lookup", "pair": "DFI-USDT"})),
    ("APR of the BTC DFI pool", ("poolpairs", {"action": "get", "pair": "BTC-DFI"})),
    ("list the top pool pairs", ("poolpairs", {"action": "list"})),
])
def test_live_data_questions_are_routed(question, expected):
    assert _route(question) == expected


@pytest.mark.parametrize("question", [
    "How many DFI do I need to run a masternode?",
    "what is a vault?",
    "What is a CFP?",
    "What is a pool pair?",
    "How does liquidity mining work?",
    "What's the price of a masternode?",
    "how do I burn tokens?",
    "What is the block reward?",
    "how do I create a vault?",
])
def test_general_questions_are_left_to_knowledge(question):
    assert _route(question) is None


def test_follow_up_reuses_the_address_from_history():
    from langchain_core.messages import AIMessage, HumanMessage

    history = [HumanMessage(f"balance of {ADDRESS}?"), AIMessage("1234 DFI")]
    expected = ("address", {"address": ADDRESS, "info": "tokens"})
    assert _route("and what about its tokens?", history) == expected


def test_offline_answers_for_results_and_errors():
    from langchain_core.messages import ToolMessage

    ok = ToolMessage("UTXO balance of x: 1 DFI", tool_call_id="c")
    assert routing.answer("q", ok).startswith("Here's what the Ocean says")
    # an error is the message's status, whatever its text says
    failed = ToolMessage("Ocean is not answering right now (no reply in 2 s).", tool_call_id="c",
                         status="error")
    down = routing.answer("q", failed)
    assert "couldn't get that from the Ocean: Ocean is not answering" in down and "try again" in down
    assert not routing.answer("q", ToolMessage("Ocean lookup failed: x", tool_call_id="c")).startswith("Hmm")
