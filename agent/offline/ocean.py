"""The offline model's Ocean routing: which Ocean tool answers a question, and how its
result is phrased.

Only questions with a live-data cue are routed (an address or id, or words
like current/latest/price/height/balance next to what they ask about), so
"How many DFI do I need to run a masternode?" or "what is a vault?" stay with
the knowledge tools.
"""

from __future__ import annotations

import re

from tools.ocean.validate import TOKEN_NAMES

PRIORITY = 30  # after the calculator (10), before knowledge search (~90)

_I = re.IGNORECASE
_BECH32 = re.compile(r"\b(?:df|tf|bcrt)1[0-9a-z]{6,87}\b", _I)
_BASE58 = re.compile(r"(?<![0-9A-Za-z])[78dt][1-9A-HJ-NP-Za-km-z]{32,34}(?![0-9A-Za-z])")
_WIF = re.compile(r"(?<![0-9A-Za-z])[5KL][1-9A-HJ-NP-Za-km-z]{50,51}(?![0-9A-Za-z])")
_EVM = re.compile(r"\b0x[0-9a-fA-F]{40}\b")
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:0x)?([0-9a-fA-F]{64})(?![0-9A-Za-z])")

KNOWN_SYMBOLS = {
    "DFI", "BTC", "ETH", "USDT", "USDC", "DUSD", "DOGE", "LTC", "BCH", "EUROC", "XCHF", "TSLA", "SPY", "QQQ",
    "GLD", "SLV", "AAPL", "NVDA", "GOOGL", "AMZN", "MSFT", "COIN", "NFLX", "ARKK", "PDBC", "VNQ", "URTH",
    "TLT", "GME", "AMD", "MSTR", "DIS", "BABA", "PLTR", "INTC", "SAP", "PYPL", "CS25", "CR50", "XOM",
}


_NOT_TOKENS = {"USD", "TVL", "APR", "APY", "DEX", "ID", "CFP", "VOC", "UTXO", "LP", "MN"}


def _cue(pattern: str, text: str) -> bool:
    return re.search(pattern, text, _I) is not None


def _symbol(word: str) -> str | None:
    """A token symbol if `word` names one we know (or is written like a ticker)."""
    bare = word.strip().lstrip("$")
    if re.fullmatch(r"d[A-Z0-9]{2,}", bare) and bare[1:] != "USD":
        bare = bare[1:]
    upper = TOKEN_NAMES.get(bare.upper(), bare.upper())
    if upper in KNOWN_SYMBOLS:
        return upper
    if re.fullmatch(r"[A-Z]{2,6}", bare) and bare not in _NOT_TOKENS:
        return bare
    return None


def find_address(text: str) -> str | None:
    for pattern in (_WIF, _EVM, _BECH32, _BASE58):
        match = pattern.search(text)
        if match:
            return match.group(0)
    return None


def find_hex(text: str) -> str | None:
    match = _HEX.search(text)
    return match.group(1) if match else None


# --- live or explained? ---------------------------------------------------------------------
# A question that asks for an explanation goes to the knowledge base even when
# it names something the Ocean knows ("why does the DFI price matter", "what
# will the maximum supply be"), unless it also says it wants today's figure.
LIVE_CUES = (r"\b(current(ly)?|now|right now|today|at the moment|atm|live|latest|so far|to date|"
             r"until now|real[- ]time|this (moment|minute))\b")
EXPLAIN_CUES = (r"\b(why|explain|how (is|are|does|do|did|was|were|can|could)|what (is|are) an?|"
                r"what does|will|would|meaning|mean|difference|determined|calculated|work)\b")


def explained(text: str) -> bool:
    """True when `text` asks for an explanation rather than a live figure."""
    return _cue(EXPLAIN_CUES, text) and not _cue(LIVE_CUES, text)


