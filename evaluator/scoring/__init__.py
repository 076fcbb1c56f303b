"""Scoring one submission: the phases (``pipeline``), the thermal start (``cooldown``), the runtime search
(``tune``), the result records (``records``), and the independent re-check of a result (``verify``)."""
