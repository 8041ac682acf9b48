"""One botocore loader for every session created while the offline patches are installed.

Each botocore session loads the service models (JSON: SageMaker's is 2.6 MB) and the endpoint rules itself, and
there are many sessions offline: moto gives every ``mock_aws`` a new default session, and each worker thread of the
local SageMaker takes a session of its own (the default one is not thread-safe). Parsing those files again was most
of what creating a client cost (0.12 s for a SageMaker client, 0.02 s with the models already loaded).
``SharedServiceModels`` makes every session without its own ``AWS_DATA_PATH`` use one process-wide loader, whose
models botocore only reads.
"""

from __future__ import annotations

from typing import Any

import botocore.loaders
import botocore.session

from offline.moto_shims._base import MotoPatch, patch_attribute

_SHARED_LOADER = botocore.loaders.create_loader()


def _create_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    if search_path_string is None:
        return _SHARED_LOADER
    return botocore.loaders.create_loader(search_path_string)


class SharedServiceModels(MotoPatch):
    """Sessions created while installed share one loader (and so load each model and the endpoints once)."""

    def _patchers_to_start(self) -> list[Any]:
        return [patch_attribute(botocore.session, "create_loader", _create_loader)]
