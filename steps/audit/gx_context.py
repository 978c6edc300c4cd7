"""The one way the audit talks to GX: an ephemeral context (nothing written to disk, no
analytics) with a pandas data source whose batches are whole in-memory frames."""

from typing import Any

import great_expectations as gx
from great_expectations.core.batch_definition import BatchDefinition
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)


def frame_batches() -> BatchDefinition[Any]:
    """A batch definition taking a DataFrame per batch (`batch_parameters={"dataframe": f}`)."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,  # a pipeline step must not phone home
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    return (
        context.data_sources.add_pandas("data")
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("all")
    )
