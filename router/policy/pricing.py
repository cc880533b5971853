"""The price of each call, from the ``genai-prices`` package's offline data (or the route file's
``price:`` override), resolved once per provider kind and model and cached.

genai-prices is imported on first use: it takes ~0.4 s to import, which `import router` must
not pay.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from router.plan.routes import Price, Target
from router.types import Usage

#: genai-prices provider ids per provider kind (kinds not listed have no public price list).
_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "google": "google",
                 "azure-openai": "azure"}
_cache: dict[tuple[str, str], Price | None] = {}
_UNKNOWN = object()  # not looked up yet


def _number(v: Any) -> float | None:
    """A flat genai-prices rate as a float (a tiered one's base rate)."""
    if v is None:
        return None
    if isinstance(v, Decimal | int | float):
        return float(v)
    base = getattr(v, "base", None)
    return float(base) if base is not None else None


def _rate_above(v: Any, tokens: int) -> float | None:
    """A genai-prices rate for a call of ``tokens`` input tokens: a tiered rate's highest tier
    whose start ``tokens`` exceeds (its cliff model: that rate on every token), else its base."""
    for tier in reversed(getattr(v, "tiers", None) or ()):
        if tokens > tier.start:
            return float(tier.price)
    return _number(v)


_RATES = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok",
          "cache_write_1h_mtok")


def _from_list(mp: Any) -> Price | None:
    """Our Price from a genai-prices ModelPrice, its long-context tiers included."""
    rates = [getattr(mp, name, None) for name in _RATES]
    starts = sorted({int(t.start) for r in rates for t in (getattr(r, "tiers", None) or ())})
    levels = []  # the base rates, then each tier's (every rate at or above its start)
    for tokens in (0, *(start + 1 for start in starts)):
        inp, out, read, write, write_1h = (_rate_above(r, tokens) for r in rates)
        if inp is None or out is None:
            return None
        levels.append(Price(inp, out, read, write, write_1h))
    base = levels[0]
    return Price(base.input, base.output, base.cached_input, base.cache_write,
                 base.cache_write_1h, tuple(zip(starts, levels[1:], strict=True)),
                 _number(getattr(mp, "web_searches_kcount", None)))


def lookup_price(kind: str, model: str) -> Price | None:
    """The list price of ``model`` on a provider of ``kind``, or None when unknown."""
    key = (kind, model)
    if key in _cache:
        return _cache[key]
    price: Price | None = None
    provider_id = _PROVIDER_IDS.get(kind)
    if provider_id is not None:
        from genai_prices import Usage as GUsage
        from genai_prices import calc_price

        try:
            mp = calc_price(GUsage(input_tokens=1), model, provider_id=provider_id).model_price
        except LookupError:
            mp = None
        if mp is not None:
            price = _from_list(mp)
    if kind == "fake" or kind == "ollama":
        price = Price(0.0, 0.0, 0.0)  # local or scripted: free
    _cache[key] = price
    return price


def price_of(target: Target) -> Price | None:
    """The price in force for ``target``: the route file's, else the list price."""
    price = target.price
    if price is not None:
        return price
    # lookup_price's cache read inline: this runs once per call.
    price = _cache.get((target.kind, target.model), _UNKNOWN)  # type: ignore[arg-type]
    return lookup_price(target.kind, target.model) if price is _UNKNOWN else price


def cost_usd(price: Price | None, usage: Usage) -> float | None:
    """US dollars for ``usage`` at ``price``: input tokens read from the prompt cache at the
    cached rate, those written to it at the cache-write rate (each at the input rate where the
    price has none), output (reasoning included, as every provider bills it) at the output
    rate. ``usage.input_tokens`` counts all of them, as genai-prices' ``input_tokens`` does, and
    picks the long-context tier (``Price.tiers``) where the price has one."""
    if price is None:
        return None
    # Web searches at the price per 1,000 (x 1,000: dollars below are per million tokens).
    searches = (usage.web_searches * price.web_search * 1000
                if usage.web_searches and price.web_search is not None else 0.0)
    if price.tiers:
        price = price.for_input(usage.input_tokens)
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    dollars = ((usage.input_tokens - cached) * price.input + cached * cached_rate
               + usage.output_tokens * price.output)
    if usage.cache_write_tokens:
        written = min(usage.cache_write_tokens, usage.input_tokens - cached)
        long = min(usage.cache_write_1h_tokens, written)
        rate = price.cache_write if price.cache_write is not None else price.input
        rate_1h = price.cache_write_1h if price.cache_write_1h is not None else rate
        dollars += (written - long) * (rate - price.input) + long * (rate_1h - price.input)
    return (dollars + searches) / 1_000_000


def worst_case_cost(price: Price | None, prompt_tokens: int, max_tokens: int) -> float | None:
    """The most one call can cost: every prompt token uncached, every output token used."""
    if price is None:
        return None
    if price.tiers:
        price = price.for_input(prompt_tokens)
    return (prompt_tokens * price.input + max_tokens * price.output) / 1_000_000
