"""What each Ocean tool does: validate, ask Ocean through the package's endpoints, summarise.

Every function takes an `OceanClient` (built per call by `client.run`) plus
already-validated arguments, and returns a short text for the model.
"""

from __future__ import annotations

from decimal import Decimal

from tools.ocean.client import OceanError, OceanNotFound
from tools.ocean.formatting import (
    amount,
    count,
    decimal,
    get,
    listing,
    percent,
    plain,
    plural,
    usd,
    when,
)

PAGE = 200  # Ocean's largest page
MAX_PAGES = 5


def data(envelope, missing: str):
    """The `data` of an Ocean answer; empty data means Ocean does not know the thing."""
    value = envelope.get("data") if isinstance(envelope, dict) else None
    if value is None or value == {} or value == "":
        raise OceanNotFound(missing)
    return value


def items(envelope) -> tuple[list, bool]:
    """(list items, whether Ocean has another page)."""
    if not isinstance(envelope, dict):
        raise OceanError("Ocean sent an answer I could not read")
    value = envelope.get("data") or []
    if not isinstance(value, list):
        raise OceanError("Ocean sent an answer I could not read")
    return value, bool(get(envelope, "page", "next"))


def every(fetch, pages: int = MAX_PAGES) -> tuple[list, bool]:
    """All items of a paginated list, up to `pages` pages; (items, whether more remain)."""
    collected, cursor = [], None
    for _ in range(pages):
        envelope = fetch(PAGE, cursor)
        found, _more = items(envelope)
        collected.extend(found)
        cursor = get(envelope, "page", "next")
        if not cursor:
            return collected, False
    return collected, True


def ratio(value) -> str:
    """A vault's collateral ratio; Ocean sends -1 when the vault has no loans."""
    number = decimal(value)
    if number is not None and number < 0:
        return "none (no loans)"
    return percent(value)


def _token_amounts(entries, most: int = 5) -> str:
    entries = entries or []
    parts = [amount(e.get("amount"), e.get("displaySymbol") or e.get("symbol") or "") for e in entries[:most]]
    if len(entries) > most:
        parts.append(f"and {len(entries) - most} more")
    return ", ".join(parts) if parts else "none"


# --- address -------------------------------------------------------------------------

def address_balance(client, address: str) -> str:
    balance = client.address.getBalance(address).get("data")
    if balance is None:
        raise OceanError("Ocean sent an answer I could not read")
    return (
        f"UTXO balance of {address}: {amount(balance)}\n"
        "(This is DFI held as UTXO; DFI and other tokens held as tokens are listed by the 'tokens' lookup.)"
    )


def address_tokens(client, address: str, limit: int) -> str:
    tokens, more = every(lambda size, nxt: client.address.listToken(address, size=size, next=nxt), pages=2)
    tokens.sort(key=lambda t: (t.get("symbol") != "DFI", bool(t.get("isLPS")), int(t.get("id") or 0)))
    lines = []
    for t in tokens[:limit]:
        kind = " (pool share)" if t.get("isLPS") else " (loan token)" if t.get("isLoanToken") else ""
        lines.append(f"{amount(t.get('amount'), t.get('displaySymbol') or t.get('symbol'))}{kind}")
    return listing(f"Token balances of {address}", lines, total=len(tokens), more=more)


def _aggregation(client, address: str) -> dict:
    try:
        return client.address.getAggregation(address).get("data") or {}
    except OceanNotFound:
        return {}


def address_transactions(client, address: str, limit: int) -> str:
    found, more = items(client.address.listTransaction(address, size=limit))
    total = get(_aggregation(client, address), "statistic", "txCount")
    lines = []
    for a in found[:limit]:
        direction = "received" if a.get("type") == "vout" else "spent"
        lines.append(
            f"block {plain(get(a, 'block', 'height'))} ({when(get(a, 'block', 'time'))}): "
            f"{direction} {amount(a.get('value'))} in tx {a.get('txid')}"
        )
    return listing(f"Recent UTXO transactions of {address}", lines,
                   total=int(total) if isinstance(total, int) else None, more=more)


