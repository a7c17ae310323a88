"""Method hyperparameters from the command line (`-p KEY=VALUE`, `--n`): values read as YAML 1.2 plain scalars
or flat lists, nothing constructed."""

from __future__ import annotations

from typing import Any

from harness.confighelp import show as show_value
from harness.task import ConfigError

MAX_VALUE_CHARS = 1000  # a -p value


def parse_value(text: str) -> Any:
    """A -p value as YAML 1.2 reads a plain scalar or a flat flow list (numbers as JSON reads them, strings,
    booleans, [1, 2]: harness.yaml12); tags, anchors and mappings are refused, so that a value never constructs
    anything."""
    import yaml

    from harness import yaml12

    refused = (yaml.TagToken, yaml.AnchorToken, yaml.AliasToken, yaml.KeyToken)
    scalar = (int, float, str, bool, type(None))
    if len(text) > MAX_VALUE_CHARS:
        raise ConfigError(f"a value of {len(text)} characters (at most {MAX_VALUE_CHARS})")
    try:
        if any(isinstance(t, refused) for t in yaml.scan(text, Loader=yaml12.Loader)):
            raise ValueError
        value = yaml12.load(text)
    except yaml.constructor.ConstructorError as e:
        raise ConfigError(f"value {text!r}: {e.problem}") from None
    except (yaml.YAMLError, ValueError):
        value = ...
    if not (isinstance(value, scalar) or (isinstance(value, list) and all(isinstance(v, scalar) for v in value))):
        raise ConfigError(f"value {text!r} is not a number, a string, a boolean or a flat list")
    return value


def parse_params(params: list[str], n: str | None = None) -> dict[str, Any]:
    """The hyperparameters of `-p KEY=VALUE` options and of `--n N` (a shortcut for -p n=N); a key given twice
    with different values is refused."""
    out: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r} is not KEY=VALUE")
        try:
            parsed = parse_value(value)
        except ConfigError as e:
            raise ConfigError(f"--param {key}: {e}") from None
        if key in out and not same_value(out[key], parsed):
            raise ConfigError(f"--param {key}={show_value(out[key])} and --param {item} disagree: give {key} once")
        out[key] = parsed
    if n is not None:
        value = parse_value(n)
        if "n" in out and not same_value(out["n"], value):
            raise ConfigError(f"--n {n} and --param n={show_value(out['n'])} disagree: give one of them")
        out["n"] = value
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal as parsed, where a boolean never equals a number (true is no 1)."""
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)
