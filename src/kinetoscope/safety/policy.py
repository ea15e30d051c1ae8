"""The prompt policy: categories of refused prompts, read from a replaceable YAML/JSON/TOML file.

``load_policy()`` reads ``$KINETOSCOPE_POLICY`` if set, else the default policy shipped as
``safety/default_policy.yaml`` (its comments document the format). ``policy.check(prompt)``
returns a :class:`PolicyDecision`; ``policy.enforce(prompt)`` raises
:class:`ContentPolicyError` (HTTP 400, code ``content_policy_violation``) for a refused prompt.

Prompts are compared after normalisation against simple obfuscation (case, accents and
look-alike letters, leetspeak, letters spelled with separators, repeated letters), and words
only ever match whole words, so "grass" or "classic" are not refused for what they contain.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

from kinetoscope.config import load_config_file
from kinetoscope.errors import ConfigError, KinetoscopeError

#: Environment variable naming a policy file that replaces the default everywhere.
POLICY_ENV = "KINETOSCOPE_POLICY"
DEFAULT_POLICY = "default_policy.yaml"

# Look-alike letters NFKD leaves alone (Cyrillic and Greek), folded to their Latin twins.
_CONFUSABLES = str.maketrans(
    "аеорсухіѕјкмтвнɡαβεικνορτυχ",
    "aeopcyxisjkmtbhgabeikvoptux",
)
_LEET = str.maketrans({"0": "o", "3": "e", "4": "a", "@": "a", "5": "s", "$": "s", "7": "t"})
# "1" (and "!" or "|" inside a word) stands for either "i" or "l": both readings are tried.
_AMBIGUOUS = re.compile(r"1|(?<=[a-z0-9])[!|](?=[a-z0-9])")
_IN_WORD_SEPARATORS = re.compile(r"(?<=[a-z0-9])[.\-_*'`~](?=[a-z0-9])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_REPEATS = re.compile(r"(.)\1+")
_SUFFIXES = ("", "s", "es", "ed", "ing", "er", "ers")
_CATEGORY_KEYS = {"name", "description", "words", "patterns", "all_of"}


class ContentPolicyError(KinetoscopeError):
    """A prompt the content policy refuses; the message names the category."""

    code = "content_policy_violation"
    status_code = 400

    def __init__(self, decision: PolicyDecision, param: str = "prompt"):
        reason = decision.reason or "the prompt was refused by the content policy."
        # The decision reads text alone; the error names the field the text came in.
        super().__init__(reason.replace("the prompt", f"the {param}", 1), param=param)
        self.decision = decision


@dataclasses.dataclass(frozen=True)
class PolicyDecision:
    """``allowed``; for a refusal, the ``category`` name, a one-sentence ``reason`` and what ``matched``."""

    allowed: bool
    category: str | None = None
    reason: str | None = None
    matched: str | None = None


@dataclasses.dataclass(frozen=True)
class _Phrase:
    """A word or phrase as collapsed words; the last word may carry any of ``_SUFFIXES``."""

    text: str
    head: tuple[str, ...]
    last: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> _Phrase:
        words = _entry_words(text)
        return cls(
            text, tuple(_collapse(w) for w in words[:-1]), frozenset(_collapse(words[-1] + s) for s in _SUFFIXES)
        )

    def found_in(self, words: list[str]) -> bool:
        n = len(self.head)
        return any(tuple(words[i : i + n]) == self.head and words[i + n] in self.last for i in range(len(words) - n))


@dataclasses.dataclass(frozen=True)
class Category:
    """A named set of refusal rules (see the policy file format in ``default_policy.yaml``)."""

    name: str
    description: str
    words: tuple[_Phrase, ...] = ()
    patterns: tuple[re.Pattern, ...] = ()
    all_of: tuple[tuple[_Phrase, ...], ...] = ()

    def match(self, readings: list[list[str]], collapsed: list[list[str]]) -> str | None:
        """The first word, phrase or pattern of this category found in the prompt's readings
        (and the same with repeated letters collapsed), or None."""
        for phrase in self.words:
            if any(phrase.found_in(words) for words in collapsed):
                return phrase.text
        texts = [" ".join(words) for words in readings + collapsed]
        for pattern in self.patterns:
            for text in texts:
                if found := pattern.search(text):
                    return found.group(0)
        if self.all_of:
            hits = [
                next((p.text for p in group if any(p.found_in(w) for w in collapsed)), None) for group in self.all_of
            ]
            if all(hits):
                return " + ".join(hits)
        return None


@dataclasses.dataclass(frozen=True)
class PromptPolicy:
    """An ordered list of categories; the first that matches refuses the prompt."""

    categories: tuple[Category, ...]
    source: str = "<memory>"

    @classmethod
    def from_dict(cls, data: dict, source: str = "<memory>") -> PromptPolicy:
        """Build a policy from the file format's mapping; a bad entry raises ConfigError naming it."""
        if not isinstance(data, dict) or data.get("version", 1) != 1:
            raise ConfigError(f"policy {source} must be a mapping with version: 1.")
        unknown = sorted(set(data) - {"version", "categories"})
        if unknown:
            raise ConfigError(f"policy {source} has unknown key(s) {', '.join(unknown)}; use version and categories.")
        entries = data.get("categories")
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"policy {source} needs a non-empty list under 'categories'.")
        categories = tuple(_category(entry, i, source) for i, entry in enumerate(entries))
        names = [c.name for c in categories]
        if len(set(names)) != len(names):
            raise ConfigError(f"policy {source} names a category twice: {', '.join(names)}.")
        return cls(categories, source)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PromptPolicy:
        """Read a policy file (YAML, JSON or TOML)."""
        return cls.from_dict(load_config_file(path), source=str(path))

    @classmethod
    def default(cls) -> PromptPolicy:
        """The policy shipped with kinetoscope (``safety/default_policy.yaml``)."""
        return _default_policy()

    def check(self, prompt: str) -> PolicyDecision:
        """Decide whether ``prompt`` may be generated; a refusal says which category and why."""
        readings = list(_readings(prompt))
        collapsed = [[_collapse(w) for w in words] for words in readings]
        for category in self.categories:
            matched = category.match(readings, collapsed)
            if matched is not None:
                reason = (
                    f"the prompt was refused by the content policy: it asks for {category.description} "
                    f"(category {category.name!r}, matched {matched!r})."
                )
                return PolicyDecision(False, category.name, reason, matched)
        return PolicyDecision(True)

    def enforce(self, prompt: str, param: str = "prompt") -> None:
        """Raise :class:`ContentPolicyError` (naming ``param``) if ``prompt`` is refused; return quietly otherwise."""
        decision = self.check(prompt)
        if not decision.allowed:
            raise ContentPolicyError(decision, param)


