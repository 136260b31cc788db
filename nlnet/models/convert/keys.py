"""Key tables: one list of rules per source, read in both directions.

A :class:`Rule` pairs an nlnet state-dict key template with the source's template; a source writes
its table as two columns (:meth:`KeyTable.parse`), e.g.::

    res{s}.block{i}.conv{c}.weight    res{s}_{i}_branch2{c}_w        (with c=ABC)

``{name}`` fields are 0-based integers copied as they are, unless the rule gives a value table for
the field (nlnet value -> source value; a tuple lists the source's aliases, the first one written).
The same rules map a source key to nlnet (:meth:`KeyTable.to_nlnet`, used by the conversion) and
an nlnet key to the source (:meth:`KeyTable.to_source`, used by the tests to write source-format
checkpoints from nlnet models), so the table cannot drift between the two directions.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = ["Rule", "KeyTable", "BN_TORCH", "BN_CAFFE2", "WEIGHT_BIAS", "ABC"]

# Values of common fields (nlnet -> source).
BN_TORCH = {p: p for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
BN_CAFFE2 = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}  # _riv: the running variance
WEIGHT_BIAS = {"weight": "weight", "bias": "bias"}
ABC = {"1": "a", "2": "b", "3": "c"}  # nlnet conv1/2/3 (bn1/2/3) = the bottleneck's branch2 a/b/c

_FIELD = re.compile(r"\{(\w+)\}")


class Rule:
    """One nlnet key template and its source template (see the module docstring).

    Args:
        nlnet: nlnet template, e.g. ``"res{s}.block{i}.shortcut.conv.weight"``.
        source: source template, e.g. ``"res{s}_{i}_branch1_w"``.
        **values: per field, a table nlnet value -> source value (or tuple of source aliases).
    """

    def __init__(self, nlnet: str, source: str, **values: Mapping[str, str | tuple[str, ...]]) -> None:
        self.nlnet = nlnet
        self.source = source
        self.values = values

    def __repr__(self) -> str:
        return f"Rule({self.nlnet!r} <-> {self.source!r})"


class _Direction:
    """Matches keys of one side of a rule and writes the other side."""

    def __init__(self, pattern: str, target: str, tables: Mapping[str, Mapping[str, str]]) -> None:
        self.target = target
        self.tables = tables
        parts, last = [], 0
        for match in _FIELD.finditer(pattern):
            name = match.group(1)
            choices = sorted(tables[name], key=len, reverse=True) if name in tables else None
            regex = "|".join(map(re.escape, choices)) if choices else r"\d+"
            parts += [re.escape(pattern[last:match.start()]), f"(?P<{name}>{regex})"]
            last = match.end()
        parts.append(re.escape(pattern[last:]))
        self.regex = re.compile("".join(parts))

    def apply(self, key: str) -> str | None:
        match = self.regex.fullmatch(key)
        if match is None:
            return None
        fields = {name: self.tables[name][value] if name in self.tables else value
                  for name, value in match.groupdict().items()}
        return self.target.format(**fields)


class KeyTable:
    """A source's key table: :class:`Rule` s read in both directions.

    Args:
        rules: the rules; the first rule that matches a key maps it.
    """

    @classmethod
    def parse(cls, text: str, **values: Mapping[str, str | tuple[str, ...]]) -> KeyTable:
        """A table written as two columns, one rule per line: ``<nlnet template>  <source template>``;
        each field's value table (``values``) applies to every rule that has the field."""
        rules = []
        for line in text.strip().splitlines():
            nlnet, source = line.split()
            fields = set(_FIELD.findall(nlnet))
            rules.append(Rule(nlnet, source, **{k: v for k, v in values.items() if k in fields}))
        return cls(rules)

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._forward, self._backward = [], []  # source -> nlnet, nlnet -> source
        for rule in self.rules:
            unknown = set(rule.values) - set(_FIELD.findall(rule.nlnet))
            if unknown or set(_FIELD.findall(rule.nlnet)) != set(_FIELD.findall(rule.source)):
                raise ValueError(f"key rule {rule.nlnet!r} <-> {rule.source!r}: fields differ ({sorted(unknown)})")
            to_source = {name: {k: v if isinstance(v, str) else v[0] for k, v in table.items()}
                         for name, table in rule.values.items()}
            to_nlnet = {name: {alias: k for k, v in table.items() for alias in ((v,) if isinstance(v, str) else v)}
                        for name, table in rule.values.items()}
            self._forward.append(_Direction(rule.source, rule.nlnet, to_nlnet))
            self._backward.append(_Direction(rule.nlnet, rule.source, to_source))

    @staticmethod
    def _first(directions: list[_Direction], key: str) -> str | None:
        for direction in directions:
            mapped = direction.apply(key)
            if mapped is not None:
                return mapped
        return None

    def to_nlnet(self, key: str) -> str | None:
        """The nlnet key of source key ``key``, or None when no rule matches."""
        return self._first(self._forward, key)

    def to_source(self, key: str) -> str | None:
        """The source key of nlnet key ``key``, or None when no rule matches."""
        return self._first(self._backward, key)
