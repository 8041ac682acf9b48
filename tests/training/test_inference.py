"""inference.py, the serving hooks, on a model artifact built here: random weights, four classes, CPU."""

from __future__ import annotations

import base64
import inspect
import io
import json
from pathlib import Path

import dog_data
import dog_model
import inference
import numpy as np
import pytest
import torch
from PIL import Image

CLASS_LABELS = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier", "004.Akita"]
BREEDS = ["Affenpinscher", "Afghan hound", "Airedale terrier", "Akita"]


def photo_like_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Smooth colour gradients, a few blobs and sensor-like noise: decodes like a photo, differs per seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        wave = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) / rng.uniform(20, 80) + phase)
        channels.append(127 + 90 * wave)
    pixels = np.stack(channels, axis=-1)
    for _ in range(4):
        cx, cy, radius = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(15, 60)
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 < radius**2
        pixels[inside] = rng.uniform(0, 255, size=3)
    pixels += rng.normal(0, 8, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 85} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def jpeg(seed: int) -> bytes:
    return encoded(photo_like_image(seed), "JPEG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def normalised_batch(images: list[bytes], image_size: int = 224) -> torch.Tensor:
    """The seed client's preprocessing: (N, 3, image_size, image_size) ImageNet-normalised floats."""
    pixels = torch.stack([inference.decode_image(image, image_size) for image in images])
    mean = torch.tensor(inference.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(inference.IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std


def fit_head_to_image_differences(model: torch.nn.Module) -> None:
    """Random backbone features share one big image-independent component, so a random head gives every image the
    same class at ~100%. Centre the head on the features' mean and scale it so the classes, and the margins between
    them, depend on the image, as with a trained model."""
    backbone = torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Flatten())
    with torch.inference_mode():
        features = backbone(normalised_batch([jpeg(seed) for seed in range(100, 116)]))
        centred_logits = (features - features.mean(0)) @ model.fc.weight.T
        scale = 2.0 / centred_logits.std()
        model.fc.weight.mul_(scale)
        model.fc.bias.copy_(-model.fc.weight @ features.mean(0))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    torch.manual_seed(1234)
    model = dog_model.build_model(len(CLASS_LABELS)).eval()
    fit_head_to_image_differences(model)
    torch.save(model.state_dict(), directory / "model.pth")
    (directory / "classes.json").write_text(json.dumps(CLASS_LABELS))
    return directory


@pytest.fixture(scope="module")
def served_model(model_dir: Path) -> inference.LoadedModel:
    """What the container serves: the precision this CPU computes fastest."""
    return inference.load_model(model_dir)


@pytest.fixture(scope="module")
def fp32_model(model_dir: Path) -> inference.LoadedModel:
    return inference.load_model(model_dir, precision="float32")


def serve(model: inference.LoadedModel, body: str | bytes, content_type: str, accept: str | None = None) -> object:
    """One request through the hooks in the toolkit's order; the parsed JSON response."""
    prediction = inference.predict_fn(inference.input_fn(body, content_type), model)
    return json.loads(inference.output_fn(prediction, accept or "application/json"))


def assert_valid_ranking(ranking: list[dict[str, object]], expected_length: int) -> None:
    assert len(ranking) == expected_length
    probabilities = [entry["probability"] for entry in ranking]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert sum(probabilities) <= 1.0 + 1e-5
    assert probabilities == sorted(probabilities, reverse=True)
    indices = [entry["class_index"] for entry in ranking]
    assert len(set(indices)) == len(indices)
    for entry in ranking:
        assert entry["label"] == CLASS_LABELS[entry["class_index"]]
        assert entry["breed"] == BREEDS[entry["class_index"]]


# ------------------------------------------------------------------------------------------------ loading


def test_hooks_have_the_arity_the_toolkit_calls_them_with() -> None:
    # GIVEN the toolkit passes exactly these positional arguments (and the context if there is one more parameter)
    expected = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "model_warmup_fn": 2}
    # THEN an extra optional parameter would silently receive the request context
    for name, count in expected.items():
        assert len(inspect.signature(getattr(inference, name)).parameters) == count, name


def test_model_fn_loads_the_artifact_with_readable_breed_names(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(inference.PRECISION_ENV, "float32")

    model = inference.model_fn(str(model_dir))
    inference.model_warmup_fn(str(model_dir), model)

    assert model.labels == tuple(CLASS_LABELS)
    assert model.breeds == tuple(BREEDS)
    assert model.precision == "float32" and model.input_dtype == torch.float32
    assert model.image_size == 224  # no metrics.json: the seed's resolution
    assert not model.network.training
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in model.network.modules())


@pytest.mark.parametrize(
    ("label", "breed"),
    [("001.Affenpinscher", "Affenpinscher"), ("002.Afghan_hound", "Afghan hound"), ("Plain_name", "Plain name")],
)
def test_readable_breed_drops_the_number_and_underscores(label: str, breed: str) -> None:
    assert inference.readable_breed(label) == breed


def test_folded_network_computes_what_the_trained_model_computes(model_dir: Path, fp32_model) -> None:
    original = dog_model.load_state(dog_model.build_model(len(CLASS_LABELS)), str(model_dir / "model.pth")).eval()
    images = torch.randn(2, 3, 224, 224)

    # The prepared network takes centred 0-255 pixels: normalised x PIXEL_STD.
    centred = (images * inference.PIXEL_STD).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = original(images)
        folded = fp32_model.network(centred)

    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-3)


