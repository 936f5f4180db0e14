"""``amltrack server migrate`` that SIGKILLs itself at a chosen point of its writes into the team.

    python tests/scripts/migrate_killed.py STAGE:N[:KIND] PIECE DIR DATABASE OBJECTS ENDPOINT

The migration is the product's (``migrate_store``) over a ``TeamStore`` built with faulty_server's
``KillAt`` faults object, the seam every write of a TeamStore goes through: ``during:3:append`` dies
with the third append's object in the bucket and its row not committed, ``after:1:finalise`` with the
first run just published. PIECE is the most bytes per append or upload chunk, so that a small run
still takes many writes. Credentials for the bucket come from the AWS variables.
"""

from __future__ import annotations

import sys

from faulty_server import KillAt

from amltrack.server import Database, Objects, TeamStore, migrate_store


def main(argv: list[str]) -> None:
    spec, piece, source, database, objects, endpoint = argv
    team = TeamStore(Database.open(database), Objects.open(objects, endpoint=endpoint), faults=KillAt(spec))
    try:
        report = migrate_store(source, team, piece=int(piece))
    finally:
        team.close()
    print("completed without being killed", report.ok)


if __name__ == "__main__":
    main(sys.argv[1:])
