"""Errors that mean "the user's settings are wrong" (as opposed to bugs): the entry points print them plainly."""


class ConfigError(ValueError):
    """An invalid setting; the message names the config key."""


class TrainingDiverged(RuntimeError):
    """A loss term or gradient became NaN or inf; the run stopped and its report says where."""
