"""Decision tables checked for rows that overlap: under hit policy FIRST (and UNIQUE, which the engine runs as
FIRST) two rows that match the same input make the table's answer depend on the rows' order. The check
evaluates every row against inputs made from the values the cells mention (each number, and just below and
above it; each text, and one no cell mentions). It runs the cells' code, so it runs in an engine worker."""
from __future__ import annotations

import itertools
import random
import re
from decimal import Decimal
from typing import Any

_NUMBER = re.compile(r"(?<![\w.\"'])-?\d+(?:\.\d+)?(?![\w.])")
_TEXT = re.compile(r"\"([^\"]*)\"|'([^']*)'")
_QUESTION = re.compile(r"(\?)(?=(?:[^'\"]|['\"][^'\"]*['\"])*$)")
MAX_SAMPLES = 4000
_STEP = Decimal("0.01")


def _samples(cells: list[str]) -> list[Any]:
    values: list[Any] = []
    for cell in cells:
        for m in _NUMBER.finditer(cell):
            v = Decimal(m.group(0))
            values += [v - _STEP, v, v + _STEP]
        for m in _TEXT.finditer(cell):
            values.append(m.group(1) if m.group(1) is not None else m.group(2))
        if re.search(r"\b(True|False)\b", cell):
            values += [True, False]
    if any(isinstance(v, str) for v in values):
        values.append("（其他）")
    unique: list[Any] = []
    for v in values:
        if not any(type(v) is type(u) and v == u for u in unique):
            unique.append(v)
    return unique or [None]


def _matches(environment: Any, cell: str | None, value: Any) -> bool:
    """One cell against one input value, the way the engine reads a cell (SpiffWorkflow's DMNEngine)."""
    if cell is None or not cell.strip() or cell.strip() == "-":
        return True
    expression = _QUESTION.sub("dmninputexpr", cell)
    if "dmninputexpr" not in expression:
        try:
            compile(expression, "<cell>", "eval")
            expression = f"(dmninputexpr) == ({expression})"
        except SyntaxError:
            expression = f"dmninputexpr {expression}"
    try:
        return bool(environment.evaluate(expression, {"dmninputexpr": value}))
    except Exception:  # noqa: BLE001 - a sample of the wrong type simply does not match
        return False


def overlaps(table: Any, environment: Any) -> list[str]:
    """Warnings for rows that match the same input (one per pair of rows, at most five per table)."""
    if table.hit_policy not in ("FIRST", "UNIQUE"):
        return []
    columns = table.inputs
    rules = table.rules
    cells = [[(rule.inputEntries[i].lhs or [None])[0] for rule in rules] for i in range(len(columns))]
    samples = [_samples([c for c in column if c]) for column in cells]
    # each cell against each sample of its column, once; a row matches an input when all its cells do
    match = [[[_matches(environment, cells[i][r], v) for v in samples[i]] for r in range(len(rules))]
             for i in range(len(columns))]
    total = 1
    for s_ in samples:
        total *= len(s_)
    indices: Any = itertools.product(*(range(len(s_)) for s_ in samples))
    if total > MAX_SAMPLES:
        chooser = random.Random(0)
        indices = ([chooser.randrange(len(s_)) for s_ in samples] for _ in range(MAX_SAMPLES))
    name = table.name or table.id
    found: dict[tuple[int, int], str] = {}
    for combo in indices:
        hits = [r for r in range(len(rules)) if all(match[i][r][combo[i]] for i in range(len(columns)))]
        for a, b in itertools.combinations(hits, 2):
            pair = (rules[a].row_number, rules[b].row_number)
            if pair not in found and len(found) < 5:
                shown = ", ".join(f"{(c.label or c.expression or c.id).strip('()')} = {samples[i][combo[i]]!r}"
                                  for i, c in enumerate(columns))
                found[pair] = (f"decision '{name}': rows {pair[0]} and {pair[1]} both match ({shown}); "
                               f"under hit policy {table.hit_policy} the first one wins, so the rows' order decides")
    return list(found.values())
