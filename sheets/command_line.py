"""The `:` command line: what a typed line asks for, and Tab completion of its words. Pure
functions: the App supplies the names a word may complete to (tradecrafts, streams, files)."""
from __future__ import annotations

import glob
import itertools
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sheets.views import Info

# name: (the words it takes, what each word is, what it does)
COMMANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "tc": ("NAME[/ANALYTIC]", ("tradecraft",), "open a tradecraft, or one of its analytics"),
    "submit": ("FILE", ("file",), "submit a tradecraft document (asks first)"),
    "publish": ("STREAM FILE [TABLE]", ("stream", "file", ""), "publish a file's rows into a stream (asks first)"),
    "cancel": ("[NAME]", ("tradecraft",), "cancel a tradecraft, the one shown when no NAME (asks first)"),
    "split": ("JAH", ("join",), "split a dataset JOIN in two now (asks first)"),
    "merge": ("JAH", ("join",), "merge a JOIN with the other of its split (asks first)"),
    "reload": ("TRADECRAFT/ANALYTIC", ("dataset",), "load a dataset's next version now (asks first)"),
    "congestion": ("TRADECRAFT BUSY FOR", ("tradecraft", "", ""),
                   "set congestion thresholds, e.g. 0.5 2s (asks first)"),
    "q": ("", (), "quit"),
}
REQUIRED = {"tc": 1, "submit": 1, "publish": 2, "cancel": 0, "split": 1, "merge": 1, "reload": 1,
            "congestion": 3, "q": 0}


class CommandError(ValueError):
    """A line that asks for nothing the command line does: the message says what it takes."""


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]


def usage(name: str) -> str:
    return f":{name} {COMMANDS[name][0]}".rstrip()


def parse(line: str) -> Command:
    """`line` (without its ":") as a command and its words; a file name with spaces is quoted."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise CommandError(f":{line}: {exc}") from None
    if not words:
        raise CommandError(f"a command: {', '.join(COMMANDS)} (? lists them)")
    name, args = words[0], tuple(words[1:])
    if name not in COMMANDS:
        raise CommandError(f':{name}: no such command (commands: {", ".join(COMMANDS)})')
    if not REQUIRED[name] <= len(args) <= len(COMMANDS[name][1]):
        raise CommandError(f"usage: {usage(name)}")
    return Command(name, args)


def help_lines() -> list[tuple[str, str]]:
    return [(usage(name), what) for name, (_, _, what) in COMMANDS.items()]


def complete(line: str, choices: Callable[[str, str], Sequence[str]]) -> tuple[str, list[str]]:
    """The line with its last word completed as far as every match agrees, and the matches.
    The first word completes to a command; a later one to what `choices(kind, word)` offers for
    that place ("tradecraft", "stream", "file"). A single match that is whole gets a space after
    it, so the next word can be typed (a directory keeps its "/")."""
    head, _, word = line.rpartition(" ")
    place = len(line.split(" ")) - 1
    if place == 0:
        options: Sequence[str] = list(COMMANDS)
    else:
        name = line.split(" ", 1)[0]
        kinds = COMMANDS.get(name, ("", (), ""))[1]
        options = choices(kinds[place - 1], word) if place <= len(kinds) and kinds[place - 1] else []
    matches = sorted({o for o in options if o.startswith(word)})
    if not matches:
        return line, []
    done = os.path.commonprefix(matches)
    if matches == [done] and not done.endswith("/"):
        done += " "
    return (f"{head} " if place else "") + done, matches


def names(info: Info, kind: str, word: str) -> list[str]:
    """What a word may complete to, from a describe answer: tradecrafts (TRADECRAFT/ANALYTIC once
    the word has a "/"), the streams rows can be published into (those without a file source),
    the datasets (ingests), or the ids of the JOINs running."""
    tcs = info.get("tradecrafts", [])
    if kind == "tradecraft" and "/" not in word:
        return [t["name"] for t in tcs]
    if kind == "join":
        return [j["id"] for t in tcs for a in t.get("analytics", []) for j in a.get("jahs", [])
                if j.get("role") == "join" and j.get("state") != "finished"]
    if kind == "dataset":
        return [f"{t['name']}/{a['name']}" for t in tcs for a in t.get("analytics", []) if a.get("kind") == "ingest"]
    return [f"{t['name']}/{a['name']}" for t in tcs for a in t.get("analytics", [])
            if kind == "tradecraft" or kind == "stream" and a.get("kind") == "stream"
            and not any(j.get("role") == "source" for j in a.get("jahs", []))]


def files(word: str, most: int = 200) -> list[str]:
    """Paths starting with `word` (a directory ends in "/"), as typed ("~" kept), at most `most`."""
    base = os.path.expanduser(word)
    found = itertools.islice(glob.iglob(glob.escape(base) + "*"), most)
    return [word + path[len(base):] + ("/" if os.path.isdir(path) else "") for path in found]
