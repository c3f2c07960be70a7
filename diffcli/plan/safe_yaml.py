"""`yaml.safe_load` for hostile text: no anchors or aliases, bounded nesting, one-line errors.

Semantics are those of `yaml.safe_load` (plain data only, no Python tags) with three refusals made
before anything is constructed: an anchor or alias (`&name`, `*name`: the billion-laughs expansion),
nesting deeper than `MAX_DEPTH`, and numbers or dates Python cannot build (a 5,000-digit integer).
"""

from __future__ import annotations

from typing import Any

import yaml

from diffcli.plan.text import one_line

MAX_DEPTH = 64  # presets are flat; scheduler_options nest one or two levels


class YAMLRefused(yaml.YAMLError):
    """Valid YAML that diffcli will not load; `problem` and `problem_mark` as in PyYAML's marked errors."""

    def __init__(self, problem: str, problem_mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = problem_mark


class BoundedSafeLoader(yaml.SafeLoader):
    """A SafeLoader that refuses anchors, aliases and deep nesting while composing, before constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise YAMLRefused("YAML anchors and aliases (&name, *name) are not allowed", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise YAMLRefused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load(text: str) -> Any:
    """Parse one YAML document like `yaml.safe_load`, or raise a `yaml.YAMLError` with a one-line `problem`."""
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError:
        raise
    except (ValueError, OverflowError, RecursionError) as err:  # int('9'*5000), 2001-02-30, ...
        raise YAMLRefused(f"unreadable value: {one_line(str(err), 120)}") from None
    finally:
        loader.dispose()


def describe_error(err: yaml.YAMLError) -> str:
    """`(line L, column C): problem` for a PyYAML error, escaped and on one line."""
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(err, "problem", None) or "invalid YAML"
    return f"{where}: {one_line(problem, 160)}"
