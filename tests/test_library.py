"""The face library against the real embedded Postgres + pgvector and the real face engine."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.library import FaceLibrary
from pipeline.similarity import confidence_from_cosine
from pipeline.sources import decode_image, load_image
from pipeline.store.db import Database
from pipeline.store.observations import record_matches, record_observed_faces
from pipeline.types import DecodedImage, ImageAnalysis


def _settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


def _encoded(pixels: np.ndarray, name: str, ext: str = ".png", **params: int) -> DecodedImage:
    flags = [cv2.IMWRITE_JPEG_QUALITY, params["quality"]] if "quality" in params else []
    ok, buf = cv2.imencode(ext, pixels, flags)
    assert ok
    return decode_image(bytes(buf), name)


def _codes(exc_info: pytest.ExceptionInfo[FacepipeError]) -> ErrorCode:
    return exc_info.value.code


@pytest.fixture(scope="module")
def players(engine, players_jpg: Path) -> ImageAnalysis:  # type: ignore[no-untyped-def]
    """players.jpg analysed once: 22 faces of different people."""
    analysis = engine.analyze([load_image(str(players_jpg))])[0]
    assert len(analysis.faces) >= 20
    return analysis


@pytest.fixture(scope="module")
def yaoming(yaoming_jpg: Path) -> DecodedImage:
    return load_image(str(yaoming_jpg))


@pytest.fixture
def lib(clean_database: Database, engine) -> FaceLibrary:  # type: ignore[no-untyped-def]
    return FaceLibrary(clean_database, engine, _settings())


# --- persons and groups ----------------------------------------------------------------------


def test_person_and_group_operations(clean_database: Database) -> None:
    lib = FaceLibrary(clean_database, None, _settings())
    info = lib.create_person("alice", ["team", "club"], name="Alice", tag="vip")
    assert (info.name, info.tag, info.group_ids, info.face_ids) == (
        "Alice",
        "vip",
        ("club", "team"),
        (),
    )
    with pytest.raises(FacepipeError) as exc:
        lib.create_person("alice", ["team"])
    assert _codes(exc) is ErrorCode.PERSON_EXISTS and exc.value.numeric_code == -1302
    assert "'alice'" in exc.value.message  # the message names what it is about
    for i in range(5):
        lib.create_person(f"p{i}", ["team"])
    page = lib.list_persons("team", offset=2, limit=2)
    assert page.total == 6 and [p.person_id for p in page.items] == ["p1", "p2"]
    groups = lib.list_groups()
    assert [(g.group_id, g.person_count) for g in groups.items] == [("club", 1), ("team", 6)]

    assert lib.set_person_info("alice", tag="new").tag == "new"
    assert lib.get_person("alice").name == "Alice"
    assert lib.add_person_to_groups("alice", ["extra"]).group_ids == ("club", "extra", "team")
    assert lib.remove_person_from_group("alice", "extra").group_ids == ("club", "team")
    assert "extra" not in [g.group_id for g in lib.list_groups().items]  # emptied: gone
    # delete from one group only: still a person, in its other group
    assert lib.delete_person("alice", "club") is False
    assert lib.get_person("alice").group_ids == ("team",)
    with pytest.raises(FacepipeError) as exc:
        lib.remove_person_from_group("alice", "team")
    assert _codes(exc) is ErrorCode.LAST_GROUP
    assert lib.delete_person("alice") is True
    with pytest.raises(FacepipeError) as exc:
        lib.get_person("alice")
    assert _codes(exc) is ErrorCode.PERSON_NOT_FOUND and exc.value.numeric_code == -1303
    with pytest.raises(FacepipeError) as exc:
        lib.list_persons("nosuchgroup")
    assert _codes(exc) is ErrorCode.GROUP_NOT_FOUND
    with pytest.raises(FacepipeError) as exc:
        lib.delete_person("alice")
    assert _codes(exc) is ErrorCode.PERSON_NOT_FOUND


@pytest.mark.parametrize(
    ("person_id", "code"),
    [
        ("", ErrorCode.EMPTY_PARAMETER),
        ("has space", ErrorCode.ILLEGAL_PARAMETER),
        ("a/b", ErrorCode.ILLEGAL_PARAMETER),
        ("tab\there", ErrorCode.ILLEGAL_PARAMETER),
        ("new\nline", ErrorCode.ILLEGAL_PARAMETER),
        ("x" * 129, ErrorCode.PARAMETER_TOO_LONG),
    ],
)
def test_illegal_ids_are_refused(clean_database: Database, person_id: str, code: ErrorCode) -> None:
    lib = FaceLibrary(clean_database, None, _settings())
    with pytest.raises(FacepipeError) as exc:
        lib.create_person(person_id, ["g"])
    assert _codes(exc) is code


def test_id_name_and_tag_limits(clean_database: Database) -> None:
    lib = FaceLibrary(clean_database, None, _settings())
    ok = lib.create_person("a.b@c-d_e#1%&" + "x" * 115, ["g_1"], name="名" * 60, tag="t" * 256)
    assert len(ok.person_id) == 128
    for kwargs, code in [
        ({"name": "n" * 61}, ErrorCode.PARAMETER_TOO_LONG),
        ({"tag": "é" * 129}, ErrorCode.PARAMETER_TOO_LONG),
        ({"name": "a\nb"}, ErrorCode.ILLEGAL_PARAMETER),
    ]:
        with pytest.raises(FacepipeError) as exc:
            lib.create_person("other", ["g"], **kwargs)  # type: ignore[arg-type]
        assert _codes(exc) is code
    with pytest.raises(FacepipeError) as exc:
        lib.create_person("other", [])
    assert _codes(exc) is ErrorCode.EMPTY_PARAMETER


def test_paging_and_group_limits(clean_database: Database) -> None:
    lib = FaceLibrary(clean_database, None, _settings())
    for i in range(3):
        lib.create_person(f"q{i}", [f"g{i}", "all"])
    groups = lib.list_groups(offset=1, limit=2)
    assert groups.total == 4 and [g.group_id for g in groups.items] == ["g0", "g1"]
    past_end = lib.list_persons("all", offset=10)
    assert past_end.total == 3 and past_end.items == ()
    for offset, limit in [(-1, 10), (0, 0), (0, 1001)]:
        with pytest.raises(FacepipeError) as exc:
            lib.list_groups(offset=offset, limit=limit)
        assert _codes(exc) is ErrorCode.ILLEGAL_PARAMETER
    with pytest.raises(FacepipeError) as exc:
        lib.create_person("many", [f"x{i}" for i in range(101)])
    assert _codes(exc) is ErrorCode.TOO_MANY_GROUPS and exc.value.numeric_code == -1311
    # the cap holds for the person's total, not only for one call
    lib.create_person("many", [f"x{i}" for i in range(60)])
    with pytest.raises(FacepipeError) as exc:
        lib.add_person_to_groups("many", [f"y{i}" for i in range(41)])
    assert _codes(exc) is ErrorCode.TOO_MANY_GROUPS
    assert len(lib.add_person_to_groups("many", [f"y{i}" for i in range(40)]).group_ids) == 100
    # delete from a person's only group deletes the person; from a group it is not in: -1306
    with pytest.raises(FacepipeError) as exc:
        lib.delete_person("q0", "g1")
    assert _codes(exc) is ErrorCode.GROUP_NOT_FOUND and "'q0'" in exc.value.message
    lib.create_person("solo", ["alone"])
    assert lib.delete_person("solo", "alone") is True
    assert "alone" not in [g.group_id for g in lib.list_groups().items]
    with pytest.raises(FacepipeError) as exc:
        lib.get_person("solo")
    assert _codes(exc) is ErrorCode.PERSON_NOT_FOUND


# --- adding faces ----------------------------------------------------------------------------


def test_add_faces_result_codes_and_idempotent_readd(
    lib: FaceLibrary, yaoming: DecodedImage, gdp_jpg: Path, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    lib.create_person("yao", ["g"])
    missing = str(tmp_path / "missing.jpg")
    result = lib.add_faces("yao", [yaoming, str(gdp_jpg), missing, str(blank)])
    assert result.ret_codes == (0, -1604, -1403, -1101)
    assert result.suc_face_num == 1 and result.suc_indexes == (0,)
    rect = result.suc_face_rects[0]
    assert rect.width > 50 and rect.height > 50
    face_id = result.suc_face_ids[0]
    # the same image again: the existing face, no duplicate
    again = lib.add_faces("yao", [yaoming])
    assert again.ret_codes == (0,) and again.suc_face_ids == (face_id,)
    assert lib.list_faces("yao") == [face_id]
    # FaceMatchThreshold 0 lets a different person's face in
    other = lib.add_faces("yao", [str(gdp_jpg)], face_match_threshold=0)
    assert other.ret_codes == (0,)
    with pytest.raises(FacepipeError) as exc:
        lib.add_faces("nobody", [yaoming])
    assert _codes(exc) is ErrorCode.PERSON_NOT_FOUND


def test_near_duplicate_and_quality_refusals(lib: FaceLibrary, yaoming: DecodedImage) -> None:
    lib.create_person("yao", ["g"])
    assert lib.add_faces("yao", [yaoming]).ret_codes == (0,)
    reencoded = _encoded(yaoming.pixels, "re.jpg", ".jpg", quality=70)  # other bytes, same face
    mirrored = _encoded(cv2.flip(yaoming.pixels, 1), "mirror.png")
    blurred = _encoded(cv2.GaussianBlur(yaoming.pixels, (0, 0), 4), "blur.png")
    result = lib.add_faces("yao", [reencoded, mirrored])
    assert result.ret_codes == (-1312, -1312)
    assert result.errors[0]["name"] == "NEAR_DUPLICATE_FACE"
    assert lib.add_faces("yao", [blurred], quality_control=3).ret_codes == (-1601,)
    # the blurred face is the same person and not a near-duplicate: accepted without the gate
    assert lib.add_faces("yao", [blurred], quality_control=0).ret_codes == (0,)
    with pytest.raises(FacepipeError) as exc:
        lib.add_faces("yao", [yaoming], quality_control=5)
    assert _codes(exc) is ErrorCode.ILLEGAL_PARAMETER


def test_face_cap_holds_under_concurrent_adds(
    clean_database: Database,
    engine,
    players: ImageAnalysis,  # type: ignore[no-untyped-def]
) -> None:
    lib = FaceLibrary(clean_database, engine, _settings(max_faces_per_person=3))
    lib.create_person("crowd", ["g"])
    outcomes: list[str] = []
    lock = threading.Lock()

    def add(i: int) -> None:
        try:
            lib.add_analyzed_face("crowd", players, players.faces[i], face_match_threshold=0)
            result = "ok"
        except FacepipeError as exc:
            result = exc.code.value
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 3
    assert outcomes.count("TOO_MANY_FACES") == 7
    assert len(lib.list_faces("crowd")) == 3


def test_face_records_crop_and_delete(
    lib: FaceLibrary,
    engine,
    yaoming: DecodedImage,  # type: ignore[no-untyped-def]
) -> None:
    lib.create_person("yao", ["g"])
    face_id = lib.add_faces("yao", [yaoming]).suc_face_ids[0]
    info = lib.get_face(face_id)
    assert info.person_id == "yao" and info.content_sha256 == yaoming.content_sha256
    assert info.model_id == engine.model_id and info.crop_format == "png"
    assert len(info.landmarks) == 5 and 0 <= info.quality_level <= 4
    crop = lib.get_face_crop(face_id)
    expected = engine.analyze([yaoming])[0].faces[0].aligned_crop
    assert crop.shape == (112, 112, 3) and np.array_equal(crop, expected)  # PNG is lossless
    # the stored crop re-embeds to the stored vector (what a model upgrade relies on)
    assert float(engine.embed_crops([crop])[0] @ engine.embed_crops([expected])[0]) > 0.9999
    with pytest.raises(FacepipeError) as exc:
        lib.delete_faces("yao", ["999999"])
    assert _codes(exc) is ErrorCode.FACE_NOT_FOUND
    assert lib.delete_faces("yao", [face_id]) == [face_id]
    assert lib.list_faces("yao") == []
    with pytest.raises(FacepipeError) as exc:
        lib.get_face(face_id)
    assert _codes(exc) is ErrorCode.FACE_NOT_FOUND


def test_replace_faces(
    lib: FaceLibrary, yaoming: DecodedImage, gdp_jpg: Path, tmp_path: Path
) -> None:
    lib.create_person("p", ["g"])
    old = lib.add_faces("p", [yaoming]).suc_face_ids
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 90, np.uint8))
    kept = lib.replace_faces("p", [str(blank)])
    assert kept.ret_codes == (-1101,) and lib.list_faces("p") == list(old)
    # replace: the old faces go, so the new face is not held to FaceMatchThreshold against them
    new = lib.replace_faces("p", [str(gdp_jpg)])
    assert new.ret_codes == (0,)
    assert lib.list_faces("p") == list(new.suc_face_ids) != list(old)


# --- searches --------------------------------------------------------------------------------


def _enrol_players(lib: FaceLibrary, players: ImageAnalysis) -> None:
    """Person pNN gets face NN of players.jpg; p00-p11 in gA, p06-p21 in gB (p06-p11 in both)."""
    for i, face in enumerate(players.faces):
        groups = (["gA"] if i < 12 else []) + (["gB"] if i >= 6 else [])
        lib.create_person(f"p{i:02d}", groups, name=f"player {i}", tag=f"t{i}")
        lib.add_analyzed_face(f"p{i:02d}", players, face)


@pytest.mark.parametrize(
    ("exact_max", "scan_share"),
    [(100_000, 0.0), (100_000, 1.0), (0, 0.0)],
    ids=["exact-scan", "exact-members", "hnsw"],
)
def test_identify_across_groups_each_person_once(  # type: ignore[no-untyped-def]
    clean_database: Database,
    engine,
    players: ImageAnalysis,
    exact_max: int,
    scan_share: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("pipeline.index.planner.SCAN_TABLE_SHARE", scan_share)
    settings = _settings(exact_search_max_faces=exact_max, near_duplicate_similarity=1.01)
    lib = FaceLibrary(clean_database, engine, settings)
    _enrol_players(lib, players)
    # a second face for p08 (the same face, other bytes), so p08 has two candidate faces
    p8 = players.faces[8]
    twin = ImageAnalysis("twin", players.width, players.height, "f" * 64, players.model_id, (p8,))
    lib.add_analyzed_face("p08", twin, p8, face_match_threshold=0)
    assert len(lib.list_faces("p08")) == 2
    probes = [f.embedding for f in players.faces[:22]]
    results = lib.identify_embeddings(probes, ["gA", "gB"], top_n=5)
    for i, candidates in enumerate(results):
        ids = [c.person_id for c in candidates]
        assert ids[0] == f"p{i:02d}"  # the person itself first
        assert len(ids) == len(set(ids)) == 5  # each person once
        assert candidates[0].confidence > 95 and candidates[0].tag == f"t{i}"
        scores = [c.score for c in candidates]
        assert scores == sorted(scores, reverse=True)
    only_a = lib.identify_embeddings([players.faces[20].embedding], ["gA"], top_n=3)[0]
    assert all(int(c.person_id[1:]) < 12 for c in only_a) and len(only_a) == 3


def test_identify_verify_compare_images(
    lib: FaceLibrary,
    players: ImageAnalysis,
    players_jpg: Path,
    yaoming: DecodedImage,
    gdp_jpg: Path,
) -> None:
    _enrol_players(lib, players)
    lib.create_person("yao", ["gB"], tag="basketball")
    lib.add_faces("yao", [yaoming])
    largest = lib.identify(str(players_jpg), ["gA", "gB"])
    assert len(largest.faces) == 1 and largest.candidates[0].person_id == "p00"
    every = lib.identify(str(players_jpg), ["gA", "gB"], top_n=2, all_faces=True)
    assert [f.candidates[0].person_id for f in every.faces] == [
        f"p{i:02d}" for i in range(len(players.faces))
    ]
    hit = lib.identify(yaoming, ["gA", "gB"], top_n=1).candidates
    assert [(c.person_id, c.tag) for c in hit] == [("yao", "basketball")]

    verified = lib.verify(yaoming, "yao")
    assert verified.is_match and verified.confidence > 95
    # one 0-100 scale everywhere: the library's confidences are pipeline.similarity's
    assert verified.confidence == pytest.approx(confidence_from_cosine(verified.score))
    assert hit[0].confidence == pytest.approx(confidence_from_cosine(hit[0].score))
    refused = lib.verify(str(gdp_jpg), "yao")
    assert not refused.is_match and refused.confidence < 60
    same = lib.compare(yaoming, _encoded(yaoming.pixels, "re.jpg", ".jpg", quality=80))
    different = lib.compare(yaoming, str(gdp_jpg))
    assert same.is_match and same.similarity > 95
    assert not different.is_match and different.similarity < same.similarity

    with pytest.raises(FacepipeError) as exc:
        lib.identify(yaoming, ["nosuch"])
    assert _codes(exc) is ErrorCode.GROUP_NOT_FOUND
    with pytest.raises(FacepipeError) as exc:
        lib.identify(yaoming, ["nosuch", "nosuch2"])
    assert _codes(exc) is ErrorCode.GROUP_LIST_NOT_FOUND
    blank = _encoded(np.full((200, 200, 3), 127, np.uint8), "blank.png")
    with pytest.raises(FacepipeError) as exc:
        lib.verify(blank, "yao")
    assert _codes(exc) is ErrorCode.NO_FACE


def test_delete_person_leaves_no_vector_behind(lib: FaceLibrary, players: ImageAnalysis) -> None:
    _enrol_players(lib, players)
    db = lib.db
    with db.transaction() as conn:
        observed = record_observed_faces(conn, players, job_id="j1")
        cands = lib.identify_embeddings([players.faces[3].embedding], ["gA"], conn=conn)[0]
        record_matches(conn, observed[3], cands, job_id="j1")
    lib.delete_person("p03")
    with db.connection() as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM faces WHERE person_id = 'p03'),"
            " (SELECT count(*) FROM memberships WHERE person_id = 'p03'),"
            " (SELECT count(*) FROM matches WHERE person_id = 'p03'),"
            " (SELECT count(*) FROM faces WHERE crop IS NOT NULL)"
        ).fetchone()
    assert left[:3] == (0, 0, 0) and left[3] == len(players.faces) - 1
    again = lib.identify_embeddings([players.faces[3].embedding], ["gA"], top_n=12)[0]
    assert "p03" not in [c.person_id for c in again]


def test_observed_faces_and_matches_are_idempotent(
    lib: FaceLibrary, players: ImageAnalysis
) -> None:
    _enrol_players(lib, players)
    with lib.db.transaction() as conn:
        first = record_observed_faces(conn, players, source_uri="s3://b/k.jpg", job_id="j")
        cands = lib.identify_embeddings(
            [f.embedding for f in players.faces], ["gA", "gB"], top_n=3, conn=conn
        )
        for oid, c in zip(first, cands, strict=True):
            record_matches(conn, oid, c, job_id="j")
    with lib.db.transaction() as conn:  # a redelivered chunk writes the same again
        second = record_observed_faces(conn, players, source_uri="s3://b/k.jpg", job_id="j")
        for oid, c in zip(second, cands, strict=True):
            record_matches(conn, oid, c, job_id="j")
    assert first == second and len(first) == len(players.faces)
    with lib.db.connection() as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM observed_faces), (SELECT count(*) FROM matches),"
            " (SELECT count(*) FROM matches WHERE rank = 1 AND person_id ="
            "  'p' || lpad((SELECT face_index FROM observed_faces o"
            "   WHERE o.observed_id = matches.observed_id)::text, 2, '0'))"
        ).fetchone()
    assert counts == (len(players.faces), 3 * len(players.faces), len(players.faces))
