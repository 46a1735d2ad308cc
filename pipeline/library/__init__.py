"""The face library: groups, persons and faces with the reference APIs' rules, and the searches
over them (verify, identify, compare).

Semantics follow Tencent YouTu v2 (person/group/face management, identify, verify), Tencent IAI
CreateFace (per-image ``RetCode``, ``QualityControl``, ``FaceMatchThreshold``) and Baidu Face v2
(faceset ``update`` with ``action_type=replace``). The parts:

* :mod:`~pipeline.library.persons`: persons and groups;
* :mod:`~pipeline.library.faces`: faces, enrolled under the rules of
  :mod:`~pipeline.library.admission` (pure);
* :mod:`~pipeline.library.search`: identify, verify, compare (planned by
  :mod:`pipeline.index.planner`);
* :mod:`~pipeline.library.results`: the operations' result records.

SQL lives in :mod:`pipeline.store.repo`. Methods taking images need a
:class:`~pipeline.engine.FaceEngine`; the engine-free ones (:meth:`FaceLibrary.add_analyzed_face`,
:meth:`FaceLibrary.identify_embeddings`, and :mod:`pipeline.store.observations`) take faces the
caller already analysed, so the batch pipeline can run the engine batched and write a whole chunk
in one transaction (pass its connection as ``conn``).
"""

from __future__ import annotations

from pipeline.library.admission import CapPolicy
from pipeline.library.faces import Faces
from pipeline.library.persons import PersonsAndGroups
from pipeline.library.search import Searches
from pipeline.store.observations import record_matches, record_observed_faces
from pipeline.store.records import Candidate

__all__ = ["Candidate", "CapPolicy", "FaceLibrary"]


class FaceLibrary(PersonsAndGroups, Faces, Searches):
    """Groups, persons and faces in Postgres, with verify / identify / compare over them."""

    record_observed_faces = staticmethod(record_observed_faces)
    record_matches = staticmethod(record_matches)
