"""NIfTI I/O: geometry kept, the same bytes as nibabel, atomic writes."""
import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from brats_plugin import files, nifti
from brats_plugin.dataset_conversion.synthetic import brats_affine
from brats_plugin.errors import BratsInputError


def _image(dtype=np.uint8, order="F"):
    array = np.asarray(np.random.default_rng(0).integers(0, 5, size=(6, 7, 8)), dtype=dtype, order=order)
    image = nib.Nifti1Image(array, brats_affine((6, 7, 8), (0.9, 1.1, 3.0), (5, 10, 20)), dtype=dtype)
    image.header.set_xyzt_units("mm", "sec")
    return image


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
def test_save_writes_nibabels_bytes(tmp_path, dtype, order):
    image = _image(dtype, order)
    nifti.save(image, tmp_path / "a.nii.gz")
    nifti.save(image, tmp_path / "a.nii")
    expected = _image(dtype, order).to_bytes()
    assert gzip.decompress((tmp_path / "a.nii.gz").read_bytes()) == expected
    assert (tmp_path / "a.nii").read_bytes() == expected


def test_like_keeps_reference_geometry_exactly(tmp_path):
    reference = _image(np.int16)
    reference.set_qform(reference.affine, code=2)
    reference.set_sform(reference.affine, code=1)
    nib.save(reference, tmp_path / "ref.nii.gz")
    loaded = nib.load(tmp_path / "ref.nii.gz")
    labels = nifti.like(np.ones(loaded.shape, np.int64), loaded, np.uint8)
    nifti.save(labels, tmp_path / "labels.nii.gz")
    back = nib.load(tmp_path / "labels.nii.gz")
    assert back.get_data_dtype() == np.uint8
    assert np.array_equal(back.affine, loaded.affine)
    assert np.array_equal(back.get_qform(), loaded.get_qform()) and np.array_equal(back.get_sform(), loaded.get_sform())
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (2, 1)
    assert np.array_equal(back.header.get_zooms(), loaded.header.get_zooms())


def test_read_array_scales_and_rejects_damage(tmp_path):
    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    image.header.set_slope_inter(2.0, 1.0)
    nib.save(image, tmp_path / "scaled.nii.gz")
    assert np.array_equal(nifti.read_array(tmp_path / "scaled.nii.gz"), np.arange(24).reshape(2, 3, 4) * 2 + 1)
    data = (tmp_path / "scaled.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[:-10])
    with pytest.raises(BratsInputError, match="cut.nii.gz: truncated or corrupt"):
        nifti.read_array(tmp_path / "cut.nii.gz")
    (tmp_path / "short.nii").write_bytes(gzip.decompress(data)[:-5])
    with pytest.raises(BratsInputError, match="short.nii: truncated"):
        nifti.read_array(tmp_path / "short.nii")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), files.atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_place_file_links_copies_or_compresses(tmp_path):
    nib.save(_image(np.int16), tmp_path / "src.nii.gz")
    nib.save(_image(np.int16), tmp_path / "src.nii")
    assert nifti.place_file(tmp_path / "src.nii.gz", tmp_path / "linked.nii.gz") == "link"
    assert os.path.samefile(tmp_path / "src.nii.gz", tmp_path / "linked.nii.gz")
    assert nifti.place_file(tmp_path / "src.nii", tmp_path / "packed.nii.gz") == "gzip"
    assert gzip.decompress((tmp_path / "packed.nii.gz").read_bytes()) == (tmp_path / "src.nii").read_bytes()


def test_remove_partial_files(tmp_path):
    (tmp_path / ".a.nii.gz.part-0123abcd").write_bytes(b"x")
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    assert files.remove_partial_files(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]
