"""The one exception type a user ever sees: a one-line message, exit code 2."""


class UserError(Exception):
    """A problem with the user's input (file, argument, shape).

    The CLI prints ``rnnlab: error: <message>`` on one line and exits with code 2,
    never a traceback. Raise it with a message that names the file or option and
    says what to do.
    """

    exit_code = 2
