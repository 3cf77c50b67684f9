"""The graph call: onnxruntime's compiled session called directly gives what the public
``run`` gives, and every error still comes out of the public ``run``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anomaly.inference import Scorer
from anomaly.inference.graph import run_session
from anomaly.inference.noise import latent_noise


def _feed(scorer: Scorer, rows: int) -> dict[str, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(rows, scorer.input_dim)).astype(np.float32)
    return {"x": x, "eps": latent_noise(0, rows, 8, scorer.latent_dim)}


class _PublicOnly:
    """A session object with the public ``run`` alone (no compiled ``_sess``)."""

    def __init__(self, session: Any) -> None:
        self.session, self.calls = session, 0

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> Any:
        self.calls += 1
        return self.session.run(outputs, feed)


def test_the_direct_call_equals_the_public_run(tabular_bundle: Path) -> None:
    scorer = Scorer(tabular_bundle)
    session = scorer.graph.score_session
    for rows in (1, 7):
        feed = _feed(scorer, rows)
        want = session.run(["score", "log_weights"], feed)
        got = run_session(session, ["score", "log_weights"], feed)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
        public = _PublicOnly(session)
        np.testing.assert_array_equal(run_session(public, ["score"], feed)[0], want[0])
        assert public.calls == 1


def test_errors_come_from_the_public_run(tabular_bundle: Path) -> None:
    session = Scorer(tabular_bundle).graph.score_session
    feed = _feed(Scorer(tabular_bundle), 2)
    # the public run's own check, reached after the direct call failed
    with pytest.raises(ValueError, match="Required inputs"):
        run_session(session, ["score"], {"x": feed["x"]})
    with pytest.raises(Exception, match="eps"):
        run_session(session, ["score"], {"x": feed["x"], "eps": feed["eps"][:, :, :1]})


def test_lazy_explanations_read_from_many_threads_agree(tabular_bundle: Path) -> None:
    scorer = Scorer(tabular_bundle)
    x = np.random.default_rng(1).normal(size=(30, scorer.input_dim)).astype(np.float32)
    want = scorer.score(x, explain=True).feature_scores
    result = scorer.score(x)
    got: list[np.ndarray] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def read() -> None:
        try:
            start.wait()
            got.append(result.rows(5, 9).feature_scores)
            got.append(result.feature_scores[5:9])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 16
    for a in got:
        np.testing.assert_allclose(a, want[5:9], rtol=1e-5, atol=1e-6)
