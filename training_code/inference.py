"""Serving hooks for the dog-breed classifier, as the SageMaker PyTorch inference toolkit calls them.

Artifact (``model_dir``): ``model.pth``, the state_dict of ``dog_model.build_model(len(classes))``, and
``classes.json``, the class folder names in index order ("001.Affenpinscher", ...); optionally ``metrics.json``,
whose ``image_size`` is the training resolution (default 224; the offline run trains at 64). This file,
``dog_model.py`` and ``requirements.txt`` sit in ``code/``, which the container puts on ``sys.path``.

Requests (``input_fn``):
- ``image/jpeg``, ``image/png``, ``application/x-image``: the image bytes.
- ``application/json``: ``{"image": "<base64>"}``, ``{"images": ["<base64>", ...]}`` (a batch, one forward pass),
  or the seed's format, the normalised (1, 3, 224, 224) tensor as nested lists. Optional ``"top_k"`` (default 5).

``input_fn`` checks and unpacks the request; ``predict_fn`` decodes the images at the model's training resolution
(which ``input_fn``, called without the model, cannot know) and runs them as one batch.

Response (``output_fn``, ``application/json``)::

    {"predictions": [{"breed": "Affenpinscher", "label": "001.Affenpinscher", "class_index": 0,
                      "probability": 0.93}, ...]}

``{"images": [...]}`` and a tensor of several images get one such list per image: ``{"predictions": [[...], ...]}``.

Rejected requests raise ``RequestRejected`` subclasses that carry an HTTP status. In the container they derive
from ``sagemaker_inference.errors.BaseInferenceToolkitError``, the only exception type whose status the toolkit's
``Transformer.transform`` passes to the client (sagemaker-inference 1.10.1): any other exception, its own
``UnsupportedFormatError`` included, becomes a 500.

Speed: images are decoded with PIL ``draft`` (libjpeg scales down while decoding) and squashed to the square
training size as training does (``dog_data.decode_image``), batches decode on threads (PIL releases the GIL), and
the resize is torch's uint8 antialiased bilinear (within one grey level of PIL's, 5x cheaper). Pixels stay uint8
until the model's device. The network has its BatchNorms and the normalisation's scale folded into the
convolutions (preparing a batch is one subtraction and one cast) and runs in channels_last, in bfloat16 where the
hardware computes it natively (``avx512_bf16`` / ``amx_bf16`` CPUs, CUDA), else float32. Probabilities are float32.

int8: on CPUs with int8 dot-product instructions (``avx512_vnni``, ``avx_vnni``, ``amx_int8``) the network is
quantised at load time (PyTorch's oneDNN engine, per-channel weights, activations calibrated on the artifact's
``calibration_images.pt``, a few training images) when the training job measured the int8 model's test accuracy
within ``INT8_MAX_ACCURACY_DROP`` of the float model's (``metrics.json``'s ``int8``). The same images and code give
the same quantised network there and here, so the accuracy the gate read is the accuracy served. Twice bf16's
throughput on an AVX-512 CPU; ``INFERENCE_PRECISION`` pins a precision instead.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import json
import logging
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import dog_model
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from torch.fx.experimental.optimization import fuse as fold_batch_norms
from torch.nn import functional as F

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The normalisation on the 0-255 scale: normalised = (pixel - PIXEL_MEAN) / PIXEL_STD.
PIXEL_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
PIXEL_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
DEFAULT_TOP_K = 5
MAX_IMAGES_PER_REQUEST = 64
IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "application/x-image"})
JSON_CONTENT_TYPE = "application/json"
ACCEPTABLE_RESPONSE_TYPES = frozenset({JSON_CONTENT_TYPE, "application/*", "*/*"})
# "auto", "int8", "float32", "bfloat16" or "float16": lets an operator pin the precision without a new artifact.
PRECISION_ENV = "INFERENCE_PRECISION"
FLOAT_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# oneDNN's int8 kernels use the full 8-bit activation range on VNNI CPUs (the "x86" engine's defaults reduce it to
# 7 bits for older CPUs, which cost accuracy in our tests).
INT8_ENGINE = "onednn"
CALIBRATION_FILE = "calibration_images.pt"
# The int8 network serves only if the training job measured its test accuracy at most this far below float's.
INT8_MAX_ACCURACY_DROP = 0.01

try:
    from sagemaker_inference.errors import BaseInferenceToolkitError
except ImportError:  # outside the SageMaker containers: tests, the offline endpoint

    class BaseInferenceToolkitError(Exception):  # type: ignore[no-redef]
        """Stand-in with the toolkit's attributes, so every caller reads ``status_code`` the same way."""

        def __init__(self, status_code: int, message: str, phrase: str) -> None:
            self.status_code = status_code
            self.message = message
            self.phrase = phrase
            super().__init__(status_code, message, phrase)


