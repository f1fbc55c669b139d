"""The one exception type whose text is shown to the user.

Invariant: its text is one line the user can act on; anything else that escapes is a bug, logged with its traceback.
"""


class HookError(Exception):
    """A problem the user can act on.

    ``str(err)`` is ONE line, without the ``mdev-hooks: `` prefix (added where it is printed); libvirt shows it
    verbatim after ``unexpected exit status 1:``.
    """
