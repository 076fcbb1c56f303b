from __future__ import annotations

import pytest
from builders import colour_images, colour_model, fast_config, save_npz


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """One real scored result, written by the scorer: the template the ranking tests vary."""
    from evaluator.scoring.pipeline import score

    folder = tmp_path_factory.mktemp("template")
    images, labels = colour_images(200, correct=190)
    with pytest.MonkeyPatch.context() as patch:  # session-scoped: the autouse isolation has not run yet
        patch.setenv("EDL_NVML_MODULE", "fake_pynvml")
        patch.setenv("FAKE_NVML_MODE", "absent")
        patch.setenv("EDL_POWERCAP_ROOT", str(folder / "no-powercap"))
        result = score(colour_model(folder / "m.onnx"), fast_config(save_npz(folder / "d.npz", images, labels)),
                       folder / "o")
    assert result.audit.verdict == "pass"
    return result