def load_policy(path: str | os.PathLike | None = None) -> PromptPolicy:
    """The policy in ``path``, else in ``$KINETOSCOPE_POLICY``, else the default one."""
    path = path or os.environ.get(POLICY_ENV)
    return PromptPolicy.from_file(Path(path)) if path else PromptPolicy.default()


@functools.cache
def _default_policy() -> PromptPolicy:
    with resources.as_file(resources.files("kinetoscope.safety") / DEFAULT_POLICY) as path:
        return PromptPolicy.from_file(path)


# ---------------------------------------------------------------- reading a policy file
def _category(entry: object, index: int, source: str) -> Category:
    where = f"category {index + 1} of policy {source}"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
        raise ConfigError(f"{where} must be a mapping with a non-empty 'name'.")
    where = f"category {entry['name']!r} of policy {source}"
    unknown = sorted(set(entry) - _CATEGORY_KEYS)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(_CATEGORY_KEYS))}.")
    words = _phrases(entry.get("words", []), f"{where}, words")
    groups = entry.get("all_of", [])
    if not isinstance(groups, list) or any(not isinstance(g, list) for g in groups):
        raise ConfigError(f"{where}: all_of must be a list of word lists.")
    all_of = tuple(_phrases(group, f"{where}, all_of") for group in groups)
    patterns = tuple(_pattern(p, where) for p in _strings(entry.get("patterns", []), f"{where}, patterns"))
    if not (words or patterns or all_of):
        raise ConfigError(f"{where} has no words, patterns or all_of; it would never refuse anything.")
    description = entry.get("description", entry["name"])
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description must be a string.")
    return Category(entry["name"].strip(), description, words, patterns, all_of)


def _strings(values: object, where: str) -> list[str]:
    if not isinstance(values, list) or any(not isinstance(v, str) or not v.strip() for v in values):
        raise ConfigError(f"{where} must be a list of non-empty strings.")
    return values


def _phrases(values: object, where: str) -> tuple[_Phrase, ...]:
    phrases = []
    for value in _strings(values, where):
        if not _entry_words(value):
            raise ConfigError(f"{where}: {value!r} has no letters or digits to match.")
        phrases.append(_Phrase.parse(value))
    return tuple(phrases)


def _pattern(text: str, where: str) -> re.Pattern:
    try:
        return re.compile(text)
    except re.error as e:
        raise ConfigError(f"{where}: pattern {text!r} is not a valid regular expression ({e}).") from None


# ---------------------------------------------------------------- normalising a prompt
def _fold(text: str) -> str:
    """Lower case without accents, invisible characters or look-alike letters."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(c for c in decomposed if unicodedata.category(c) not in ("Mn", "Cf"))
    return kept.translate(_CONFUSABLES)


def _collapse(word: str) -> str:
    return _REPEATS.sub(r"\1", word)


def _entry_words(text: str) -> list[str]:
    """A policy word or phrase, normalised like a prompt (a "1" in it is read as "i")."""
    return _words(_unleet(token, "i") for token in _fold(text).split())


def _readings(prompt: str) -> Iterator[list[str]]:
    """Word lists the prompt can be read as: 1/!/| as i and as l, each split three ways."""
    folded = _fold(prompt)
    for letter in "il":
        tokens = [_unleet(token, letter) for token in folded.split()]
        yield _words(tokens)
        yield _words(_IN_WORD_SEPARATORS.sub("", token) for token in tokens)  # s.e.x, k-i-l-l
        yield _join_spelled(_words(tokens))  # s e x


def _unleet(token: str, ambiguous_as: str) -> str:
    """Read leetspeak back in tokens that hold a letter, so "1980" stays a number."""
    if not any(c.isalpha() for c in token):
        return token
    return _AMBIGUOUS.sub(ambiguous_as, token.translate(_LEET))


def _words(tokens: Iterable[str]) -> list[str]:
    return [w for token in tokens for w in _NON_WORD.split(token) if w]


def _join_spelled(words: list[str]) -> list[str]:
    """Join runs of two or more one-letter words: "s e x" -> "sex"."""
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        joined.extend(["".join(run)] if len(run) > 1 else run)
        run = []
        if word:
            joined.append(word)
    return joined