class RequestRejected(BaseInferenceToolkitError, ValueError):
    """The client's request cannot be served; ``status_code`` is the 4xx to answer with."""

    status = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(int(self.status), message, message)

    def __str__(self) -> str:
        return self.message


class InvalidPayload(RequestRejected):
    status = HTTPStatus.BAD_REQUEST


class UnsupportedContentType(RequestRejected):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class UnsupportedAccept(RequestRejected):
    status = HTTPStatus.NOT_ACCEPTABLE


@dataclass(frozen=True)
class LoadedModel:
    """What ``model_fn`` returns and ``predict_fn`` receives."""

    network: nn.Module
    labels: tuple[str, ...]  # class folder names, in index order
    breeds: tuple[str, ...]  # the same, readable
    device: torch.device
    precision: str  # "int8", "bfloat16", "float16" or "float32"
    input_dtype: torch.dtype  # what the network takes: float32 for int8 (it quantises its input itself)
    image_size: int  # the training resolution: images are squashed to image_size x image_size


@dataclass(frozen=True)
class ParsedRequest:
    """What ``input_fn`` returns: encoded image files, or the seed's normalised float tensor (N, 3, H, W)."""

    encoded_images: tuple[bytes, ...] = ()
    normalised_tensor: torch.Tensor | None = None
    top_k: int | None = None
    is_batch: bool = False  # answer with one list per image, even for one image


@dataclass(frozen=True)
class Prediction:
    """What ``predict_fn`` returns: the top-k classes of every image, most probable first."""

    rankings: list[list[dict[str, object]]]
    is_batch: bool


# ---------------------------------------------------------------------------------------------------- model_fn


def readable_breed(label: str) -> str:
    """ "001.Affenpinscher" -> "Affenpinscher", "002.Afghan_hound" -> "Afghan hound"."""
    return re.sub(r"^\d+\.", "", label).replace("_", " ").strip()


def choose_compute_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """The floating-point precision: the one requested, else the fastest the device computes natively."""
    if requested in FLOAT_PRECISIONS:
        return FLOAT_PRECISIONS[requested]
    if requested not in ("auto", "int8"):
        raise ValueError(f"{PRECISION_ENV} must be one of auto, int8, {', '.join(FLOAT_PRECISIONS)}; got {requested!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if dog_model.cpu_has_native_bf16() else torch.float32


def read_class_labels(model_dir: Path) -> tuple[str, ...]:
    path = model_dir / "classes.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the artifact must hold the class names in index order")
    labels = json.loads(path.read_text())
    if not (isinstance(labels, list) and labels and all(isinstance(label, str) for label in labels)):
        raise ValueError(f"{path} must be a non-empty JSON list of class folder names")
    return tuple(labels)


def read_image_size(model_dir: Path) -> int:
    """The training resolution that training_job.py records in metrics.json; 224 when the artifact has none."""
    path = model_dir / "metrics.json"
    if not path.is_file():
        return DEFAULT_IMAGE_SIZE
    image_size = json.loads(path.read_text()).get("image_size", DEFAULT_IMAGE_SIZE)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"{path}: image_size must be a positive integer, got {image_size!r}")
    return image_size


