"""One error base for the timesheets app."""


class TimesheetError(Exception):
    """An import, a sync or a recorded source change was refused or stopped, and the message
    says why in words for the person who asked (ops staff in the admin or at a command).

    The importers, the sync and the source-change services raise a subclass of it; it is
    caught once, at the edge (the admin turns it into a message, a command into a
    `CommandError`, a task into its run's failure). The trackers' own errors (`integrations`)
    are not subclasses: the sync sorts them by what a run does about them
    (`timesheets.sync.errors`)."""
