"""Names in chains: what a target reference resolves to (E020, E024, E025, with the closest
name that exists) and whether a model name looks right for its provider (W102, W104)."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping

from router.config._tables import Path, Report
from router.plan.routes import ProviderSpec
from router.providers import catalog, registry
from router.providers.kinds import KINDS

#: Kinds that serve whatever models their server has (no model table to tell them by name).
_OPEN_KINDS = frozenset(k for k in ("ollama", "openai-compatible") if k in KINDS)


def resolve_ref(path: Path, ref: str, providers: Mapping[str, ProviderSpec],
                aliases: Collection[str], error: Report) -> tuple[str, str] | None:
    """(provider, model) for ``ref`` (provider:model or a bare model name whose kind only one
    provider has); None, with a diagnostic, when it names nothing."""
    split = registry.split_target(ref)
    if split is not None:
        pname, model = split
        if pname in providers:
            return pname, model
        names = list(providers)
        close = difflib.get_close_matches(pname, names, n=1)
        hint = (f"did you mean {close[0]!r}?" if close else
                f"define it under providers: {pname}: {{kind: ...}}"
                + (f" (defined: {', '.join(names)})" if names else ""))
        error(path, "E020", f"target {ref!r} names provider {pname!r}, which is not defined",
              hint)
        return None
    kind = catalog.detect_kind(ref)
    if kind is None:
        meant = unresolved_suggestion(ref, providers, aliases)
        error(path, "E024", f"{ref!r} is neither an alias nor provider:model, and its "
              "provider cannot be told from the name",
              f"did you mean {meant}?" if meant else
              "write it as provider:model, e.g. local:llama3.2")
        return None
    of_kind = [n for n, p in providers.items() if p.kind == kind]
    if len(of_kind) == 1:
        return of_kind[0], ref
    if not of_kind:
        error(path, "E024", f"{ref!r} looks like a model of kind {kind}, but no provider of "
              f"kind {kind} is defined",
              f"add providers: {kind}: {{kind: {kind}}} or write provider:model")
    else:
        error(path, "E025", f"{ref!r} is a model of kind {kind} and several providers have "
              f"that kind ({', '.join(of_kind)})",
              f"write it as provider:model, e.g. {of_kind[0]}:{ref}")
    return None


def unresolved_suggestion(ref: str, providers: Mapping[str, ProviderSpec],
                          aliases: Collection[str]) -> str | None:
    """What a name that is neither alias nor provider:model most likely meant, quoted: the
    closest alias; provider:model for a LiteLLM-style provider/model or a known model's
    misspelling; the one provider that serves any model name (an ollama server) otherwise."""
    close = difflib.get_close_matches(ref, list(aliases), n=1)
    if close:
        return f"the alias {close[0]!r}"
    head, slash, tail = ref.partition("/")
    if slash and tail:
        pname = head if head in providers else next(iter(
            difflib.get_close_matches(head, list(providers), n=1)), None)
        if pname is not None:
            return repr(f"{pname}:{tail}")
    best: tuple[float, str] | None = None
    for name, spec in providers.items():
        model = catalog.closest_model(spec.kind, ref, cutoff=0.8)
        if model is not None:
            score = difflib.SequenceMatcher(None, ref, model).ratio()
            if best is None or score > best[0]:
                best = (score, f"{name}:{model}")
    if best is not None:
        return repr(best[1])
    open_ = [n for n, p in providers.items() if p.kind in _OPEN_KINDS]
    return repr(f"{open_[0]}:{ref}") if len(open_) == 1 else None


def check_model_name(path: Path, spec: ProviderSpec, model: str, warn: Report) -> None:
    """W102 for a model name of another kind, W104 for a likely misspelling of a known one."""
    if not catalog.looks_like(spec.kind, model):
        other = catalog.detect_kind(model)
        close = catalog.closest_model(spec.kind, model)
        warn(path, "W102", f"model {model!r} does not look like a model of kind {spec.kind} "
             f"(provider {spec.name!r})",
             f"it looks like a model of kind {other}: use a provider of that kind"
             if other else f"closest known {spec.kind} model: {close}" if close else "")
        return
    family = catalog.family_of(spec.kind, model)
    if family != model.removeprefix("models/"):
        # Unknown, or a known family plus a suffix that may itself be a typo of a longer
        # family (gpt-4o-mnii is gpt-4o plus "-mnii": nearer to gpt-4o-mini).
        close = catalog.closest_model(spec.kind, model, cutoff=0.85)
        if close is not None and (family is None or len(close) > len(family)):
            warn(path, "W104", f"model {model!r} is not a known {spec.kind} model",
                 f"did you mean {close!r}? (if {model!r} is new, ignore this)")