def prepare_network(model: nn.Module, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
    """Eval mode, BatchNorms folded into the convolutions, channels_last, weights in the compute dtype.

    The result takes *centred* pixels, ``pixel - PIXEL_MEAN`` on the 0-255 scale, not normalised images: the
    division by PIXEL_STD is folded into conv1's weights, so preparing a batch is one subtraction and a cast.
    conv1 zero-pads, and a centred zero is a normalised zero, so borders are unchanged.
    """
    folded = fold_batch_norms(model.eval())
    with torch.no_grad():
        folded.conv1.weight.div_(PIXEL_STD)
    return folded.to(device=device, dtype=compute_dtype, memory_format=torch.channels_last).eval()


def quantize_network(model: nn.Module, calibration_images: torch.Tensor) -> nn.Module:
    """``model`` (consumed) as an int8 network for the CPU, taking centred pixels like ``prepare_network``'s.

    PyTorch's FX post-training quantisation with the oneDNN engine's defaults: BatchNorms and ReLUs fused into the
    convolutions, per-channel int8 weights, activation ranges observed on ``calibration_images`` (uint8
    (N, 3, H, W)). The classifier stays float32: it costs nothing and quantising the logits cost several points
    of accuracy on small test sets. Deterministic: the same weights and images give the same network.
    """
    # torch.ao.quantization is deprecated in favour of torchao but is what the PyTorch containers ship; the
    # import is here so that a torch without it only loses the int8 option (quantization_unavailable reports it).
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = INT8_ENGINE
    network = model.to(device="cpu", dtype=torch.float32).eval()
    with torch.no_grad():
        network.conv1.weight.div_(PIXEL_STD)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantize_per_tensor).*")
        example = centre(calibration_images[:1], torch.float32)
        qconfig_mapping = get_default_qconfig_mapping(INT8_ENGINE).set_module_name("fc", None)
        prepared = prepare_fx(network, qconfig_mapping, example_inputs=(example,))
        with torch.no_grad():
            for batch in calibration_images.split(16):
                prepared(centre(batch, torch.float32))
        return convert_fx(prepared).eval()


def quantization_unavailable() -> str | None:
    """Why this torch cannot build quantize_network's int8 network at all, or None."""
    if INT8_ENGINE not in torch.backends.quantized.supported_engines:
        return f"this torch build has no {INT8_ENGINE!r} quantized engine"
    if importlib.util.find_spec("torch.ao.quantization") is None:
        return "this torch build has no torch.ao.quantization (FX post-training quantisation)"
    return None


def int8_unavailable(model_dir: Path) -> str | None:
    """Why no int8 network can be built for this artifact here, or None."""
    if unavailable := quantization_unavailable():
        return unavailable
    if not (model_dir / CALIBRATION_FILE).is_file():
        return f"the artifact has no {CALIBRATION_FILE} (trained before int8 serving, or with --int8_check false)"
    return None


def int8_accuracy_refusal(model_dir: Path) -> str | None:
    """Why the training job's measurement does not clear int8 to serve, or None when it does."""
    metrics_path = model_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    int8_accuracy = (metrics.get("int8") or {}).get("test_accuracy")
    float_accuracy = metrics.get("test_accuracy")
    if not isinstance(int8_accuracy, float | int) or not isinstance(float_accuracy, float | int):
        return "metrics.json has no int8 test accuracy to compare with the float model's"
    if float_accuracy - int8_accuracy > INT8_MAX_ACCURACY_DROP:
        return (
            f"int8 test accuracy {int8_accuracy:.4f} is more than {INT8_MAX_ACCURACY_DROP:.2f} below float's "
            f"{float_accuracy:.4f}"
        )
    return None


def read_calibration_images(model_dir: Path) -> torch.Tensor:
    images = torch.load(model_dir / CALIBRATION_FILE, weights_only=True)
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4 and len(images)):
        raise ValueError(f"{model_dir / CALIBRATION_FILE} must hold uint8 images (N, 3, H, W)")
    return images


