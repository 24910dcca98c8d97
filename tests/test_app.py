"""The web app in process (Starlette's test client) with a real model: every route, every bad upload,
the token, restarts and retention. The segmentation it serves is compared with the Segmenter's own.
"""
from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
from app_support import JOB_TIMEOUT, LOCAL, free_port, upload_files, wait_done
from conftest import BRATS, SMALL_SHAPE
from starlette.testclient import TestClient

from brats_plugin import find_case, write_synthetic_release
from brats_plugin.app.jobs import JobStore
from brats_plugin.app.results import network_progress
from brats_plugin.app.service import build_app, check_host
from brats_plugin.errors import BratsInputError
from brats_plugin.inference import Segmenter
from brats_plugin.inference.settings import prediction_settings
from brats_plugin.postprocessing import RULES_FILE, PostprocessingRules
from brats_plugin.releases import SEQUENCES, get_release

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def segmenter(trained_models):
    """The stock-trainer label model with random weights: its masks hold every label."""
    return Segmenter(trained_models["labels"], device="cpu", mirroring=False)


@pytest.fixture(scope="module")
def case_folders(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("app-cases")
    return write_synthetic_release(root, "2023-MET", 2, shape=SMALL_SHAPE, seed=5, with_segmentation=False)


@pytest.fixture
def app_client(segmenter, tmp_path):
    """``app_client(**options)``: a started app over a fresh data folder, and that folder."""
    clients = []

    def make(data: Path | None = None, **options):
        folder = data or tmp_path / "data"
        client = TestClient(base_url=LOCAL, app=build_app(segmenter, folder, **options))
        client.__enter__()
        clients.append(client)
        return client, folder
    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_upload_segment_and_download(app_client, segmenter, case_folders, tmp_path):
    client, data = app_client()
    home = client.get("/")
    assert home.status_code == 200 and "upload-form" in home.text
    preview = client.get("/api/preview").json()["id"]
    assert wait_done(client, preview)["state"] == "done"

    answer = client.post("/api/jobs", files=upload_files(case_folders[0]))
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert client.get(job["page_url"]).status_code == 200
    status = wait_done(client, job["id"])
    assert status["state"] == "done", status
    assert status["case_id"] == find_case(case_folders[0]).case_id
    assert set(status["downloads"]) == {"mask.nii.gz", "viewer.html", "viewer-data", "montage.png", "dicom.zip"}
    assert client.get(f"/api/jobs/{job['id']}/files/native.nii.gz").status_code == 404  # studies only

    mask_download = client.get(status["downloads"]["mask.nii.gz"])
    assert mask_download.status_code == 200
    assert f'{status["case_id"]}.nii.gz' in mask_download.headers["content-disposition"]
    (tmp_path / "mask.nii.gz").write_bytes(mask_download.content)
    served = nib.load(tmp_path / "mask.nii.gz")
    expected = segmenter.predict_case(case_folders[0])
    assert np.array_equal(np.asanyarray(served.dataobj), expected.labels)
    assert np.array_equal(served.affine, nib.load(find_case(case_folders[0]).sequences["T1"]).affine)
    assert status["volumes"]["regions"]["WT"]["mL"] == pytest.approx(expected.volumes.regions["WT"])

    with zipfile.ZipFile(io.BytesIO(client.get(status["downloads"]["dicom.zip"]).content)) as dicom:
        names = dicom.namelist()
    assert sum(name.endswith(".dcm") for name in names) >= 4 * SMALL_SHAPE[2] + 1
    assert client.get(status["downloads"]["montage.png"]).content[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<html" in client.get(status["downloads"]["viewer.html"]).text.lower()


def test_the_models_post_processing_shapes_the_served_mask_and_is_noted(trained_models, case_folders, tmp_path):
    """A rule relabelling any enhancing tumour below 1 L as necrosis: the job's mask has none, its notes say so."""
    model = tmp_path / "model"
    shutil.copytree(trained_models["labels"], model)
    rules = PostprocessingRules(enhancing_min_volume_mm3=1e6)
    (model / RULES_FILE).write_text(json.dumps(rules.to_json(get_release("2023-MET"))))
    ruled = Segmenter(model, device="cpu", mirroring=False)
    with TestClient(base_url=LOCAL, app=build_app(ruled, tmp_path / "data")) as client:
        answer = client.post("/api/jobs", files=upload_files(case_folders[0]))
        assert answer.status_code == 202, answer.text
        status = wait_done(client, answer.json()["id"])
        assert status["state"] == "done", status
        assert any(note.startswith("post-processing: ET ") and note.endswith("voxels -> necrosis")
                   for note in status["notes"]), status
        (tmp_path / "mask.nii.gz").write_bytes(client.get(status["downloads"]["mask.nii.gz"]).content)
    served = np.asarray(nib.load(tmp_path / "mask.nii.gz").dataobj)
    assert np.count_nonzero(served == 3) == 0 and np.count_nonzero(served == 1) > 0
    assert status["volumes"]["regions"]["ET"]["mL"] == 0


def test_zip_upload_and_sequence_choices(app_client, case_folders, tmp_path):
    client, _ = app_client()
    case = find_case(case_folders[1])
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        for path in case.sequences.values():
            archive.write(path, f"{case.case_id}/{path.name}")
    answer = client.post("/api/jobs", files=[("files", ("case.zip", packed.getvalue(), "application/zip"))])
    assert answer.status_code == 202, answer.text
    assert wait_done(client, answer.json()["id"])["case_id"] == case.case_id

    # names that say nothing: refused, then accepted with the user's choices in the form
    anonymous = {s: f"scan{i}.nii.gz" for i, s in enumerate(SEQUENCES)}
    refused = client.post("/api/jobs", files=upload_files(case_folders[1], anonymous))
    assert refused.status_code == 400 and "scan0.nii.gz: cannot tell which sequence" in refused.json()["error"]
    chosen = client.post("/api/jobs", files=upload_files(case_folders[1], anonymous),
                         data={"sequence": list(SEQUENCES), "case_id": "../../my case"})
    assert chosen.status_code == 202, chosen.text
    assert wait_done(client, chosen.json()["id"])["case_id"] == "my_case"
    recognised = client.post("/api/recognise", json={"names": ["a_t1c.nii.gz", "x_flair.nii", "what.nii.gz"]})
    assert recognised.json() == {"sequences": ["T1Gd", "FLAIR", None], "choices": list(SEQUENCES)}


def test_bad_uploads_are_refused_with_their_reason(app_client, case_folders, tmp_path):
    client, data = app_client(max_upload_mb=1.5)
    good = upload_files(case_folders[0])

    def refused(files, status=400, **kwargs) -> str:
        answer = client.post("/api/jobs", files=files, **kwargs)
        assert answer.status_code == status, answer.text
        return answer.json()["error"]

    not_nifti = [good[0], good[1], good[2], ("files", ("x_flair.nii.gz", b"hello, not an image", "text/plain"))]
    assert "x_flair.nii.gz: not a NIfTI image" in refused(not_nifti)
    assert "missing FLAIR" in refused(good[:3])
    other_case = write_synthetic_release(tmp_path / "other", "2023-MET", 1, shape=(40, 48, 30), seed=1,
                                         with_segmentation=False)[0]
    mismatched = good[:3] + [upload_files(other_case)[3]]
    assert "shape" in refused(mismatched)
    assert "are both T1" in refused(good + [("files", ("again_t1.nii.gz", good[0][1][1], "x"))])
    assert "upload larger than" in refused(good + [("files", ("big.bin", bytes(2 * 2**20), "x"))], status=413)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("case/case_t1.nii", bytes(10 * 2**20))
    assert "unpacks to" in refused([("files", ("bomb.zip", bomb.getvalue(), "application/zip"))])
    assert "x.zip: damaged zip file" in refused([("files", ("x.zip", b"PK\x03\x04 broken", "application/zip"))])

    # path-traversal names are only names: the bytes land under our own names inside the job
    traversal = {"T1": "../../../t1.nii.gz", "T1Gd": "..\\..\\evil_t1c.nii.gz", "T2": "/etc/t2.nii.gz",
                 "FLAIR": "a/../../flair.nii.gz"}
    answer = client.post("/api/jobs", files=upload_files(case_folders[0], traversal))
    assert answer.status_code == 202, answer.text
    inputs = data / answer.json()["id"] / "inputs"
    assert sorted(p.name for p in inputs.iterdir()) == sorted(f"{s}.nii.gz" for s in SEQUENCES)
    assert not list(tmp_path.glob("*.nii.gz")) and not (data.parent / "t1.nii.gz").exists()
    # nothing is left of the refused uploads: only the preview and the accepted job
    assert len([p for p in data.iterdir() if not p.name.startswith(".")]) == 2


def test_bombs_damaged_zips_and_odd_requests_are_refused_cleanly(app_client, case_folders, tmp_path):
    client, data = app_client(max_upload_mb=1.5)
    good = upload_files(case_folders[0])
    bomb = tmp_path / "bomb_t1.nii.gz"  # a real NIfTI of zeros: 30 kB that unpacks to 32 MB
    nib.save(nib.Nifti1Image(np.zeros((200, 200, 200), np.float32), np.eye(4)), bomb)
    answer = client.post("/api/jobs", files=[("files", (bomb.name, bomb.read_bytes(), "x"))] + good[1:])
    assert answer.status_code == 400 and "bomb_t1.nii.gz: unpacks beyond" in answer.json()["error"]

    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        for _, (name, content, _) in good:
            archive.writestr(f"case/{name}", content)
    damaged = bytearray(packed.getvalue())
    damaged[200:260] = bytes(60)  # inside the first member's compressed data
    answer = client.post("/api/jobs", files=[("files", ("case.zip", bytes(damaged), "application/zip"))])
    assert answer.status_code == 400 and "case.zip: damaged zip file" in answer.json()["error"]
    encrypted = bytearray(packed.getvalue())
    encrypted[encrypted.index(b"PK\x01\x02") + 8] |= 1  # the first member's "encrypted" flag (central directory)
    answer = client.post("/api/jobs", files=[("files", ("case.zip", bytes(encrypted), "application/zip"))])
    assert answer.status_code == 400 and "is encrypted" in answer.json()["error"]

    chunks = (b"-" * 2**20 for _ in range(3))  # no Content-Length: counted as it arrives
    streamed = client.post("/api/jobs", content=chunks, headers={"content-type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413
    for body in (b"not json", b"[1, 2]", b'{"names": 3}'):
        assert client.post("/api/recognise", content=body).status_code == 400
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400  # DNS rebinding
    assert [p.name for p in data.iterdir() if not p.name.startswith(".")] == [client.get("/api/preview").json()["id"]]


def test_unknown_and_malformed_job_ids(app_client):
    client, data = app_client()
    for job_id in ("nosuchjobnosuchjobnosu", "..%2F..%2Fetc", "a" * 200):
        assert client.get(f"/api/jobs/{job_id}").status_code == 404
        assert client.get(f"/api/jobs/{job_id}/files/mask.nii.gz").status_code == 404
    preview = client.get("/api/preview").json()["id"]
    assert wait_done(client, preview)["state"] == "done"
    for name in ("status.json", "case.nii.gz", "..%2Fstatus.json"):  # only the published names are served
        assert client.get(f"/api/jobs/{preview}/files/{name}").status_code == 404
    assert client.get(f"/api/jobs/{preview}/files/mask.nii.gz").status_code == 200
    store = JobStore(data, 3600)
    for job_id in ("../" + preview, preview + "/..", "", "A" * 22):
        with pytest.raises(KeyError):
            store.folder(job_id)


def test_token_is_required_when_set(app_client, case_folders):
    client, _ = app_client(token=TOKEN)
    assert client.get("/").status_code == 401
    assert client.get("/api/preview").status_code == 401
    assert client.post("/api/jobs", files=upload_files(case_folders[0])).status_code == 401
    assert client.get("/api/preview", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/preview", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/?token=s%C3%A9cret").status_code == 401  # non-ASCII: refused, not a crash
    # a browser opens /?token=... once and then carries the cookie
    assert client.get(f"/?token={TOKEN}").status_code == 200
    assert client.get("/api/preview").status_code == 200
    with pytest.raises(BratsInputError, match="needs --token"):
        check_host("0.0.0.0", None)
    check_host("0.0.0.0", TOKEN)
    check_host("::1", None)
    check_host("localhost", None)


class FailingOnce:
    """The real segmenter, except that its first case fails (as a broken file or a full disk would)."""

    def __init__(self, segmenter: Segmenter):
        self.segmenter, self.calls = segmenter, 0

    def predict_case(self, case, **options):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("out of memory (simulated)")
        return self.segmenter.predict_case(case, **options)


def test_a_failing_job_does_not_take_the_server_down(segmenter, case_folders, tmp_path):
    with TestClient(base_url=LOCAL, app=build_app(FailingOnce(segmenter), tmp_path / "data")) as client:
        preview = client.get("/api/preview").json()["id"]
        failed = wait_done(client, preview)
        assert failed["state"] == "failed" and "out of memory (simulated)" in failed["error"]
        answer = client.post("/api/jobs", files=upload_files(case_folders[0]))
        assert wait_done(client, answer.json()["id"])["state"] == "done"


def test_restart_keeps_results_and_takes_up_queued_jobs(segmenter, case_folders, tmp_path):
    data = tmp_path / "data"
    with TestClient(base_url=LOCAL, app=build_app(segmenter, data)) as client:
        done = client.post("/api/jobs", files=upload_files(case_folders[0])).json()["id"]
        assert wait_done(client, done)["state"] == "done"
        preview = client.get("/api/preview").json()["id"]
    # a job left queued by a server that stopped
    store = JobStore(data, 3600)
    waiting = json.loads((data / done / "status.json").read_text())
    left = store.create(case_id=waiting["case_id"], inputs=waiting["inputs"])
    for name in waiting["inputs"].values():
        (data / left / "inputs" / name).write_bytes((data / done / "inputs" / name).read_bytes())
    with TestClient(base_url=LOCAL, app=build_app(segmenter, data)) as client:
        assert client.get("/api/preview").json()["id"] == preview  # made once, kept
        assert client.get(f"/api/jobs/{done}/files/mask.nii.gz").status_code == 200
        assert wait_done(client, left)["state"] == "done"


def test_retention_deletes_old_jobs_but_keeps_the_preview(segmenter, case_folders, tmp_path):
    data = tmp_path / "data"
    with TestClient(base_url=LOCAL, app=build_app(segmenter, data, retention_hours=1)) as client:
        job = client.post("/api/jobs", files=upload_files(case_folders[0])).json()["id"]
        assert wait_done(client, job)["state"] == "done"
        preview = client.get("/api/preview").json()["id"]
        store = JobStore(data, 3600)
        assert store.expire(time.time() + 1800) == []
        assert store.expire(time.time() + 3 * 3600) == [job]
        assert not (data / job).exists()
        assert client.get(f"/api/jobs/{job}").status_code == 404
        assert client.get(f"/api/jobs/{preview}").json()["id"] == preview  # kept


def test_brats_app_command_serves_and_refuses_unsafe_options(trained_models, tmp_path):
    model = str(trained_models["labels"])
    unsafe = subprocess.run(BRATS + ["app", "-m", model, "--host", "0.0.0.0"], capture_output=True, text=True,
                            timeout=120)
    assert unsafe.returncode == 2 and "--host 0.0.0.0: listening beyond this machine needs --token" in unsafe.stderr
    bad = subprocess.run(BRATS + ["app", "-m", model, "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--workers 0: must be positive" in bad.stderr

    port = free_port()
    server = subprocess.Popen(BRATS + ["app", "-m", model, "--port", str(port), "--data", str(tmp_path / "data"),
                                       "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + JOB_TIMEOUT
            while True:
                try:
                    preview = client.get("/api/preview").json()["id"]
                    break
                except httpx.TransportError:
                    assert server.poll() is None and time.monotonic() < deadline, "brats app did not start"
                    time.sleep(0.5)
            assert wait_done(client, preview)["state"] == "done"
            assert "upload-form" in client.get("/").text
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert f"open http://127.0.0.1:{port}/" in output
    assert "on cpu, fast (no mirroring, whole-brain tiles) prediction" in output  # --settings auto on a CPU


FAST, NNUNET = {"mirroring": False, "tiling": "whole"}, {"mirroring": True, "tiling": "nnunet"}


@pytest.mark.parametrize("choice,device,expected", [
    ("auto", "cpu", FAST), ("auto", "mps", FAST), ("auto", "cuda", NNUNET), ("fast", "cuda", FAST),
    ("nnunet", "cpu", NNUNET),
])
def test_the_apps_prediction_settings_follow_the_device_unless_chosen(choice, device, expected):
    assert prediction_settings(choice, device) == expected


def test_a_jobs_progress_moves_with_every_network_pass_and_tells_the_time_left(monkeypatch):
    from brats_plugin.inference import pace
    clock = iter([100.0, 104.0, 110.0])  # started; 4 s for pass 1; 10 s for passes 1-2
    monkeypatch.setattr(pace.time, "monotonic", lambda: next(clock))
    reported: list[tuple[str, float]] = []
    progress = network_progress(lambda stage, fraction: reported.append((stage, fraction)), 0.1, 0.8)
    progress(1, 4)
    progress(2, 4)
    assert reported == [("segmenting: network pass 1 of 4, about 12 s left", pytest.approx(0.275)),
                        ("segmenting: network pass 2 of 4, about 10 s left", pytest.approx(0.45))]
