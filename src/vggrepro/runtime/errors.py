"""The one base class of the errors a user can act on: a params value, a dataset, a device, a
lock held by someone else. The CLI prints any of them as one line (`vggrepro <cmd>: error: ...`)
and exits 2; every other exception is a bug and keeps its traceback."""


class Error(Exception):
    """A problem with the project's inputs or its machine, said in one line that names the
    thing and what was expected."""


class MissingFile(Error, FileNotFoundError):
    """An input file that is not there, with what makes it (`run its train stage first`)."""