def address_unspent(client, address: str, limit: int) -> str:
    found, more = items(client.address.listTransactionUnspent(address, size=limit))
    lines = [
        f"{amount(get(u, 'vout', 'value'))} in output {get(u, 'vout', 'txid')}:{get(u, 'vout', 'n')} "
        f"(block {plain(get(u, 'block', 'height'))})"
        for u in found[:limit]
    ]
    return listing(f"Unspent outputs of {address}", lines, more=more)


def _vault_line(v: dict) -> str:
    scheme = v.get("loanScheme") or {}
    if v.get("state") == "IN_LIQUIDATION":
        return (
            f"vault {v.get('vaultId')}: IN LIQUIDATION since block {plain(v.get('liquidationHeight'))}, "
            f"{v.get('batchCount', 0)} auction batches"
        )
    return (
        f"vault {v.get('vaultId')}: {v.get('state')}, collateral {usd(v.get('collateralValue'))}, "
        f"loans {usd(v.get('loanValue'))}, collateral ratio {ratio(v.get('collateralRatio'))} "
        f"(minimum {percent(scheme.get('minColRatio'))})"
    )


def address_vaults(client, address: str, limit: int) -> str:
    found, more = items(client.address.listVault(address, size=limit))
    return listing(f"Vaults owned by {address}", [_vault_line(v) for v in found[:limit]], more=more)


# --- blocks and transactions -----------------------------------------------------------

def _block_line(b: dict) -> str:
    return (
        f"#{plain(b.get('height'))} at {when(b.get('time'))}: "
        f"{plural(b.get('transactionCount'), 'transaction')}, hash {b.get('hash')}"
    )


def latest_blocks(client, limit: int) -> str:
    found, _ = items(client.blocks.list(size=limit))
    if not found:
        raise OceanNotFound("any blocks")
    if limit == 1:
        b = found[0]
        return (
            f"Current block height: {plain(b.get('height'))} (latest block mined {when(b.get('time'))}, "
            f"{plural(b.get('transactionCount'), 'transaction')}, hash {b.get('hash')})"
        )
    return listing("Latest blocks", [_block_line(b) for b in found[:limit]], more=True)


def block(client, ref: str) -> str:
    b = data(client.blocks.get(ref), "that block")
    return (
        f"Block #{plain(b.get('height'))}\n"
        f"- hash: {b.get('hash')}\n"
        f"- mined: {when(b.get('time'))} by masternode {b.get('masternode') or 'unknown'}\n"
        f"- transactions: {count(b.get('transactionCount'))}\n"
        f"- reward: {amount(b.get('reward'))}\n"
        f"- size: {count(b.get('size'))} bytes\n"
        f"- previous block: {b.get('previousHash')}"
    )


def block_transactions(client, ref: str, limit: int) -> str:
    b = data(client.blocks.get(ref), "that block")
    found, more = items(client.blocks.getTransactions(b.get("hash"), size=limit))
    lines = [
        f"{t.get('txid')}: {t.get('vinCount')} in, {t.get('voutCount')} out, "
        f"total output {amount(t.get('totalVoutValue'))}"
        for t in found[:limit]
    ]
    total = b.get("transactionCount")
    return listing(f"Transactions in block #{plain(b.get('height'))}", lines,
                   total=total if isinstance(total, int) else None, more=more)


def transaction(client, txid: str) -> str:
    t = data(client.transactions.get(txid), "that transaction")
    return (
        f"Transaction {t.get('txid') or txid}\n"
        f"- block: #{plain(get(t, 'block', 'height'))} ({when(get(t, 'block', 'time'))})\n"
        f"- inputs: {t.get('vinCount')}, outputs: {t.get('voutCount')}\n"
        f"- total output: {amount(t.get('totalVoutValue'))}\n"
        f"- size: {count(t.get('size'))} bytes"
    )


# --- governance, vaults, masternodes ---------------------------------------------------

_TYPES = {"CommunityFundProposal": "CFP", "VoteOfConfidence": "VOC"}


def _proposal_line(p: dict) -> str:
    what = _TYPES.get(p.get("type"), p.get("type") or "proposal")
    asked = f", asks {amount(p.get('amount'))}" if p.get("amount") and what == "CFP" else ""
    return (
        f"{p.get('title')!r} ({what}, {p.get('status')}{asked}), cycle {p.get('currentCycle')}/"
        f"{p.get('totalCycles')}, voting ends at block {plain(p.get('cycleEndHeight'))}, "
        f"id {p.get('proposalId')}"
    )