def _serves_int8(model_dir: Path, device: torch.device, precision: str) -> bool:
    """auto: int8 where the CPU has int8 dot products and the training job's check passed. Pinned int8 (an
    operator's decision) only needs the calibration images; a failed or missing check is logged as a warning."""
    if precision not in ("auto", "int8"):
        return False
    unavailable = "int8 serves on the CPU only" if device.type != "cpu" else int8_unavailable(model_dir)
    if precision == "int8":
        if unavailable is not None:
            raise ValueError(f"{PRECISION_ENV}=int8 cannot be served: {unavailable}")
        refusal = int8_accuracy_refusal(model_dir)
        if refusal is not None:
            logger.warning("%s=int8 pinned although %s", PRECISION_ENV, refusal)
        return True
    if device.type != "cpu":
        return False
    if unavailable is None and not dog_model.cpu_has_int8_dot_product():
        unavailable = "the CPU has no int8 dot-product instructions (avx512_vnni, avx_vnni, amx_int8)"
    refusal = unavailable or int8_accuracy_refusal(model_dir)
    if refusal is not None:
        logger.info("int8 not used: %s", refusal)
    return refusal is None


def load_model(model_dir: str | Path, *, device: torch.device | None = None, precision: str = "auto") -> LoadedModel:
    """``model_fn`` with the device and precision as arguments (the toolkit's signature has no room for them)."""
    model_dir = Path(model_dir)
    labels = read_class_labels(model_dir)
    weights_path = model_dir / "model.pth"
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} is missing: the artifact must hold the trained state_dict")
    model = dog_model.build_model(len(labels))
    try:
        dog_model.load_state(model, str(weights_path))
    except RuntimeError as error:
        raise ValueError(
            f"{weights_path} does not fit a ResNet18 with {len(labels)} classes (the count in classes.json): {error}"
        ) from error
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    compute_dtype = choose_compute_dtype(device, precision)
    image_size = read_image_size(model_dir)
    if _serves_int8(model_dir, device, precision):
        network = quantize_network(model, read_calibration_images(model_dir))
        precision_name, input_dtype = "int8", torch.float32
    else:
        network = prepare_network(model, device, compute_dtype)
        precision_name, input_dtype = str(compute_dtype).removeprefix("torch."), compute_dtype
    logger.info("serving %d classes at %d px on %s in %s", len(labels), image_size, device, precision_name)
    return LoadedModel(
        network=network,
        labels=labels,
        breeds=tuple(readable_breed(label) for label in labels),
        device=device,
        precision=precision_name,
        input_dtype=input_dtype,
        image_size=image_size,
    )


def model_fn(model_dir: str) -> LoadedModel:
    return load_model(model_dir, precision=os.environ.get(PRECISION_ENV, "auto"))


def model_warmup_fn(model_dir: str, model: LoadedModel) -> None:
    """Called by sagemaker-inference >= 1.10 after model_fn: the first forward builds the oneDNN kernels."""
    blank = torch.zeros(1, 3, model.image_size, model.image_size)
    predict_fn(ParsedRequest(normalised_tensor=blank, top_k=1), model)


