"""Errors that mean "the user's settings are wrong" (as opposed to bugs): the entry points print them plainly."""


class ConfigError(ValueError):
    """An invalid setting; the message names the config key."""
