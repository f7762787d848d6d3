"""Line-level mutations of a text file, for the importers' fuzz tests (no tests here)."""

from __future__ import annotations

import random
from typing import Sequence

OPS = ("truncate", "swap", "noise", "drop", "chars", "dup", "shuffle")


def mutate_lines(lines: list[str], rng: random.Random, rounds: int, noise: Sequence[str], chars: str,
                 ops: Sequence[str] = OPS) -> str:
    """``rounds`` mutations drawn from ``ops``: cut the text anywhere, swap, shuffle, drop or double
    lines, insert a ``noise`` line, change 1-3 characters of a line to ones of ``chars``."""
    lines = list(lines)
    for _ in range(rounds):
        op = rng.choice(tuple(ops))
        if op == "truncate":
            text = "\n".join(lines)
            lines = text[:rng.randrange(len(text) + 1)].splitlines()
        elif op == "swap" and len(lines) > 1:
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "shuffle":
            rng.shuffle(lines)
        elif op == "noise":
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(noise))
        elif op == "drop" and lines:
            del lines[rng.randrange(len(lines))]
        elif op == "dup" and lines:
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
        elif op == "chars" and lines:
            i = rng.randrange(len(lines))
            s = list(lines[i])
            for _ in range(rng.randint(1, 3)):
                if s:
                    s[rng.randrange(len(s))] = rng.choice(chars)
            lines[i] = "".join(s)
    return "\n".join(lines)
