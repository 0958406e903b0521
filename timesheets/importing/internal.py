"""Internal time: rows without a client, filed under the internal client (setting
IMPORT_INTERNAL_CLIENT_NAME, default "Internal") in a project of the row's project name."""

from collections.abc import Iterable

from django.conf import settings

from timesheets.importing.matching import name_key
from timesheets.models import Client, Project

INTERNAL_TIME_CHOICES = ("import", "skip")
DEFAULT_INTERNAL_CLIENT_NAME = "Internal"


def internal_client_name() -> str:
    """The client that internal time (rows without a client) is filed under."""
    return getattr(settings, "IMPORT_INTERNAL_CLIENT_NAME", DEFAULT_INTERNAL_CLIENT_NAME)


def file_internal_time(project_names: Iterable[str]) -> dict[str, Project]:
    """The internal client's project for each internal project name (by name key), created
    when missing: the client non-billing by having only non-billable projects made here.
    Runs inside the import's transaction and under its lock, so a refused or failed import
    creates no internal client or project, and two imports never create the same one twice."""
    wanted = {name_key(name): name for name in project_names}
    if not wanted:
        return {}
    name = internal_client_name()
    client = Client.objects.filter(name__iexact=name).first()
    if client is None:
        client = Client.objects.create(name=name)
    projects = {
        name_key(project.name): project
        for project in Project.objects.select_related("client").filter(client=client)
    }
    for key, project_name in sorted(wanted.items()):
        if key not in projects:
            projects[key] = Project.objects.create(
                client=client, name=project_name[:200], billing=Project.Billing.NON_BILLABLE
            )
    return {key: projects[key] for key in wanted}