# --- follow-ups: "his address", "what about krysh's balance" ---------------------------------
REFERENCES = r"\b(his|her|their|its|it|that|this|same|he|she|they|them)\b"
ADDRESS_INFO = (r"\b(balances?|vaults?|loans?|tokens?|utxos?|unspent|outputs|transactions?|txs?|history|"
                r"activity|holdings?|hold|holds|owns?|address|wallet)\b")
_NAME_WORD = re.compile(r"[^\W\d_]{3,}")


def _named(text: str) -> set[str]:
    """The words of `text` that could be a name, with and without a trailing s ("Kügis")."""
    words = set()
    for word in _NAME_WORD.findall(text.lower()):
        words.add(word)
        if word.endswith("s") and len(word) > 3:
            words.add(word[:-1])
    return words


def address_in_context(text: str, context) -> str | None:
    """The address a follow-up points at, from the newest earlier message (question,
    answer or tool result) that holds one: the address named next to a word of
    `text` ("krysh: df1…"), else the first address of that message."""
    wanted = _named(text) - {"address", "wallet", "balance", "vault", "vaults", "what", "about", "and",
                             "the", "his", "her", "their", "its", "how", "many", "much", "are", "does",
                             "hold", "check", "show", "tokens", "token", "utxo", "utxos"}
    for message in reversed(context or []):
        content = str(getattr(message, "content", ""))
        found = [m for p in (_BECH32, _BASE58, _EVM) for m in p.finditer(content)]
        if not found:
            continue
        found.sort(key=lambda m: m.start())
        previous_end = 0
        for match in found:
            before = content[previous_end:match.start()]
            if wanted & _named(before):
                return match.group(0)
            previous_end = match.end()
        return found[0].group(0)
    return None


def _previous_address(history) -> str | None:
    return address_in_context("", history)


def _names_owner(text: str, history, address: str) -> bool:
    """`text` names the word written just before `address` in the conversation."""
    wanted = _named(text)
    for message in history or []:
        content = str(getattr(message, "content", ""))
        at = content.find(address)
        if at > 0 and wanted & _named(content[max(0, at - 40):at]):
            return True
    return False


# --- one route per tool ---------------------------------------------------------------------

def route_address(text: str, history=None) -> dict | None:
    address = find_address(text)
    if address is None:
        if not _cue(ADDRESS_INFO, text) or explained(text):
            return None
        address = address_in_context(text, history)
        if address is None:
            return None
        # a follow-up: it points back ("his address", "it") or names whose address it was
        if not _cue(REFERENCES, text) and not _names_owner(text, history, address):
            return None
    if _cue(r"\bvaults?\b|\bloans?\b", text):
        info = "vaults"
    elif _cue(r"\btokens?\b", text):
        info = "tokens"
    elif _cue(r"\bunspent\b|\butxos\b|\boutputs\b", text):
        info = "unspent"
    elif _cue(r"\btransactions?\b|\bhistory\b|\bactivity\b|\btxs?\b|\btransfers?\b", text):
        info = "transactions"
    else:
        info = "balance"
    return {"address": address, "info": info}


def route_blocks(text: str, history=None) -> dict | None:
    if explained(text) and not find_hex(text):
        return None
    number = re.search(r"\bblock\s*(?:number|no\.?|height|#)?\s*#?\s*(\d[\d,]*)\b", text, _I) or \
        re.search(r"\bheight\s+(?:of\s+)?#?(\d[\d,]*)\b", text, _I)
    hexid = find_hex(text)
    wants_txs = _cue(r"\btransactions?\b|\btxs?\b", text)
    if number or (hexid and _cue(r"\bblock\b", text)):
        ref = number.group(1).replace(",", "") if number else hexid
        return {"action": "transactions" if wants_txs else "get", "block": ref}
    if _cue(r"\b(block ?height|current height|chain height|latest blocks?|last blocks?|newest blocks?|"
            r"recent blocks|current block|block count|how many blocks)\b", text):
        plural = _cue(r"\b(latest|last|newest|recent) blocks\b", text)
        return {"action": "latest", "limit": 5 if plural else 1}
    return None