def test_model_fn_names_the_class_count_mismatch(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "model.pth").write_bytes((model_dir / "model.pth").read_bytes())
    (tmp_path / "classes.json").write_text(json.dumps(CLASS_LABELS[:3]))

    with pytest.raises(ValueError, match=r"3 classes \(the count in classes.json\)"):
        inference.model_fn(str(tmp_path))


def test_model_fn_names_the_missing_class_list(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "model.pth").write_bytes((model_dir / "model.pth").read_bytes())

    with pytest.raises(FileNotFoundError, match=r"classes\.json"):
        inference.model_fn(str(tmp_path))


@pytest.fixture(scope="module")
def small_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline run's artifact: trained at 64 px, which training_job.py records in metrics.json."""
    directory = tmp_path_factory.mktemp("small_model")
    for name in ("model.pth", "classes.json"):
        (directory / name).write_bytes((model_dir / name).read_bytes())
    (directory / "metrics.json").write_text(json.dumps({"image_size": 64, "test_accuracy": 0.5}))
    return directory


def test_images_are_served_at_the_training_resolution(small_model_dir: Path) -> None:
    model = inference.load_model(small_model_dir, precision="float32")
    image = jpeg(15)

    from_image = serve(model, image, "image/jpeg")
    from_64px_tensor = serve(model, json.dumps(normalised_batch([image], image_size=64).tolist()), "application/json")

    assert model.image_size == 64
    assert [e["probability"] for e in from_image["predictions"]] == pytest.approx(
        [e["probability"] for e in from_64px_tensor["predictions"]], abs=1e-4
    )
    with pytest.raises(inference.InvalidPayload, match=r"this model takes \(N, 3, 64, 64\)"):
        serve(model, json.dumps(normalised_batch([image]).tolist()), "application/json")