def proposals(client, status: str, limit: int) -> str:
    found, more = items(client.governance.listGovProposals(status=status, type="all", cycle=0, size=limit))
    label = "Governance proposals" + ("" if status == "all" else f" with status {status}")
    return listing(label, [_proposal_line(p) for p in found[:limit]], more=more)


def proposal(client, proposal_id: str) -> str:
    p = data(client.governance.getGovProposal(proposal_id), "that proposal")
    lines = [
        f"Proposal {p.get('title')!r} ({_TYPES.get(p.get('type'), p.get('type'))}, {p.get('status')})",
        f"- id: {p.get('proposalId') or proposal_id}",
    ]
    if p.get("amount"):
        payee = p.get("payoutAddress") or "unknown"
        lines.append(f"- amount: {amount(p.get('amount'))} per cycle to {payee}")
    lines.append(
        f"- cycle {p.get('currentCycle')} of {p.get('totalCycles')}; this cycle's voting ends at block "
        f"{plain(p.get('cycleEndHeight'))}, the proposal ends at block {plain(p.get('proposalEndHeight'))}"
    )
    if p.get("votesPossible") is not None:
        lines.append(
            f"- votes: {count(p.get('votesPresent'))} of {count(p.get('votesPossible'))} masternodes voted "
            f"({p.get('votesPresentPct') or '?'}%), yes {count(p.get('votesYes'))} "
            f"({p.get('votesYesPct') or '?'}%)"
        )
    lines.append(f"- needs: approval {p.get('approvalThreshold')}, quorum {p.get('quorum')}")
    if p.get("context"):
        lines.append(f"- discussion: {p.get('context')}")
    return "\n".join(lines)


def vault(client, vault_id: str) -> str:
    v = data(client.loan.getVault(vault_id), "that vault")
    lines = [f"Vault {v.get('vaultId') or vault_id}", f"- owner: {v.get('ownerAddress')}"]
    scheme = v.get("loanScheme") or {}
    lines.append(
        f"- loan scheme {scheme.get('id')}: minimum collateral ratio {percent(scheme.get('minColRatio'))}, "
        f"interest {percent(scheme.get('interestRate'))}"
    )
    if v.get("state") == "IN_LIQUIDATION":
        lines.append(
            f"- state: IN LIQUIDATION since block {plain(v.get('liquidationHeight'))}, "
            f"{v.get('batchCount', 0)} auction batches, penalty {percent(v.get('liquidationPenalty'))}"
        )
        return "\n".join(lines)
    lines += [
        f"- state: {v.get('state')}",
        f"- collateral: {usd(v.get('collateralValue'))} ({_token_amounts(v.get('collateralAmounts'))})",
        f"- loans: {usd(v.get('loanValue'))} ({_token_amounts(v.get('loanAmounts'))})",
        f"- interest so far: {usd(v.get('interestValue'))}",
        f"- collateral ratio: {ratio(v.get('collateralRatio'))} "
        f"(with next prices: {ratio(v.get('informativeRatio'))})",
    ]
    return "\n".join(lines)


def masternode(client, masternode_id: str) -> str:
    m = data(client.masternodes.get(masternode_id), "that masternode")
    weeks = m.get("timelock") or 0
    lock = f"{weeks} weeks ({weeks // 52} years)" if weeks else "none"
    lines = [
        f"Masternode {m.get('id') or masternode_id}",
        f"- state: {m.get('state')}",
        f"- minted blocks: {count(m.get('mintedBlocks'))}",
        f"- owner: {get(m, 'owner', 'address')}",
        f"- operator: {get(m, 'operator', 'address')}",
        f"- created at block {plain(get(m, 'creation', 'height'))}",
        f"- timelock: {lock}",
    ]
    if m.get("collateral"):
        lines.append(f"- collateral: {amount(m.get('collateral'))}")
    if m.get("resign"):
        lines.append(f"- resigned at block {plain(get(m, 'resign', 'height'))}")
    return "\n".join(lines)


# --- prices, stats, tokens ----------------------------------------------------------------

