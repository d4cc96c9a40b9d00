"""Checks on tool arguments, done before anything is sent to Ocean.

Addresses are checked against the `defichain` package's own network
definitions: the bech32 human-readable part and the base58 version bytes of
mainnet, testnet and regtest, with their checksums.
"""

from __future__ import annotations

import re

import base58

from tools.ocean import package

HEX_ID = re.compile(r"[0-9a-fA-F]{64}")
_SYMBOL = re.compile(r"[A-Za-z0-9]{1,16}")
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]+")
MAX_HEIGHT = 1_000_000_000

# names people use for tokens, to their on-chain symbol
TOKEN_NAMES = {
    "DEFICHAIN": "DFI", "DEFI": "DFI", "BITCOIN": "BTC", "ETHEREUM": "ETH", "ETHER": "ETH",
    "TETHER": "USDT", "LITECOIN": "LTC", "DOGECOIN": "DOGE", "BITCOINCASH": "BCH", "TESLA": "TSLA",
    "DUSD": "DUSD", "DOLLAR": "DUSD",
}


class InvalidArgument(ValueError):
    """A tool argument that cannot be right; the message is meant for the user."""


def _networks() -> dict:
    nets = package.load().networks
    return {"mainnet": nets.DefichainMainnet, "testnet": nets.DefichainTestnet,
            "regtest": nets.DefichainRegtest}


def _shown(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def address_network(text: str) -> str | None:
    """The network a syntactically valid address belongs to, else None."""
    bech32 = package.load().bech32
    for name, net in _networks().items():
        hrp = net.SEGWIT_ADDRESS.HRP
        if text.lower().startswith(hrp + "1"):
            return name if bech32.decode(hrp, text) != (None, None) else None
    if not _BASE58.fullmatch(text) or not 25 <= len(text) <= 36:
        return None
    try:
        raw = base58.b58decode_check(text)
    except ValueError:
        return None
    if len(raw) != 21:
        return None
    for name, net in _networks().items():
        if raw[0] in (net.PUBLIC_KEY_ADDRESS, net.SCRIPT_ADDRESS):
            return name
    return None


def _looks_like_private_key(text: str) -> bool:
    if not _BASE58.fullmatch(text) or not 50 <= len(text) <= 53:
        return False
    try:
        raw = base58.b58decode_check(text)
    except ValueError:
        return False
    wif = {net.WIF_SECRET_KEY for net in _networks().values()}
    return raw[0] in wif and len(raw) in (33, 34)


def _prefixes(network: str) -> str:
    return {
        "mainnet": "df1… (bech32), 8… or d… (legacy)",
        "testnet": "tf1… (bech32), 7… or t… (legacy)",
        "regtest": "bcrt1… (bech32), m…/n… or 2… (legacy)",
    }[network]


def address(value, network: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise InvalidArgument("no address was given; a DeFiChain address looks like " + _prefixes(network))
    if _looks_like_private_key(text):
        raise InvalidArgument(
            "that looks like a private key, not an address. Never share a private key with anyone, "
            "and if you did, move your funds to a new wallet now"
        )
    if re.fullmatch(r"0x[0-9a-fA-F]{40}", text):
        raise InvalidArgument(
            f"{text} is an EVM (MetaChain) address; Ocean's address lookups need a DeFiChain "
            f"address: {_prefixes(network)}"
        )
    found = address_network(text)
    if found is None:
        raise InvalidArgument(
            f"that doesn't look like a DeFiChain address ('{_shown(text)}'): on {network} they start "
            f"with {_prefixes(network)} and end in a checksum, so a single typo makes them invalid"
        )
    if found != network:
        raise InvalidArgument(
            f"{_shown(text)} is a {found} address, but I'm looking at DeFiChain {network}"
        )
    return text.lower() if text.lower().startswith(_networks()[found].SEGWIT_ADDRESS.HRP + "1") else text


def hex_id(value, what: str) -> str:
    text = str(value or "").strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    if not HEX_ID.fullmatch(text):
        got = f"{len(text)} characters" if text else "nothing"
        raise InvalidArgument(
            f"that doesn't look like a {what}: it should be 64 hexadecimal characters (0-9, a-f), got {got}"
        )
    return text.lower()


def height(value) -> int:
    if isinstance(value, bool):
        raise InvalidArgument("a block height is a whole number like 3000000")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip().lstrip("#").replace(",", "").replace("_", "")
        if not re.fullmatch(r"-?\d+", text):
            raise InvalidArgument(f"'{_shown(value)}' is not a block height (a whole number like 3000000)")
        value = int(text)
    if not isinstance(value, int):
        raise InvalidArgument("a block height is a whole number like 3000000")
    if value < 0:
        raise InvalidArgument("a block height can't be negative")
    if value > MAX_HEIGHT:
        raise InvalidArgument(f"block {value} is far beyond the end of the chain")
    return value


def block(value) -> str:
    """A block height or a 64-hex block hash, as Ocean's blocks/{id} takes it."""
    if isinstance(value, str) and len(value.strip()) >= 60:
        return hex_id(value, "block hash")
    return str(height(value))


def symbol(value) -> str:
    """One token symbol, normalised: 'dBTC' -> 'BTC', 'bitcoin' -> 'BTC', 'dusd' -> 'DUSD'."""
    text = str(value or "").strip().lstrip("$")
    if not _SYMBOL.fullmatch(text):
        raise InvalidArgument(
            f"'{_shown(text)}' doesn't look like a token symbol "
            "(letters and digits, like DFI, BTC, DUSD, TSLA)"
        )
    if re.fullmatch(r"d[A-Z0-9]{2,}", text) and text[1:] != "USD":
        text = text[1:]  # display symbols of DeFiChain tokens carry a 'd': dBTC is BTC
    text = text.upper()
    return TOKEN_NAMES.get(text, text)


def pair(value) -> tuple[str, str]:
    """Two token symbols out of 'DFI-USDT', 'BTC DFI', 'dBTC/DFI'."""
    parts = [p for p in re.split(r"[\s\-/_,]+|\band\b", str(value or "").strip()) if p]
    if len(parts) != 2:
        raise InvalidArgument(
            f"'{_shown(str(value or ''))}' doesn't name a pool pair; "
            "give two token symbols like 'DFI-USDT' or 'BTC DFI'"
        )
    return symbol(parts[0]), symbol(parts[1])


def token(value) -> str:
    """A token id (digits) or a symbol (possibly a pool-share symbol like BTC-DFI)."""
    text = str(value if value is not None else "").strip()
    if re.fullmatch(r"#?\d{1,7}", text):
        return text.lstrip("#")
    if re.fullmatch(r"[A-Za-z0-9]{1,16}-[A-Za-z0-9]{1,16}", text):
        a, b = pair(text)
        return f"{a}-{b}"
    return symbol(text)


def limit(value, default: int = 5, most: int = 20) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(1, min(most, number))
