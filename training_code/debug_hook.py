"""The smdebug hook: from SageMaker's Debugger config when the job has one, local only when asked.

- On SageMaker, ``smd.get_hook(create_if_not_exists=True)`` builds the hook from the job's
  ``DebugHookConfig`` (``/opt/ml/input/config/debughookconfig.json``, or ``SMDEBUG_CONFIG_FILE_PATH``), with the
  collections the job's rules asked for. Without that file it returns None.
- Locally (or on SageMaker with Debugger off), a hook is created only when a caller passes an output folder. It
  saves what our own rules (debug_rules.py) read, kept small: every loss, and for gradients, weights and ReLU
  inputs only scalar reductions (mean, variance, mean |x|, L2 norm), never full tensors (a full ResNet18
  weights+gradients step is ~90 MB).
- Training never depends on smdebug: missing, broken or disabled, the wrapper becomes a no-op and says why.

Handled deliberately (see research/smdebug.md):
- numpy >= 2.3 removed ``ndarray.tostring`` that smdebug 1.0.34 calls: replaced by a ``tobytes`` writer.
- bf16 autocast: numpy has no bfloat16, so bf16 tensors (activations) are cast to fp32 before saving.
- torchvision's in-place ReLUs overwrite what a ``relu_input`` forward hook sees: turned off when a collection
  matches ReLU inputs.
- frozen parameters have no gradients: only trainable ones get gradient hooks (smdebug does this already); the
  rules handle a model whose gradients come from the head only.
- torch.compile: never combined with the hook (Dynamo graph-breaks in every hook); the training code does not
  compile.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import numpy as np
from torch import nn

logger = logging.getLogger(__name__)

RELU_INPUT_REGEX = ".*relu_input"
MODE_NAMES = ("train", "eval", "predict")


def _patch_numpy_tostring() -> None:
    import smdebug.core.tfevent.util as tfevent_util
    import smdebug.core.writer as writer
    from smdebug.core.tfevent.proto.tensor_pb2 import TensorProto
    from smdebug.core.tfevent.proto.tensor_shape_pb2 import TensorShapeProto

    def make_tensor_proto(nparray_data: np.ndarray, tag: str) -> Any:
        is_numeric, dtype = tfevent_util._get_proto_dtype(nparray_data.dtype)
        dims = [TensorShapeProto.Dim(size=size, name=f"{tag}_{size}") for size in nparray_data.shape]
        shape = TensorShapeProto(dim=dims)
        if is_numeric:
            return TensorProto(dtype=dtype, tensor_content=nparray_data.tobytes(), tensor_shape=shape)
        proto = TensorProto(tensor_shape=shape)
        for value in nparray_data:
            proto.string_val.append(bytes(value, encoding="utf-8"))
        return proto

    tfevent_util.make_tensor_proto = make_tensor_proto
    writer.make_tensor_proto = make_tensor_proto


def _patch_bfloat16() -> None:
    import torch
    from smdebug.core.utils import make_numpy_array
    from smdebug.pytorch.hook import Hook

    def _make_numpy_array(tensor_value: Any) -> Any:
        if isinstance(tensor_value, torch.Tensor):
            tensor = tensor_value.detach().to("cpu")
            return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        return make_numpy_array(tensor_value)

    Hook._make_numpy_array = staticmethod(_make_numpy_array)


def import_smdebug() -> ModuleType | None:
    """``smdebug.pytorch`` with our compatibility patches, or None (logged) when it cannot be used."""
    try:
        import smdebug.pytorch as smd
    except Exception as error:  # ImportError, or a missing undeclared dependency (requests, pandas, psutil)
        logger.warning("smdebug unavailable (%s: %s); training without the debug hook", type(error).__name__, error)
        return None
    if not hasattr(np.ndarray, "tostring"):
        _patch_numpy_tostring()
    _patch_bfloat16()
    return smd


class DebugHook:
    """The hook, or a no-op with the reason; ``source`` is "sagemaker", "local" or "none"."""

    def __init__(self, hook: Any = None, source: str = "none", out_dir: str | None = None, reason: str = "") -> None:
        self.hook = hook
        self.source = source
        self.out_dir = out_dir
        self.reason = reason
        self._modes: dict[str, Any] = {}
        if hook is not None:
            from smdebug import modes

            self._modes = {"train": modes.TRAIN, "eval": modes.EVAL, "predict": modes.PREDICT}

    @property
    def active(self) -> bool:
        return self.hook is not None

    def collects_relu_inputs(self) -> bool:
        if self.hook is None:
            return False
        return any(map(_is_relu_input_collection, self.hook.collection_manager.get_collections().values()))

    def register(self, module: nn.Module, loss_module: nn.Module) -> None:
        if self.hook is None:
            return
        if self.collects_relu_inputs():
            for submodule in module.modules():
                if isinstance(submodule, nn.ReLU):
                    submodule.inplace = False
        self.hook.register_module(module)
        self.hook.register_loss(loss_module)

    def set_mode(self, mode: str) -> None:
        if self.hook is not None:
            self.hook.set_mode(self._modes[mode])

    def close(self) -> None:
        """Flush and close the writers so the trial can be read in this process, and forget the singleton."""
        if self.hook is None:
            return
        from smdebug.core.singleton_utils import del_hook

        self.hook.close()
        del_hook()


def _local_hook(smd: ModuleType, out_dir: str, train_save_interval: int, relu_input_steps: int) -> Any:
    from smdebug import modes
    from smdebug.core.reduction_config import ReductionConfig
    from smdebug.core.save_config import SaveConfig, SaveConfigMode

    every_step = SaveConfig(save_interval=1)
    save_config = SaveConfig(
        mode_save_configs={
            modes.TRAIN: SaveConfigMode(save_interval=train_save_interval),
            modes.EVAL: SaveConfigMode(save_interval=1),
            modes.PREDICT: SaveConfigMode(save_interval=1),
            modes.GLOBAL: SaveConfigMode(save_interval=train_save_interval),
        }
    )
    hook = smd.Hook(
        out_dir=out_dir,
        save_config=save_config,
        include_collections=["losses", "gradients", "weights", "relu_input"],
    )
    scalars = ReductionConfig(reductions=["mean", "variance", "min", "max"], abs_reductions=["mean"], norms=["l2"])
    hook.get_collection("losses").save_config = every_step
    hook.get_collection("gradients").reduction_config = scalars
    hook.get_collection("weights").reduction_config = scalars
    relu_inputs = hook.get_collection("relu_input")
    relu_inputs.include(RELU_INPUT_REGEX)
    relu_inputs.reduction_config = scalars
    _save_relu_inputs_of_first_steps(hook, relu_input_steps)
    return hook


def _is_relu_input_collection(collection: Any) -> bool:
    return bool(collection.name == "relu_input" or any("relu_input" in regex for regex in collection.include_regex))


def _save_relu_inputs_of_first_steps(hook: Any, steps: int) -> None:
    """ReLU inputs only for the first ``steps`` TRAIN steps, never in EVAL/PREDICT.

    PoorWeightInitialization, their only reader, looks at the start of training (its ``steps`` parameter, 10).
    A job config's relu_input collection saves full tensors, ~9 MB per image at 224 px (~0.6 GB a step at batch
    64), at every ``train.save_interval`` and ``eval.save_interval`` step: tens of GB over a 10-epoch job.
    """
    from smdebug import modes
    from smdebug.core.save_config import SaveConfigMode

    never = SaveConfigMode(end_step=0)
    for collection in hook.collection_manager.get_collections().values():
        if _is_relu_input_collection(collection):
            collection.save_config = {
                modes.TRAIN: SaveConfigMode(save_steps=list(range(steps))),
                modes.EVAL: never,
                modes.PREDICT: never,
                modes.GLOBAL: never,
            }


def create_debug_hook(
    local_out_dir: str | None,
    *,
    enabled: bool = True,
    train_save_interval: int = 10,
    relu_input_steps: int = 10,
) -> DebugHook:
    """The SageMaker-configured hook if the job has one, else a local hook into ``local_out_dir``, else a no-op."""
    if not enabled:
        return DebugHook(reason="debug hook disabled by argument")
    smd = import_smdebug()
    if smd is None:
        return DebugHook(reason="smdebug is not installed or failed to import")
    try:
        hook = smd.get_hook(create_if_not_exists=True)
    except Exception as error:  # a malformed job config must not stop training
        logger.warning("could not build the hook from the Debugger config: %s", error)
        hook = None
    if hook is not None:
        _save_relu_inputs_of_first_steps(hook, relu_input_steps)
        logger.info("debug hook from the Debugger config, writing to %s", hook.out_dir)
        return DebugHook(hook, "sagemaker", hook.out_dir)
    if not local_out_dir:
        return DebugHook(reason="no Debugger config for this job and no local debug folder asked for")
    hook = _local_hook(smd, local_out_dir, max(1, train_save_interval), relu_input_steps)
    logger.info("local debug hook writing to %s", local_out_dir)
    return DebugHook(hook, "local", local_out_dir)
