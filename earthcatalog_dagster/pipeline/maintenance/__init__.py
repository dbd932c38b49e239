"""Table maintenance: compaction, snapshot expiry, orphan cleanup.

Plain functions, no Dagster: ``compact()`` (and the other operations) run the same from
Python, the CLI and the Dagster ``maintenance`` group. Each commits atomic snapshots under
the catalog lock and never drops the table; a file is deleted only when no retained
snapshot references it, so a reader of any retained snapshot never meets a missing file.
"""
