"""`mlpipe schedule apply`: create the retraining CronWorkflow on the Argo server, or update it.

An update replaces the spec in place (the server's resourceVersion guards against a
concurrent change), so the CronWorkflow keeps its run history and its place in the UI.
The server settings and token come from `workflows.argo_client.argo_settings`; the
training WorkflowTemplate the CronWorkflow refers to must be installed separately.
"""

from collections.abc import Mapping
from typing import Any, Literal

import requests
from hera.exceptions import BadRequest, Forbidden, HeraException, NotFound, Unauthorized
from hera.workflows import WorkflowsService
from hera.workflows import models as m

from workflows.argo_client import ArgoError, ArgoSettings

Applied = Literal["created", "updated"]


def apply_cron(settings: ArgoSettings, manifest: Mapping[str, Any]) -> Applied:
    """Create the CronWorkflow `manifest`, or update the one of the same name."""
    cron = m.CronWorkflow.model_validate(manifest)
    name = cron.metadata.name
    if not name:
        raise ArgoError("the CronWorkflow manifest has no metadata.name", 2)
    service = WorkflowsService(
        host=settings.server,
        # requests takes a CA bundle path as `verify` too; Hera types it bool only.
        verify_ssl=settings.verify,  # type: ignore[arg-type]
        token=settings.token,
        namespace=settings.namespace,
    )
    try:
        try:
            existing = service.get_cron_workflow(name)
        except NotFound:
            request = m.CreateCronWorkflowRequest(cron_workflow=cron)
            service.create_cron_workflow(request)
            return "created"
        cron.metadata.resource_version = existing.metadata.resource_version
        service.update_cron_workflow(name, m.UpdateCronWorkflowRequest(cron_workflow=cron))
        return "updated"
    except (Unauthorized, Forbidden, BadRequest) as error:
        raise ArgoError(
            f"applying CronWorkflow {name!r} in namespace {settings.namespace}: the Argo server "
            f"at {settings.server} refused it (HTTP {error.status_code}): {error}",
            2,
        ) from error
    except (HeraException, requests.RequestException) as error:
        raise ArgoError(
            f"applying CronWorkflow {name!r}: Argo server {settings.server} failed: {error}", 3
        ) from error
    finally:
        service.session.close()
