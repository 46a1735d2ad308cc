"""Large-scale search: FAISS snapshots of enrolled faces, the planner and identify-batch.

No Celery here (``workers/index_tasks.py`` wraps it). Entry points:
:func:`pipeline.index.reindex.reindex`, :func:`pipeline.index.search.identify_faiss`,
:func:`pipeline.index.planner.plan_identify` and
:func:`pipeline.index.identify_batch.identify_batch`.
"""
