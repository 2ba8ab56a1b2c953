"""Which tasks a run trains, checked against the consortium's sites before anything trains.

Every site scores every task of the run's model each round (training sites train them too), and a
site's table is checked for exactly the note and label columns of the tasks its YAML declares
(sites/encounter_table.py). A run task that a site does not declare would fail at that site in
every round, as a missing column deep inside the ClientApp, so it is refused here with the site,
the task and the column it reads.

`tasks = "all"` (the default) means every task that every site of the consortium declares:
`lang1-fl run` writes that list into the run config it hands to Flower, so the server and every
site build the same model.
"""

from __future__ import annotations

from client.run_config import InvalidRunConfig
from client.settings import parse_tasks
from sites.config import ConsortiumConfig
from sites.tasks import NOTE_COLUMNS, TASK_NAMES, TASKS


def shared_tasks(consortium: ConsortiumConfig) -> tuple[str, ...]:
    """The tasks every site of `consortium` declares, in the order of `sites.tasks.TASKS`."""
    return tuple(t for t in TASK_NAMES if all(t in site.tasks for site in consortium.sites))


def resolve_run_tasks(value: str, consortium: ConsortiumConfig) -> tuple[str, ...]:
    """The run config's `tasks` for `consortium`: `all` = `shared_tasks`; a comma list is
    checked name by name and against every site (`check_run_tasks`)."""
    if value.strip() == "all":
        tasks = shared_tasks(consortium)
        if not tasks:
            declared = "; ".join(f"{s.name}: {', '.join(s.tasks)}" for s in consortium.sites)
            raise InvalidRunConfig(
                f"run config: `tasks` is 'all' (every task every site has), but the sites of "
                f"{consortium.source} share no task ({declared}); expected sites with a task in "
                "common: fix the sites' `tasks` in their YAML")
        return tasks
    tasks = parse_tasks(value)
    check_run_tasks(tasks, consortium, value=value)
    return tasks


def check_run_tasks(tasks: tuple[str, ...], consortium: ConsortiumConfig, *, value: str) -> None:
    """Raise `InvalidRunConfig` naming the first site that does not declare a task of `tasks`
    (`value` is the run config's `tasks` as written), and how to fix the run or the site."""
    shared = shared_tasks(consortium)
    for site in consortium.sites:
        for task in tasks:
            if task in site.tasks:
                continue
            column = NOTE_COLUMNS[TASKS[task].note]
            fix = (f"--set tasks={','.join(shared)} (the tasks every site has)" if shared
                   else "fix the sites' `tasks` (they share none)")
            raise InvalidRunConfig(
                f"run config: `tasks` is {value!r}, but site {site.name!r} ({site.role}) of "
                f"{consortium.source} does not have task {task!r} (it declares "
                f"{', '.join(site.tasks)}; {task!r} reads `{column}` and its label "
                f"`{TASKS[task].label_column}`); expected tasks every site has: pass {fix}, or "
                f"add {task!r} to `tasks` in the site's YAML once its table has those columns")
