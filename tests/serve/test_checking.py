"""The upload check's fallback, a fresh limited child (used when the check server cannot start): the same
answers as the server, for a good model, a file that is not ONNX and a description that is not a PDF."""

from __future__ import annotations

import json

from builders import conv_model

from evaluator.config import Limits
from evaluator.serve.checking import CheckServer, run_in_fresh_child
from evaluator.typedjson import to_json


def test_the_fresh_child_answers_as_the_check_server_does(tmp_path):
    good = conv_model(tmp_path / "good.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all" * 100)
    not_pdf = tmp_path / "description.pdf"
    not_pdf.write_text("two pages of text")
    limits = json.dumps(to_json(Limits()))
    requests = [["model", str(good), limits], ["model", str(garbage), limits], ["pdf", str(not_pdf), "2"]]
    fresh = [run_in_fresh_child(argv, 120.0) for argv in requests]
    server = CheckServer()
    try:
        served = [server.run(argv, 120.0) for argv in requests]
    finally:
        server.close()
    assert fresh == served
    assert fresh[0].valid, fresh[0].problems
    assert not fresh[1].valid and str(garbage) not in " ".join(fresh[1].problems)  # our path is not the team's
    assert fresh[2].problems == ["the description is not a PDF file; export the two pages as PDF"]