def route_governance(text: str, history=None) -> dict | None:
    if explained(text) and not find_hex(text):
        return None
    if not _cue(r"\b(proposals?|cfps?|vocs?|votes? of confidence)\b", text):
        return None
    hexid = find_hex(text)
    if hexid:
        return {"proposal_id": hexid}
    if _cue(r"\brejected\b", text):
        status = "rejected"
    elif _cue(r"\b(completed|approved|passed|finished)\b", text):
        status = "completed"
    elif _cue(r"\b(voting|being voted|open|active|ongoing|running|current(ly)?)\b", text):
        status = "voting"
    elif _cue(r"\b(latest|recent|list|show|all|new|which|how many)\b", text):
        status = "all"
    else:
        return None
    return {"status": status}


def route_vault(text: str, history=None) -> dict | None:
    hexid = find_hex(text)
    if hexid and _cue(r"\bvaults?\b", text):
        return {"vault_id": hexid}
    return None


def route_masternode(text: str, history=None) -> dict | None:
    hexid = find_hex(text)
    if hexid and _cue(r"\bmaster ?nodes?\b|\bmn\b", text):
        return {"masternode_id": hexid}
    return None


def route_price(text: str, history=None) -> dict | None:
    worth = re.search(r"\bhow much (?:is|are|'s)\s+(?:one|a|an|1)\s+(\$?[A-Za-z][A-Za-z0-9]{1,15})\s+"
                      r"(?:in|to|worth in)\s+(?:usd|dollars?|us\$|\$)", text, _I)
    if not worth:
        worth = re.search(r"\b(?:what|how much) (?:does|do|is) (?:one|a|an|1)\s+"
                          r"(\$?[A-Za-z][A-Za-z0-9]{1,15})\s+(?:cost|go for|sell for)\b", text, _I)
    if worth and _symbol(worth.group(1)):
        return {"symbol": _symbol(worth.group(1))}
    if not _cue(r"\bprice\b|\bworth\b|\btrading at\b|\bquote\b", text) or explained(text):
        return None
    patterns = (
        r"(\$?[A-Za-z][A-Za-z0-9]{1,15})\s+(?:is\s+)?trading at\b",
        r"\bprice\s+(?:of|for)\s+(?:the\s+|a\s+|an\s+|one\s+|1\s+)?(?:token\s+)?(\$?[A-Za-z][A-Za-z0-9]{0,15})",
        r"(\$?[A-Za-z][A-Za-z0-9]{1,15})(?:\s+(?:token|coin))?\s+price\b",
        r"\b(?:is|are)\s+(?:one\s+|a\s+|1\s+)?(\$?[A-Za-z][A-Za-z0-9]{1,15})\s+(?:worth|trading at)\b",
    )
    for pattern in patterns:
        for match in re.finditer(pattern, text, _I):
            symbol = _symbol(match.group(1))
            if symbol:
                return {"symbol": symbol}
    if _cue(r"\b(current|latest|today'?s|live)\s+price\b|\bprice\s+(now|today)\b", text) and \
            not _cue(r"\b(master ?node|vault|pool|nft)\b", text):
        return {"symbol": "DFI"}
    return None


