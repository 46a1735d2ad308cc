"""The OpenAPI document FastAPI generates: an answer schema for every route (the /v1 and vendor
response models), multipart uploads documented as binary file parts, and every reference in it
resolving. Built from the app alone (no model, no database: nothing is called)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.api import create_app
from pipeline.api.answers import DetectAnswer
from pipeline.config import Settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(Settings(api_auth=False), preload=False)
    return app.openapi()


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.rsplit("/", 1)[1]
    return document["components"]["schemas"][name]  # type: ignore[no-any-return]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()
    ]


def test_every_route_documents_its_answer(document: dict[str, Any]) -> None:
    operations = _operations(document)
    assert len(operations) >= 55  # /v1, YouTu (14), IAI (GET, POST), Baidu token and 12 calls
    for method, path, op in operations:
        success = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        assert success, (method, path)
        for status, response in success.items():
            content = response.get("content")
            assert content, (method, path, status)
            schema = next(iter(content.values()))["schema"]
            resolved = _resolve(document, schema)
            assert resolved.get("properties") or resolved.get("format") == "binary", (
                method,
                path,
                status,
                schema,
            )


def test_vendor_envelopes(document: dict[str, Any]) -> None:
    def answer_of(path: str, method: str = "post") -> dict[str, Any]:
        schema = document["paths"][path][method]["responses"]["200"]["content"]
        return _resolve(document, schema["application/json"]["schema"])

    youtu = answer_of("/face/detect")
    assert set(youtu["properties"]) == {"code", "message", "data"}
    data = _resolve(document, youtu["properties"]["data"])
    assert {"session_id", "image_width", "image_height", "face"} <= set(data["properties"])
    iai = answer_of("/")
    response = _resolve(document, iai["properties"]["Response"])
    assert {"Error", "RequestId"} <= set(response["properties"])
    assert "RequestId" in response["required"]
    baidu = answer_of("/rest/2.0/face/v2/identify")
    assert {"log_id", "result_num", "result"} == set(baidu["properties"])
    baidu_error = document["paths"]["/rest/2.0/face/v2/identify"]["post"]["responses"]["default"]
    assert {"error_code", "error_msg", "log_id"} == set(
        _resolve(document, baidu_error["content"]["application/json"]["schema"])["properties"]
    )
    token = answer_of("/oauth/2.0/token", "get")
    assert {"access_token", "expires_in"} <= set(token["properties"])


def test_v1_errors_are_documented_in_their_shape(document: dict[str, Any]) -> None:
    responses = document["paths"]["/v1/identify"]["post"]["responses"]
    assert "422" not in responses  # validation errors are 400 ILLEGAL_PARAMETER, not FastAPI's
    error = _resolve(document, responses["4XX"]["content"]["application/json"]["schema"])
    assert set(error["properties"]) == {"error"}


@pytest.mark.parametrize(
    ("path", "method", "parts", "many"),
    [
        ("/v1/detect", "post", ("image",), False),
        ("/v1/verify", "post", ("image",), False),
        ("/v1/identify", "post", ("image",), False),
        ("/v1/persons", "post", ("image",), False),
        ("/v1/compare", "post", ("image_a", "image_b"), False),
        ("/v1/persons/{person_id}/faces", "post", ("image", "images"), True),
        ("/v1/persons/{person_id}/faces", "put", ("image", "images"), True),
    ],
)
def test_multipart_uploads_are_binary_parts(
    document: dict[str, Any], path: str, method: str, parts: tuple[str, ...], many: bool
) -> None:
    body = document["paths"][path][method]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    form = body["multipart/form-data"]["schema"]
    assert "$ref" not in form and form["type"] == "object"
    for name in parts:
        part = form["properties"][name]
        if many:
            assert part["type"] == "array"
            part = part["items"]
        assert (part["type"], part["format"]) == ("string", "binary"), (path, name, part)
    # The text fields of the form sit beside the uploads, as in the JSON body.
    json_fields = set(body["application/json"]["schema"]["properties"])
    text_fields = json_fields - {
        "image",
        "url",
        "images",
        "urls",
        "image_a",
        "url_a",
        "image_b",
        "url_b",
    }
    assert text_fields <= set(form["properties"])
    # FastAPI's generated upload component was folded into the route's schema.
    assert not any(n.startswith("Body_") for n in document["components"]["schemas"])


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = str(document)
    names = set(document["components"]["schemas"])
    for chunk in text.split("'$ref': '#/components/schemas/")[1:]:
        assert chunk.split("'", 1)[0] in names


def test_the_detect_model_is_the_answer_shape() -> None:
    """The model describes what /v1/detect answers (fields left out stay out)."""
    face = {
        "box": [1.0, 2.0, 30.0, 40.0],
        "score": 0.9,
        "landmarks": [[1.0, 2.0]] * 5,
        "pose": {"yaw": 1.0, "pitch": 2.0, "roll": 3.0},
        "quality": {
            "score": 80.0,
            "level": 3,
            "detector_score": 0.9,
            "face_size": 40.0,
            "blur": 0.1,
            "illumination": 120.0,
            "completeness": 1.0,
        },
    }
    answer = {
        "source": "x",
        "width": 100,
        "height": 100,
        "model": "m",
        "faces": [face],
        "timings_ms": {"detect": 3.5},
    }
    parsed = DetectAnswer.model_validate(answer)
    assert parsed.model_dump(exclude_unset=True) == answer
    with pytest.raises(ValueError, match="extra"):
        DetectAnswer.model_validate({**answer, "surprise": 1})
