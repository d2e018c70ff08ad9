"""The range checks every typed setting uses: each raises one ``ConfigError`` naming the key."""

from bias_unlearn.config.errors import ConfigError

STEREOSET_KINDS = ("intrasentence", "intersentence")


def one_of(key: str, value, options) -> None:
    if value not in options:
        raise ConfigError(f"{key} must be one of {list(options)}, got {value!r}")


def at_least(key: str, value, low, what: str = "") -> None:
    if not value >= low:
        raise ConfigError(f"{key} must be >= {low}{what}, got {value!r}")


def kinds_list(key: str, kinds) -> None:
    unknown = [k for k in kinds if k not in STEREOSET_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"{key} must list StereoSet kinds from {list(STEREOSET_KINDS)}, got {list(kinds)}")
