"""``edl competition init/final/publish`` and ``edl team add/list/revoke``: the organiser's side of ``edl serve``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from evaluator.cli.console import print_json, say
from evaluator.cli.options import JsonOption, config_options
from evaluator.serve.settings import INIT, SETTINGS_NAME, CompetitionSettings

CompetitionOption = Annotated[Path, typer.Option("--competition", help="The competition's folder (edl competition "
                                                 "init made it)", envvar="EDL_COMPETITION", metavar="DIR")]
TeamName = Annotated[str, typer.Argument(help="The team's name: letters, digits, '-', '_', '.'", metavar="NAME")]


@config_options(INIT)
def init(
    directory: Annotated[Path, typer.Argument(help="A new folder for the competition", metavar="DIR")],
    settings: CompetitionSettings,
) -> None:
    """Make a competition folder: its settings file, database, signing key and audit secret; print the organiser's
    token once."""
    from evaluator.serve.competition import init_competition

    competition, token = init_competition(directory, settings)
    say(f"competition {settings.name!r} in {directory}; settings in {competition.settings_file} (edit it, then "
        f"edl serve {directory})")
    say(f"organiser token {token}")
    say("(shown once, only its hash is kept: it opens the organiser's page; edl competition init on a new folder "
        "is the only way to another)")


CompetitionArgument = Annotated[Path, typer.Argument(help="The competition's folder", metavar="DIR")]


def final(directory: CompetitionArgument) -> None:
    """After the deadline: score each team's chosen (else best) submission again with the final repeats, all in one
    interleaved batch into DIR/final; rematch the ties."""
    from evaluator.serve.competition import open_store, refuse_incomparable_results
    from evaluator.serve.final import final_scoring
    from evaluator.serve.settings import load_competition

    competition = load_competition(directory)
    refuse_incomparable_results(competition)
    outcome = final_scoring(competition, open_store(competition))
    for finalist in outcome.finalists:
        say(f"{finalist.team:<24} {finalist.why:<7} submission {finalist.submission.id} "
            f"({finalist.submission.name})")
    counts = outcome.summary.counts
    say(f"final scoring: scored {counts['scored']}, failed {counts['failed']}, skipped {counts['skipped']}; "
        f"results in {competition.final_results}")
    if outcome.rematched:
        say(f"ties rematched: {', '.join(outcome.rematched)}")
    say(f"next: edl leaderboard {competition.final_results}, then edl competition publish {directory}")


def publish(directory: CompetitionArgument) -> None:
    """Write the final board (signed JSON and HTML) and mark the competition published: the web app shows it as
    final and links the teams' descriptions."""
    from evaluator.serve.competition import open_store
    from evaluator.serve.final import publish as publish_board
    from evaluator.serve.settings import load_competition

    competition = load_competition(directory)
    folder = publish_board(competition, open_store(competition))
    say(f"published: the final board is in {folder} (board.json, its signature board.json.sig, board.html)")


def _store(competition_dir: Path) -> Any:
    from evaluator.serve.competition import open_store
    from evaluator.serve.settings import load_competition

    return open_store(load_competition(competition_dir))


def team_add(name: TeamName, competition: CompetitionOption = Path(".")) -> None:
    """Add a team and print its token once (only its hash is kept)."""
    token = _store(competition).add_team(name)
    say(f"team {name} token {token}")
    say("(shown once, only its hash is kept: give it to the team; edl team revoke stops it)")


def team_list(competition: CompetitionOption = Path("."), as_json: JsonOption = False) -> None:
    """The teams, whether their token works, and their quota used."""
    store = _store(competition)
    rows = []
    for team in store.list_teams():
        quota = store.quota(team)
        rows.append({"name": team.name, "added_utc": team.added_utc, "revoked_utc": team.revoked_utc,
                     "submissions": len(store.submissions_of(team)), "quota_used": quota.used_total,
                     "quota_left": quota.left_total})
    if as_json:
        print_json(rows)
        return
    if not rows:
        say(f"no teams yet in {competition}; add one with edl team add NAME --competition {competition}")
    for row in rows:
        state = f"revoked {row['revoked_utc']}" if row["revoked_utc"] else "active"
        say(f"{row['name']:<24} {state:<40} submissions {row['submissions']:<4} quota used {row['quota_used']}, "
            f"left {row['quota_left']}")


def team_revoke(name: TeamName, competition: CompetitionOption = Path(".")) -> None:
    """Stop a team's token at once (its submissions and results stay)."""
    team = _store(competition).revoke_team(name)
    say(f"team {name}: token revoked at {team.revoked_utc}")


def commands(app: typer.Typer) -> list[tuple[typer.Typer, str, Callable[..., Any]]]:
    """The two command groups, added to ``app``; main registers each command (so each gets its error handling)."""
    competition_app = typer.Typer(help=f"A competition served by edl serve (its folder, {SETTINGS_NAME}, phases).",
                                  no_args_is_help=True, rich_markup_mode=None)
    team_app = typer.Typer(help="The teams of a competition and their tokens.", no_args_is_help=True,
                           rich_markup_mode=None)
    app.add_typer(competition_app, name="competition")
    app.add_typer(team_app, name="team")
    return [(competition_app, "init", init), (competition_app, "final", final), (competition_app, "publish", publish),
            (team_app, "add", team_add), (team_app, "list", team_list),
            (team_app, "revoke", team_revoke)]
