"""Load: 20 concurrent uploads to a real server; all answered, none lost, status answered within a second."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from app_support import serving, upload_files

from brats_plugin import write_synthetic_release
from brats_plugin.app.service import build_app
from brats_plugin.inference import Segmenter

pytestmark = pytest.mark.integration
UPLOADS = 20
STATUS_LIMIT_S = 1.0
TEST_BUDGET_S = 240


def test_twenty_concurrent_uploads(trained_models, tmp_path):
    cases = write_synthetic_release(tmp_path / "cases", "2023-MET", UPLOADS, shape=(32, 32, 24), seed=9,
                                    with_segmentation=False)
    segmenter = Segmenter(trained_models["labels"], device="cpu", mirroring=False)
    app = build_app(segmenter, tmp_path / "data", workers=1)
    started = time.monotonic()
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        preview = client.get("/api/preview").json()["id"]
        slowest: list[float] = []
        codes: list[int] = []
        uploading = threading.Event()
        uploading.set()

        def poll_status() -> None:  # throughout the uploads and the work that follows
            while uploading.is_set():
                begun = time.monotonic()
                codes.append(client.get(f"/api/jobs/{preview}").status_code)
                slowest.append(time.monotonic() - begun)
                time.sleep(0.05)

        poller = threading.Thread(target=poll_status)
        poller.start()
        with ThreadPoolExecutor(UPLOADS) as pool:
            answers = list(pool.map(lambda folder: client.post("/api/jobs", files=upload_files(folder)), cases))
        assert [a.status_code for a in answers] == [202] * UPLOADS, [a.text for a in answers if a.status_code != 202]
        jobs = {a.json()["id"] for a in answers}
        assert len(jobs) == UPLOADS  # twenty distinct random ids
        while time.monotonic() - started < TEST_BUDGET_S:
            states = [client.get(f"/api/jobs/{job}").json()["state"] for job in jobs]
            if set(states) == {"done"}:
                break
            time.sleep(1)
        uploading.clear()
        poller.join()
        assert set(states) <= {"queued", "running", "done"}, states  # none failed or lost
        assert states.count("done") >= UPLOADS // 2, states  # and the queue really moves
        assert set(codes) == {200}
        assert slowest and max(slowest) < STATUS_LIMIT_S, f"slowest status answer {max(slowest):.2f} s"