def price(client, symbol: str) -> str:
    try:
        ticker = data(client.prices.get(symbol, "USD"), f"a USD price for {symbol}")
    except OceanNotFound:
        if symbol != "DFI":
            raise OceanNotFound(f"a USD price for {symbol} (Ocean's oracles have no {symbol}-USD feed)") \
                from None
        stats = data(client.stats.get(), "the DFI price")
        return f"Price of DFI: {usd(get(stats, 'price', 'usd'))} (Ocean's DEX-based average)"
    feed = ticker.get("price") or {}
    aggregated = feed.get("aggregated") or {}
    return (
        f"Price of {feed.get('token') or symbol}: "
        f"{amount(aggregated.get('amount'), feed.get('currency') or 'USD')} "
        f"(oracle price at block {plain(get(feed, 'block', 'height'))}, {when(get(feed, 'block', 'time'))}; "
        f"{get(aggregated, 'oracles', 'active', default='?')} of "
        f"{get(aggregated, 'oracles', 'total', default='?')} oracles active)"
    )


def stats(client) -> str:
    s = data(client.stats.get(), "the chain statistics")
    tvl = s.get("tvl") or {}
    loan = s.get("loan") or {}
    lines = [
        "DeFiChain statistics",
        f"- blocks: {count(get(s, 'count', 'blocks'))}",
        f"- DFI price: {usd(get(s, 'price', 'usd'))}",
        f"- total value locked: {usd(tvl.get('total'))} (DEX {usd(tvl.get('dex'))}, "
        f"loans {usd(tvl.get('loan'))}, masternodes {usd(tvl.get('masternodes'))})",
        f"- masternodes: {count(get(s, 'count', 'masternodes'))}; "
        f"tokens: {count(get(s, 'count', 'tokens'))}; "
        f"price feeds: {count(get(s, 'count', 'prices'))}",
        f"- burned: {amount(get(s, 'burned', 'total'))}",
        f"- emission: {amount(get(s, 'emission', 'total'))} per block",
        f"- loans: {count(get(loan, 'count', 'openVaults'))} open vaults, "
        f"{count(get(loan, 'count', 'openAuctions'))} open auctions, collateral "
        f"{usd(get(loan, 'value', 'collateral'))}, loans {usd(get(loan, 'value', 'loan'))}",
    ]
    return "\n".join(lines)


def burn(client) -> str:
    b = data(client.stats.getBurn(), "the burn statistics")
    tokens = [t for t in (b.get("tokens") or []) if isinstance(t, str)]
    lines = [
        f"DFI burned: {amount(b.get('amount'))} sent to the burn address {b.get('address')}",
        f"- from fees: {amount(b.get('feeburn'))}; emission: {amount(b.get('emissionburn'))}; "
        f"auctions: {amount(b.get('auctionburn'))}; loan paybacks: {amount(b.get('paybackburn'))}",
    ]
    if tokens:
        shown = ", ".join(t.replace("@", " ") for t in tokens[:5])
        extra = f" and {len(tokens) - 5} more" if len(tokens) > 5 else ""
        lines.append(f"- tokens at the burn address: {shown}{extra}")
    return "\n".join(lines)


def rewards(client) -> str:
    r = data(client.stats.getRewardDistribution(), "the reward distribution")
    parts = [f"{name}: {amount(value)}" for name, value in r.items() if decimal(value) is not None]
    return "Block reward distribution (DFI per block): " + "; ".join(parts)


def supply(client) -> str:
    s = data(client.stats.getSupply(), "the DFI supply")
    return (
        f"DFI supply: circulating {amount(s.get('circulating'))}, minted so far {amount(s.get('total'))}, "
        f"burned {amount(s.get('burned'))}, maximum {amount(s.get('max'))}"
    )


def _find_token(client, ref: str) -> dict:
    if ref.isdigit():
        return data(client.tokens.get(ref), f"token id {ref}")
    tokens, _ = every(lambda size, nxt: client.tokens.list(size=size, next=nxt))
    for t in tokens:
        if ref in {str(t.get("symbol", "")).upper(), str(t.get("symbolKey", "")).upper(),
                   str(t.get("displaySymbol", "")).upper()}:
            return t
    raise OceanNotFound(f"a token with the symbol {ref}")


