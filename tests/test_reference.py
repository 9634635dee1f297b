from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdemo.cli import main
from segdemo.reference import ReferenceModelError, VocReference
from tests.fixtures import make_oxford

VOC_TFLITE = Path(__file__).resolve().parents[1] / "../shared/pretrained/deeplabv3_mnv2_pascal_quant.tflite"
needs_tflite = pytest.mark.skipif(not VOC_TFLITE.is_file(), reason=f"{VOC_TFLITE} not available (../shared missing)")


def test_missing_or_broken_reference_file_is_a_clear_error(tmp_path):
    with pytest.raises(ReferenceModelError, match="not found"):
        VocReference(tmp_path / "none.tflite")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    with pytest.raises(ReferenceModelError, match="not a readable TFLite model"):
        VocReference(broken)


@needs_tflite
def test_reference_masks_are_pet_or_background_at_the_original_size():
    reference = VocReference(VOC_TFLITE)
    assert reference.input_size == (513, 513)
    prediction = reference.predict(Image.new("RGB", (90, 60), (120, 160, 90)))
    assert prediction.mask.shape == (60, 90)
    assert set(np.unique(prediction.mask)) <= {0, 1}  # never border


@needs_tflite
def test_evaluate_scores_the_reference_on_a_dataset(tmp_path, capsys):
    data = make_oxford(tmp_path / "pets")
    out = tmp_path / "reference.json"
    assert main(["evaluate", "--reference", str(VOC_TFLITE), "--data", str(data),
                 "--json", str(out)]) == 0
    assert "foreground IoU" in capsys.readouterr().out
    assert out.is_file()
