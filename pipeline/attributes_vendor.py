"""facepipe's attributes and quality measures on each vendor's detect fields and scales (pure).

The vendor-compatible routes (YouTu v2, Tencent IAI, Baidu v2) answer their attribute and
quality fields from these functions, so every protocol reports the same numbers on its own
scale. A field facepipe has no model or measure for is *left out* of the dict (never filled
with a constant); the ``*_LEFT_OUT`` tuples name them. With no attribute model
(``face.attributes is None``) the attribute functions return ``{}``.

facepipe's measures (:class:`pipeline.types.Quality`, :mod:`pipeline.ops.quality`):
``score`` 0-100 (higher better), ``blur`` 0 sharp .. 1 blurred, ``illumination`` mean luminance
0-255 of the aligned face, ``completeness`` 0-1 share of the face box inside the image (a
cut-off measure: occlusion is not measured), ``detector_score`` 0-1.
"""

from __future__ import annotations

from typing import Any

from pipeline.types import Attributes, Quality

BAIDU_LEFT_OUT = (
    "expression",
    "expression_probability",
    "glasses",
    "glasses_probability",
    "race",
    "race_probability",
    "beauty",
    "faceshape",
    "qualities.occlusion",
    "qualities.type",
)
"""Baidu v2 detect fields without a model behind them in facepipe."""
IAI_LEFT_OUT = (
    "FaceAttributesInfo.Expression",
    "FaceAttributesInfo.Glass",
    "FaceAttributesInfo.Beauty",
    "FaceAttributesInfo.Hat",
    "FaceAttributesInfo.Mask",
    "FaceAttributesInfo.Hair",
    "FaceAttributesInfo.EyeOpen",
)
"""IAI DetectFace fields without a model behind them in facepipe."""
YOUTU_LEFT_OUT = ("expression", "glass", "beauty")
"""YouTu v2 detect fields without a model behind them in facepipe (YouTu's detect has no
quality fields)."""


def male_probability(attrs: Attributes) -> float | None:
    """P(male) from the stated gender and its probability (None without a probability)."""
    if attrs.gender_probability is None:
        return None
    p = attrs.gender_probability
    return p if attrs.gender == "male" else 1.0 - p


def gender_0_100(attrs: Attributes) -> int:
    """YouTu's and IAI's gender scale: 0 female .. 100 male, nearer the ends = surer
    (IAI: 0-49 female, 50-100 male). Without a probability: 0 or 100."""
    p = male_probability(attrs)
    if p is None:
        p = 1.0 if attrs.gender == "male" else 0.0
    value = round(100.0 * p)
    # the stated gender decides the side of 50, even when rounding lands on the line
    return max(value, 50) if attrs.gender == "male" else min(value, 49)


def _age_0_100(attrs: Attributes) -> int:
    return min(100, max(0, attrs.age))


def baidu_attributes(attrs: Attributes | None) -> dict[str, Any]:
    """Baidu v2 detect ``age`` (years, double) and ``gender`` (``male``/``female``) with
    ``gender_probability`` (0-1, when the model gives one)."""
    if attrs is None:
        return {}
    out: dict[str, Any] = {"age": float(attrs.age), "gender": attrs.gender}
    if attrs.gender_probability is not None:
        out["gender_probability"] = round(attrs.gender_probability, 6)
    return out


def baidu_qualities(quality: Quality) -> dict[str, Any]:
    """Baidu v2 detect ``qualities``: ``blur`` [0, 1] 0 clear (facepipe's blur as is),
    ``illumination`` [0, 255] (the aligned face's mean luminance as is), ``completeness``
    [0, 1] **0 complete**, 1 incomplete (1 - facepipe's in-image share)."""
    return {
        "blur": round(quality.blur, 6),
        "illumination": round(quality.illumination, 2),
        "completeness": round(1.0 - quality.completeness, 6),
    }


def iai_attributes(attrs: Attributes | None) -> dict[str, Any]:
    """IAI ``FaceAttributesInfo``: ``Gender`` 0-49 female, 50-100 male (see
    :func:`gender_0_100`), ``Age`` 0-100."""
    if attrs is None:
        return {}
    return {"Gender": gender_0_100(attrs), "Age": _age_0_100(attrs)}


IAI_COMPLETENESS_REGIONS = ("Eyebrow", "Eye", "Nose", "Cheek", "Mouth", "Chin")


def iai_quality(quality: Quality) -> dict[str, Any]:
    """IAI ``FaceQualityInfo``, every value an integer 0-100, higher better:

    - ``Score``: facepipe's quality score (0-100, same direction);
    - ``Sharpness``: ``100 * (1 - blur)``;
    - ``Brightness``: ``100 * illumination / 255`` (IAI suggests 30-70 for enrolment; facepipe's
      good light band, 70-190 of 255, is 27-75 on this scale);
    - ``Completeness`` per region: ``100 * completeness`` for each region alike, because
      facepipe measures how much of the face is cut off by the image edge, not occlusion of
      single regions.
    """
    whole = round(100.0 * quality.completeness)
    return {
        "Score": round(quality.score),
        "Sharpness": round(100.0 * (1.0 - quality.blur)),
        "Brightness": round(100.0 * quality.illumination / 255.0),
        "Completeness": dict.fromkeys(IAI_COMPLETENESS_REGIONS, whole),
    }


def youtu_attributes(attrs: Attributes | None) -> dict[str, Any]:
    """YouTu v2 detect ``gender`` 0 (female) - 100 (male) and ``age`` 0-100."""
    if attrs is None:
        return {}
    return {"gender": gender_0_100(attrs), "age": _age_0_100(attrs)}
