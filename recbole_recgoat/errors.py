"""The package's one error type for bad input: a one-line message naming the file/field/key."""


class InputError(ValueError):
    """Bad user input (a file, a field or a config key).

    The message is a single line: ``<what>: <the problem>; expected <what was expected>``.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