def test_model_fn_rejects_a_nonsense_training_resolution(model_dir: Path, tmp_path: Path) -> None:
    for name in ("model.pth", "classes.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    (tmp_path / "metrics.json").write_text(json.dumps({"image_size": "large"}))

    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        inference.model_fn(str(tmp_path))


def test_precision_follows_the_hardware_unless_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(dog_model, "cpu_has_native_bf16", lambda: False)
    assert inference.choose_compute_dtype(cpu) == torch.float32
    monkeypatch.setattr(dog_model, "cpu_has_native_bf16", lambda: True)
    assert inference.choose_compute_dtype(cpu) == torch.bfloat16
    assert inference.choose_compute_dtype(cpu, "float32") == torch.float32
    with pytest.raises(ValueError, match="INFERENCE_PRECISION must be one of auto, int8, float32"):
        inference.choose_compute_dtype(cpu, "fp8")


# ------------------------------------------------------------------------------------------------ requests


@pytest.mark.parametrize(
    ("content_type", "make_body"),
    [
        ("image/jpeg", lambda: jpeg(1)),
        ("image/png", lambda: encoded(photo_like_image(1), "PNG")),
        ("image/png", lambda: encoded(photo_like_image(1).convert("RGBA"), "PNG")),
        ("image/jpeg", lambda: encoded(photo_like_image(1).convert("L"), "JPEG")),
        ("application/x-image", lambda: jpeg(1)),
        ("application/json", lambda: json.dumps({"image": b64(jpeg(1))})),
        ("application/json; charset=utf-8", lambda: json.dumps({"image": b64(jpeg(1))}).encode()),
    ],
    ids=["jpeg", "png", "png-with-alpha", "greyscale-jpeg", "x-image", "json", "json-with-charset"],
)
def test_each_content_type_answers_top_k_breeds(served_model, content_type: str, make_body) -> None:
    response = serve(served_model, make_body(), content_type)

    # Four classes: the default top 5 is clipped to what exists.
    assert_valid_ranking(response["predictions"], expected_length=len(CLASS_LABELS))


def test_json_image_and_raw_bytes_give_the_same_answer(fp32_model) -> None:
    image = jpeg(2)

    from_bytes = serve(fp32_model, image, "image/jpeg")
    from_json = serve(fp32_model, json.dumps({"image": "data:image/jpeg;base64," + b64(image)}), "application/json")

    assert from_json == from_bytes


def test_top_k_option_limits_the_ranking(served_model) -> None:
    response = serve(served_model, json.dumps({"image": b64(jpeg(3)), "top_k": 2}), "application/json")

    assert_valid_ranking(response["predictions"], expected_length=2)


def test_batch_of_three_images_gives_one_ranking_each_in_order(fp32_model) -> None:
    images = [jpeg(seed) for seed in (4, 5, 6)]

    response = serve(
        fp32_model, json.dumps({"images": [b64(image) for image in images], "top_k": 3}), "application/json"
    )

    assert len(response["predictions"]) == 3
    for image, ranking in zip(images, response["predictions"], strict=True):
        assert_valid_ranking(ranking, expected_length=3)
        alone = serve(fp32_model, json.dumps({"image": b64(image), "top_k": 3}), "application/json")["predictions"]
        assert [entry["class_index"] for entry in ranking] == [entry["class_index"] for entry in alone]
        assert [entry["probability"] for entry in ranking] == pytest.approx(
            [entry["probability"] for entry in alone], abs=1e-4
        )


@pytest.mark.parametrize(
    ("photo_size", "image_size"),
    [((960, 720), 224), ((500, 400), 224), ((150, 120), 224), ((500, 400), 64)],
    ids=["draft-halves-it", "no-draft", "upscaled", "small-model"],
)
def test_preprocessing_matches_the_training_decode(photo_size: tuple[int, int], image_size: int) -> None:
    image = encoded(photo_like_image(7, size=photo_size), "JPEG")

    served = inference.decode_image(image, image_size).int()
    trained = dog_data.decode_image(image, image_size).int()

    # torch's antialiased bilinear resize rounds a few pixels the other way from PIL's.
    assert served.shape == trained.shape == (image_size, image_size, 3)
    assert (served - trained).abs().max() <= 1
    assert (served != trained).float().mean() < 0.02


@pytest.mark.parametrize(
    ("orientation", "stored_as"),
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)],
    ids=["upside-down", "turned-left", "turned-right"],
)
def test_phone_photos_with_an_exif_orientation_are_turned_upright_in_training_and_serving(
    orientation: int, stored_as: Image.Transpose
) -> None:
    # GIVEN an upright photo (red left half, blue right half) stored turned, with the EXIF tag that undoes it
    pixels = np.zeros((240, 320, 3), np.uint8)
    pixels[:, :160], pixels[:, 160:] = (255, 0, 0), (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).transpose(stored_as).save(buffer, format="JPEG", exif=exif.tobytes())

    # WHEN training and serving decode it
    for decoded in (dog_data.decode_image(buffer.getvalue(), 64), inference.decode_image(buffer.getvalue(), 64)):
        # THEN both see it upright: red on the left, blue on the right
        left, right = decoded[32, 4].tolist(), decoded[32, 59].tolist()
        assert left[0] > 200 and left[2] < 50, left
        assert right[2] > 200 and right[0] < 50, right


