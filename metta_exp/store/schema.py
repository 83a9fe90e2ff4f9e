"""The store's schema: named, ordered migrations. A store records which it has applied in
``schema_migrations``; a new migration is appended here, never edited once released."""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE groups (
            name TEXT PRIMARY KEY,
            experiment TEXT NOT NULL,
            backend TEXT NOT NULL,
            config TEXT NOT NULL,
            created_at REAL NOT NULL,
            ended_at REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT,
            lease_expires REAL,
            runner_pid INTEGER
        );
        CREATE INDEX groups_created ON groups (created_at);
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
            run TEXT NOT NULL,
            position INTEGER NOT NULL,
            status TEXT NOT NULL,
            spec TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER,
            reason TEXT,
            queued_at REAL,
            run_dir TEXT NOT NULL,
            wandb_url TEXT,
            UNIQUE (group_name, run)
        );
        CREATE INDEX jobs_status ON jobs (status);
        CREATE TABLE deps (
            job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            depends_on INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            PRIMARY KEY (job_id, depends_on)
        );
        CREATE TABLE attempts (
            job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            status TEXT NOT NULL,
            handle TEXT,
            gpu_ids TEXT NOT NULL DEFAULT '',
            claimed_at REAL NOT NULL,
            started_at REAL,
            ended_at REAL,
            exit_code INTEGER,
            reason TEXT,
            log_path TEXT,
            PRIMARY KEY (job_id, number)
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            group_name TEXT NOT NULL,
            run TEXT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            old_status TEXT,
            new_status TEXT,
            detail TEXT
        );
        CREATE INDEX events_group ON events (group_name, id);
        """,
    ),
    (
        # ``job list`` counts jobs by group and status from this index alone, never reading the job rows
        # (their specs); ``job show`` finds a group's jobs in run order through it.
        "0002_jobs_by_group",
        """
        CREATE INDEX jobs_group_status ON jobs (group_name, status);
        CREATE INDEX jobs_group_position ON jobs (group_name, position);
        """,
    ),
    (
        # An ended attempt's last progress fraction, kept when the runner records its end, so that
        # ``job show`` of a big group reads no ended job's log. NULL: not recorded (the log is read);
        # negative: the attempt printed no progress line.
        "0003_final_progress",
        """
        ALTER TABLE attempts ADD COLUMN final_progress REAL;
        """,
    ),
    (
        # The trials of a search group: the study its runner drives, kept beside the jobs they launched so
        # that asking a trial and adding its job, or pruning a trial and ending its job, is one
        # transaction. ``steps`` is a JSON list of [step, value]: the intermediate objective values.
        "0004_trials",
        """
        CREATE TABLE trials (
            group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            params TEXT NOT NULL,
            state TEXT NOT NULL,
            value REAL,
            steps TEXT NOT NULL DEFAULT '[]',
            reason TEXT,
            PRIMARY KEY (group_name, number)
        );
        """,
    ),
    (
        # History across groups (``job list`` filters, ``job runs``, ``job rm``): each attempt's final value
        # of every tracked metric (a JSON object), kept when it ends so that ``job runs`` over thousands
        # of runs opens no file. Indexes on the two foreign keys that had none, so that deleting a
        # group's jobs (``job rm``) checks ``deps`` and ``trials`` by index instead of scanning them once
        # per job; and on the open groups, which every runner and ``job list`` look up.
        "0005_history",
        """
        ALTER TABLE attempts ADD COLUMN final_metrics TEXT;
        CREATE INDEX deps_depends_on ON deps (depends_on);
        CREATE INDEX trials_job ON trials (job_id);
        CREATE INDEX groups_open ON groups (created_at) WHERE ended_at IS NULL;
        """,
    ),
    (
        # The GPUs each attempt holds (its spec's GPUs times the nodes of a SkyPilot job), kept when it is
        # claimed, so that GPU-hours are summed from the attempts alone: ``job list`` of a big store reads
        # no job spec. NULL (attempts claimed before): taken from the spec.
        "0006_attempt_gpus",
        """
        ALTER TABLE attempts ADD COLUMN gpus INTEGER;
        """,
    ),
]

#: Migrations a reader can do without: it reads a store that lacks them all the same (slower: without the
#: indexes, or reading every ended job's log for its progress; without trials: it holds no search), until
#: the next writer applies them. Without ``0005_history`` it reads the final metric values from the runs' files;
#: without ``0006_attempt_gpus`` the GPUs from the job specs.
READABLE_WITHOUT = frozenset(
    {"0002_jobs_by_group", "0003_final_progress", "0004_trials", "0005_history", "0006_attempt_gpus"}
)
