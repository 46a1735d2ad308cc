"""Searches of the face library: identify (who is this?), verify (is this that person?) and
compare (are these the same person?), with the plan of :mod:`pipeline.index.planner`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg
from numpy.typing import NDArray

from pipeline.calibration import Calibration
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.index import planner, templates
from pipeline.index.planner import PgvectorPlan
from pipeline.library.core import LibraryCore, require_person
from pipeline.library.results import CompareResult, IdentifiedFace, IdentifyResult, VerifyResult
from pipeline.observability.metrics import time_identify
from pipeline.store import repo
from pipeline.store.observations import unit_vector
from pipeline.store.records import Candidate, FaceHit
from pipeline.types import DecodedImage
from pipeline.validation import validate_group_ids, validate_person_id, validate_top_n

HNSW_MAX_SCAN_TUPLES = 50_000
"""Upper bound of index tuples one iterative HNSW scan visits (pgvector hnsw.max_scan_tuples)."""

_HITS_PER_PERSON = 4
"""First fetch size per wanted person; grown x4 while too few distinct persons come back."""

_MAX_HNSW_HITS = 1000
"""Largest fetch: hnsw.ef_search cannot exceed 1000."""


def _candidates(
    hits: Sequence[FaceHit], names: dict[str, tuple[str, str]], calibration: Calibration
) -> list[Candidate]:
    out = []
    for hit in hits:
        name, tag = names.get(hit.person_id, ("", ""))
        out.append(
            Candidate(
                person_id=hit.person_id,
                face_id=str(hit.face_id),
                score=hit.score,
                confidence=calibration.confidence(float(hit.score)),
                tag=tag,
                name=name,
            )
        )
    return out


def _best_per_person(hits: Sequence[FaceHit], top_n: int) -> list[FaceHit]:
    """Each person once with its best face, best first, at most ``top_n``."""
    seen: set[str] = set()
    out: list[FaceHit] = []
    for hit in sorted(hits, key=lambda h: (-h.score, h.face_id)):
        if hit.person_id in seen:
            continue
        seen.add(hit.person_id)
        out.append(hit)
        if len(out) == top_n:
            break
    return out


class Searches(LibraryCore):
    """The searches part of :class:`~pipeline.library.FaceLibrary`."""

    def identify_embeddings(
        self,
        embeddings: Sequence[NDArray[np.float32]] | NDArray[np.float32],
        group_ids: Sequence[str],
        top_n: int | None = None,
        *,
        model_id: str | None = None,
        conn: psycopg.Connection | None = None,
    ) -> list[list[Candidate]]:
        """For each probe embedding, up to ``top_n`` persons of the groups, each once with its
        best face, best first: ranked by the persons' fused templates (``score`` = the
        template's cosine; :mod:`pipeline.index.templates`) or, with
        ``identify_person_template`` = ``best-face``, by their best face.

        Groups holding at most ``exact_search_max_faces`` faces are scanned exactly; larger ones
        use the HNSW index with pgvector iterative scans (the group filter is applied during the
        walk, and the fetch grows until ``top_n`` distinct persons are found). Missing groups
        are skipped; when none exists: ``GROUP_NOT_FOUND`` / ``GROUP_LIST_NOT_FOUND``.
        """
        groups = validate_group_ids(group_ids)
        n = validate_top_n(self.settings.identify_top_n if top_n is None else top_n)
        model = self._model_id(model_id)
        arr = np.asarray(embeddings, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[np.newaxis, :]
        probes = [unit_vector(row) for row in arr] if arr.size else []
        results: list[list[Candidate]] = []
        with self._tx(conn) as c:
            present = repo.existing_groups(c, groups)
            if not present:
                code = (
                    ErrorCode.GROUP_NOT_FOUND
                    if len(groups) == 1
                    else (ErrorCode.GROUP_LIST_NOT_FOUND)
                )
                raise FacepipeError(code, group_ids=groups)
            if not probes:
                return []
            exact_max = self.settings.exact_search_max_faces
            in_groups, in_gallery = repo.estimate_group_faces(c, present, model, exact_max)
            plan = planner.choose_pgvector_plan(in_groups, in_gallery, exact_max)
            by_template = self.settings.identify_person_template == templates.MEAN
            # persons are found by their faces, then ranked by their fused templates
            fetch = n * templates.CANDIDATE_FACTOR if by_template else n
            engine = "pgvector_hnsw" if plan is PgvectorPlan.HNSW else "pgvector_exact"
            with time_identify(engine, len(probes)):
                hits_per_probe = [
                    self._search_one(c, probe, present, model, fetch, plan) for probe in probes
                ]
                if by_template:
                    hits_per_probe = self._rank_by_template(c, probes, hits_per_probe, model, n)
            names = repo.person_tags(
                c, sorted({h.person_id for hits in hits_per_probe for h in hits})
            )
        cal = self.calibration(model)
        for hits in hits_per_probe:
            results.append(_candidates(hits, names, cal))
        return results

    @staticmethod
    def _rank_by_template(
        conn: psycopg.Connection,
        probes: Sequence[NDArray[np.float32]],
        hits_per_probe: list[list[FaceHit]],
        model_id: str,
        top_n: int,
    ) -> list[list[FaceHit]]:
        """Each probe's candidate persons re-ranked by their fused templates (score = the
        template's cosine; face_id = the person's best face)."""
        persons = sorted({h.person_id for hits in hits_per_probe for h in hits})
        vectors = repo.persons_vectors(conn, persons, model_id)
        out = []
        for probe, hits in zip(probes, hits_per_probe, strict=True):
            ranked = templates.rank_by_template(
                probe, [(h.person_id, h.face_id, h.score) for h in hits], vectors, top_n
            )
            out.append([FaceHit(face_id, person, score) for person, face_id, score in ranked])
        return out

    def _search_one(
        self,
        conn: psycopg.Connection,
        probe: NDArray[np.float32],
        groups: list[str],
        model_id: str,
        top_n: int,
        plan: PgvectorPlan,
    ) -> list[FaceHit]:
        """The ``top_n`` best persons: fetch the k best faces (exact or HNSW), keep each
        person's best; grow k while fewer than ``top_n`` distinct persons came back and more
        faces exist. With an exact fetch the result is exact: the first ``top_n`` distinct
        persons among the best faces are the ``top_n`` best persons."""
        exact = plan is not PgvectorPlan.HNSW
        k = top_n * _HITS_PER_PERSON
        # an exact fetch may need every face of the top_n persons; an HNSW one is bounded by
        # hnsw.ef_search's maximum
        k_max = top_n * max(self.settings.max_faces_per_person, 1) if exact else _MAX_HNSW_HITS
        while True:
            if exact:
                raw = repo.search_exact(
                    conn, probe, groups, model_id, k, scan_table=plan is PgvectorPlan.EXACT_SCAN
                )
            else:
                with conn.transaction():
                    raw = repo.search_hnsw(
                        conn,
                        probe,
                        groups,
                        model_id,
                        limit=k,
                        ef_search=max(self.settings.hnsw_ef_search, k),
                        max_scan_tuples=HNSW_MAX_SCAN_TUPLES,
                    )
            best = _best_per_person(raw, top_n)
            if len(best) >= top_n or len(raw) < k or k >= k_max:
                return best
            k = min(k * 4, k_max)

    def identify(
        self,
        image: str | DecodedImage,
        group_ids: Sequence[str],
        top_n: int | None = None,
        *,
        all_faces: bool = False,
    ) -> IdentifyResult:
        """Who is in the image? Up to ``top_n`` persons (default ``identify_top_n``) across the
        groups, each once with its best face, confidence and tag (YouTu identify). The largest
        face by default; every face with ``all_faces``."""
        groups = validate_group_ids(group_ids)
        analysis = self._analyze_one(image, all_faces=all_faces)
        embedded = [(f, f.embedding) for f in analysis.faces if f.embedding is not None]
        faces = [f for f, _ in embedded]
        per_face = self.identify_embeddings(
            [e for _, e in embedded], groups, top_n, model_id=analysis.model_id
        )
        return IdentifyResult(
            source=analysis.source,
            group_ids=tuple(groups),
            faces=tuple(
                IdentifiedFace(f.index, f.box, tuple(c))
                for f, c in zip(faces, per_face, strict=True)
            ),
            model_id=analysis.model_id,
        )

    def verify(self, image: str | DecodedImage, person_id: str) -> VerifyResult:
        """Is the image's (largest) face this person? Confidence 0-100 against the person's best
        face and ``is_match`` at ``match_threshold`` (YouTu verify)."""
        person_id = validate_person_id(person_id)
        with self.db.connection() as conn:
            require_person(conn, person_id)
        analysis = self._analyze_one(image)
        probe = unit_vector(analysis.faces[0].embedding)
        with self.db.connection() as conn:
            hit = repo.best_person_face(conn, probe, person_id, analysis.model_id)
        if hit is None:
            raise FacepipeError(
                ErrorCode.FACE_NOT_FOUND,
                f"person {person_id!r} has no face enrolled with model {analysis.model_id}",
            )
        confidence = self.calibration(analysis.model_id).confidence(float(hit.score))
        return VerifyResult(
            person_id=person_id,
            confidence=confidence,
            score=hit.score,
            is_match=confidence >= self.settings.match_threshold,
            face_id=str(hit.face_id),
        )

    def compare(self, image_a: str | DecodedImage, image_b: str | DecodedImage) -> CompareResult:
        """Similarity 0-100 of the largest faces of two images (Baidu match)."""
        first = self._analyze_one(image_a)
        a = unit_vector(first.faces[0].embedding)
        b = unit_vector(self._analyze_one(image_b).faces[0].embedding)
        score = float(np.clip(a @ b, -1.0, 1.0))
        similarity = self.calibration(first.model_id).confidence(score)
        return CompareResult(similarity, score, similarity >= self.settings.match_threshold)
