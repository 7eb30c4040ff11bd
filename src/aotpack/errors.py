"""The errors aotpack raises.

Every error is one clear sentence naming what is wrong, followed (where there is one)
by a ``hint`` saying what to do. The CLI prints ``error: <message>`` and ``hint: <hint>``
and never a traceback for these.

Hierarchy::

    AotpackError
     ├── CaptureError       the program cannot be captured as one graph
     │    └── BackendError     captured, but the chosen backend cannot compile it
     ├── GuardError         a call's inputs do not match any compiled variant
     ├── IndexOutOfRange    compiled code's bounds check found an index eager refuses too
     ├── IntegerDivisionByZero  compiled code divided integers by zero, as eager refuses to
     ├── FormatError        the file is not an aotpack package, or of an unknown version
     ├── IntegrityError     a member's bytes differ from what the manifest recorded
     │    └── SignatureError   not signed by a trusted key (when keys are given)
     ├── IncompatibleError  the package was built for another torch/Python/machine
     └── CacheError         a cache store failed
"""

from __future__ import annotations

__all__ = [
    "AotpackError",
    "CaptureError",
    "NothingToDifferentiate",
    "BackendError",
    "GuardError",
    "IndexOutOfRange",
    "IntegerDivisionByZero",
    "FormatError",
    "IntegrityError",
    "SignatureError",
    "IncompatibleError",
    "CacheError",
    "NotARegularFile",
    "SpecializationWarning",
    "RebuildWarning",
    "PortableRunWarning",
    "SideEffectWarning",
    "SignatureDroppedWarning",
]


class AotpackError(Exception):
    """Base class of every error aotpack raises on purpose.

    Attributes:
      message: what is wrong, one sentence.
      hint: what to do about it, or None.
    """

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\nhint: {hint}")


class CaptureError(AotpackError):
    """The program could not be captured as one graph (data-dependent control flow,
    an unsupported Python construct, ...). The message names the user's file:line."""


class NothingToDifferentiate(CaptureError):
    """No output of the program requires grad, so a training package has no backward.
    ``aotpack.compile(..., train=True)`` then compiles the forward alone, as an inference
    variant (what eager runs for such a program); ``aotpack.autograd.capture_joint`` raises it."""


class BackendError(CaptureError):
    """The program was captured, and the chosen backend cannot compile it (the inductor
    backend and dynamic shapes, say); the hint names a backend that can.

    A CaptureError too: ``aotpack.compile`` raised CaptureError for these before this
    class existed, and ``except CaptureError`` around a compile keeps working.
    """


class GuardError(AotpackError, TypeError):
    """The arguments of a call do not match what the package was compiled for.

    Subclasses TypeError too: calling with a wrong argument is a type error in the
    Python sense, and ``except TypeError`` around a call keeps working.
    """


class IndexOutOfRange(AotpackError, IndexError):
    """An index the call computes is outside the dimension it indexes (a token id past
    the vocabulary, say), found by the compiled code's bounds check: eager PyTorch raises
    IndexError for the same call. Subclasses IndexError, as eager's error is one."""


class IntegerDivisionByZero(AotpackError, RuntimeError):
    """An integer division or remainder by zero in the call, found by the compiled code's
    check: eager PyTorch raises ``RuntimeError: ZeroDivisionError`` for the same call.
    Subclasses RuntimeError, as eager's error is one."""


class FormatError(AotpackError):
    """The file is not an aotpack package, or is of a format this aotpack cannot read."""


class IntegrityError(AotpackError):
    """A package member is missing, truncated or does not match its recorded digest."""


class SignatureError(IntegrityError):
    """Trusted keys were given and the package carries no valid signature by any of
    them (unsigned, signed by another key, or changed after it was signed)."""


class IncompatibleError(AotpackError):
    """The package was built for another torch, Python or machine."""


class CacheError(AotpackError):
    """A compile-cache store failed."""


def warn_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first frame outside aotpack: the user's call of
    ``compile`` (or ``aotpack.llm.compile`` ...), however deep inside aotpack it is raised,
    so the warning's file:line and the ``-W`` filters by module are the user's."""
    import os
    import sys
    import warnings

    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2  # (stacklevel 1 is this function)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class SpecializationWarning(UserWarning):
    """The program forced a dimension the user declared dynamic to one size."""


class SideEffectWarning(UserWarning):
    """The program did something at capture that a package will not do at each call
    (``print``, appending to a global list, ``torch._dynamo.graph_break()``); the
    message names the user's file:line."""


class RebuildWarning(UserWarning):
    """A package variant built for another torch or machine is being compiled again."""


class PortableRunWarning(UserWarning):
    """A call ran a variant's portable program, eager ops in order, instead of its
    compiled code, which assumes that an input it updates in place overlaps no other
    input. Its result is eager's; its speed is eager's too. Once per loaded package and
    variant."""


class NotARegularFile(AotpackError, OSError):
    """A write's target exists and is not a regular file (a device, a fifo, a folder):
    aotpack replaces nothing but regular files (atomic.py)."""


class SignatureDroppedWarning(UserWarning):
    """A change to a signed package (``add_variant``) removed its signatures: they covered
    the old bytes. Sign it again."""