def route_stats(text: str, history=None) -> dict | None:
    if explained(text):
        return None
    if _cue(r"\bsupply\b", text) and (
            _cue(LIVE_CUES, text) or _cue(r"\b(circulating|minted|how much .* (is|are) there)\b", text)):
        return {"kind": "supply"}
    if _cue(r"\bburn(ed|t|ing)?\b", text) and _cue(
            r"\b(how much|how many|total|amount|current(ly)?|so far|to date|until now|stat(s|istics))\b",
            text):
        return {"kind": "burn"}
    if _cue(r"\breward distribution\b|\bdistribution of (the )?(block )?rewards?\b|"
            r"\bblock rewards? (split|distribution|currently|now|today)\b|"
            r"\bhow (is|are) (the )?block rewards? (split|distributed)\b", text):
        return {"kind": "rewards"}
    if _cue(r"\btvl\b|\btotal value locked\b|"
            r"\b(chain|network|blockchain|ocean|defichain|live) stat(s|istics)\b|"
            r"\bhow many masternodes (are there|exist|are (currently |now )?(active|enabled|running))\b|"
            r"\bnumber of masternodes\b|\bmasternode count\b|\bhow many (open )?vaults (are there|exist)\b",
            text):
        return {"kind": "general"}
    return None


def route_token(text: str, history=None) -> dict | None:
    by_id = re.search(r"\btoken\s+(?:id\s*)?#\s*(\d{1,7})\b|\btoken id\s*(\d{1,7})\b", text, _I)
    if by_id:
        return {"token": by_id.group(1) or by_id.group(2)}
    about = re.search(r"\b(?:token\s+(?:info(?:rmation)?|details)|details|info(?:rmation)?)"
                      r"\s+(?:about|for|on|of)\s+(?:the\s+)?(?:token\s+)?(\$?[A-Za-z][A-Za-z0-9]{1,15})",
                      text, _I)
    minted = re.search(r"\bhow many\s+(\$?[A-Za-z][A-Za-z0-9]{1,15})\s+(?:have been|were|are)\s+minted\b",
                       text, _I)
    for match in (about, minted):
        if match:
            symbol = _symbol(match.group(1))
            if symbol:
                return {"token": symbol}
    return None


def route_transaction(text: str, history=None) -> dict | None:
    hexid = find_hex(text)
    if hexid is None:
        return None
    if _cue(r"\b(vaults?|master ?nodes?|mn|proposals?|cfps?|vocs?|blocks?)\b", text):
        return None  # another tool's id
    return {"txid": hexid}


_PAIR_WORDS = r"\b(pools?|pairs?|liquidity|apr|apy|reserves?|dex)\b"


def _pair_in(text: str) -> str | None:
    for pattern in (r"(\$?[A-Za-z][A-Za-z0-9]{1,9})\s*[-/]\s*(\$?[A-Za-z][A-Za-z0-9]{1,9})",
                    r"\b(?:of|for|between)\s+(\$?[A-Za-z][A-Za-z0-9]{1,9})\s+(?:and|&)\s+(\$?[A-Za-z][A-Za-z0-9]{1,9})",
                    r"(\$?[A-Za-z][A-Za-z0-9]{1,9})\s+(\$?[A-Za-z][A-Za-z0-9]{1,9})\s+(?:pool|pair)"):
        for match in re.finditer(pattern, text, _I):
            a, b = _symbol(match.group(1)), _symbol(match.group(2))
            if a and b and a != b:
                return f"{a}-{b}"
    return None


def route_poolpairs(text: str, history=None) -> dict | None:
    if explained(text) and not find_hex(text):
        return None
    if not _cue(_PAIR_WORDS, text):
        return None
    pair = _pair_in(text)
    if pair:
        return {"action": "lookup" if _cue(r"\bid\b", text) else "get", "pair": pair}
    if _cue(r"\b(list|show|all|top|biggest|largest|best|which|current|highest)\b", text) and \
            _cue(r"\bpools\b|\bpool ?pairs\b|\bpairs\b", text):
        return {"action": "list"}
    return None


# --- composing the answer -------------------------------------------------------------------

def answer(question: str, message) -> str:
    result = message.text if hasattr(message, "text") else str(message.content)
    if getattr(message, "status", "success") == "error":
        return f"Hmm, I couldn't get that from the Ocean: {result} Please check it and try again 🌊"
    return f"Here's what the Ocean says 🌊\n\n{result}"