# ---------------------------------------------------------------------------------------------------- input_fn


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _draft_decode(data: bytes, image_size: int) -> np.ndarray:
    """The RGB pixels (H, W, 3), which libjpeg has already scaled down towards image_size where it could."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (image_size, image_size))
            # Phone photos are stored sideways with an EXIF orientation tag; training turns them upright too.
            ImageOps.exif_transpose(image, in_place=True)
            # convert() copies even when the mode already matches (~0.4 ms for a 500x400 photo).
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            # A writable copy: torch.from_numpy warns on PIL's read-only buffer.
            return np.array(rgb)
    except UnidentifiedImageError as error:
        raise InvalidPayload(f"the body is not an image PIL can read ({len(data)} bytes)") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InvalidPayload(f"the image is corrupt or truncated and cannot be decoded: {error}") from error


_decode_pool: ThreadPoolExecutor | None = None
_RESIZE = {"mode": "bilinear", "antialias": True, "align_corners": False}


def decode_images(payloads: tuple[bytes, ...], image_size: int) -> torch.Tensor:
    """Image files -> uint8 (N, 3, image_size, image_size), prepared as training prepares them
    (dog_data.decode_image: draft decode, RGB, squash to a square with antialiased bilinear resampling).

    The resize is torch's uint8 antialiased bilinear, 5x cheaper than PIL's here and within 1 grey level of it.
    """
    global _decode_pool
    if len(payloads) == 1:
        decoded = [_draft_decode(payloads[0], image_size)]
    else:
        # PIL releases the GIL while decoding.
        if _decode_pool is None:
            _decode_pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="decode")
        decoded = list(_decode_pool.map(_draft_decode, payloads, [image_size] * len(payloads)))
    # An (H, W, 3) array viewed as (1, 3, H, W) is channels_last, the layout torch's fast uint8 resize takes.
    resized = [
        F.interpolate(torch.from_numpy(pixels).permute(2, 0, 1)[None], size=(image_size, image_size), **_RESIZE)
        for pixels in decoded
    ]
    return torch.cat(resized)


def decode_image(data: bytes, image_size: int) -> torch.Tensor:
    """One image file -> uint8 (image_size, image_size, 3), the layout of dog_data.decode_image."""
    return decode_images((data,), image_size)[0].permute(1, 2, 0)


def _base64_image(encoded: object, where: str) -> bytes:
    if not isinstance(encoded, str) or not encoded:
        raise InvalidPayload(f"{where} must be a non-empty base64 string, got {type(encoded).__name__}")
    # Browsers hand out data URLs ("data:image/jpeg;base64,...").
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidPayload(f"{where} is not valid base64: {error}") from error


def _top_k_option(document: dict[str, object]) -> int | None:
    top_k = document.get("top_k")
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidPayload(f"top_k must be a positive integer, got {top_k!r}")
    return top_k


def _seed_tensor(document: list[object]) -> ParsedRequest:
    # np.asarray walks nested lists in C: ~7x faster than torch.tensor on the seed's 150,528 floats.
    try:
        array = np.asarray(document, dtype=np.float32)
    except (ValueError, TypeError) as error:
        raise InvalidPayload(f"the JSON tensor is not a rectangular array of numbers: {error}") from error
    if array.ndim == 3:
        array = array[np.newaxis]
    # The spatial size is checked against the model's in predict_fn.
    if array.ndim != 4 or array.shape[1] != 3 or array.shape[0] == 0:
        raise InvalidPayload(
            f"wrong tensor shape {tuple(array.shape)}: expected (N, 3, {DEFAULT_IMAGE_SIZE}, {DEFAULT_IMAGE_SIZE}), "
            "a normalised RGB image batch"
        )
    if array.shape[0] > MAX_IMAGES_PER_REQUEST:
        raise InvalidPayload(f"{array.shape[0]} images in one request; at most {MAX_IMAGES_PER_REQUEST}")
    if not np.isfinite(array).all():
        raise InvalidPayload("the JSON tensor holds NaN or infinite values")
    return ParsedRequest(normalised_tensor=torch.from_numpy(array), is_batch=array.shape[0] > 1)


def _json_request(body: str | bytes) -> ParsedRequest:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidPayload(f"the body is not valid JSON: {error}") from error
    if isinstance(document, list):
        return _seed_tensor(document)
    if not isinstance(document, dict):
        raise InvalidPayload('expected {"image": "<base64>"}, {"images": [...]} or a nested-list tensor')
    top_k = _top_k_option(document)
    if "image" in document:
        return ParsedRequest(encoded_images=(_base64_image(document["image"], '"image"'),), top_k=top_k)
    if "images" in document:
        encoded_images = document["images"]
        if not isinstance(encoded_images, list) or not encoded_images:
            raise InvalidPayload('"images" must be a non-empty list of base64 strings')
        if len(encoded_images) > MAX_IMAGES_PER_REQUEST:
            raise InvalidPayload(f"{len(encoded_images)} images in one request; at most {MAX_IMAGES_PER_REQUEST}")
        payloads = tuple(_base64_image(encoded, f'"images"[{i}]') for i, encoded in enumerate(encoded_images))
        return ParsedRequest(encoded_images=payloads, top_k=top_k, is_batch=True)
    raise InvalidPayload(f'the JSON object needs an "image" or "images" key; found {sorted(document)[:5]}')


def input_fn(request_body: str | bytes | bytearray, content_type: str | None) -> ParsedRequest:
    media_type = _media_type(content_type)
    if media_type not in IMAGE_CONTENT_TYPES and media_type != JSON_CONTENT_TYPE:
        supported = ", ".join(sorted([*IMAGE_CONTENT_TYPES, JSON_CONTENT_TYPE]))
        raise UnsupportedContentType(f"unsupported content type {content_type!r}; send one of {supported}")
    if request_body is None or len(request_body) == 0:
        raise InvalidPayload(f"the request body is empty (content type {media_type})")
    if media_type == JSON_CONTENT_TYPE:
        return _json_request(request_body)
    if isinstance(request_body, str):
        raise InvalidPayload(f"{media_type} needs the raw image bytes, not text")
    return ParsedRequest(encoded_images=(bytes(request_body),))


# -------------------------------------------------------------------------------------------------- predict_fn


def centre(pixels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 pixels (N, 3, H, W) -> the centred input the prepared and the quantised networks take, channels_last.

    Subtracting in float32, then one cast that also lays out channels_last: bfloat16 arithmetic on the CPU is 4x
    slower than the two passes.
    """
    centred = pixels - PIXEL_MEAN.to(pixels.device)
    return centred.to(dtype=dtype, memory_format=torch.channels_last)