def test_seed_tensor_format_gives_the_image_answer(fp32_model) -> None:
    image = jpeg(8)

    from_tensor = serve(fp32_model, json.dumps(normalised_batch([image]).tolist()), "application/json")
    from_image = serve(fp32_model, image, "image/jpeg")

    assert [e["class_index"] for e in from_tensor["predictions"]] == [
        e["class_index"] for e in from_image["predictions"]
    ]
    assert [e["probability"] for e in from_tensor["predictions"]] == pytest.approx(
        [e["probability"] for e in from_image["predictions"]], abs=1e-4
    )


def test_seed_tensor_of_several_images_answers_per_image(served_model) -> None:
    batch = normalised_batch([jpeg(9), jpeg(10)])

    response = serve(served_model, json.dumps(batch.tolist()), "application/json")

    assert len(response["predictions"]) == 2
    for ranking in response["predictions"]:
        assert_valid_ranking(ranking, expected_length=len(CLASS_LABELS))


@pytest.mark.parametrize("accept", ["*/*", "application/json; charset=utf-8", "text/html, application/json"])
def test_output_accepts_any_json_compatible_accept_header(served_model, accept: str) -> None:
    response = serve(served_model, jpeg(11), "image/jpeg", accept=accept)

    assert_valid_ranking(response["predictions"], expected_length=len(CLASS_LABELS))


# ------------------------------------------------------------------------------------------------ rejections


def truncated_jpeg() -> bytes:
    whole = jpeg(12)
    return whole[: len(whole) // 2]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (truncated_jpeg(), "image/jpeg", 400, "corrupt or truncated"),
        (b"this is not an image", "image/jpeg", 400, "not an image"),
        (b"", "image/jpeg", 400, "body is empty"),
        ("", "application/json", 400, "body is empty"),
        (b"a,b\n1,2\n", "text/csv", 415, "unsupported content type 'text/csv'"),
        (b"\xff\xd8", None, 415, "unsupported content type None"),
        (
            json.dumps(torch.zeros(1, 3, 32, 32).tolist()),
            "application/json",
            400,
            r"wrong tensor shape \(1, 3, 32, 32\)",
        ),
        (json.dumps([[1.0, 2.0], [3.0]]), "application/json", 400, "not a rectangular array"),
        ("{not json", "application/json", 400, "not valid JSON"),
        (json.dumps({"image": "%%%not-base64%%%"}), "application/json", 400, r'"image" is not valid base64'),
        (json.dumps({"image": b64(b"GIF89a-ish")}), "application/json", 400, "not an image"),
        (json.dumps({"images": []}), "application/json", 400, "non-empty list"),
        (json.dumps({"images": ["x"] * 65}), "application/json", 400, "at most 64"),
        (json.dumps({"picture": "x"}), "application/json", 400, r'needs an "image" or "images" key'),
        (json.dumps({"image": b64(jpeg(13)), "top_k": 0}), "application/json", 400, "top_k must be a positive"),
    ],
    ids=[
        "truncated-jpeg",
        "not-an-image",
        "empty-image-body",
        "empty-json-body",
        "csv",
        "no-content-type",
        "wrong-tensor-shape",
        "ragged-tensor",
        "bad-json",
        "bad-base64",
        "base64-of-non-image",
        "empty-batch",
        "batch-too-large",
        "unknown-json-shape",
        "bad-top-k",
    ],
)
def test_bad_request_is_rejected_with_a_4xx_naming_the_problem(
    served_model, body: str | bytes, content_type: str | None, status: int, message: str
) -> None:
    with pytest.raises(inference.RequestRejected, match=message) as rejected:
        serve(served_model, body, content_type)

    # The toolkit answers with status_code and phrase instead of a 500 with a stack trace.
    assert isinstance(rejected.value, inference.BaseInferenceToolkitError)
    assert rejected.value.status_code == status
    assert rejected.value.phrase == rejected.value.message == str(rejected.value)


