"""The two roles of the review desk, as groups (issue 6, reliability notes 3.2).

"Ops staff" import, review, resolve entries and edit the billing rules; "Approvers" can do all
of that and also approve, void and send invoices to QuickBooks. Nobody needs to be a superuser
for month end. Changing the firm's own settings (including who may approve) is left to a
superuser. The lists are frozen here, as migrations must be; a later change of a role is a new
migration.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OPS_STAFF = "Ops staff"
APPROVERS = "Approvers"

OPS_PERMISSIONS = [
    # Import and the facts the importer matches against (unknown names are added by hand).
    "timesheets.view_timeentry",
    "timesheets.view_importbatch",
    "timesheets.add_importbatch",
    *(
        f"timesheets.{action}_{model}"
        for model in ("client", "project", "person")
        for action in ("view", "add", "change")
    ),
    # Review: drafts (draft, rebuild), their lines and history; resolve entries.
    "invoices.view_invoice",
    "invoices.change_invoice",
    "invoices.view_invoiceevent",
    "invoices.view_classification",
    "invoices.change_classification",
    "invoices.view_firm",
    # Edit the rules.
    *(
        f"invoices.{action}_{model}"
        for model in (
            "category",
            "classificationrule",
            "rate",
            "clientpolicy",
            "billingcode",
            "ratemultiplier",
            "cap",
        )
        for action in ("view", "add", "change", "delete")
    ),
    # Read the language-model tier's runs and QuickBooks pushes, and the audit trail.
    "invoices.view_modelrun",
    "invoices.view_modelrequest",
    "invoices.view_invoicepush",
    "invoices.view_auditrecord",
    "invoices.view_timeentryhistory",
]

APPROVER_PERMISSIONS = [
    *OPS_PERMISSIONS,
    "invoices.approve_invoice",
    "invoices.void_invoice",
    # Sending to QuickBooks is creating a push (invoices.quickbooks checks this permission).
    "invoices.add_invoicepush",
]

ROLES = {OPS_STAFF: OPS_PERMISSIONS, APPROVERS: APPROVER_PERMISSIONS}


def create_roles(apps, schema_editor):
    # On a fresh database permissions are created after the last migration; make them now.
    for app_config in apps.get_app_configs():
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True  # historical app configs have none
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, labels in ROLES.items():
        wanted = {tuple(label.split(".")) for label in labels}
        found = {
            (p.content_type.app_label, p.codename): p
            for p in Permission.objects.select_related("content_type").filter(
                codename__in={codename for _, codename in wanted}
            )
        }
        missing = sorted(".".join(key) for key in wanted - found.keys())
        if missing:
            raise RuntimeError(f"group {name!r}: no such permissions: {', '.join(missing)}")
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set([found[key] for key in wanted])


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("timesheets", "0001_initial"),
        ("invoices", "0003_review_desk_audit_trail"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
