"""The web board, the final board and ``edl leaderboard --public-key`` rank the same results alike (a prize board:
results not checked on unseen images are listed apart, unless the competition allows them)."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
from builders import colour_images, colour_model, fast_config, result_variant, save_npz
from serve.web_fixtures import live_server

from evaluator.report.audit_record import PrivateCheck
from evaluator.report.integrity import seal
from evaluator.report.result import RESULT_NAME, write_result
from evaluator.report.signing import PUBLIC_NAME, finalise, load_private
from evaluator.serve.app import create_app
from evaluator.serve.final import final_board
from evaluator.serve.settings import Competition


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One real scored result, written by the scorer (as tests/report's template)."""
    from evaluator.scoring.pipeline import score

    folder = tmp_path_factory.mktemp("template")
    images, labels = colour_images(200, correct=190)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDL_NVML_MODULE", "fake_pynvml")
        patch.setenv("FAKE_NVML_MODE", "absent")
        patch.setenv("EDL_POWERCAP_ROOT", str(folder / "no-powercap"))
        return score(colour_model(folder / "m.onnx"), fast_config(save_npz(folder / "d.npz", images, labels)),
                     folder / "o")


def _checked(result):
    private = PrivateCheck("p" * 64, 2000, 1800, 0.90, 3.0, 9.0, expected_accuracy=0.88, fit="probit")
    return seal(dataclasses.replace(result, audit=dataclasses.replace(result.audit, private=private)))


def _write_signed(competition: Competition, root, template, checked: bool = True) -> None:
    key = load_private(competition.secrets().signing_key)
    results = {"checked" if checked else "other": (_checked if checked else seal)(
                   result_variant(template, 0.93, 100.0, name="checked" if checked else "other")),
               "unchecked": result_variant(template, 0.92, 50.0, name="unchecked")}
    for name, result in results.items():
        write_result(root / name / RESULT_NAME, finalise(result, key))


def _categories(document: dict) -> dict[str, object]:
    return {row["name"]: row["category"] for row in document["rows"]}


def test_the_web_and_final_boards_rank_as_the_cli_with_the_public_key(cli, competition, template):
    _write_signed(competition, competition.results, template)
    _write_signed(competition, competition.final_results, template)
    public = competition.secrets().signing_key.parent / PUBLIC_NAME
    expected = _categories(json.loads(cli("leaderboard", competition.results, "--format", "json",
                                          "--public-key", public).stdout))
    assert expected["unchecked"] == "unseen not checked" and expected["checked"] == ">= 90 %"
    with live_server(create_app(competition.root)) as url:
        web = httpx.get(f"{url}/api/board").json()["board"]
    assert _categories(web) == expected
    final = final_board(competition)
    assert [e.name for e in final.unchecked_unseen] == ["unchecked"] and [e.name for e in final.ranked] == ["checked"]


def test_a_competition_that_allows_unchecked_results_ranks_them_as_the_cli_allows(cli, competition, template):
    allowed = dataclasses.replace(competition, settings=dataclasses.replace(competition.settings,
                                                                              allow_unchecked_unseen=True))
    _write_signed(allowed, allowed.final_results, template, checked=False)
    public = allowed.secrets().signing_key.parent / PUBLIC_NAME
    answer = cli("leaderboard", allowed.final_results, "--format", "json", "--public-key", public,
                 "--allow-unchecked-unseen")
    assert answer.exit_code == 0, answer.output
    expected = _categories(json.loads(answer.stdout))
    assert expected == {"other": ">= 90 %", "unchecked": ">= 90 %"}
    assert sorted(e.name for e in final_board(allowed).ranked) == ["other", "unchecked"]
    assert not final_board(competition).ranked  # the same results, not allowed: none ranked
