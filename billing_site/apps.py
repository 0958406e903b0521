from django.apps import AppConfig


class BillingSiteConfig(AppConfig):
    """The project itself as an app: no models; wiring that needs the app registry (task-id
    logging, deploy checks) and the `release` command."""

    name = "billing_site"
    verbose_name = "Site"

    def ready(self) -> None:
        from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute

        from billing_site import checks  # noqa: F401 - registers the deploy checks
        from billing_site import structured_logging as logs

        pre_enqueue.connect(logs.remember_request_id, dispatch_uid="billing_site.request_id")
        pre_execute.connect(logs.task_started, dispatch_uid="billing_site.task_started")
        post_execute_in_worker.connect(
            logs.task_finished, dispatch_uid="billing_site.task_finished"
        )