def test_unacceptable_accept_header_is_a_406(served_model) -> None:
    prediction = inference.predict_fn(inference.input_fn(jpeg(14), "image/jpeg"), served_model)

    with pytest.raises(inference.UnsupportedAccept, match="cannot answer in 'text/csv'") as rejected:
        inference.output_fn(prediction, "text/csv")
    assert rejected.value.status_code == 406


# ------------------------------------------------------------------------------------------------ precision


def test_bf16_and_fp32_agree_on_the_top_breed(model_dir: Path, fp32_model) -> None:
    bf16_model = inference.load_model(model_dir, precision="bfloat16")
    batch = inference.input_fn(json.dumps({"images": [b64(jpeg(seed)) for seed in range(20, 28)]}), "application/json")

    fp32_rankings = inference.predict_fn(batch, fp32_model).rankings
    bf16_rankings = inference.predict_fn(batch, bf16_model).rankings

    for fp32_ranking, bf16_ranking in zip(fp32_rankings, bf16_rankings, strict=True):
        assert bf16_ranking[0]["class_index"] == fp32_ranking[0]["class_index"]
        assert bf16_ranking[0]["probability"] == pytest.approx(fp32_ranking[0]["probability"], abs=0.05)


@pytest.fixture(scope="module")
def int8_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact as train_model.py ships it for int8: calibration images and a passed int8 check."""
    directory = tmp_path_factory.mktemp("int8_model")
    for name in ("model.pth", "classes.json"):
        (directory / name).write_bytes((model_dir / name).read_bytes())
    calibration = inference.decode_images(tuple(jpeg(seed) for seed in range(200, 232)), 224)
    torch.save(calibration, directory / inference.CALIBRATION_FILE)
    (directory / "metrics.json").write_text(json.dumps({"test_accuracy": 0.90, "int8": {"test_accuracy": 0.895}}))
    return directory


def with_metrics(
    source: Path, destination: Path, metrics: dict[str, object], *, calibration_images: bool = True
) -> Path:
    """A copy of the artifact in ``source`` with other metrics.json content, optionally without its calibration."""
    skipped = {"metrics.json"} if calibration_images else {"metrics.json", inference.CALIBRATION_FILE}
    for path in source.iterdir():
        if path.name not in skipped:
            (destination / path.name).write_bytes(path.read_bytes())
    (destination / "metrics.json").write_text(json.dumps(metrics))
    return destination


def test_int8_and_fp32_agree_where_fp32_is_confident(int8_model_dir: Path, fp32_model) -> None:
    # Random backbone weights leave some images between two classes, where int8's rounding may tip the balance; the
    # accuracy of int8 on a trained model is test_training_job's and the training job's own check.
    int8_model = inference.load_model(int8_model_dir, precision="int8")
    batch = inference.input_fn(json.dumps({"images": [b64(jpeg(seed)) for seed in range(20, 36)]}), "application/json")

    fp32_top = [ranking[0] for ranking in inference.predict_fn(batch, fp32_model).rankings]
    int8_top = [ranking[0] for ranking in inference.predict_fn(batch, int8_model).rankings]

    assert int8_model.precision == "int8" and int8_model.input_dtype == torch.float32
    pairs = list(zip(fp32_top, int8_top, strict=True))
    confident = [(fp32, int8) for fp32, int8 in pairs if fp32["probability"] >= 0.75]
    assert len(confident) >= 8
    assert all(fp32["class_index"] == int8["class_index"] for fp32, int8 in confident)
    assert sum(fp32["class_index"] == int8["class_index"] for fp32, int8 in pairs) >= 12


def test_int8_network_is_the_same_for_the_same_weights_and_images(int8_model_dir: Path) -> None:
    # The training job measures the network that the endpoint builds again at load time.
    first = inference.load_model(int8_model_dir, precision="int8")
    second = inference.load_model(int8_model_dir, precision="int8")
    inputs = inference.centre(inference.decode_images((jpeg(40), jpeg(41)), 224), torch.float32)

    with torch.inference_mode():
        assert torch.equal(first.network(inputs), second.network(inputs))


PASSED_CHECK = {"test_accuracy": 0.90, "int8": {"test_accuracy": 0.895}}


@pytest.mark.parametrize(
    ("int8_dot_product", "metrics", "calibration_images", "served", "logged"),
    [
        (True, PASSED_CHECK, True, "int8", None),
        (False, PASSED_CHECK, True, "float", "no int8 dot-product"),
        (True, {"test_accuracy": 0.90, "int8": {"test_accuracy": 0.85}}, True, "float", "more than 0.01 below float's"),
        (
            True,
            {"test_accuracy": 0.90, "int8": {"skipped": "--int8_check false"}},
            True,
            "float",
            "no int8 test accuracy",
        ),
        (True, PASSED_CHECK, False, "float", "has no calibration_images.pt"),
    ],
    ids=["check-passed", "cpu-without-vnni", "accuracy-drop", "check-skipped", "no-calibration-images"],
)
def test_automatic_precision_serves_int8_only_where_measured_good_and_fast(
    int8_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    int8_dot_product: bool,
    metrics: dict[str, object],
    calibration_images: bool,
    served: str,
    logged: str | None,
) -> None:
    monkeypatch.setattr(dog_model, "cpu_has_int8_dot_product", lambda: int8_dot_product)
    monkeypatch.setattr(dog_model, "cpu_has_native_bf16", lambda: False)
    model_dir = with_metrics(int8_model_dir, tmp_path, metrics, calibration_images=calibration_images)

    with caplog.at_level("INFO", logger="inference"):
        model = inference.load_model(model_dir)

    assert model.precision == ("int8" if served == "int8" else "float32")
    if logged:
        assert "int8 not used: " in caplog.text and logged in caplog.text
    response = serve(model, jpeg(5), "image/jpeg")
    assert_valid_ranking(response["predictions"], expected_length=len(CLASS_LABELS))


def test_pinned_int8_needs_the_calibration_images(model_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"INFERENCE_PRECISION=int8 cannot be served: .*calibration_images\.pt"):
        inference.load_model(model_dir, precision="int8")


def test_pinned_int8_serves_despite_a_failed_check_and_warns(
    int8_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = with_metrics(int8_model_dir, tmp_path, {"test_accuracy": 0.9, "int8": {"test_accuracy": 0.5}})

    with caplog.at_level("WARNING", logger="inference"):
        model = inference.load_model(model_dir, precision="int8")

    assert model.precision == "int8"
    assert "int8 pinned although int8 test accuracy 0.5000 is more than 0.01 below" in caplog.text


def test_calibration_file_of_the_wrong_kind_is_named(int8_model_dir: Path, tmp_path: Path) -> None:
    model_dir = with_metrics(int8_model_dir, tmp_path, {"test_accuracy": 0.9, "int8": {"test_accuracy": 0.9}})
    torch.save(torch.zeros(2, 3, 8, 8), model_dir / inference.CALIBRATION_FILE)

    with pytest.raises(ValueError, match=r"calibration_images\.pt must hold uint8 images"):
        inference.load_model(model_dir, precision="int8")
