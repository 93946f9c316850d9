"""model1.Error: the exception every model1 function raises for bad arguments."""

from __future__ import annotations

__all__ = ["Error"]


class Error(ValueError):
    """A model1 argument (or operation) error.

    Raised by the C++ library (``model1::Error``, translated by the extension) and by the
    Python layer alike. Subclass of :class:`ValueError`.

    Attributes:
        argument: the argument at fault, exactly the parameter or field name, optionally with
            a detail after a dot: ``"q"``, ``"kv.page_size"``, ``"out.shape"``.
        expected: what was expected, with concrete values (``"dtype bf16"``).
        actual: what was given (``"dtype f32"``).
        file, line: where in the sources it was raised (empty / 0 for Python-side errors).
    """

    def __init__(self, message: str, argument: str = "", expected: str = "",
                 actual: str = "", file: str = "", line: int = 0):
        super().__init__(message)
        self.argument = argument
        self.expected = expected
        self.actual = actual
        self.file = file
        self.line = line

    @classmethod
    def of(cls, argument: str, expected: str, actual: str) -> "Error":
        """Builds an Error with the library's message format."""
        return cls(f"model1: argument '{argument}': expected {expected}, got {actual}",
                   argument, expected, actual)

    def __reduce__(self):
        return (type(self), (str(self), self.argument, self.expected, self.actual, self.file,
                             self.line))
