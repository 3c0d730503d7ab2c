"""The errors a user can fix: a value, a name, a missing or existing file, a failed step. ``nnunet-losses`` prints
their message as one line (exit status 2); any other exception is a bug and keeps its traceback. Each subclass also
derives from the builtin it stands for, so ``except ValueError`` still catches an :class:`InvalidInput`. Imports
nothing: every module of the package may raise them."""


class UserError(Exception):
    """An error the user can fix: the command line prints its message as one line, exit status 2."""


class InvalidInput(UserError, ValueError):
    """A value, option, name or file content that is not accepted."""


class MissingInput(UserError, FileNotFoundError):
    """A file or folder that should exist does not."""


class ExistingOutput(UserError, FileExistsError):
    """An output exists already and differs from what would be written."""


class StepFailed(UserError, RuntimeError):
    """A step that cannot run or failed: unset environment variables, a failed command, unusable maps."""


class UnknownName(UserError, KeyError):
    """A name that is not among the known ones (a loss, a paper); its message reads without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()
