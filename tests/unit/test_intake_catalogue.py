"""A catalogue that cannot be fetched now is retried, never the job's fault (translation is pure; the
fetch is not)."""

from __future__ import annotations

import pytest
from jobkit import make_job

from burst_agent.config import config_from_mapping
from burst_agent.lifecycle import JobState
from burst_agent.logsetup import get_logger
from burst_agent.pipeline.context import Catalogue, Context
from burst_agent.pipeline.intake import translate_job
from burst_agent.rescale.errors import ServerError
from burst_agent.spool import Spool
from burst_agent.store import JobStore


def _unavailable() -> list:
    raise ServerError("catalogue unavailable", status=503)


def test_a_failing_catalogue_fetch_leaves_the_job_to_retry(tmp_path):
    with JobStore(tmp_path / "state.db") as store:
        ctx = Context(config=config_from_mapping({}), client=None, store=store,  # type: ignore[arg-type]
                      spool=Spool(tmp_path / "spool").ensure(), catalogue=Catalogue(fetch=_unavailable),
                      log=get_logger())
        job = make_job(store, "e1")
        with pytest.raises(ServerError):
            translate_job(ctx, job)
        assert store.get(job.id).state is JobState.RECEIVED