def token(client, ref: str) -> str:
    t = _find_token(client, ref)
    kinds = [k for k, flag in (("DAT", t.get("isDAT")), ("loan token", t.get("isLoanToken")),
                               ("pool share", t.get("isLPS"))) if flag]
    return (
        f"Token {t.get('displaySymbol') or t.get('symbol')} (id {t.get('id')}, symbol {t.get('symbol')}, "
        f"name {t.get('name')!r})\n"
        f"- kind: {', '.join(kinds) or 'custom token'}\n"
        f"- minted: {amount(t.get('minted'), t.get('symbol') or '')}\n"
        f"- mintable: {'yes' if t.get('mintable') else 'no'}, "
        f"tradeable: {'yes' if t.get('tradeable') else 'no'}\n"
        f"- created at block {plain(get(t, 'creation', 'height'))}"
    )


# --- pool pairs -------------------------------------------------------------------------

def _liquidity(p: dict) -> Decimal:
    return decimal(get(p, "totalLiquidity", "usd")) or Decimal(0)


def _pair_line(p: dict) -> str:
    return (
        f"id {p.get('id')} {p.get('displaySymbol') or p.get('symbol')}: "
        f"liquidity {usd(get(p, 'totalLiquidity', 'usd'))}, "
        f"APR {percent(get(p, 'apr', 'total'), ratio=True)}, 24h volume {usd(get(p, 'volume', 'h24'))}"
    )


def poolpairs(client, limit: int) -> str:
    pairs, more = every(lambda size, nxt: client.poolpairs.list(size=size, next=nxt))
    pairs.sort(key=_liquidity, reverse=True)
    return listing("Pool pairs by liquidity", [_pair_line(p) for p in pairs[:limit]],
                   total=len(pairs), more=more)


def _symbols(p: dict) -> set[str]:
    names = set()
    for side in ("tokenA", "tokenB"):
        names.add(str(get(p, side, "symbol", default="")).upper())
    return names


def find_pair(client, a: str, b: str) -> dict:
    pairs, _ = every(lambda size, nxt: client.poolpairs.list(size=size, next=nxt))
    for p in pairs:
        if _symbols(p) == {a, b}:
            return p
    with_a = sorted({p.get("symbol") for p in pairs if a in _symbols(p)})[:8]
    hint = f"; pairs with {a}: {', '.join(with_a)}" if with_a else ""
    raise OceanNotFound(f"a pool pair of {a} and {b}{hint}")


def poolpair(client, ref: str | tuple[str, str]) -> str:
    if isinstance(ref, str):
        p = data(client.poolpairs.get(ref), f"pool pair id {ref}")
    else:
        p = find_pair(client, *ref)
    a, b = p.get("tokenA") or {}, p.get("tokenB") or {}
    reserve_a, reserve_b = decimal(a.get("reserve")), decimal(b.get("reserve"))
    sym_a = a.get("displaySymbol") or a.get("symbol")
    sym_b = b.get("displaySymbol") or b.get("symbol")
    lines = [
        f"Pool pair {p.get('displaySymbol') or p.get('symbol')} (id {p.get('id')})",
        f"- reserves: {amount(a.get('reserve'), sym_a)} and {amount(b.get('reserve'), sym_b)}",
    ]
    if reserve_a and reserve_b:
        lines.append(f"- price: 1 {sym_a} = {amount(reserve_b / reserve_a, sym_b)}; "
                     f"1 {sym_b} = {amount(reserve_a / reserve_b, sym_a)}")
    lines += [
        f"- liquidity: {usd(get(p, 'totalLiquidity', 'usd'))}",
        f"- APR: {percent(get(p, 'apr', 'total'), ratio=True)} (rewards "
        f"{percent(get(p, 'apr', 'reward'), ratio=True)}, "
        f"commission {percent(get(p, 'apr', 'commission'), ratio=True)})",
        f"- volume: {usd(get(p, 'volume', 'h24'))} in 24 h, {usd(get(p, 'volume', 'd30'))} in 30 days",
        f"- trading: {'enabled' if p.get('tradeEnabled') else 'disabled'}; "
        f"commission {percent(p.get('commission'), ratio=True)}",
    ]
    return "\n".join(lines)


def lookup_pair(client, a: str, b: str) -> str:
    p = find_pair(client, a, b)
    return (
        f"The pool pair of {a} and {b} is {p.get('displaySymbol') or p.get('symbol')} with id {p.get('id')} "
        f"(liquidity {usd(get(p, 'totalLiquidity', 'usd'))})"
    )
