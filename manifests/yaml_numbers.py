"""YAML for recipes and training configs: PyYAML's safe loader, with YAML 1.2's floats.

PyYAML implements YAML 1.1, where a float needs a dot and a signed exponent: `1e-4`, `5e-1`, `1E3` and
`1.0e30` are strings there, which the strict config models then refuse ("got '1e-4'"). They are floats in
YAML 1.2, JSON and Python, and that is how people write learning rates. This loader reads them as floats.

The choice: a scalar is a float if YAML 1.1 or YAML 1.2's core schema reads it as one, and is not an
integer. So beyond YAML 1.1, the exponent's sign is optional (`1.5e3`), an exponent needs no dot (`1e-4`,
`-2.5E-3`) and a leading-dot float may have a sign (`-.5`). Everything else keeps its YAML 1.1 meaning,
as PyYAML's safe_load gave it before: `1_000` is 1000, `010` is octal 8, `0x1F` 31, `0b11` 3, `1:30`
(sexagesimal) 90, `1_000.5` 1000.5, `yes`/`on` booleans, while `0o10` (1.2's octal), `1e`, `1.2.3`,
`v1e2`, `1e5 reasons` stay strings. A string that looks like a float must now be quoted: `"1e-4"`.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

FLOAT_TAG = "tag:yaml.org,2002:float"

FLOAT = re.compile(r"""^(?:
      [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?     # 1.5, 1., 1_000.5, 1.0e+30 (1.1), 1.5e3, 1.0e30 (1.2)
    | [-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?            # .5 (1.1), -.5, .5e1 (1.2)
    | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+                   # 1e-4, 5e-1, 1E3 (1.2)
    | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*        # 1:30.5, sexagesimal (1.1)
    | [-+]?\.(?:inf|Inf|INF)
    | \.(?:nan|NaN|NAN)
    )$""", re.X)


class NumbersLoader(yaml.SafeLoader):
    """yaml.SafeLoader with FLOAT as its float resolver (the module docstring says what changes)."""


# Replace the float resolver where it stands (before the int one: resolvers are tried in order), on copies
# of SafeLoader's lists, leaving yaml.safe_load as it is. Every first character the new floats can start
# with (-+0123456789.) already has a float resolver.
NumbersLoader.yaml_implicit_resolvers = {
    first: [(tag, FLOAT if tag == FLOAT_TAG else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    """yaml.safe_load(text), but `1e-4` and the other YAML 1.2 floats are floats. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=NumbersLoader)  # noqa: S506 - a SafeLoader subclass