def _model_input(request: ParsedRequest, model: LoadedModel) -> torch.Tensor:
    """The centred pixels prepare_network's network takes, in its dtype and channels_last."""
    if request.normalised_tensor is not None:
        inputs = request.normalised_tensor
        if inputs.shape[2:] != (model.image_size, model.image_size):
            raise InvalidPayload(
                f"wrong tensor shape {tuple(inputs.shape)}: this model takes (N, 3, {model.image_size}, "
                f"{model.image_size}), a normalised RGB image batch"
            )
        centred = inputs.to(model.device) * PIXEL_STD.to(model.device)
        return centred.to(dtype=model.input_dtype, memory_format=torch.channels_last)
    # Pixels cross to the device as uint8, a quarter of the float bytes.
    pixels = decode_images(request.encoded_images, model.image_size).to(model.device, non_blocking=True)
    return centre(pixels, model.input_dtype)


def predict_fn(data: ParsedRequest, model: LoadedModel) -> Prediction:
    top_k = min(data.top_k or DEFAULT_TOP_K, len(model.labels))
    with torch.inference_mode():
        logits = model.network(_model_input(data, model))
        probabilities, indices = torch.softmax(logits.float(), dim=1).topk(top_k, dim=1)
    rankings = [
        [
            {
                "breed": model.breeds[index],
                "label": model.labels[index],
                "class_index": index,
                "probability": probability,
            }
            for probability, index in zip(image_probabilities, image_indices, strict=True)
        ]
        for image_probabilities, image_indices in zip(probabilities.tolist(), indices.tolist(), strict=True)
    ]
    return Prediction(rankings=rankings, is_batch=data.is_batch)


# --------------------------------------------------------------------------------------------------- output_fn


def output_fn(prediction: Prediction, accept: str | None) -> str:
    accepted = {_media_type(media_range) for media_range in (accept or JSON_CONTENT_TYPE).split(",")}
    if not accepted & ACCEPTABLE_RESPONSE_TYPES:
        raise UnsupportedAccept(f"cannot answer in {accept!r}; the response is {JSON_CONTENT_TYPE}")
    predictions = prediction.rankings if prediction.is_batch else prediction.rankings[0]
    return json.dumps({"predictions": predictions})
